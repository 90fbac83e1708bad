#include "detail/fair_pool.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>
#include <string>
#include <vector>

namespace integration::detail {
namespace {

using namespace std::chrono_literals;

// One tenant's jobs that block (a slow name lookup, a hanging token endpoint) hold at most their
// share of the threads; another tenant's job runs meanwhile instead of queueing behind them.
TEST(fair_pool, one_keys_blocked_jobs_hold_at_most_their_share_while_another_keys_job_runs) {
    std::mutex m;
    std::condition_variable cv;
    bool release = false;
    std::atomic<int> started{0}, now{0}, most{0};
    std::promise<void> other;
    {
        fair_pool pool(4, 2, "test-fair");
        for (int i = 0; i < 10; ++i)
            pool.post("tenant-a", [&] {
                ++started;
                int n = ++now;
                for (int seen = most.load(); n > seen && !most.compare_exchange_weak(seen, n);) {
                }
                std::unique_lock lock(m);
                cv.wait(lock, [&] { return release; });
                --now;
            });
        pool.post("tenant-b", [&] { other.set_value(); });
        auto ran = other.get_future().wait_for(5s);
        EXPECT_EQ(ran, std::future_status::ready) << "tenant-b waited behind tenant-a's blocked jobs";
        EXPECT_LE(started.load(), 2);
        EXPECT_LE(pool.running("tenant-a"), 2u);
        {
            std::lock_guard lock(m);
            release = true;
        }
        cv.notify_all();
    }  // the destructor runs every job still queued
    EXPECT_EQ(started.load(), 10);
    EXPECT_EQ(most.load(), 2);
}

// Keys take turns: a key with many queued jobs does not run them all before another key's.
TEST(fair_pool, keys_take_turns) {
    std::mutex m;
    std::vector<std::string> order;
    std::promise<void> gate;
    auto opened = gate.get_future().share();
    {
        fair_pool pool(1, 1, "test-fair");
        pool.post("a", [&, opened] {
            opened.wait();  // everything below is queued before the first job ends
            std::lock_guard lock(m);
            order.push_back("a1");
        });
        for (auto const* job : {"a2", "a3"})
            pool.post("a", [&, job] {
                std::lock_guard lock(m);
                order.push_back(job);
            });
        for (auto const* job : {"b1", "b2"})
            pool.post("b", [&, job] {
                std::lock_guard lock(m);
                order.push_back(job);
            });
        gate.set_value();
    }
    EXPECT_EQ(order, (std::vector<std::string>{"a1", "b1", "a2", "b2", "a3"}));
}

// A continuation posted first runs even while its key's cap is taken by jobs waiting for it;
// after `join`, a post runs on the posting thread.
TEST(fair_pool, a_job_posted_first_runs_past_its_keys_cap_and_after_join_at_once) {
    fair_pool pool(2, 1, "test-fair");
    std::promise<void> continued;
    auto waited = continued.get_future().share();
    std::atomic<bool> ok{false};
    pool.post("a", [&, waited] { ok = waited.wait_for(5s) == std::future_status::ready; });
    for (int i = 0; i < 100 && pool.running("a") < 1; ++i) std::this_thread::sleep_for(5ms);
    pool.post_first([&] { continued.set_value(); });
    pool.join();
    EXPECT_TRUE(ok.load()) << "the continuation waited behind the job waiting for it";
    auto const caller = std::this_thread::get_id();
    std::thread::id ran_on;
    pool.post("b", [&] { ran_on = std::this_thread::get_id(); });
    EXPECT_EQ(ran_on, caller);
}

}  // namespace
}  // namespace integration::detail
