#ifndef INTEGRATION_OUTBOUND_CLASSIFIER_HPP
#define INTEGRATION_OUTBOUND_CLASSIFIER_HPP

/** @file
 *  Failure classification: every failed attempt becomes Transient, RateLimited, Auth, Validation
 *  or Poison, with an error code, the next action and, for retries, when.
 */

#include <integration/domain/failure.hpp>
#include <integration/ports/transport.hpp>
#include <integration/outbound/retry.hpp>
#include <integration/export.hpp>

namespace integration::failures {

/** How one attempt ended: an HTTP answer, or a transport error when there was none. */
struct attempt_outcome {
    std::optional<http::response> response;
    std::optional<error> transport_error;
    /** False for a request that must not be sent again once the vendor may have acted on it (a
     *  `POST` without an idempotency key). Such a request is retried only when it provably was
     *  not acted on: nothing was sent (`errc::unavailable`), or the answer was 408, 425 or 429;
     *  after a timeout, a lost connection or a 5xx its failure is escalated instead. */
    bool repeatable = true;
    /** A redirect was followed: the vendor may have acted on the request whatever the last hop
     *  answered. */
    bool redirected = false;
};

/** Classifies a failed attempt `attempt` (1-based), begun `elapsed` after the first, under
 *  `retry`. `unit` in [0, 1) draws the jitter. Returns nullopt for a success (2xx). Poison and
 *  Validation are never retried; Auth escalates (the caller has already refreshed once);
 *  RateLimited waits what the server asked. A Transient failure whose request may have been
 *  acted on and is not `repeatable` escalates: only a person can tell whether to send it again. */
INTEGRATION_EXPORT std::optional<classification> classify(attempt_outcome const& outcome, int attempt,
                                       resilience::retry_options const& retry, time_point now,
                                       std::chrono::milliseconds elapsed, double unit);

}  // namespace integration::failures

#endif
