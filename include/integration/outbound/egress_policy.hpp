#ifndef INTEGRATION_OUTBOUND_EGRESS_POLICY_HPP
#define INTEGRATION_OUTBOUND_EGRESS_POLICY_HPP

/** @file
 *  Where outbound calls and webhook deliveries may go. This header holds the static URL check
 *  (scheme, numeric-host tricks, deny ranges); resolution-time checks use the same address rules.
 */

#include <integration/core/error.hpp>
#include <integration/export.hpp>
#include <integration/ports/resolver.hpp>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace integration::net {

/** An address block such as `10.0.0.0/8` or `fd00::/8`. */
struct INTEGRATION_EXPORT cidr {
    ip_address network;
    unsigned prefix = 0;

    /** Parses `address/prefix` (a bare address means a single host). */
    static result<cidr> parse(std::string_view text);
    bool contains(ip_address const& a) const noexcept;
};

/** Where a checked URL may connect. After `check_destination`, `literal` is the pinned address. */
struct destination {
    std::string scheme;  ///< "https" or "http".
    std::string host;    ///< Lower-case name, or the literal address as text.
    std::uint16_t port = 443;
    std::optional<ip_address> literal;
};

/** A socket this process listens on (`addresses` is one address, or every address that reaches
 *  a wildcard listener): egress to it is denied even when the address is allow-listed, so a
 *  tenant cannot make the platform call its own API. */
struct INTEGRATION_EXPORT own_endpoint {
    cidr addresses;
    std::uint16_t port = 0;
};

/** A name and port that reach this process from outside (the host of its public URL, behind a
 *  load balancer): egress to it is denied whatever the name resolves to, so a tenant cannot have
 *  the platform deliver webhooks to its own inbound route, each delivery raising more. */
struct INTEGRATION_EXPORT own_name {
    std::string host;  ///< Lower case, without a trailing dot.
    std::uint16_t port = 443;
};

/** The operator's egress rules. Defaults deny every private, loopback, link-local, multicast and
 *  documentation range, and allow only `https`. */
struct INTEGRATION_EXPORT egress_policy {
    std::vector<cidr> allow;  ///< Reachable despite the deny list; `http://` is allowed for them too.
    std::vector<own_endpoint> own_endpoints;  ///< The host's own listening sockets, always denied.
    std::vector<own_name> own_names;          ///< The host's own public names, always denied.

    /** Denies `url`'s host and port from now on, as `own_names` (or `own_endpoints` for a literal
     *  address): the URL this process is reached at from outside, such as a host's public URL. */
    result<void> deny_own_url(std::string_view url);
    /** Checks one resolved or literal address against the ranges and the allow-list; IPv4
     *  wrapped in IPv6 is unwrapped first. */
    result<void> check_address(ip_address const& a) const;
    /** `check_address`, after refusing the process's own listening sockets (`own_endpoints`). */
    result<void> check_endpoint(ip_address const& a, std::uint16_t port) const;
    /** Checks a URL without resolving it: scheme, userinfo, and a literal host in any numeric
     *  form (`127.1`, `0x7f000001`, `[::ffff:127.0.0.1]`, ...). */
    result<destination> check_url(std::string_view url) const;
    /** What can be known of a URL before its name is resolved: scheme, userinfo, and a literal
     *  host in any numeric form. Unlike `check_url`, `http://` with a host name passes, since
     *  whether its addresses are allow-listed shows only when it is resolved (`check_destination`,
     *  at every call). What registration checks. */
    result<destination> check_static(std::string_view url) const { return parse_destination(url); }
    /** Checks a URL at connect time: as `check_url`, then resolves a name with `names`, checks
     *  every answer, and pins the first so the connection cannot be rebound by another lookup.
     *  `host` is the canonical name (lower case, no trailing dot); a refusal never names the
     *  address the name resolved to. */
    result<destination> check_destination(std::string_view url, resolver& names) const;

private:
    result<destination> parse_destination(std::string_view url) const;
};

/** Interprets a host the way `inet_aton` does (1-4 parts, decimal, octal or hex), if it is numeric. */
INTEGRATION_EXPORT std::optional<ip_address> parse_numeric_ipv4(std::string_view host);

}  // namespace integration::net

#endif
