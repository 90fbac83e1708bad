#include <integration/core/aggregate.hpp>
#include <integration/domain/policies.hpp>

#include <sstream>

namespace integration {

metadata new_metadata(request_context const& ctx, time_point now, bool global) {
    metadata m;
    m.tenant_id = global ? std::string() : ctx.tenant_id;
    m.created_at = m.updated_at = truncate_ms(now);
    m.created_by = m.updated_by = ctx.actor;
    m.version = 0;
    return m;
}

void aggregate::mark_saved(std::string const& actor, time_point now, std::int64_t version) {
    if (meta_.version == 0) {
        meta_.created_at = truncate_ms(now);
        meta_.created_by = actor;
    }
    meta_.updated_at = truncate_ms(now);
    meta_.updated_by = actor;
    meta_.version = version;
}

result<void> retry_policy::validate() const {
    if (max_attempts < 1 || max_attempts > 100)
        return error{errc::invalid_argument, "retryPolicy.maxAttempts must be between 1 and 100"};
    if (initial_delay_ms <= 0 || max_delay_ms <= 0 || initial_delay_ms > max_delay_ms)
        return error{errc::invalid_argument,
                     "retryPolicy delays must be positive and initialDelayMs must not exceed maxDelayMs"};
    // A day at most: longer waits are an outage to escalate, and a time this far out overflows.
    if (max_delay_ms > 86'400'000)
        return error{errc::invalid_argument, "retryPolicy.maxDelayMs must be at most 86400000 (one day)"};
    return {};
}

result<void> rate_limit_profile::validate() const {
    // Written so that NaN fails too.
    if (!(requests_per_second >= min_requests_per_second && requests_per_second <= max_requests_per_second)) {
        std::ostringstream got;
        got << requests_per_second;
        return error{errc::invalid_argument,
                     "rate limit requestsPerSecond must be between 0.001 (one call in 1000 s) and 100000, got " + got.str()};
    }
    if (burst < 1 || burst > max_burst)
        return error{errc::invalid_argument, "rate limit burst must be between 1 and 100000, got " + std::to_string(burst)};
    return {};
}

}  // namespace integration
