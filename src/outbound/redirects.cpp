#include <integration/outbound/redirects.hpp>

#include "../detail/url_destination.hpp"

#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <initializer_list>
#include <iterator>
#include <string>
#include <utility>

namespace integration::http {

namespace {

bool is_redirect(int status) {
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

bool same_name(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

// Compared as the egress check reads each URL: Boost.URL 1.81 ends a host that begins with a
// dotted quad there, so that 1.2.3.4.attacker.example would pass for 1.2.3.4.
bool same_origin(std::string_view a, std::string_view b) {
    auto const x = detail::read_destination(a), y = detail::read_destination(b);
    return x && y && x->scheme == y->scheme && x->host == y->host && x->port == y->port;
}

// How an error names a URL: by its origin only. The rest of it (a query) may carry the call's
// credential in a spelling the redaction of error text does not know (encoded twice).
std::string origin_of(std::string_view url) {
    auto const d = detail::read_destination(url);
    if (!d) return "an unreadable URL";
    auto const host = d->host.find(':') != std::string::npos ? "[" + d->host + "]" : d->host;
    return d->scheme + "://" + host + ":" + std::to_string(d->port);
}

// The header fields a hop to another origin keeps.
constexpr std::string_view cross_origin_fields[] = {"Accept",       "Accept-Language", "Content-Language", "Content-Type",
                                                    "User-Agent",   "traceparent",     "tracestate"};

void drop_headers(headers& h, std::initializer_list<std::string_view> names) {
    std::erase_if(h, [&](auto const& field) {
        return std::any_of(names.begin(), names.end(), [&](std::string_view n) { return same_name(field.first, n); });
    });
}

// The absolute URL of the next hop, or why the Location cannot be followed.
result<boost::urls::url> next_url(std::string const& current, response const& res) {
    auto const location = find_header(res.headers, "Location");
    if (location.empty())
        return error{errc::invalid_argument,
                     "the peer answered " + std::to_string(res.status) + " without a Location header to follow"};
    auto const base = boost::urls::parse_uri(current);
    if (!base) return error{errc::invalid_argument, "the current URL is not absolute"};
    auto const ref = boost::urls::parse_uri_reference(location);
    if (!ref)
        return error{errc::invalid_argument, "the redirect Location from " + origin_of(current) +
                                                 " is not a valid URI reference (" + ref.error().message() + ")"};
    // Boost.URL 1.81 reads the rest of a host that begins with a dotted quad as the path: a
    // reference without its own authority would be resolved against the quad alone.
    if (auto const path = base->encoded_path(); !ref->has_authority() && !path.empty() && !path.starts_with('/'))
        return error{errc::invalid_argument, "the redirect Location from " + origin_of(current) +
                                                 " is relative to a host that begins with an IPv4 address, which "
                                                 "cannot be resolved here; the peer should send an absolute URL"};
    boost::urls::url next;
    if (auto ok = boost::urls::resolve(*base, *ref, next); !ok)
        return error{errc::invalid_argument, "the redirect Location from " + origin_of(current) + " cannot be resolved against it"};
    next.remove_fragment();  // never sent on the wire
    return next;
}

}  // namespace

hop_check egress_hop_check(net::egress_policy policy, net::resolver& names) {
    return [policy = std::move(policy), &names](std::string_view url) -> result<std::optional<pinned_address>> {
        auto d = policy.check_destination(url, names);
        if (!d) return d.error();
        // A literal is pinned too: curl then connects to the address checked, never to its own
        // reading of a numeric form such as 0x7f.1 or 127.0.0.1.
        return std::optional<pinned_address>{pinned_address{d->host, d->port, d->literal->to_string()}};
    };
}

result<response> send_following_redirects(transport& t, request r, redirect_options options,
                                          hop_check const& check_hop,
                                          std::function<bool(std::string_view url)> const& carries_credential) {
    using clock = std::chrono::steady_clock;
    auto const deadline = clock::now() + r.timeout;
    for (unsigned hops = 0;; ++hops) {
        auto res = t.send(r);
        if (!res || !is_redirect(res->status) || options.max_hops == 0) return res;
        if (hops == options.max_hops)
            return error{errc::invalid_argument, "more than " + std::to_string(options.max_hops) +
                                                     " redirects, last from " + origin_of(r.url) +
                                                     "; raise redirect_options::max_hops if the chain is expected"};

        auto next = next_url(r.url, *res);
        if (!next) return next.error();
        auto const current = boost::urls::parse_uri(r.url);  // parsed by next_url already
        auto const target = next->buffer();
        if (next->scheme_id() != boost::urls::scheme::http && next->scheme_id() != boost::urls::scheme::https)
            return error{errc::egress_denied,
                         "redirect to a " + std::string(next->scheme()) + " URL refused: only http and https are followed"};
        if (current->scheme_id() == boost::urls::scheme::https && next->scheme_id() == boost::urls::scheme::http)
            return error{errc::egress_denied, "redirect from " + origin_of(r.url) + " to " + origin_of(target) +
                                                  " refused: it downgrades https to http"};
        auto pin = check_hop(target);
        if (!pin)
            return error{pin.error().code(),
                         "redirect to " + origin_of(target) + " refused: " + pin.error().detail()};

        // Another origin gets no header that could hold a credential: an API key goes under any
        // name the vendor chose (`X-Api-Key`), so only fields that never carry one go along.
        bool const cross_origin = !same_origin(r.url, target);
        if (cross_origin) {
            // Named by its origin only: the rest of the URL is what carries the secret.
            if (carries_credential && carries_credential(target))
                return error{errc::egress_denied, "redirect to " + origin_of(target) +
                                                      " refused: its URL carries the call's credential, which goes to no "
                                                      "other origin"};
            std::erase_if(r.headers, [](auto const& field) {
                return std::none_of(std::begin(cross_origin_fields), std::end(cross_origin_fields),
                                    [&](std::string_view n) { return same_name(field.first, n); });
            });
        }
        if (res->status == 303 ? r.method != "HEAD"
                               : (res->status == 301 || res->status == 302) && r.method == "POST") {
            r.method = "GET";
            r.body.clear();
            drop_headers(r.headers, {"Content-Type", "Content-Length", "Content-Encoding", "Transfer-Encoding"});
        }
        // Another origin got no idempotency key: there only an idempotent method may go out twice.
        r.repeatable = is_idempotent_method(r.method) || (r.repeatable && !cross_origin);
        r.url = std::string(target);
        r.pin = std::move(*pin);

        auto const left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
        if (left <= std::chrono::milliseconds::zero())
            return error{errc::timeout, "the redirect chain did not complete within the deadline"};
        r.timeout = left;
    }
}

}  // namespace integration::http
