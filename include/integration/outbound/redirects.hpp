#ifndef INTEGRATION_OUTBOUND_REDIRECTS_HPP
#define INTEGRATION_OUTBOUND_REDIRECTS_HPP

/** @file
 *  Following HTTP redirects in front of a transport, off by default. Every hop is checked again
 *  (egress policy and DNS pin) before it is connected to, because a redirect is a new destination
 *  chosen by the peer, not by the caller.
 */

#include <integration/core/error.hpp>
#include <integration/ports/transport.hpp>
#include <integration/outbound/egress_policy.hpp>
#include <integration/export.hpp>

#include <functional>
#include <optional>
#include <string_view>

namespace integration::http {

/** How many redirects to follow. */
struct redirect_options {
    /** Redirects followed at most; 0 (the default) returns a 3xx answer as is. */
    unsigned max_hops = 0;
};

/** Approves the next hop's absolute URL and says where to connect: a pin for a checked name,
 *  `std::nullopt` to let the transport connect to the URL's host as written (an address
 *  literal), or an error (e.g. `errc::egress_denied`) to refuse the hop. */
using hop_check = std::function<result<std::optional<pinned_address>>(std::string_view url)>;

/** A `hop_check` that applies `policy.check_destination` with `names` and pins the checked
 *  address (a literal's too). `names` must outlive the returned function. */
INTEGRATION_EXPORT hop_check egress_hop_check(net::egress_policy policy, net::resolver& names);

/** Sends `r` and follows up to `options.max_hops` redirects (301, 302, 303, 307, 308).
 *
 *  `r` itself is sent as given (its destination is the caller's to check). For each redirect the
 *  `Location` is resolved against the current URL (it may be relative), an `https` to `http`
 *  downgrade is refused, `check_hop` approves the new URL and its answer replaces `r.pin`; only
 *  then is the hop sent. A 303, and a 301 or 302 answering a POST, turn the next request into a
 *  GET without a body; 307 and 308 keep the method and body. When a hop leaves the origin
 *  (scheme, host or port), every header but `Accept`, `Accept-Language`, `Content-Language`,
 *  `Content-Type`, `User-Agent`, `traceparent` and `tracestate` is dropped for the rest of the
 *  chain: any other may carry a credential (`Authorization`, a cookie, an API key under a
 *  vendor's own name), and a hop to another origin whose URL `carries_credential` (a vendor that
 *  echoed a query-placed API key into `Location`) is refused. `r.timeout` bounds the whole chain
 *  and `r.cancel` applies to every hop.
 *
 *  Errors: a refused hop or downgrade is `errc::egress_denied`; a redirect without a usable
 *  `Location`, or more than `max_hops` redirects, is `errc::invalid_argument`; transport errors
 *  pass through.
 *
 *  @par Example
 *  @code
 *  net::system_resolver dns;
 *  auto res = http::send_following_redirects(transport, std::move(req), {.max_hops = 5},
 *                                            http::egress_hop_check(policy, dns));
 *  @endcode
 */
INTEGRATION_EXPORT result<response> send_following_redirects(transport& t, request r, redirect_options options,
                                          hop_check const& check_hop,
                                          std::function<bool(std::string_view url)> const& carries_credential = {});

}  // namespace integration::http

#endif
