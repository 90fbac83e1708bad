#ifndef INTEGRATION_SRC_DETAIL_FAIR_POOL_HPP
#define INTEGRATION_SRC_DETAIL_FAIR_POOL_HPP

// Threads that run jobs queued under a key (a tenant), taking keys in turn and running at most
// `per_key` jobs of one key at once. A job may block (a name lookup that takes its time, a token
// endpoint that hangs): one key's such jobs hold at most `per_key` threads, and every other
// key's jobs go on on the rest.

#include "thread_name.hpp"

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace integration::detail {

class fair_pool {
public:
    /** `threads` threads named `name`; `per_key` 0 means half of them (at least one). */
    fair_pool(std::size_t threads, std::size_t per_key, char const* name)
        : per_key_(per_key > 0 ? per_key : std::max<std::size_t>(threads / 2, 1)),
          alive_(std::max<std::size_t>(threads, 1)) {
        for (std::size_t i = 0; i < alive_; ++i)
            threads_.emplace_back([this, name] {
                name_this_thread(name);
                work();
            });
    }

    /** `join`s unless it was. A job must not destroy its own pool. */
    ~fair_pool() { join(); }

    /** Runs every job still queued (and every job they post), then joins the threads; a job
     *  posted once the last thread has left runs at once on the posting thread. The pool stays
     *  usable. */
    void join() {
        {
            std::lock_guard lock(mutex_);
            if (stopping_) return;
            stopping_ = true;
        }
        cv_.notify_all();
        for (auto& t : threads_) t.join();
    }

    fair_pool(fair_pool const&) = delete;
    fair_pool& operator=(fair_pool const&) = delete;

    /** Queues `job` behind the other jobs of `key`. */
    void post(std::string const& key, std::function<void()> job) {
        bool queued = false;
        {
            std::lock_guard lock(mutex_);
            if (!drained_) {
                auto& l = lanes_[key];
                l.jobs.push_back(std::move(job));
                make_ready(key, l);
                queued = true;
            }
        }
        if (!queued) return job();  // no thread is left to run it
        cv_.notify_one();
    }

    /** Queues `job` ahead of every key's jobs and outside their caps: for a short continuation
     *  that jobs of its key may be waiting for (a finished call's record and report). */
    void post_first(std::function<void()> job) {
        bool queued = false;
        {
            std::lock_guard lock(mutex_);
            if (!drained_) {
                first_.push_back(std::move(job));
                queued = true;
            }
        }
        if (!queued) return job();
        cv_.notify_one();
    }

    /** How many jobs of `key` run now (for tests and gauges). */
    std::size_t running(std::string const& key) {
        std::lock_guard lock(mutex_);
        auto it = lanes_.find(key);
        return it == lanes_.end() ? 0 : it->second.running;
    }

private:
    struct lane {
        std::deque<std::function<void()>> jobs;
        std::size_t running = 0;
        bool ready = false;  // in ready_
    };

    // Mutex held: a key with a queued job and a free place joins the end of the turn.
    void make_ready(std::string const& key, lane& l) {
        if (l.ready || l.jobs.empty() || l.running >= per_key_) return;
        l.ready = true;
        ready_.push_back(key);
    }

    // A job that throws ends the process, as on any thread: its owner's counts would be wrong.
    static void run(std::function<void()>& job) {
        job();
        job = nullptr;  // what it holds goes before the next job, outside the lock
    }

    void work() {
        std::unique_lock lock(mutex_);
        for (;;) {
            cv_.wait(lock, [&] { return !first_.empty() || !ready_.empty() || (stopping_ && lanes_.empty()); });
            if (!first_.empty()) {
                auto job = std::move(first_.front());
                first_.pop_front();
                lock.unlock();
                run(job);
                lock.lock();
                continue;
            }
            if (ready_.empty()) {  // stopping, and nothing is left: a post from now on runs where it is made
                if (--alive_ == 0) drained_ = true;
                return;
            }
            auto key = std::move(ready_.front());
            ready_.pop_front();
            auto& l = lanes_[key];
            l.ready = false;
            auto job = std::move(l.jobs.front());
            l.jobs.pop_front();
            ++l.running;
            make_ready(key, l);  // its next job waits for the other keys' turns
            if (l.ready) cv_.notify_one();
            lock.unlock();
            run(job);
            lock.lock();
            --l.running;  // the lane stays while it runs a job: only an idle, empty one is erased
            auto const was_ready = l.ready;
            make_ready(key, l);
            if (l.ready && !was_ready) cv_.notify_one();
            if (l.jobs.empty() && l.running == 0) {
                lanes_.erase(key);
                if (stopping_ && lanes_.empty()) cv_.notify_all();
            }
        }
    }

    std::size_t const per_key_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::unordered_map<std::string, lane> lanes_;
    std::deque<std::string> ready_;
    std::deque<std::function<void()>> first_;
    bool stopping_ = false;
    bool drained_ = false;    // stopping, and every thread has left
    std::size_t alive_ = 0;   // threads still in `work`
    std::vector<std::thread> threads_;
};

}  // namespace integration::detail

#endif
