#ifndef INTEGRATION_HTTP_TRANSPORT_HPP
#define INTEGRATION_HTTP_TRANSPORT_HPP

/** @file
 *  The HTTP transport port: one `send` of a request with a deadline. Retry, auth, rate limits and
 *  egress checks are policies in front of it, not inside it.
 */

#include <integration/core/error.hpp>

#include <atomic>
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

/** Connect to `address`:`port` instead of resolving the URL's host (DNS pinning). The transport
 *  never looks the name up: whatever spelling the URL uses (`host.`, `HOST`), the connection goes
 *  to `address`, while the Host header, TLS SNI and certificate check keep the URL's name. */
struct pinned_address {
    std::string host;  ///< The name that was checked (lower case, no trailing dot).
    std::uint16_t port = 443;
    std::string address;  ///< Textual IPv4 or IPv6 address that passed the egress checks.
};

/** Whether two header names are the same field (compared case-insensitively). */
bool same_field_name(std::string_view a, std::string_view b) noexcept;

/** Refuses a header field that must not be sent as given: a name that is not an RFC 9110 token,
 *  a value holding CR, LF, NUL or another control character (horizontal tab excepted), and the
 *  fields that frame or route a request, which only the transport sets: `Content-Length`,
 *  `Transfer-Encoding`, `Host`, `Connection`, `Keep-Alive`, `Upgrade`, `TE`, `Trailer` and
 *  `Proxy-*`. The error (`errc::invalid_argument`) names the field and never repeats its value. */
result<void> check_header_field(std::string_view name, std::string_view value);

/** A flag that aborts calls in flight once set. The caller keeps a `std::shared_ptr` to it, puts a
 *  copy in `request::cancel`, and may call `cancel()` from any thread; the call then ends with
 *  `errc::cancelled`. Setting it is permanent: use a new one for the next call.
 *
 *  @par Example
 *  @code
 *  auto stop = std::make_shared<http::cancellation>();
 *  std::jthread watchdog([stop] { std::this_thread::sleep_for(1s); stop->cancel(); });
 *  auto res = transport.send({.url = url, .cancel = stop});  // errc::cancelled after ~1s
 *  @endcode
 */
class cancellation {
public:
    /** Requests cancellation of every call that carries this flag. */
    void cancel() noexcept { flag_.store(true, std::memory_order_release); }
    /** Whether `cancel()` was called. */
    bool cancelled() const noexcept { return flag_.load(std::memory_order_acquire); }

private:
    std::atomic<bool> flag_{false};
};

/** An outbound request. */
struct request {
    std::string method = "GET";
    std::string url;
    http::headers headers;
    std::string body;
    std::chrono::milliseconds timeout{30'000};  ///< Overall deadline, connect included.
    std::optional<pinned_address> pin;           ///< Where to connect, when egress checks chose it.
    std::shared_ptr<http::cancellation const> cancel;  ///< Aborts the call when set; none by default.
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
    /** PEM file of the certificate authorities to trust instead of the system store; empty: the
     *  system store. */
    std::string ca_file;
    /** An `http://host:port` forward proxy for every call. Empty (the default): connect directly,
     *  and the `http_proxy`, `https_proxy` and `all_proxy` environment variables are ignored.
     *
     *  With a proxy, a call with a `request::pin` is tunnelled through it (CONNECT) to the
     *  pinned address, `http` and `https` alike: the proxy is handed the checked address, never
     *  a name to resolve again (so a proxy that filters by host name sees only addresses). A call
     *  without a pin goes to the proxy as usual (absolute-form for `http`, CONNECT to the name for
     *  `https`) and the proxy resolves the name itself, so it must apply the egress policy at its
     *  connect time (as Smokescreen does); use a proxy only when it is that enforcement point.
     *  Hosts in `no_proxy` are connected to directly, at the pinned address. */
    std::string proxy;
    /** Comma-separated hosts, domains and CIDRs reached directly despite `proxy` (curl's
     *  `NO_PROXY` syntax, e.g. `"localhost,.internal,10.0.0.0/8"`); empty: none. */
    std::string no_proxy;
};

/** A libcurl transport (TLS verification on, no redirects followed, no proxy unless configured).
 *  Its easy handles are pooled, each keeping its keep-alive connections; TLS sessions are shared
 *  between them, so a new connection to a host resumes a session instead of a full handshake.
 *  A handle whose call failed (cut at the size cap, cancelled, timed out) is not pooled again, so
 *  no connection with an answer left half-read is ever reused.
 *  Every header must pass `check_header_field`, else the call fails with `errc::invalid_argument`
 *  before anything is sent. A transfer that fails certificate verification is an
 *  `errc::unavailable` error whose detail names the certificate problem; a cancelled call is
 *  `errc::cancelled`. */
std::unique_ptr<transport> make_curl_transport(curl_options options = {});

/** `application/x-www-form-urlencoded` encoding of one component. */
std::string form_encode(std::string_view text);

}  // namespace integration::http

#endif
