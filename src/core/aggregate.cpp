#include <integration/core/aggregate.hpp>
#include <integration/core/policies.hpp>

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
    return {};
}

result<void> rate_limit_profile::validate() const {
    if (!(requests_per_second > 0) || burst < 1)
        return error{errc::invalid_argument, "rate limit requestsPerSecond and burst must be positive"};
    return {};
}

}  // namespace integration
