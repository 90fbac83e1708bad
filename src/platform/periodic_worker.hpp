#ifndef INTEGRATION_SRC_PLATFORM_PERIODIC_WORKER_HPP
#define INTEGRATION_SRC_PLATFORM_PERIODIC_WORKER_HPP

// The platform's scheduler: each background job sweeps on its own thread at its own interval.
// Their state lives in the store (leases, outbox rows), so a sweep that ends early at a stop
// loses nothing.

#include <integration/platform.hpp>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace integration::detail {

/** One background job: how often it sweeps, and one sweep, which returns how many items it handled.
 *  A sweep that may take long (items without bound, each a vendor call) returns early once `stop`
 *  is set. A job with a loop of its own (the delivery worker) gives `run` and `wake` instead: `run`
 *  returns once its flag is set, `wake` interrupts its wait. */
struct worker_spec {
    std::string name;
    std::chrono::milliseconds interval{0};
    std::function<result<std::size_t>(std::atomic<bool> const& stop)> sweep;
    std::function<void(std::atomic<bool> const& stop)> run;
    std::function<void()> wake;
};

using log_function = std::function<void(std::string_view level, std::string_view message)>;

/** Runs one `worker_spec` on its own thread: sweep, count, wait `interval` (or until stopped); or
 *  its `run` loop. */
class periodic_worker {
public:
    periodic_worker(worker_spec spec, log_function const& log);
    ~periodic_worker();
    periodic_worker(periodic_worker const&) = delete;
    periodic_worker& operator=(periodic_worker const&) = delete;

    void start();
    /** Asks the thread to end: a sweep in progress that watches `stop` returns early, any other
     *  once it is done. Does not wait. */
    void request_stop();
    /** Waits until the thread ended or `deadline` passed; true when it ended (and was joined). */
    bool join_until(std::chrono::steady_clock::time_point deadline);

    worker_stats const& stats() const noexcept { return stats_; }

private:
    void loop();
    void sweep_once();

    worker_spec spec_;
    log_function const& log_;
    worker_stats stats_;
    std::mutex mutex_;
    std::condition_variable cv_;
    bool stopping_ = false;
    std::atomic<bool> stop_flag_{false};  // what a `run` loop and a sweep watch
    bool done_ = false;
    std::thread thread_;
};

}  // namespace integration::detail

#endif
