#include <integration/outbound/classifier.hpp>

namespace integration::failures {

std::optional<classification> classify(attempt_outcome const& outcome, int attempt,
                                       resilience::retry_options const& retry, time_point now,
                                       std::chrono::milliseconds elapsed, double unit) {
    classification c;
    std::optional<std::chrono::milliseconds> requested;
    bool retryable = false;
    bool acted_on = true;  // whether the vendor may have acted on the request
    if (!outcome.response) {
        auto const& e = outcome.transport_error.value_or(error{errc::unavailable, "no answer"});
        c.category = failure_category::transient;
        c.error_code = e == errc::timeout           ? "timeout"
                       : e == errc::egress_denied   ? "egress_denied"
                       : e == errc::connection_lost ? "connection_lost"
                                                    : "transport_error";
        c.message = e.detail();
        acted_on = e != errc::unavailable;  // the transport's word: not one byte went out
        // A destination the egress policy refuses will be refused again.
        if (e == errc::egress_denied || e == errc::invalid_argument) c.category = failure_category::poison;
        retryable = c.category == failure_category::transient;
    } else {
        int s = outcome.response->status;
        acted_on = !(s == 408 || s == 425 || s == 429);  // refused before it was read
        if (s >= 200 && s <= 299) return std::nullopt;
        c.error_code = "http_" + std::to_string(s);
        c.message = "the vendor answered HTTP " + std::to_string(s);
        if (s == 429) {
            c.category = failure_category::rate_limited;
            requested = resilience::server_requested_delay(outcome.response->headers, now);
            retryable = true;
        } else if (s == 401 || s == 403) {
            c.category = failure_category::auth;
        } else if (resilience::is_retryable_status(s)) {
            c.category = failure_category::transient;
            if (s == 503) requested = resilience::server_requested_delay(outcome.response->headers, now);
            retryable = true;
        } else if (s >= 400 && s <= 499) {
            c.category = failure_category::validation;
        } else {
            c.category = failure_category::poison;  // 501, 505, 3xx we do not follow, 1xx, 6xx ...
        }
    }
    bool const unknown = retryable && (acted_on || outcome.redirected) && !outcome.repeatable;
    if (unknown) {
        retryable = false;
        c.message += "; the vendor may have acted on the request, which is not idempotent and has no idempotency key, "
                     "so it is not sent again";
    }
    auto decision = resilience::decide_retry(retry, attempt, retryable, requested, elapsed, unit);
    if (decision.retry) {
        c.next_action = next_action::retry;
        c.next_attempt_at = now + decision.delay;
    } else {
        c.next_action = c.category == failure_category::auth || unknown ? next_action::escalate : next_action::dead_letter;
    }
    return c;
}

}  // namespace integration::failures
