#include <integration/outbound/circuit_breaker.hpp>

#include <gtest/gtest.h>

namespace integration::resilience {
namespace {

using namespace std::chrono_literals;

/** One call through `b` that ends `ok`; the breaker must let it through. */
void call(circuit_breaker& b, bool ok) {
    auto p = b.allow();
    ASSERT_TRUE(p);
    b.record(*p, ok);
}

TEST(circuit_breaker, opens_on_the_failure_ratio_once_throughput_is_reached) {
    manual_clock clock;
    circuit_breaker b(clock, {.failure_ratio = 0.5, .minimum_throughput = 4, .sampling_window = 10s, .break_duration = 5s});
    for (bool ok : {false, false, true}) call(b, ok);
    EXPECT_EQ(b.state(), breaker_state::closed);  // 3 calls: below the minimum throughput
    call(b, true);  // 2 of 4 failed: ratio 0.5
    EXPECT_EQ(b.state(), breaker_state::open);
    EXPECT_FALSE(b.allow());
}

// An NTP step back while the breaker is open does not keep it open for as long as the step: the
// break counts from the step on.
TEST(circuit_breaker, a_clock_stepping_back_does_not_hold_it_open_for_the_step) {
    manual_clock clock;
    circuit_breaker b(clock, {.consecutive_failures = 1, .break_duration = 5s});
    call(b, false);
    EXPECT_EQ(b.state(), breaker_state::open);
    clock.advance(-10min);
    EXPECT_FALSE(b.allow());
    clock.advance(5s);
    EXPECT_TRUE(b.allow()) << "half-open one break after the step, not ten minutes later";
}

TEST(circuit_breaker, old_samples_leave_the_window) {
    manual_clock clock;
    circuit_breaker b(clock, {.failure_ratio = 0.5, .minimum_throughput = 4, .sampling_window = 10s});
    call(b, false);
    call(b, false);
    clock.advance(11s);
    for (bool ok : {true, true, true, false}) call(b, ok);
    EXPECT_EQ(b.state(), breaker_state::closed);  // 1 of 4 in the window
}

TEST(circuit_breaker, half_open_lets_one_probe_through_and_closes_on_success) {
    manual_clock clock;
    circuit_breaker b(clock, {.consecutive_failures = 3, .break_duration = 5s});
    for (int i = 0; i < 3; ++i) call(b, false);
    EXPECT_EQ(b.state(), breaker_state::open);
    clock.advance(4'999ms);
    EXPECT_FALSE(b.allow());
    clock.advance(1ms);
    EXPECT_EQ(b.state(), breaker_state::half_open);
    auto probe = b.allow();
    EXPECT_TRUE(probe);
    EXPECT_FALSE(b.allow());  // everyone else waits for it
    b.record(*probe, true);
    EXPECT_EQ(b.state(), breaker_state::closed);
    EXPECT_TRUE(b.allow());
}

TEST(circuit_breaker, a_failed_probe_opens_it_again_for_a_full_break) {
    manual_clock clock;
    circuit_breaker b(clock, {.consecutive_failures = 2, .break_duration = 5s});
    call(b, false);
    call(b, false);
    clock.advance(5s);
    call(b, false);
    EXPECT_EQ(b.state(), breaker_state::open);
    EXPECT_EQ(b.open_until(), clock.now() + 5s);
}

// A call let through while the breaker was closed and answered only after it opened is not the
// probe: its success does not close the breaker under the probe, its failure does not open it
// again, and the probe's own answer decides.
TEST(circuit_breaker, an_answer_from_before_the_break_is_not_taken_for_the_probes) {
    manual_clock clock;
    circuit_breaker b(clock, {.consecutive_failures = 3, .break_duration = 5s});
    auto slow = b.allow();
    auto slower = b.allow();
    ASSERT_TRUE(slow && slower);
    for (int i = 0; i < 3; ++i) call(b, false);
    clock.advance(5s);
    auto probe = b.allow();
    ASSERT_TRUE(probe);
    b.record(*slow, true);
    EXPECT_EQ(b.state(), breaker_state::half_open) << "a late success closed the breaker while the probe was out";
    EXPECT_FALSE(b.allow());
    b.record(*slower, false);
    EXPECT_EQ(b.state(), breaker_state::half_open) << "a late failure opened it again";
    b.record(*probe, true);
    EXPECT_EQ(b.state(), breaker_state::closed);
    // Closed again, the late ones count for nothing either.
    b.record(*slow, false);
    b.record(*slow, false);
    b.record(*slow, false);
    EXPECT_EQ(b.state(), breaker_state::closed);
}

TEST(circuit_breaker, consecutive_mode_resets_on_success) {
    manual_clock clock;
    circuit_breaker b(clock, {.consecutive_failures = 3});
    for (bool ok : {false, false, true, false, false}) call(b, ok);
    EXPECT_EQ(b.state(), breaker_state::closed);
    call(b, false);
    EXPECT_EQ(b.state(), breaker_state::open);
}

}  // namespace
}  // namespace integration::resilience
