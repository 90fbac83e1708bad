#include <integration/outbound/circuit_breaker.hpp>

#include <gtest/gtest.h>

namespace integration::resilience {
namespace {

using namespace std::chrono_literals;

TEST(circuit_breaker, opens_on_the_failure_ratio_once_throughput_is_reached) {
    manual_clock clock;
    circuit_breaker b(clock, {.failure_ratio = 0.5, .minimum_throughput = 4, .sampling_window = 10s, .break_duration = 5s});
    for (bool ok : {false, false, true}) {
        ASSERT_TRUE(b.allow());
        b.record(ok);
    }
    EXPECT_EQ(b.state(), breaker_state::closed);  // 3 calls: below the minimum throughput
    ASSERT_TRUE(b.allow());
    b.record(true);  // 2 of 4 failed: ratio 0.5
    EXPECT_EQ(b.state(), breaker_state::open);
    EXPECT_FALSE(b.allow());
}

TEST(circuit_breaker, old_samples_leave_the_window) {
    manual_clock clock;
    circuit_breaker b(clock, {.failure_ratio = 0.5, .minimum_throughput = 4, .sampling_window = 10s});
    b.record(false);
    b.record(false);
    clock.advance(11s);
    b.record(true);
    b.record(true);
    b.record(true);
    b.record(false);
    EXPECT_EQ(b.state(), breaker_state::closed);  // 1 of 4 in the window
}

TEST(circuit_breaker, half_open_lets_one_probe_through_and_closes_on_success) {
    manual_clock clock;
    circuit_breaker b(clock, {.consecutive_failures = 3, .break_duration = 5s});
    for (int i = 0; i < 3; ++i) b.record(false);
    EXPECT_EQ(b.state(), breaker_state::open);
    clock.advance(4'999ms);
    EXPECT_FALSE(b.allow());
    clock.advance(1ms);
    EXPECT_EQ(b.state(), breaker_state::half_open);
    EXPECT_TRUE(b.allow());   // the probe
    EXPECT_FALSE(b.allow());  // everyone else waits for it
    b.record(true);
    EXPECT_EQ(b.state(), breaker_state::closed);
    EXPECT_TRUE(b.allow());
}

TEST(circuit_breaker, a_failed_probe_opens_it_again_for_a_full_break) {
    manual_clock clock;
    circuit_breaker b(clock, {.consecutive_failures = 2, .break_duration = 5s});
    b.record(false);
    b.record(false);
    clock.advance(5s);
    ASSERT_TRUE(b.allow());
    b.record(false);
    EXPECT_EQ(b.state(), breaker_state::open);
    EXPECT_EQ(b.open_until(), clock.now() + 5s);
}

TEST(circuit_breaker, consecutive_mode_resets_on_success) {
    manual_clock clock;
    circuit_breaker b(clock, {.consecutive_failures = 3});
    b.record(false);
    b.record(false);
    b.record(true);
    b.record(false);
    b.record(false);
    EXPECT_EQ(b.state(), breaker_state::closed);
    b.record(false);
    EXPECT_EQ(b.state(), breaker_state::open);
}

}  // namespace
}  // namespace integration::resilience
