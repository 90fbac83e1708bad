#include "platform/periodic_worker.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace integration::testing {
namespace {

using namespace std::chrono_literals;

// A job with a loop of its own (the webhook delivery worker) that throws is started again: it
// ended for good, and nothing was delivered until the process restarted.
TEST(periodic_worker, a_run_loop_that_throws_is_started_again_and_the_failure_logged) {
    std::mutex m;
    std::vector<std::string> logged;
    detail::log_function log = [&](std::string_view level, std::string_view message) {
        std::lock_guard lock(m);
        logged.push_back(std::string(level) + ": " + std::string(message));
    };
    std::atomic<int> calls{0};
    detail::periodic_worker w(detail::worker_spec{.name = "looping",
                                                  .interval = 10ms,
                                                  .run =
                                                      [&](std::atomic<bool> const& stop) {
                                                          if (++calls == 1) throw std::runtime_error("the store went away");
                                                          while (!stop.load()) std::this_thread::sleep_for(1ms);
                                                      },
                                                  .wake = [] {}},
                              log);
    w.start();
    auto const deadline = std::chrono::steady_clock::now() + 30s;
    while (calls.load() < 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
    EXPECT_EQ(calls.load(), 2) << "the loop was not started again after it threw";
    w.request_stop();
    EXPECT_TRUE(w.join_until(std::chrono::steady_clock::now() + 30s));
    EXPECT_EQ(calls.load(), 2) << "a loop that returned at the stop was started again";
    EXPECT_EQ(w.stats().failures_total.load(), 1u);
    std::lock_guard lock(m);
    ASSERT_EQ(logged.size(), 1u);
    EXPECT_NE(logged[0].find("the store went away"), std::string::npos) << logged[0];
}

// Nor does a sweep that throws something that is not a std::exception end the process.
TEST(periodic_worker, a_sweep_that_throws_anything_counts_as_a_failed_sweep) {
    detail::log_function log = [](std::string_view, std::string_view) {};
    std::atomic<int> calls{0};
    detail::periodic_worker w(detail::worker_spec{.name = "sweeping",
                                                  .interval = 1ms,
                                                  .sweep = [&](std::atomic<bool> const&) -> result<std::size_t> {
                                                      if (++calls == 1) throw 42;
                                                      return 1;
                                                  }},
                              log);
    w.start();
    auto const deadline = std::chrono::steady_clock::now() + 30s;
    while (calls.load() < 3 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
    w.request_stop();
    EXPECT_TRUE(w.join_until(std::chrono::steady_clock::now() + 30s));
    EXPECT_GE(calls.load(), 3);
    EXPECT_EQ(w.stats().failures_total.load(), 1u);
    EXPECT_GE(w.stats().sweeps_total.load(), 2u);
}

}  // namespace
}  // namespace integration::testing
