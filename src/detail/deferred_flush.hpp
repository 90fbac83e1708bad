#ifndef INTEGRATION_SRC_DETAIL_DEFERRED_FLUSH_HPP
#define INTEGRATION_SRC_DETAIL_DEFERRED_FLUSH_HPP

// Runs `flush` on its own thread at most `interval` after the first `mark()` since the last
// flush, and once more on destruction if marked: the timer behind `durability::deferred`.

#include "thread_name.hpp"

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

namespace integration::detail {

class deferred_flush {
public:
    deferred_flush(std::chrono::milliseconds interval, std::function<void()> flush)
        : interval_(interval), flush_(std::move(flush)), thread_([this] {
              name_this_thread("integ-flush");
              loop();
          }) {}

    ~deferred_flush() {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        cv_.notify_all();
        thread_.join();
    }

    deferred_flush(deferred_flush const&) = delete;
    deferred_flush& operator=(deferred_flush const&) = delete;

    /** Something was written that the next flush must cover. */
    void mark() {
        std::lock_guard lock(mutex_);
        if (dirty_since_) return;
        dirty_since_ = std::chrono::steady_clock::now();
        cv_.notify_one();
    }

private:
    void loop() {
        std::unique_lock lock(mutex_);
        while (true) {
            cv_.wait(lock, [&] { return stopping_ || dirty_since_.has_value(); });
            if (!dirty_since_) return;
            cv_.wait_until(lock, *dirty_since_ + interval_, [&] { return stopping_; });
            dirty_since_.reset();  // writes from here on wait for the next flush
            lock.unlock();
            flush_();
            lock.lock();
        }
    }

    std::chrono::milliseconds interval_;
    std::function<void()> flush_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::optional<std::chrono::steady_clock::time_point> dirty_since_;
    bool stopping_ = false;
    std::thread thread_;  // last: starts once the members above exist
};

}  // namespace integration::detail

#endif
