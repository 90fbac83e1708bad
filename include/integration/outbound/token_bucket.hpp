#ifndef INTEGRATION_OUTBOUND_TOKEN_BUCKET_HPP
#define INTEGRATION_OUTBOUND_TOKEN_BUCKET_HPP

/** @file
 *  A rate limiter of token buckets partitioned by key (tenant + provider + connection), sized from
 *  a RateLimitProfile or RateLimitBudget: the in-process implementation of the rate-limit-store
 *  port (`ports/rate_limit_store.hpp`); a store shared by several processes implements the same port.
 */

#include <integration/export.hpp>
#include <integration/ports/clock.hpp>
#include <integration/ports/rate_limit_store.hpp>

#include <array>
#include <chrono>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace integration::resilience {

/** Token buckets in this process; sharded to keep contention low. A bucket that has refilled to
 *  its burst is the same as a new one, so such buckets are dropped as new keys come: memory follows
 *  the keys in use, not every key ever seen (connections retired, API keys rotated). */
class INTEGRATION_EXPORT rate_limiter final : public rate_limit_store {
public:
    explicit rate_limiter(integration::clock const& clock) : clock_(clock) {}

    acquire_result try_acquire(std::string_view key, rate_limit_profile const& limit) override;

    /** The buckets held now. */
    std::size_t size() const;

private:
    struct bucket {
        double tokens = 0;
        time_point refilled{};
        rate_limit_profile limit;
    };
    struct string_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };
    struct shard {
        mutable std::mutex mutex;
        std::unordered_map<std::string, bucket, string_hash, std::equal_to<>> buckets;
        std::size_t sweep_at = 1024;  ///< the size at which a new key first drops the full buckets
    };

    integration::clock const& clock_;
    std::array<shard, 16> shards_;
};

}  // namespace integration::resilience

#endif
