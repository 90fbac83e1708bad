#include "periodic_worker.hpp"

#include "../detail/thread_name.hpp"

namespace integration::detail {
namespace {

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace

periodic_worker::periodic_worker(worker_spec spec, log_function const& log) : spec_(std::move(spec)), log_(log) {
    stats_.name = spec_.name;
}

periodic_worker::~periodic_worker() {
    request_stop();
    if (thread_.joinable()) thread_.join();
}

void periodic_worker::start() {
    if (thread_.joinable()) return;
    {
        std::lock_guard lock(mutex_);
        stopping_ = false;
        done_ = false;
    }
    stop_flag_ = false;
    stats_.started_ns = now_ns();
    thread_ = std::thread([this] {
        name_this_thread(spec_.name);  // `outbox-relay`, `retry`, ...: told apart in `top -H` and profiles
        loop();
    });
}

void periodic_worker::request_stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    stop_flag_ = true;
    if (spec_.wake) spec_.wake();
    cv_.notify_all();
}

bool periodic_worker::join_until(std::chrono::steady_clock::time_point deadline) {
    if (!thread_.joinable()) return true;
    std::unique_lock lock(mutex_);
    auto ended = [this] { return done_; };
    if (deadline == std::chrono::steady_clock::time_point::max())
        cv_.wait(lock, ended);
    else if (!cv_.wait_until(lock, deadline, ended))
        return false;
    lock.unlock();
    thread_.join();
    return true;
}

void periodic_worker::sweep_once() {
    result<std::size_t> r = error{errc::unavailable, "no sweep"};
    try {
        r = spec_.sweep(stop_flag_);
    } catch (std::exception const& e) {
        r = error{errc::storage_failure, e.what()};
    } catch (...) {  // thrown out of the thread, it would end the process
        r = error{errc::storage_failure, "an exception that is not a std::exception"};
    }
    if (r) {
        stats_.items_total += *r;
        ++stats_.sweeps_total;
        stats_.consecutive_failures = 0;
        stats_.last_success_ns = now_ns();
    } else {
        ++stats_.failures_total;
        auto n = ++stats_.consecutive_failures;
        log_("warning", spec_.name + " sweep failed (" + std::to_string(n) + " in a row): " + r.error().message());
    }
}

void periodic_worker::loop() {
    std::unique_lock lock(mutex_);
    if (spec_.run) {
        // `run` returns at a stop; one that throws (or returns without a stop) is started again
        // after a pause: ended for good, nothing of its job would happen until a restart.
        auto const pause = spec_.interval > std::chrono::milliseconds(0) ? spec_.interval : std::chrono::milliseconds(1'000);
        while (!stopping_) {
            lock.unlock();
            std::string failed;
            try {
                spec_.run(stop_flag_);
            } catch (std::exception const& e) {
                failed = e.what();
            } catch (...) {
                failed = "an exception that is not a std::exception";
            }
            if (!failed.empty()) {
                ++stats_.failures_total;
                log_("error", spec_.name + " failed and starts again in " + std::to_string(pause.count()) + " ms: " + failed);
            }
            lock.lock();
            if (!stopping_) cv_.wait_for(lock, pause, [this] { return stopping_; });
        }
        done_ = true;
        cv_.notify_all();
        return;
    }
    while (!stopping_) {
        lock.unlock();
        sweep_once();
        lock.lock();
        cv_.wait_for(lock, spec_.interval, [this] { return stopping_; });
    }
    done_ = true;
    cv_.notify_all();
}

}  // namespace integration::detail
