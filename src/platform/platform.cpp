#include <integration/platform.hpp>

#include "periodic_worker.hpp"
#include "tiered_blob_store.hpp"

#if INTEGRATION_HAS_CURL  // the optional curl backend (CMakeLists.txt)
#include <integration/backends/curl/curl_transport.hpp>
#endif
#include <integration/outbound/token_bucket.hpp>
#include <integration/services/fingerprint.hpp>
#include <integration/services/outbox_relay.hpp>
#include <integration/services/retry_worker.hpp>

#include <boost/url/encode.hpp>
#include <boost/url/rfc/pchars.hpp>

#include <sys/stat.h>

#include <cerrno>
#include <filesystem>
#include <iostream>
#include <optional>

namespace integration {
namespace fs = std::filesystem;

// Each part is declared before everything that uses it, so that it is destroyed after them, and
// the workers (which use every service) last of all, to be stopped first. The store comes after
// the other ports although it is opened first: its destructor still commits the units queued in
// it and runs their callbacks (an inbound receive's removes a duplicate's payload blob), which
// must find those ports open.
struct platform::impl {
    platform_options options;
    detail::log_function log;
    integration::clock const* clock = nullptr;
    std::unique_ptr<net::resolver> own_resolver;
    net::resolver* resolver = nullptr;
    std::unique_ptr<http::transport> own_transport;
    http::transport* transport = nullptr;
    std::unique_ptr<credentials::secret_store> secrets;
    std::unique_ptr<blobs::blob_store> blobs;
    std::unique_ptr<storage::store> store;
    std::optional<credentials::fingerprinter> fingerprints;
    events::in_process_dispatcher events;
    std::unique_ptr<providers::registry> registry;
    std::unique_ptr<connections::connection_service> connections;
    std::unique_ptr<credentials::credential_service> credentials;
    std::unique_ptr<connections::health_prober> prober;
    std::unique_ptr<runs::run_service> runs;
    std::unique_ptr<failures::failure_service> failures;
    std::unique_ptr<events::outbox_relay> relay;
    std::unique_ptr<runs::retry_worker> retry;
    std::unique_ptr<credentials::rotation_worker> rotation;
    std::unique_ptr<retention::retention_worker> retention;
    std::unique_ptr<webhooks::subscription_service> subscriptions;
    std::unique_ptr<webhooks::publisher> publisher;
    std::optional<resilience::rate_limiter> delivery_limits;  // the subscriptions' maxPerSecond
    std::unique_ptr<webhooks::delivery_worker> delivery;
    std::unique_ptr<webhooks::inbound_gateway> inbound;
    std::vector<std::unique_ptr<detail::periodic_worker>> workers;
    std::unique_ptr<detail::periodic_worker> delivery_runner;  // null when `webhooks.deliver` is false
    bool started = false;
};

namespace {

using impl = platform::impl;

// The one place that wires the services to the ports and to each other.
void build_services(impl& p) {
    auto const& o = p.options;
    auto& clock = *p.clock;
    p.registry = std::make_unique<providers::registry>(*p.store, clock, o.egress);
    // A retired connection runs nothing and receives nothing from the moment its retirement commits.
    p.connections = std::make_unique<connections::connection_service>(*p.store, clock, o.egress,
                                                                      [&p](std::string const& connection_id) {
                                                                          p.runs->forget(connection_id);
                                                                          p.inbound->forget(connection_id);
                                                                      });
    p.credentials = std::make_unique<credentials::credential_service>(
        *p.store, *p.secrets, *p.fingerprints, clock, *p.transport, o.egress, *p.resolver, o.credentials);
    p.prober = std::make_unique<connections::health_prober>(*p.store, *p.credentials, *p.transport, o.egress,
                                                            *p.resolver, clock, o.probes);
    p.runs = std::make_unique<runs::run_service>(*p.store, *p.credentials, *p.blobs, *p.transport, o.egress,
                                                 *p.resolver, clock, o.runs);
    p.failures = std::make_unique<failures::failure_service>(*p.store, clock);
    // The relay's own thread is not started: the scheduler sweeps it like the others, to count each pass.
    // A batch's events of a tenant and type nobody subscribed to cost the publisher one read in all.
    auto relaying = o.outbox;
    relaying.clock = &clock;
    relaying.on_batch_begin = [&p] { p.publisher->begin_batch(); };
    relaying.on_batch_end = [&p] { p.publisher->end_batch(); };
    p.relay = std::make_unique<events::outbox_relay>(*p.store, p.events, std::move(relaying));
    p.retry = std::make_unique<runs::retry_worker>(*p.store, *p.runs, clock);
    auto rotation = o.rotation;
    // Unless told otherwise, new material is verified with the health check of a connection using it.
    if (!rotation.verifier_for)
        rotation.verifier_for = [prober = p.prober.get()](request_context const& ctx,
                                                          credentials::integration_credential const& cred) {
            return prober->verifier_for(ctx, cred.id());
        };
    p.rotation = std::make_unique<credentials::rotation_worker>(*p.store, *p.credentials, clock, std::move(rotation));
    p.retention = std::make_unique<retention::retention_worker>(*p.store, *p.blobs, *p.secrets, clock, o.retention);

    // Webhook endpoints pass the same egress policy, through the same resolver, as every other call.
    auto hops = http::egress_hop_check(o.egress, *p.resolver);
    // Whatever makes deliveries due (a publish, a replay, a recover, a reactivation) wakes the
    // delivery worker, which otherwise claims every `idle_poll`.
    auto wake = [&p] { p.delivery->notify(); };
    p.subscriptions = std::make_unique<webhooks::subscription_service>(*p.store, *p.secrets, hops, clock,
                                                                       o.webhooks.subscriptions, wake);
    p.publisher = std::make_unique<webhooks::publisher>(*p.store, *p.blobs, clock, wake);
    p.delivery_limits.emplace(clock);
    auto delivery_options = o.webhooks.delivery;
    if (!delivery_options.log) delivery_options.log = p.log;
    p.delivery = std::make_unique<webhooks::delivery_worker>(*p.store, *p.secrets, *p.blobs, *p.transport, hops,
                                                             *p.delivery_limits, clock, std::move(delivery_options));
    p.inbound = std::make_unique<webhooks::inbound_gateway>(*p.store, *p.secrets, *p.blobs, clock, o.webhooks.inbound);
    // The library's own events are webhook event types too, and so are the canonical events of
    // accepted inbound webhooks (`github.pull_request.opened`, ...). The relay marks an event published only
    // after every handler succeeded, and fan_out is idempotent per event, so an event is fanned out
    // at least once and delivered once per subscription, across crashes.
    p.events.subscribe(
        "*",
        [&p](events::event_envelope const& e) -> result<void> {
            if (auto fanned = p.publisher->fan_out(e); !fanned) return fanned.error();
            return {};
        },
        [&p](events::event_envelope const& head) { return p.publisher->wants(head); });
}

std::vector<detail::worker_spec> worker_specs(impl& p) {
    auto const& w = p.options.workers;
    return {
        {"outbox-relay", w.outbox,
         [&p](std::atomic<bool> const& stop) -> result<std::size_t> {
             // A full batch read means more may be waiting: drain before sleeping, but not past
             // a stop (the rest waits in the outbox; draining a backlog first would hold the
             // stop). Read, not published: one event failing in each batch (a listener refusing
             // one type) would cut the drain to a batch per interval, far below what the service
             // writes. Nor "published anything": under a steady load that never ends, and the
             // relay's commits of a few rows each would crowd the requests' own.
             std::size_t total = 0;
             for (;;) {
                 auto const before = p.relay->stats().read;
                 auto n = p.relay->run_once();
                 if (!n) return n.error();
                 total += *n;
                 if (p.relay->stats().read - before < p.options.outbox.batch || stop.load()) return total;
             }
         }},
        {"retry", w.retry, [&p](std::atomic<bool> const& stop) { return p.retry->sweep(stop); }},
        {"credential-rotation", w.rotation,
         [&p](std::atomic<bool> const&) -> result<std::size_t> {
             auto r = p.rotation->sweep();
             if (!r) return r.error();
             if (r->failed > 0)
                 p.log("warning", "credential-rotation: " + std::to_string(r->failed) +
                                      " rotations failed and are retried next sweep");
             return r->rotated + r->escalated + r->failed + r->abandoned;
         }},
        {"health-probe", std::chrono::duration_cast<std::chrono::milliseconds>(p.options.probes.interval),
         [&p](std::atomic<bool> const& stop) { return p.prober->sweep(stop); }},
        {"retention", w.retention,
         [&p](std::atomic<bool> const&) -> result<std::size_t> {
             auto r = p.retention->sweep();
             if (!r) return r.error();
             return r->runs_archived + r->failures_archived + r->deliveries_archived + r->events_removed + r->keys_removed +
                    r->outbox_removed + r->payloads_purged + r->blobs_purged + r->connections_archived +
                    r->credentials_archived + r->secrets_purged + r->authorizations_purged;
         }},
    };
}

// Each worker waits its interval between sweeps: 0 would spin, and past a week the wait's
// deadline may overflow (a negative wait spins too).
result<void> validate_intervals(platform_options const& o) {
    using std::chrono::milliseconds;
    constexpr milliseconds week{7LL * 24 * 3600 * 1000};
    auto const& w = o.workers;
    for (auto [name, every] : {std::pair{"workers.outbox", w.outbox}, std::pair{"workers.retry", w.retry},
                               std::pair{"workers.rotation", w.rotation}, std::pair{"workers.retention", w.retention},
                               std::pair{"probes.interval", std::chrono::duration_cast<milliseconds>(o.probes.interval)}})
        if (every.count() <= 0 || every > week)
            return error{errc::invalid_argument, std::string("platform_options.") + name + " is " + std::to_string(every.count()) +
                                                     " ms; a worker sweeps between every millisecond (every second for "
                                                     "probes) and once a week"};
    auto const& r = o.outbox;
    // A batch is one page of the store's (at most 500 rows): a larger one would never look full,
    // and the relay would stop draining after each.
    if (r.batch == 0 || r.batch > 500 || r.max_attempts < 1 || r.retry_base.count() <= 0 || r.retry_cap < r.retry_base ||
        r.retry_cap > week)
        return error{errc::invalid_argument,
                     "platform_options.outbox: batch must be 1-500, max_attempts at least 1, and 0 < retry_base <= "
                     "retry_cap <= a week"};
    // The delivery worker claims back to back with no idle_poll, and with a lease margin under a
    // second a lease may lapse while its send is still out (another claim sends it again).
    auto const& d = o.webhooks.delivery;
    if (d.idle_poll.count() <= 0 || d.idle_poll > week || d.local_retry.count() <= 0 || d.local_retry > week ||
        d.lease_margin < std::chrono::seconds(1) || d.lease_margin > week || !(d.jitter >= 0 && d.jitter < 1))
        return error{errc::invalid_argument,
                     "platform_options.webhooks.delivery: idle_poll and local_retry must be between 1 ms and a week, "
                     "lease_margin between 1 s and a week, and jitter at least 0 and under 1"};
    return {};
}

// The URL of a file under the data directory, for the scheme registry: `sqlite:///abs/path`.
std::string file_url(fs::path const& path, std::string_view scheme) {
    return std::string(scheme) + "://" +
           boost::urls::encode(fs::absolute(path).lexically_normal().string(), boost::urls::pchars + "/");
}

}  // namespace

// Secrets and key files live in the data directory. A new one is made private to the service
// account; an existing one is never chmod'ed (pointed at a shared directory such as /tmp, that
// would break every other user of it), but refused when others could swap the files in it.
result<void> prepare_data_dir(std::string const& data_dir) {
    if (data_dir.empty()) return error{errc::invalid_argument, "the data directory is empty; name one, e.g. ./data"};
    std::error_code ec;
    auto dir = fs::path(data_dir);
    if (!dir.has_filename()) dir = dir.parent_path();  // `data/`
    if (!fs::exists(dir, ec)) {
        if (dir.has_parent_path()) fs::create_directories(dir.parent_path(), ec);
        if (!ec && ::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
            ec = std::error_code(errno, std::generic_category());
        if (ec)
            return error{errc::storage_failure, "cannot create the data directory " + data_dir + ": " + ec.message()};
    }
    auto st = fs::status(dir, ec);
    if (ec || !fs::is_directory(st))
        return error{errc::invalid_argument, "the data directory " + data_dir + " is not a directory"};
    if ((st.permissions() & (fs::perms::group_write | fs::perms::others_write)) != fs::perms::none)
        return error{errc::invalid_argument, "the data directory " + data_dir +
                                                 " is writable by group or others; use a directory only the service "
                                                 "account can write (chmod go-w, or a new path: it is created 0700)"};
    return {};
}

result<std::unique_ptr<platform>> open_platform(platform_options options) {
    auto p = std::make_unique<impl>();
    p->options = std::move(options);
    auto& o = p->options;
    p->log = o.log;
    if (!p->log)
        p->log = [](std::string_view level, std::string_view message) {
            std::clog << "integration: " << level << ": " << message << std::endl;
        };
    p->clock = o.clock ? o.clock : &system_clock::instance();
    if (!o.resolver) p->own_resolver = std::make_unique<net::system_resolver>();
    p->resolver = o.resolver ? o.resolver : p->own_resolver.get();
#if INTEGRATION_HAS_CURL
    if (!o.transport) p->own_transport = http::make_curl_transport();
#else
    if (!o.transport)
        return error{errc::invalid_argument,
                     "this build of integration has no curl component (INTEGRATION_WITH_CURL=OFF); pass "
                     "platform_options::transport"};
#endif
    p->transport = o.transport ? o.transport : p->own_transport.get();

    if (auto r = retention::validate(o.retention); !r) return r.error();
    if (auto r = runs::validate(o.runs); !r) return r.error();
    if (auto r = validate_intervals(o); !r) return r.error();
    if (auto r = prepare_data_dir(o.data_dir); !r) return r.error();
    auto dir = fs::path(o.data_dir);
    auto const builtin = o.schemes ? scheme_registry{} : builtin_schemes();
    auto const& schemes = o.schemes ? *o.schemes : builtin;
    backend_environment env{.clock = p->clock, .source = o.source};

    auto store = schemes.open_store(o.store.empty() ? file_url(dir / "integration.db", "sqlite") : o.store, env);
    if (!store) return store.error();
    p->store = std::move(*store);
    auto secrets =
        schemes.open_secret_store(o.secrets.empty() ? file_url(dir / "secrets.db", "local") : o.secrets, env);
    if (!secrets) return secrets.error();
    p->secrets = std::move(*secrets);
    auto blobs = schemes.open_blob_store(o.blobs.empty() ? file_url(dir / "blobs", "file") : o.blobs, env);
    if (!blobs) return blobs.error();
    p->blobs = std::move(*blobs);
    if (o.blobs.empty()) {
        // Most bodies are small: one SQLite commit carries many of them, where a file each costs an
        // inode and an fsync. Large ones still stream to files.
        auto small = schemes.open_blob_store(file_url(dir / "blobs.db", "sqlite"), env);
        if (!small) return small.error();
        p->blobs = detail::make_tiered_blob_store(std::move(*small), std::move(p->blobs), small_blob_limit);
    }
    auto fingerprints = credentials::fingerprinter::load_or_create((dir / "fingerprint.key").string());
    if (!fingerprints) return fingerprints.error();
    p->fingerprints.emplace(std::move(*fingerprints));

    build_services(*p);
    for (auto& spec : worker_specs(*p))
        p->workers.push_back(std::make_unique<detail::periodic_worker>(std::move(spec), p->log));
    if (p->options.webhooks.deliver)
        p->delivery_runner = std::make_unique<detail::periodic_worker>(
            detail::worker_spec{.name = "webhook-delivery",
                                .run = [d = p->delivery.get()](std::atomic<bool> const& stop) { d->run(stop); },
                                .wake = [d = p->delivery.get()] { d->notify(); }},
            p->log);
    auto opened = std::make_unique<platform>(std::move(p));
    if (opened->options().workers.start) opened->start();
    return opened;
}

platform::platform(std::unique_ptr<impl> parts) : impl_(std::move(parts)) {}

// clang-format off
platform::~platform() { stop(); }

providers::registry& platform::registry() noexcept { return *impl_->registry; }
connections::connection_service& platform::connections() noexcept { return *impl_->connections; }
credentials::credential_service& platform::credentials() noexcept { return *impl_->credentials; }
connections::health_prober& platform::prober() noexcept { return *impl_->prober; }
runs::run_service& platform::runs() noexcept { return *impl_->runs; }
failures::failure_service& platform::failures() noexcept { return *impl_->failures; }
events::in_process_dispatcher& platform::events() noexcept { return impl_->events; }
webhooks::subscription_service& platform::subscriptions() noexcept { return *impl_->subscriptions; }
webhooks::publisher& platform::publisher() noexcept { return *impl_->publisher; }
webhooks::delivery_worker& platform::delivery_worker() noexcept { return *impl_->delivery; }
webhooks::inbound_gateway& platform::inbound() noexcept { return *impl_->inbound; }
events::outbox_relay_stats platform::outbox_stats() const noexcept { return impl_->relay->stats(); }
storage::store& platform::store() noexcept { return *impl_->store; }
credentials::secret_store& platform::secrets() noexcept { return *impl_->secrets; }
blobs::blob_store& platform::blobs() noexcept { return *impl_->blobs; }
http::transport& platform::transport() noexcept { return *impl_->transport; }
net::resolver& platform::resolver() noexcept { return *impl_->resolver; }
integration::clock const& platform::clock() const noexcept { return *impl_->clock; }
platform_options const& platform::options() const noexcept { return impl_->options; }
// clang-format on

void platform::start() {
    if (impl_->started) return;
    impl_->started = true;
    for (auto& w : impl_->workers) w->start();
    if (impl_->delivery_runner) impl_->delivery_runner->start();
}

void platform::request_stop() {
    for (auto& w : impl_->workers) w->request_stop();
    if (impl_->delivery_runner) impl_->delivery_runner->request_stop();
}

bool platform::stop(std::chrono::steady_clock::time_point deadline) {
    request_stop();
    bool all = true;
    std::vector<detail::periodic_worker*> running;
    for (auto& w : impl_->workers) running.push_back(w.get());
    if (impl_->delivery_runner) running.push_back(impl_->delivery_runner.get());
    for (auto* w : running) {
        if (!w->join_until(deadline)) {
            impl_->log("error", w->stats().name + " did not finish its sweep before the stop deadline");
            all = false;
        }
    }
    if (all) impl_->started = false;
    return all;
}

std::vector<worker_stats const*> platform::workers() const {
    std::vector<worker_stats const*> out;
    for (auto const& w : impl_->workers) out.push_back(&w->stats());
    return out;
}

}  // namespace integration
