#ifndef INTEGRATION_PLATFORM_HPP
#define INTEGRATION_PLATFORM_HPP

/** @file
 *  The whole library in one object: `open_platform` opens the backends its options name (or the
 *  embedded default under `data_dir`), builds every service, owns every lifetime, and runs the
 *  background workers (outbox relay, retry, credential rotation, retention, health probes, webhook
 *  delivery) until it is stopped or destroyed.
 */

#include <integration/core/id.hpp>
#include <integration/export.hpp>
#include <integration/outbound/egress_policy.hpp>
#include <integration/platform/schemes.hpp>
#include <integration/ports/clock.hpp>
#include <integration/ports/event_publisher.hpp>
#include <integration/ports/resolver.hpp>
#include <integration/ports/transport.hpp>
#include <integration/services/connection_service.hpp>
#include <integration/services/credential_service.hpp>
#include <integration/services/delivery_worker.hpp>
#include <integration/services/failure_service.hpp>
#include <integration/services/health_prober.hpp>
#include <integration/services/inbound_gateway.hpp>
#include <integration/services/outbox_relay.hpp>
#include <integration/services/publisher.hpp>
#include <integration/services/registry.hpp>
#include <integration/services/retention_worker.hpp>
#include <integration/services/rotation_worker.hpp>
#include <integration/services/run_service.hpp>
#include <integration/services/subscription_service.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace integration {

/** How often each background worker sweeps. The health probes sweep every `probes.interval`
 *  of `platform_options`. */
