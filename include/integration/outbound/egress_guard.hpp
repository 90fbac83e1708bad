#ifndef INTEGRATION_OUTBOUND_EGRESS_GUARD_HPP
#define INTEGRATION_OUTBOUND_EGRESS_GUARD_HPP

/** @file
 *  The egress policy as a transport policy: every outbound call, and every redirect hop, goes
 *  only to a destination the policy allows, connected to the address that was checked.
 */

#include <integration/export.hpp>
#include <integration/outbound/pipeline.hpp>

#include <string_view>

namespace integration::net {

/** A transport in front of another that sends a request only after `egress_policy::check_destination`
 *  approved its URL, pinned to the checked address so that a second DNS answer cannot rebind the
 *  connection. Redirects are followed when `redirects` allows hops, each checked and pinned the
 *  same way. It is the outbound pipeline (`http::pipeline`) with only the egress and redirect
 *  policies, for a caller that needs a `http::transport`; the library's services use the same
 *  policies in their own pipelines.
 *
 *  A refused destination is `errc::egress_denied` and nothing is sent. Its detail names the host
 *  as written in the URL, never an address a name resolved to.
 *
 *  @par Example
 *  @code
 *  net::system_resolver dns;
 *  auto curl = http::make_curl_transport();
 *  net::egress_guard outbound(*curl, net::egress_policy{}, dns);
 *  auto res = outbound.send({.url = "https://api.vendor.example/v1/ping"});
 *  @endcode
 */
class INTEGRATION_EXPORT egress_guard final : public http::transport {
public:
    /** `inner` and `names` must outlive the guard. */
    egress_guard(http::transport& inner, egress_policy policy, resolver& names, http::redirect_options redirects = {});

    /** Where a call to `url` would connect, or why the policy refuses it; sends nothing. */
    result<http::pinned_address> check(std::string_view url) const;
    /** Checks `r.url`, pins the checked address (replacing `r.pin`) and sends `r`. */
    result<http::response> send(http::request const& r) override;

private:
    http::egress_policy_step* egress_;  // owned by outbound_
    http::pipeline outbound_;
};

}  // namespace integration::net

#endif
