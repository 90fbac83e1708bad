#ifndef INTEGRATION_DOMAIN_POLICIES_HPP
#define INTEGRATION_DOMAIN_POLICIES_HPP

/** @file
 *  Value objects shared by several aggregates: retry policy, rate-limit profile/budget, health and
 *  auth mode.
 */

#include <integration/core/json.hpp>
#include <integration/export.hpp>

#include <chrono>
#include <cstdint>

namespace integration {

/** How credentials are presented to a vendor. */
enum class auth_mode { none, api_key, oauth2_client_credentials, oauth2_authorization_code, managed_identity };
template <>
struct enum_names<auth_mode> {
    static constexpr std::array<std::string_view, 5> values{"None", "ApiKey", "OAuth2ClientCredentials",
                                                            "OAuth2AuthorizationCode", "ManagedIdentity"};
};

/** Result of the latest health probe. */
enum class health_status { unknown, healthy, degraded, unhealthy };
template <>
struct enum_names<health_status> {
    static constexpr std::array<std::string_view, 4> values{"Unknown", "Healthy", "Degraded", "Unhealthy"};
};

/** Retry with exponential backoff and full jitter. Delays in JSON are milliseconds. */
struct INTEGRATION_EXPORT retry_policy {
    std::int64_t max_attempts = 3;          ///< Attempts in all, the first included.
    std::int64_t initial_delay_ms = 800;    ///< Base of the exponential backoff.
    std::int64_t max_delay_ms = 60'000;     ///< Cap on one delay.

    static auto json_fields() {
        return std::make_tuple(field("maxAttempts", &retry_policy::max_attempts),
                               field("initialDelayMs", &retry_policy::initial_delay_ms),
                               field("maxDelayMs", &retry_policy::max_delay_ms));
    }
    /** Checks bounds: 1-100 attempts, delays positive and initial <= max. */
    result<void> validate() const;
};

/** Requests per second and burst: a provider's RateLimitProfile or a connection's RateLimitBudget.
 *  `requestsPerSecond` is 0.001 (one call in 1000 s) to 100000 and `burst` 1 to 100000: a rate
 *  below the floor would only ever turn runs away, and a burst above the cap would not limit. */
struct INTEGRATION_EXPORT rate_limit_profile {
    static constexpr double min_requests_per_second = 0.001;
    static constexpr double max_requests_per_second = 100'000;
    static constexpr std::int64_t max_burst = 100'000;

    double requests_per_second = 10;
    std::int64_t burst = 20;

    static auto json_fields() {
        return std::make_tuple(field("requestsPerSecond", &rate_limit_profile::requests_per_second),
                               field("burst", &rate_limit_profile::burst));
    }
    /** Checks the bounds above; the error names the one crossed. */
    result<void> validate() const;
};
/** A connection's share of a provider's rate limit. */
using rate_limit_budget = rate_limit_profile;

}  // namespace integration

#endif
