#ifndef INTEGRATION_PORTS_RESOLVER_HPP
#define INTEGRATION_PORTS_RESOLVER_HPP

/** @file
 *  The resolver port: host names to addresses. Every outbound call resolves through it, so the
 *  egress check and the connection see the same answer, and tests can map a name to any range.
 */

#include <integration/core/error.hpp>
#include <integration/export.hpp>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace integration::net {

/** An IPv4 or IPv6 address in network byte order; IPv4 uses the first four bytes. */
struct INTEGRATION_EXPORT ip_address {
    std::array<std::uint8_t, 16> bytes{};
    bool v6 = false;

    /** Parses a literal strictly (dotted quad or RFC 4291 text, no brackets). */
    static std::optional<ip_address> parse(std::string_view text);
    std::string to_string() const;
    friend bool operator==(ip_address const&, ip_address const&) = default;
};

/** Resolves host names to addresses (the resolver port). */
class INTEGRATION_EXPORT resolver {
public:
    virtual ~resolver() = default;
    /** Every A and AAAA answer for `host`; a name that does not resolve is an error, not an
     *  exception (the delivery worker waits out what a resolver throws as its own failure). */
    virtual result<std::vector<ip_address>> resolve(std::string const& host) = 0;
};

/** The operating system's resolver (getaddrinfo). */
class INTEGRATION_EXPORT system_resolver final : public resolver {
public:
    result<std::vector<ip_address>> resolve(std::string const& host) override;
};

/** Fixed answers, like an /etc/hosts file; for tests and pinned deployments. */
class INTEGRATION_EXPORT static_resolver final : public resolver {
public:
    void add(std::string host, std::vector<ip_address> addresses) {
        entries_.emplace_back(std::move(host), std::move(addresses));
    }
    result<std::vector<ip_address>> resolve(std::string const& host) override;

private:
    std::vector<std::pair<std::string, std::vector<ip_address>>> entries_;
};

}  // namespace integration::net

#endif
