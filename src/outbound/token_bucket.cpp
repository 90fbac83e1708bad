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
    if (it == s.buckets.end()) {
        // Amortised: a sweep at most each time the shard doubles past what the last one kept.
        if (s.buckets.size() >= s.sweep_at) {
            std::erase_if(s.buckets, [&](auto const& entry) {
                auto const& b = entry.second;
                if (now <= b.refilled) return false;
                double elapsed = std::chrono::duration<double>(now - b.refilled).count();
                return b.tokens + elapsed * b.limit.requests_per_second >= static_cast<double>(b.limit.burst);
            });
            s.sweep_at = std::max<std::size_t>(1024, 2 * s.buckets.size());
        }
        it = s.buckets.emplace(std::string(key), bucket{static_cast<double>(limit.burst), now, limit}).first;
    }
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

std::size_t rate_limiter::size() const {
    std::size_t n = 0;
    for (auto const& s : shards_) {
        std::lock_guard lock(s.mutex);
        n += s.buckets.size();
    }
    return n;
}

}  // namespace integration::resilience
