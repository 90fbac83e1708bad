#ifndef INTEGRATION_OUTBOUND_RETRY_HPP
#define INTEGRATION_OUTBOUND_RETRY_HPP

/** @file
 *  Retry policy: which answers are worth another attempt, how long to wait (exponential backoff
 *  with full jitter, or what the server asked for in Retry-After and the common rate-limit reset
 *  headers), and when to stop.
 */

#include <integration/export.hpp>
#include <integration/ports/clock.hpp>
#include <integration/ports/transport.hpp>

#include <chrono>
#include <cstdint>
#include <optional>

namespace integration::resilience {

/** Retry options; the defaults follow the Azure SDK and Polly (3 retries, 800 ms base, 60 s cap). */
struct retry_options {
    int max_attempts = 4;                              ///< Attempts in all, the first included.
    std::chrono::milliseconds base_delay{800};         ///< Backoff base: delay n is up to base * 2^(n-1).
    std::chrono::milliseconds max_delay{60'000};       ///< Cap on one delay, computed or server-requested.
    std::chrono::milliseconds total_deadline{120'000};  ///< No attempt starts after this much time.
};

/** True for the statuses worth retrying: 408, 425, 429 and every 5xx but 501 and 505. */
INTEGRATION_EXPORT bool is_retryable_status(int status) noexcept;

/** The wait a server asked for: `Retry-After` (delta seconds or HTTP-date), then
 *  `RateLimit-Reset` / `X-RateLimit-Reset` / `X-Rate-Limit-Reset` (delta seconds, or a Unix
 *  time when larger than a year). Nothing when absent or unparseable; never negative. */
INTEGRATION_EXPORT std::optional<std::chrono::milliseconds> server_requested_delay(http::headers const& h,
                                                                                   time_point now);

/** Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the HTTP-date form servers send. */
INTEGRATION_EXPORT std::optional<time_point> parse_http_date(std::string_view text);

/** The delay before attempt `next_attempt` (2, 3, ...): full jitter, `uniform(0, min(cap, base*2^(n-2)))`.
 *  `unit` is a random number in [0, 1). */
INTEGRATION_EXPORT std::chrono::milliseconds backoff_delay(retry_options const& o, int next_attempt,
                                                           double unit) noexcept;

/** The decision after a failed attempt. */
struct retry_decision {
    bool retry = false;
    std::chrono::milliseconds delay{0};
};

/** Decides whether attempt `attempt` (1-based) that ended `started` after the first attempt's
 *  start should be followed by another: attempts left, a retryable outcome, the wait (the server's
 *  request wins over backoff, capped at `max_delay`), and the total deadline. */
INTEGRATION_EXPORT retry_decision decide_retry(retry_options const& o, int attempt, bool retryable,
                                               std::optional<std::chrono::milliseconds> requested,
                                               std::chrono::milliseconds elapsed, double unit) noexcept;

}  // namespace integration::resilience

#endif
