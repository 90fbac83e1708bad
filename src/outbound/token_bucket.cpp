#include <integration/outbound/token_bucket.hpp>

#include <algorithm>

namespace integration::resilience {

acquire_result rate_limiter::try_acquire(std::string_view key, rate_limit_profile const& limit) {
    auto& s = shards_[std::hash<std::string_view>{}(key) % shards_.size()];
    std::lock_guard lock(s.mutex);
    // Read under the lock: a time read before it could be older than the last refill, and
    // taking it back would credit the same interval twice.
    auto now = clock_.now();
    auto it = s.buckets.find(key);
    if (it == s.buckets.end())
        it = s.buckets.emplace(std::string(key), bucket{static_cast<double>(limit.burst), now, limit}).first;
    auto& b = it->second;
    b.limit = limit;
    // A clock that steps back refills nothing for the step, and refills from its new time on:
    // waiting for it to catch up would refuse every call for as long as the step.
    if (now > b.refilled) {
        double elapsed = std::chrono::duration<double>(now - b.refilled).count();
        b.tokens = std::min(static_cast<double>(limit.burst), b.tokens + elapsed * limit.requests_per_second);
    }
    b.refilled = now;
    if (b.tokens >= 1.0) {
        b.tokens -= 1.0;
        return {true, {}};
    }
    double wait = (1.0 - b.tokens) / limit.requests_per_second;
    return {false, std::chrono::nanoseconds(static_cast<std::int64_t>(wait * 1e9))};
}

}  // namespace integration::resilience
