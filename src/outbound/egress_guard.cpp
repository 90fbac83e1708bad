#include <integration/outbound/egress_guard.hpp>

#include <utility>

namespace integration::net {

namespace {

std::vector<std::unique_ptr<http::policy>> guard_policies(http::hop_check const& check, http::redirect_options redirects,
                                                          http::egress_policy_step*& egress) {
    std::vector<std::unique_ptr<http::policy>> policies;
    auto step = std::make_unique<http::egress_policy_step>(check);
    egress = step.get();
    policies.push_back(std::move(step));
    policies.push_back(std::make_unique<http::redirect_policy>(check, redirects));
    return policies;
}

}  // namespace

egress_guard::egress_guard(http::transport& inner, egress_policy policy, resolver& names,
                           http::redirect_options redirects)
    : egress_(nullptr),
      outbound_(inner, guard_policies(http::egress_hop_check(std::move(policy), names), redirects, egress_)) {}

result<http::pinned_address> egress_guard::check(std::string_view url) const { return egress_->check(url); }

result<http::response> egress_guard::send(http::request const& r) {
    auto copy = r;
    http::call_context call;
    return outbound_.send(copy, call);
}

}  // namespace integration::net
