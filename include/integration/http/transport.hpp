#ifndef INTEGRATION_HTTP_TRANSPORT_HPP
#define INTEGRATION_HTTP_TRANSPORT_HPP

/** @file
 *  The HTTP transport port: one `send` of a request with a deadline. Retry, auth, rate limits and
 *  egress checks are policies in front of it, not inside it.
 */

#include <integration/core/error.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace integration::http {

/** Header fields in order; names compared case-insensitively. */
using headers = std::vector<std::pair<std::string, std::string>>;

/** The value of header `name`, or empty. */
std::string_view find_header(headers const& h, std::string_view name) noexcept;

/** Connect to `address` for `host`:`port` instead of resolving the name again (DNS pinning). */
struct pinned_address {
    std::string host;
    std::uint16_t port = 443;
    std::string address;  ///< Textual IPv4 or IPv6 address that passed the egress checks.
};

/** An outbound request. */
struct request {
    std::string method = "GET";
    std::string url;
    http::headers headers;
    std::string body;
    std::chrono::milliseconds timeout{30'000};  ///< Overall deadline, connect included.
    std::optional<pinned_address> pin;           ///< Where to connect, when egress checks chose it.
};

/** What the peer answered. */
struct response {
    int status = 0;
    http::headers headers;
    std::string body;
};

/** The transport port. Implementations are safe to call from several threads. */
class transport {
public:
    virtual ~transport() = default;
    /** Sends `r`; a transport failure (no answer) is an error, any HTTP status is a response. */
    virtual result<response> send(request const& r) = 0;
};

/** Options of the libcurl transport. */
struct curl_options {
    std::chrono::milliseconds connect_timeout{10'000};
    std::size_t max_response_bytes = 16 * 1024 * 1024;  ///< Larger bodies fail the call.
    bool verify_tls = true;
};

/** A libcurl transport (TLS verification on, no redirects followed). */
std::unique_ptr<transport> make_curl_transport(curl_options options = {});

/** `application/x-www-form-urlencoded` encoding of one component. */
std::string form_encode(std::string_view text);

}  // namespace integration::http

#endif
