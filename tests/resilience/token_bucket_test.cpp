#include <integration/outbound/token_bucket.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace integration::resilience {
namespace {

using namespace std::chrono_literals;

TEST(rate_limiter, a_full_bucket_grants_the_burst_then_refills_at_the_rate) {
    manual_clock clock;
    rate_limiter limiter(clock);
    rate_limit_profile p{.requests_per_second = 2, .burst = 3};
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.try_acquire("t1/prov/conn", p).granted);
    auto refused = limiter.try_acquire("t1/prov/conn", p);
    EXPECT_FALSE(refused.granted);
    EXPECT_EQ(std::chrono::duration_cast<std::chrono::milliseconds>(refused.retry_after), 500ms);
    clock.advance(499ms);
    EXPECT_FALSE(limiter.try_acquire("t1/prov/conn", p).granted);
    clock.advance(1ms);
    EXPECT_TRUE(limiter.try_acquire("t1/prov/conn", p).granted);
    clock.advance(10s);  // refills, but never beyond the burst
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.try_acquire("t1/prov/conn", p).granted);
    EXPECT_FALSE(limiter.try_acquire("t1/prov/conn", p).granted);
}

// Keys come and go (connections retired, API keys rotated): a bucket refilled to its burst is
// dropped as new keys come, and one still refilling is kept with what it owes.
TEST(rate_limiter, buckets_of_keys_no_longer_used_do_not_pile_up) {
    manual_clock clock;
    rate_limiter limiter(clock);
    rate_limit_profile p{.requests_per_second = 1, .burst = 1};
    rate_limit_profile slow{.requests_per_second = 0.001, .burst = 1};  // refills in 1,000 s
    ASSERT_TRUE(limiter.try_acquire("slow", slow).granted);
    for (int round = 0; round < 20; ++round) {
        for (int i = 0; i < 5'000; ++i)
            ASSERT_TRUE(limiter.try_acquire("round-" + std::to_string(round) + "/key-" + std::to_string(i), p).granted);
        clock.advance(2s);  // every bucket of this round is full again
    }
    EXPECT_LT(limiter.size(), 30'000u) << "100,000 keys used once each are all still held";
    // 40 s on, the slow key's bucket still owes most of its token: kept, it refuses.
    EXPECT_FALSE(limiter.try_acquire("slow", slow).granted);
}

TEST(rate_limiter, keys_are_independent_partitions) {
    manual_clock clock;
    rate_limiter limiter(clock);
    rate_limit_profile p{.requests_per_second = 1, .burst = 1};
    EXPECT_TRUE(limiter.try_acquire("tenant-a/prov/conn", p).granted);
    EXPECT_FALSE(limiter.try_acquire("tenant-a/prov/conn", p).granted);
    EXPECT_TRUE(limiter.try_acquire("tenant-b/prov/conn", p).granted);
    EXPECT_TRUE(limiter.try_acquire("tenant-a/prov/conn-2", p).granted);
}

// An NTP step back neither refills the bucket nor freezes it until the clock catches up: it
// refills at its rate from the step on.
TEST(rate_limiter, a_clock_jumping_backwards_grants_nothing_extra_and_does_not_stall) {
    manual_clock clock;
    rate_limiter limiter(clock);
    rate_limit_profile p{.requests_per_second = 1, .burst = 1};
    EXPECT_TRUE(limiter.try_acquire("k", p).granted);
    clock.advance(-1h);
    EXPECT_FALSE(limiter.try_acquire("k", p).granted);
    clock.advance(999ms);
    EXPECT_FALSE(limiter.try_acquire("k", p).granted);
    clock.advance(1ms);
    EXPECT_TRUE(limiter.try_acquire("k", p).granted);  // a second after the step, not an hour
    EXPECT_FALSE(limiter.try_acquire("k", p).granted);
}

TEST(rate_limiter, concurrent_callers_never_exceed_the_burst) {
    manual_clock clock;
    rate_limiter limiter(clock);
    rate_limit_profile p{.requests_per_second = 1, .burst = 50};
    std::atomic<int> granted{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t)
        threads.emplace_back([&] {
            for (int i = 0; i < 100; ++i)
                if (limiter.try_acquire("shared", p).granted) ++granted;
        });
    for (auto& th : threads) th.join();
    EXPECT_EQ(granted.load(), 50);
}

}  // namespace
}  // namespace integration::resilience