struct worker_options {
    bool start = true;  ///< `open_platform` starts them; false: call `platform::start`.
    std::chrono::milliseconds outbox{1'000};
    std::chrono::milliseconds retry{5'000};
    std::chrono::milliseconds rotation{60'000};
    std::chrono::milliseconds retention{3'600'000};
};

/** Outbound webhooks: the subscription service and the delivery worker. */
struct webhook_options {
    /** The delivery worker runs on its own thread, started and stopped with the other workers;
     *  false: nothing sends (drive `platform::delivery_worker()` yourself, or run it elsewhere). */
    bool deliver = true;
    webhooks::subscription_service_options subscriptions{};
    webhooks::delivery_worker_options delivery{};
    webhooks::inbound_gateway_options inbound{};
};

/** The largest blob the embedded default keeps in its SQLite blob store (see `platform_options::blobs`). */
inline constexpr std::size_t small_blob_limit = 64 * 1024;

/** Options of `open_platform`. Every member has a default: `open_platform({})` opens the embedded
 *  default under `./data`. */
struct platform_options {
    /** Created (mode 0700) if missing; refused when group or others may write it. Holds the
     *  fingerprint key and every backend whose URL is left empty. */
    std::string data_dir = "./data";
    std::string store;    ///< Empty: `sqlite:///<data_dir>/integration.db`.
    std::string secrets;  ///< Empty: `local:///<data_dir>/secrets.db` (master key `<data_dir>/master.key`).
    /** Empty: blobs of at most `small_blob_limit` bytes in `sqlite:///<data_dir>/blobs.db` (many
     *  share one commit), larger ones in `file:///<data_dir>/blobs` (a file each). */
    std::string blobs;
    std::string source = "integration";  ///< The envelope `source` of the events written.

    http::transport* transport = nullptr;       ///< Null: a libcurl transport. Must outlive the platform.
    net::resolver* resolver = nullptr;          ///< Null: the system resolver. Must outlive the platform.
    integration::clock const* clock = nullptr;  ///< Null: the system clock.
    /** Where outbound calls may go; registration, runs, probes and token requests all check it. */
    net::egress_policy egress{};

    credentials::credential_service_options credentials{};
    connections::health_prober_options probes{};
    runs::run_service_options runs{};
    credentials::rotation_worker_options rotation{};
    retention::retention_options retention{};
    worker_options workers{};
    /** The outbox relay's attempts and backoff (`max_attempts`, `retry_base`, `retry_cap`); its
     *  clock and batch hooks are the platform's. */
    events::outbox_relay_options outbox{};
    webhook_options webhooks{};

    /** Where the workers report a failed sweep (`level` is "warning"); null: standard error. */
    std::function<void(std::string_view level, std::string_view message)> log;
    /** The backends that URLs may name; null: `builtin_schemes()`. */
    scheme_registry const* schemes = nullptr;
};

/** What one background worker has done since it started. */
struct worker_stats {
    std::string name;                         ///< outbox-relay, retry, credential-rotation, health-probe, retention.
    std::atomic<std::int64_t> started_ns{0};  ///< System clock, since the epoch; 0: not started.
    std::atomic<std::int64_t> last_success_ns{0};  ///< 0: no sweep has succeeded yet.
    std::atomic<std::uint64_t> consecutive_failures{0};
    std::atomic<std::uint64_t> failures_total{0};
    std::atomic<std::uint64_t> sweeps_total{0};
    std::atomic<std::uint64_t> items_total{0};  ///< Events relayed, failures retried, connections probed, ...
};

/** The opened library. Thread-safe: the services may be called from any thread.
 *
 *  @par Example
 *  @code
 *  auto p = integration::open_platform({.data_dir = "./data"}).value();
 *  auto ctx = integration::request_context::for_tenant("tenant-1", "alice");
 *  auto provider = p->registry().register_provider(ctx, {.key = "acme", .display_name = "Acme",
 *                                                        .base_url = "https://api.acme.example"});
 *  @endcode
 */
class INTEGRATION_EXPORT platform {
public:
    struct impl;
    explicit platform(std::unique_ptr<impl> parts);
    /** Stops the workers (as `stop` does, with no deadline), then closes every backend. */
    ~platform();
    platform(platform const&) = delete;
    platform& operator=(platform const&) = delete;

    providers::registry& registry() noexcept;
    connections::connection_service& connections() noexcept;
    credentials::credential_service& credentials() noexcept;
    connections::health_prober& prober() noexcept;
    runs::run_service& runs() noexcept;
    /** IntegrationFailures: list, escalate, resolve, replay a dead outbox event. */
    failures::failure_service& failures() noexcept;
    /** The outbox relay publishes here: subscribe to receive every committed event. Each event is
     *  also fanned out to the webhook subscriptions of its tenant (`publisher().fan_out`). */
    events::in_process_dispatcher& events() noexcept;
    /** Webhook subscriptions: subscribe, deactivate, rotate the signing secret, recover. */
    webhooks::subscription_service& subscriptions() noexcept;
    /** Publishes webhook events (and wakes the delivery worker); reads and replays deliveries. */
    webhooks::publisher& publisher() noexcept;
    /** Sends the deliveries; its `stats()` are the figures for metrics. Runs on its own thread
     *  unless `webhooks.deliver` is false. */
    webhooks::delivery_worker& delivery_worker() noexcept;
    /** Inbound webhooks: registers a connection's scheme and secret, receives what vendors send. */
    webhooks::inbound_gateway& inbound() noexcept;
    /** What the outbox relay has done: events published, failed publications, events parked as dead. */
    events::outbox_relay_stats outbox_stats() const noexcept;

    storage::store& store() noexcept;
    credentials::secret_store& secrets() noexcept;
    blobs::blob_store& blobs() noexcept;
    http::transport& transport() noexcept;
    net::resolver& resolver() noexcept;
    integration::clock const& clock() const noexcept;
    platform_options const& options() const noexcept;

    /** Starts the background workers; a second call does nothing. */
    void start();
    /** Asks every worker to stop; returns at once. A sweep in progress ends at its next item
     *  where items are unbounded (the outbox relay after its batch, the health probes after
     *  the probe under way), any other once it is done. */
    void request_stop();
    /** Stops and joins every worker by `deadline`; false when one was still sweeping then (it
     *  is then left running: end the process, or call `stop` again). */
    bool stop(std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max());
    /** Each periodic worker's counters, for metrics; valid as long as the platform. The delivery
     *  worker, which runs continuously, reports in `delivery_worker().stats()`. */
    std::vector<worker_stats const*> workers() const;

private:
    std::unique_ptr<impl> impl_;
};

/** Opens the backends, builds the services and (unless `workers.start` is false) starts the
 *  workers. An error names what could not be opened and why. */
INTEGRATION_EXPORT result<std::unique_ptr<platform>> open_platform(platform_options options = {});

/** Creates `data_dir` (mode 0700) if missing, or checks that an existing one is a directory no
 *  group or other user may write (where secrets and keys live, another user must not swap files). */
INTEGRATION_EXPORT result<void> prepare_data_dir(std::string const& data_dir);

}  // namespace integration

#endif
