#ifndef INTEGRATION_PORTS_RATE_LIMIT_STORE_HPP
#define INTEGRATION_PORTS_RATE_LIMIT_STORE_HPP

/** @file
 *  The rate-limit-store port: token buckets partitioned by key (tenant + provider + connection).
 *  `resilience::rate_limiter` keeps them in this process; a store shared by several processes
 *  implements the same port.
 */

#include <integration/domain/policies.hpp>
#include <integration/export.hpp>

#include <chrono>
#include <string_view>

namespace integration::resilience {

/** The outcome of one acquire. */
struct acquire_result {
    bool granted = false;
    std::chrono::nanoseconds retry_after{0};  ///< When not granted: how long until a token is there.
};

/** The rate-limit-store port: token buckets by key. Implementations are thread-safe. */
class INTEGRATION_EXPORT rate_limit_store {
public:
    virtual ~rate_limit_store() = default;
    /** Takes one token from `key`'s bucket, creating it full with `limit` on first use. A changed
     *  `limit` applies from the next refill. */
    virtual acquire_result try_acquire(std::string_view key, rate_limit_profile const& limit) = 0;
};

}  // namespace integration::resilience

#endif
