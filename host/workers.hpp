#ifndef INTEGRATION_HOST_WORKERS_HPP
#define INTEGRATION_HOST_WORKERS_HPP

// The library's background workers, each swept on its own thread at its own interval: the outbox
// relay, the retry worker, the credential rotation worker and the periodic health probes. Their
// state lives in the store (leases, outbox rows), so stopping between sweeps loses nothing.

#include "metrics.hpp"
#include "services.hpp"

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace integration::host {

/** One background job: a name (the `worker` label), how often it sweeps, and one sweep, which
 *  returns how many items it handled. */
struct worker_spec {
    std::string name;
    std::chrono::milliseconds interval;
    std::function<result<std::size_t>()> sweep;
};

/** Every worker the host runs. Add a new one (e.g. retention) to the list in workers.cpp. */
std::vector<worker_spec> host_workers(services& s);

/** Runs one `worker_spec` on its own thread: sweep, record, wait `interval` (or until stopped). */
class periodic_worker {
public:
    periodic_worker(worker_spec spec, worker_stats& stats);
    ~periodic_worker();
    periodic_worker(periodic_worker const&) = delete;
    periodic_worker& operator=(periodic_worker const&) = delete;

    void start();
    /** Asks the thread to end after the sweep in progress; does not wait. */
    void request_stop();
    /** Waits until the thread ended or `deadline` passed; true when it ended (and was joined). */
    bool join_until(std::chrono::steady_clock::time_point deadline);

    std::string const& name() const noexcept { return spec_.name; }

private:
    void loop();
    void sweep_once();

    worker_spec spec_;
    worker_stats& stats_;
    std::mutex mutex_;
    std::condition_variable cv_;
    bool stopping_ = false;
    bool done_ = false;
    std::thread thread_;
};

/** The set of running workers. */
class background_workers {
public:
    background_workers(std::vector<worker_spec> specs, host_metrics& metrics);
    ~background_workers();

    void start();
    /** Signals every worker to stop; returns at once (safe from the signal handler's strand). */
    void request_stop();
    /** Stops and joins every worker by `deadline`; false names a worker still sweeping then. */
    bool stop(std::chrono::steady_clock::time_point deadline);

private:
    std::vector<std::unique_ptr<periodic_worker>> workers_;
};

}  // namespace integration::host

#endif
