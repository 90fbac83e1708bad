#ifndef INTEGRATION_HOST_METRICS_HPP
#define INTEGRATION_HOST_METRICS_HPP

// The host's Prometheus metrics (text format 0.0.4, served at GET /metrics). Every label has a
// bounded set of values: route patterns (never raw paths), a fixed set of methods, HTTP statuses,
// run statuses, event types and worker names. No tenant, key or secret ever becomes a label.

#include <integration/outbound/circuit_breaker.hpp>
#include <integration/services/outbox_relay.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>

namespace integration {
struct worker_stats;  // <integration/platform.hpp>
}
namespace integration::webhooks {
struct delivery_stats;  // <integration/services/delivery_worker.hpp>
}

namespace integration::host {

class host_metrics {
public:
    /** Upper bounds (seconds) of the request-duration histogram's buckets. */
    static constexpr std::array<double, 12> duration_buckets{0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                             0.5,   1.0,  2.5,   5.0,  10.0, 30.0};

    /** One answered request; `route` is the matched pattern or "unmatched". */
    void observe_request(std::string_view route, std::string_view method, unsigned status,
                         std::chrono::steady_clock::duration latency);
    /** A run the host executed (not an idempotent replay), by its final status. */
    void count_run(std::string_view status);
    /** A connection refused over `--max-connections`; returns how many were refused so far. */
    std::uint64_t count_refused_connection() { return ++refused_connections_; }
    /** An inbound webhook accepted (a new delivery) or acknowledged as a duplicate. */
    void count_inbound(bool duplicate) { ++(duplicate ? inbound_duplicate_ : inbound_accepted_); }
    /** An inbound webhook refused, by its reason (`to_string(inbound_rejection)`). */
    void count_inbound_rejected(std::string_view reason);
    /** An event the outbox relay published. */
    void count_event(std::string_view event_type);
    /** Renders a worker's stats under its name; `stats` must stay valid while `render` is called. */
    void watch_worker(worker_stats const& stats);
    /** Renders the webhook delivery worker's figures; `stats` must stay valid while `render` is called. */
    void watch_deliveries(webhooks::delivery_stats const& stats);
    /** Renders the outbox relay's failed publications and dead events, read from `stats`. */
    void watch_outbox(std::function<events::outbox_relay_stats()> stats);

    /** The exposition, in Prometheus text format 0.0.4. */
    /** The exposition; `breakers` are the run service's circuit breakers by connection. */
    std::string render(std::vector<std::pair<std::string, resilience::breaker_state>> const& breakers = {}) const;

private:
    struct histogram {
        std::array<std::uint64_t, duration_buckets.size()> buckets{};  // not cumulative; summed when rendered
        double sum = 0;
        std::uint64_t count = 0;
    };

    mutable std::mutex mutex_;
    std::map<std::tuple<std::string, std::string, unsigned>, std::uint64_t, std::less<>> requests_;
    std::map<std::tuple<std::string, std::string>, histogram, std::less<>> durations_;
    std::map<std::string, std::uint64_t, std::less<>> runs_;
    std::map<std::string, std::uint64_t, std::less<>> events_;
    std::map<std::string, worker_stats const*, std::less<>> workers_;
    webhooks::delivery_stats const* deliveries_ = nullptr;
    std::function<events::outbox_relay_stats()> outbox_;
    std::atomic<std::uint64_t> refused_connections_{0};
    std::atomic<std::uint64_t> inbound_accepted_{0};
    std::atomic<std::uint64_t> inbound_duplicate_{0};
    std::map<std::string, std::uint64_t, std::less<>> inbound_rejected_;
};

/** The method as a label: the standard ones as sent, anything else "other" (bounded). */
std::string_view method_label(std::string_view method);

}  // namespace integration::host

#endif
