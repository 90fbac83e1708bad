#ifndef INTEGRATION_PORTS_TRANSPORT_HPP
#define INTEGRATION_PORTS_TRANSPORT_HPP

/** @file
 *  The HTTP transport port: one `send` of a request with a deadline. Retry, auth, rate limits and
 *  egress checks are policies in front of it, not inside it.
 */

#include <integration/core/error.hpp>
#include <integration/export.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
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
INTEGRATION_EXPORT std::string_view find_header(headers const& h, std::string_view name) noexcept;

/** `h` with each field name once, where and as it first appears, and the values of a repeated
 *  field joined with ", " in order (RFC 9110 5.3): what a map of name to value can show without
 *  losing a line (`Link`, `Vary`, `WWW-Authenticate`; `Set-Cookie` lines too, joined alike). */
INTEGRATION_EXPORT headers combined_headers(headers const& h);

/** Connect to `address`:`port` instead of resolving the URL's host (DNS pinning). The transport
 *  never looks the name up: whatever spelling the URL uses (`host.`, `HOST`), the connection goes
 *  to `address`, while the Host header, TLS SNI and certificate check keep the URL's name. */
struct pinned_address {
    std::string host;  ///< The name that was checked (lower case, no trailing dot).
    std::uint16_t port = 443;
    std::string address;  ///< Textual IPv4 or IPv6 address that passed the egress checks.
};

/** Whether two header names are the same field (compared case-insensitively). */
INTEGRATION_EXPORT bool same_field_name(std::string_view a, std::string_view b) noexcept;

/** Refuses a header field that must not be sent as given: a name that is not an RFC 9110 token,
 *  a value holding CR, LF, NUL or another control character (horizontal tab excepted), and the
 *  fields that frame or route a request, which only the transport sets: `Content-Length`,
 *  `Transfer-Encoding`, `Host`, `Connection`, `Keep-Alive`, `Upgrade`, `TE`, `Trailer`,
 *  `Expect` and `Proxy-*`. The error (`errc::invalid_argument`) names the field and never repeats its value. */
INTEGRATION_EXPORT result<void> check_header_field(std::string_view name, std::string_view value);

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
class INTEGRATION_EXPORT cancellation {
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
    /** Non-zero: only the first this many bytes of the answer's body are wanted. A transport may
     *  stop reading there (the call still succeeds, with the status and headers as answered and
     *  the body cut); zero: the whole body, up to the transport's own limit (an error past it). */
    std::size_t body_excerpt = 0;
    /** Whether sending it twice acts once (an idempotent method, or a key the vendor dedupes by).
     *  False: the vendor may act on each copy, so the transport never sends it again by itself
     *  (libcurl would, when the reused connection it went out on dies before an answer: that
     *  ends the call with `errc::connection_lost` instead), and no retry policy sends it again
     *  once the vendor may have acted on it. */
    bool repeatable = true;
};

/** Whether `method` is idempotent (RFC 9110 9.2.2: GET, HEAD, OPTIONS, TRACE, PUT, DELETE). */
INTEGRATION_EXPORT bool is_idempotent_method(std::string_view method) noexcept;

/** What the peer answered. */
struct response {
    int status = 0;
    http::headers headers;
    std::string body;
};

/** The transport port. Implementations are safe to call from several threads. */
class INTEGRATION_EXPORT transport {
public:
    virtual ~transport() = default;
    /** Sends `r`; a transport failure (no answer) is an error, any HTTP status is a response. The
     *  error's code says whether the vendor may have seen the request, which decides whether a
     *  request that is not idempotent may be sent again: `errc::unavailable` when not one byte of
     *  it went out (no connection, TLS refused); `errc::timeout` (the deadline passed) and
     *  `errc::connection_lost` (the connection ended first) once some of it may have. */
    virtual result<response> send(request const& r) = 0;

    /** Called once with the outcome of a `start`ed request. */
    using completion = std::function<void(result<response>)>;
    /** Starts `r` and returns; `done` runs once with the outcome, on a thread of the transport's
     *  choosing. Many started requests overlap, so one slow peer delays no other. The default
     *  sends on the calling thread and then calls `done` (no overlap); the curl transport
     *  overrides it with one event loop for every request in flight. */
    virtual void start(request r, completion done) { done(send(r)); }
};

/** `application/x-www-form-urlencoded` encoding of one component. */
INTEGRATION_EXPORT std::string form_encode(std::string_view text);

}  // namespace integration::http

#endif
