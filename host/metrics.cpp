#include "metrics.hpp"

#include <integration/platform.hpp>
#include <integration/services/delivery_worker.hpp>
#include <integration/services/inbound_signature.hpp>

#include <algorithm>
#include <charconv>

namespace integration::host {
namespace {

std::string number(double v) {
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, r.ptr);
}

// Label values are escaped as the text format requires: backslash, double quote, newline.
std::string escaped(std::string_view v) {
    std::string out;
    out.reserve(v.size());
    for (char c : v) {
        if (c == '\\') out += "\\\\";
        else if (c == '"') out += "\\\"";
        else if (c == '\n') out += "\\n";
        else out += c;
    }
    return out;
}

void header(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
    out.append("# HELP ").append(name).append(" ").append(help).append("\n");
    out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

double seconds_since_epoch(std::int64_t ns) { return static_cast<double>(ns) / 1e9; }

}  // namespace

std::string_view method_label(std::string_view method) {
    for (std::string_view m : {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
        if (method == m) return m;
    return "other";
}

void host_metrics::observe_request(std::string_view route, std::string_view method, unsigned status,
                                   std::chrono::steady_clock::duration latency) {
    auto seconds = std::chrono::duration<double>(latency).count();
    std::size_t bucket = 0;
    while (bucket < duration_buckets.size() && seconds > duration_buckets[bucket]) ++bucket;
    std::lock_guard lock(mutex_);
    // Look up by views: the keys are copied only the first time a route is seen.
    auto r = requests_.find(std::make_tuple(route, method, status));
    if (r == requests_.end()) r = requests_.emplace(std::make_tuple(std::string(route), std::string(method), status), 0).first;
    ++r->second;
    auto d = durations_.find(std::make_tuple(route, method));
    if (d == durations_.end()) d = durations_.emplace(std::make_tuple(std::string(route), std::string(method)), histogram{}).first;
    auto& h = d->second;
    if (bucket < duration_buckets.size()) ++h.buckets[bucket];  // beyond the last bound: only +Inf
    h.sum += seconds;
    ++h.count;
}

void host_metrics::count_run(std::string_view status) {
    std::lock_guard lock(mutex_);
    ++runs_[std::string(status)];
}

void host_metrics::count_inbound_rejected(std::string_view reason) {
    std::lock_guard lock(mutex_);
    auto r = inbound_rejected_.find(reason);
    if (r == inbound_rejected_.end()) r = inbound_rejected_.emplace(std::string(reason), 0).first;
    ++r->second;
}

namespace {

// A canonical inbound event's type comes from the vendor's body (any GitHub or Standard Webhooks
// event name a tenant's sender chooses): as a label it would grow the series without bound, so
// such types count under their scheme. The library's own event types are a fixed set.
std::string event_label(std::string_view event_type) {
    auto const& own = events::event_type::all;
    if (std::find(std::begin(own), std::end(own), event_type) != std::end(own)) return std::string(event_type);
    auto scheme = event_type.substr(0, event_type.find('.'));
    if (scheme.size() < event_type.size() && webhooks::parse_inbound_scheme(scheme)) return std::string(scheme) + ".*";
    return "other";
}

}  // namespace

void host_metrics::count_event(std::string_view event_type) {
    auto label = event_label(event_type);
    std::lock_guard lock(mutex_);
    ++events_[label];
}

void host_metrics::watch_worker(worker_stats const& stats) {
    std::lock_guard lock(mutex_);
    workers_[stats.name] = &stats;
}

void host_metrics::watch_outbox(std::function<events::outbox_relay_stats()> stats) { outbox_ = std::move(stats); }

void host_metrics::watch_deliveries(webhooks::delivery_stats const& stats) {
    std::lock_guard lock(mutex_);
    deliveries_ = &stats;
}

std::string host_metrics::render(std::vector<std::pair<std::string, resilience::breaker_state>> const& breakers) const {
    std::string out;
    std::lock_guard lock(mutex_);

    header(out, "integration_http_requests_total", "counter", "HTTP requests answered, by route pattern, method and status.");
    for (auto const& [k, n] : requests_) {
        auto const& [route, method, status] = k;
        out += "integration_http_requests_total{route=\"" + escaped(route) + "\",method=\"" + escaped(method) +
               "\",status=\"" + std::to_string(status) + "\"} " + std::to_string(n) + "\n";
    }

    header(out, "integration_http_request_duration_seconds", "histogram",
           "Time from a request's header to its answer, by route pattern and method.");
    for (auto const& [k, h] : durations_) {
        auto labels = "route=\"" + escaped(std::get<0>(k)) + "\",method=\"" + escaped(std::get<1>(k)) + "\"";
        std::uint64_t cumulative = 0;
        for (std::size_t i = 0; i < duration_buckets.size(); ++i) {
            cumulative += h.buckets[i];
            out += "integration_http_request_duration_seconds_bucket{" + labels + ",le=\"" + number(duration_buckets[i]) +
                   "\"} " + std::to_string(cumulative) + "\n";
        }
        out += "integration_http_request_duration_seconds_bucket{" + labels + ",le=\"+Inf\"} " + std::to_string(h.count) + "\n";
        out += "integration_http_request_duration_seconds_sum{" + labels + "} " + number(h.sum) + "\n";
        out += "integration_http_request_duration_seconds_count{" + labels + "} " + std::to_string(h.count) + "\n";
    }

    header(out, "integration_http_connections_refused_total", "counter",
           "Connections answered 503 and closed because --max-connections were open.");
    out += "integration_http_connections_refused_total " + std::to_string(refused_connections_.load()) + "\n";

    header(out, "integration_runs_total", "counter", "Runs this host executed, by final status (idempotent replays excluded).");
    for (auto const& [status, n] : runs_)
        out += "integration_runs_total{status=\"" + escaped(status) + "\"} " + std::to_string(n) + "\n";

    header(out, "integration_inbound_webhooks_total", "counter",
           "Inbound webhooks answered: accepted (a new delivery), duplicate (acknowledged again) or rejected.");
    std::uint64_t rejected = 0;
    for (auto const& [reason, n] : inbound_rejected_) rejected += n;
    out += "integration_inbound_webhooks_total{outcome=\"accepted\"} " + std::to_string(inbound_accepted_.load()) + "\n";
    out += "integration_inbound_webhooks_total{outcome=\"duplicate\"} " + std::to_string(inbound_duplicate_.load()) + "\n";
    out += "integration_inbound_webhooks_total{outcome=\"rejected\"} " + std::to_string(rejected) + "\n";
    header(out, "integration_inbound_webhooks_rejected_total", "counter", "Inbound webhooks rejected, by reason.");
    for (auto const& [reason, n] : inbound_rejected_)
        out += "integration_inbound_webhooks_rejected_total{reason=\"" + escaped(reason) + "\"} " + std::to_string(n) + "\n";

    header(out, "integration_events_published_total", "counter", "Outbox events the relay published, by event type.");
    for (auto const& [type, n] : events_)
        out += "integration_events_published_total{type=\"" + escaped(type) + "\"} " + std::to_string(n) + "\n";

    auto now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    header(out, "integration_worker_lag_seconds", "gauge",
           "Seconds since the worker's last successful sweep (since its start when none succeeded yet).");
    for (auto const& [name, w] : workers_) {
        auto last = w->last_success_ns.load();
        auto since = last != 0 ? last : w->started_ns.load();
        auto lag = since != 0 ? seconds_since_epoch(now_ns - since) : 0.0;
        out += "integration_worker_lag_seconds{worker=\"" + escaped(name) + "\"} " + number(lag < 0 ? 0.0 : lag) + "\n";
    }
    header(out, "integration_worker_last_success_timestamp_seconds", "gauge",
           "Unix time of the worker's last successful sweep; 0 when none succeeded yet.");
    for (auto const& [name, w] : workers_)
        out += "integration_worker_last_success_timestamp_seconds{worker=\"" + escaped(name) + "\"} " +
               number(seconds_since_epoch(w->last_success_ns.load())) + "\n";
    header(out, "integration_worker_failures_total", "counter", "Sweeps of the worker that failed.");
    for (auto const& [name, w] : workers_)
        out += "integration_worker_failures_total{worker=\"" + escaped(name) + "\"} " + std::to_string(w->failures_total.load()) + "\n";
    header(out, "integration_worker_consecutive_failures", "gauge", "Sweeps of the worker that failed since its last success.");
    for (auto const& [name, w] : workers_)
        out += "integration_worker_consecutive_failures{worker=\"" + escaped(name) + "\"} " +
               std::to_string(w->consecutive_failures.load()) + "\n";
    header(out, "integration_worker_sweeps_total", "counter", "Sweeps of the worker that succeeded.");
    for (auto const& [name, w] : workers_)
        out += "integration_worker_sweeps_total{worker=\"" + escaped(name) + "\"} " + std::to_string(w->sweeps_total.load()) + "\n";
    header(out, "integration_worker_items_total", "counter",
           "Items the worker handled: events relayed, failures retried, credentials rotated or escalated, connections probed.");
    for (auto const& [name, w] : workers_)
        out += "integration_worker_items_total{worker=\"" + escaped(name) + "\"} " + std::to_string(w->items_total.load()) + "\n";
    if (outbox_) {
        auto o = outbox_();
        header(out, "integration_outbox_failed_publications_total", "counter",
               "Publications of outbox events that failed (each retry counts).");
        out += "integration_outbox_failed_publications_total " + std::to_string(o.failed_attempts) + "\n";
        header(out, "integration_outbox_dead_events_total", "counter",
               "Outbox events parked as dead after too many failed publications (each has an IntegrationFailure).");
        out += "integration_outbox_dead_events_total " + std::to_string(o.dead) + "\n";
    }
    if (deliveries_) {
        auto const& d = *deliveries_;
        header(out, "integration_webhook_delivery_lag_seconds", "gauge",
               "How long the oldest due webhook delivery had waited at the worker's last claim.");
        out += "integration_webhook_delivery_lag_seconds " + number(static_cast<double>(d.lag_ms.load()) / 1000.0) + "\n";
        header(out, "integration_webhook_deliveries_in_flight", "gauge", "Webhook deliveries being sent now.");
        out += "integration_webhook_deliveries_in_flight " + std::to_string(d.in_flight.load()) + "\n";
        header(out, "integration_webhook_delivered_total", "counter", "Webhook deliveries answered 2xx.");
        out += "integration_webhook_delivered_total " + std::to_string(d.delivered_total.load()) + "\n";
        header(out, "integration_webhook_failed_attempts_total", "counter",
               "Webhook delivery attempts that failed (each retry counts).");
        out += "integration_webhook_failed_attempts_total " + std::to_string(d.failed_attempts_total.load()) + "\n";
        header(out, "integration_webhook_dead_lettered_total", "counter",
               "Webhook deliveries dead-lettered after their last attempt (or a 410 Gone).");
        out += "integration_webhook_dead_lettered_total " + std::to_string(d.dead_lettered_total.load()) + "\n";
        header(out, "integration_webhook_subscriptions_disabled_total", "counter",
               "Webhook subscriptions the worker deactivated: consecutive failures or a 410 Gone.");
        out += "integration_webhook_subscriptions_disabled_total " +
               std::to_string(d.subscriptions_disabled_total.load()) + "\n";
        header(out, "integration_webhook_local_failures_total", "counter",
               "Webhook deliveries put off because their payload or signing secret could not be read (not counted against the endpoint).");
        out += "integration_webhook_local_failures_total " + std::to_string(d.local_failures_total.load()) + "\n";
    }
    header(out, "integration_breaker_state", "gauge", "Circuit breaker of each connection that has run: 0 closed, 1 open, 2 half-open.");
    for (auto const& [connection, state] : breakers)
        out += "integration_breaker_state{connection=\"" + escaped(connection) + "\"} " + std::to_string(static_cast<int>(state)) + "\n";
    return out;
}

}  // namespace integration::host
