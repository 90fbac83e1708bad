#include "workers.hpp"

#include "access_log.hpp"
#include "handlers/handlers.hpp"

#include <integration/ports/clock.hpp>
#include <integration/services/rotation_worker.hpp>
#include <integration/services/outbox_relay.hpp>
#include <integration/services/retention_worker.hpp>
#include <integration/services/retry_worker.hpp>

namespace integration::host {
namespace {

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

std::vector<worker_spec> host_workers(services& s) {
    auto& clock = system_clock::instance();
    // The relay's own thread is not started: the host sweeps it like the others, to record each pass.
    auto relay = std::make_shared<events::outbox_relay>(*s.store, s.events, events::outbox_relay_options{.clock = &clock});
    auto retry = std::make_shared<runs::retry_worker>(*s.store, *s.runs, clock);
    // The host has no vendor-specific code that can mint new secrets, so a due credential raises
    // one IntegrationFailure (rotation_required) for a human; the verifier is the same health
    // check the rotate route uses, ready for when a minter is plugged in.
    auto rotation = std::make_shared<credentials::rotation_worker>(
        *s.store, *s.credentials, clock,
        credentials::rotation_worker_options{
            .mint = {},
            .verifier_for = [&s](request_context const& ctx, credentials::integration_credential const& c) {
                return health_check_verifier(s, ctx, c.id());
            }});
    auto const& c = s.config;
    // storage.md: runs and failures archived to the blob store after 180 days, bodies purged after 30.
    auto retention = std::make_shared<retention::retention_worker>(
        *s.store, *s.blobs, clock,
        retention::retention_options{.runs = std::chrono::hours(24 * c.run_retention_days),
                                     .failures = std::chrono::hours(24 * c.run_retention_days),
                                     .bodies = std::chrono::hours(24 * c.body_retention_days)});
    return {
        {"outbox-relay", c.outbox_interval,
         [relay]() -> result<std::size_t> {
             // A full batch means more are waiting: drain before sleeping.
             std::size_t total = 0;
             for (;;) {
                 auto n = relay->run_once();
                 if (!n) return n.error();
                 total += *n;
                 if (*n < events::outbox_relay_options{}.batch) return total;
             }
         }},
        {"retry", c.retry_interval, [retry] { return retry->sweep(); }},
        {"credential-rotation", c.rotation_interval,
         [rotation]() -> result<std::size_t> {
             auto r = rotation->sweep();
             if (!r) return r.error();
             if (r->failed > 0)
                 log_event("warning", "credential-rotation: " + std::to_string(r->failed) +
                                          " rotations failed and are retried next sweep");
             return r->rotated + r->escalated + r->failed;
         }},
        {"health-probe", c.probe_interval, [&s] { return s.prober->sweep(); }},
        {"retention", c.retention_interval,
         [retention]() -> result<std::size_t> {
             auto r = retention->sweep();
             if (!r) return r.error();
             return r->runs_archived + r->failures_archived + r->blobs_purged;
         }},
    };
}

periodic_worker::periodic_worker(worker_spec spec, worker_stats& stats) : spec_(std::move(spec)), stats_(stats) {}

periodic_worker::~periodic_worker() {
    request_stop();
    if (thread_.joinable()) thread_.join();
}

void periodic_worker::start() {
    stats_.started_ns = now_ns();
    thread_ = std::thread([this] { loop(); });
}

void periodic_worker::request_stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    cv_.notify_all();
}

bool periodic_worker::join_until(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mutex_);
    if (!cv_.wait_until(lock, deadline, [this] { return done_; })) return false;
    lock.unlock();
    if (thread_.joinable()) thread_.join();
    return true;
}

void periodic_worker::sweep_once() {
    result<std::size_t> r = error{errc::unavailable, "no sweep"};
    try {
        r = spec_.sweep();
    } catch (std::exception const& e) {
        r = error{errc::storage_failure, e.what()};
    }
    if (r) {
        stats_.items_total += *r;
        ++stats_.sweeps_total;
        stats_.consecutive_failures = 0;
        stats_.last_success_ns = now_ns();
    } else {
        ++stats_.failures_total;
        auto n = ++stats_.consecutive_failures;
        log_event("warning", spec_.name + " sweep failed (" + std::to_string(n) + " in a row): " + r.error().message());
    }
}

void periodic_worker::loop() {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
        lock.unlock();
        sweep_once();
        lock.lock();
        cv_.wait_for(lock, spec_.interval, [this] { return stopping_; });
    }
    done_ = true;
    cv_.notify_all();
}

background_workers::background_workers(std::vector<worker_spec> specs, host_metrics& metrics) {
    for (auto& spec : specs) {
        auto& stats = metrics.worker(spec.name);
        workers_.push_back(std::make_unique<periodic_worker>(std::move(spec), stats));
    }
}

background_workers::~background_workers() { request_stop(); }

void background_workers::start() {
    for (auto& w : workers_) w->start();
}

void background_workers::request_stop() {
    for (auto& w : workers_) w->request_stop();
}

bool background_workers::stop(std::chrono::steady_clock::time_point deadline) {
    request_stop();
    bool all = true;
    for (auto& w : workers_) {
        if (!w->join_until(deadline)) {
            log_event("error", w->name() + " did not finish its sweep before the shutdown deadline");
            all = false;
        }
    }
    return all;
}

}  // namespace integration::host
