#include <integration/outbound/egress_guard.hpp>

#include <utility>

namespace integration::net {

egress_guard::egress_guard(http::transport& inner, egress_policy policy, resolver& names,
                           http::redirect_options redirects)
    : inner_(inner), check_(http::egress_hop_check(std::move(policy), names)), redirects_(redirects) {}

result<http::pinned_address> egress_guard::check(std::string_view url) const {
    auto pin = check_(url);
    if (!pin) return pin.error();
    return pin->value();  // egress_hop_check pins every destination it approves
}

result<http::response> egress_guard::send(http::request const& r) {
    auto pin = check(r.url);
    if (!pin) return pin.error();
    auto pinned = r;
    pinned.pin = std::move(*pin);
    if (redirects_.max_hops == 0) return inner_.send(pinned);
    return http::send_following_redirects(inner_, std::move(pinned), redirects_, check_);
}

}  // namespace integration::net
