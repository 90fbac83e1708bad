#ifndef INTEGRATION_SERVICES_DELIVERY_WORKER_HPP
#define INTEGRATION_SERVICES_DELIVERY_WORKER_HPP

/** @file
 *  The webhook delivery worker: leases due outbound deliveries in the store, signs them (Standard
 *  Webhooks), sends them through the egress guard (checked and pinned at every send) and the
 *  transport's `start` (many in flight at once: a hanging endpoint delays no other), and records
 *  each attempt: Delivered, a retry on the subscription's schedule (the receiver's Retry-After
 *  wins), 410 Gone (the subscription deactivates), or DeadLettered after the last attempt.
 */

#include <integration/core/durability.hpp>
#include <integration/export.hpp>
#include <integration/outbound/redirects.hpp>
#include <integration/ports/blob_store.hpp>
#include <integration/ports/clock.hpp>
#include <integration/ports/rate_limit_store.hpp>
#include <integration/ports/secret_store.hpp>
#include <integration/ports/store.hpp>
#include <integration/ports/transport.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace integration::webhooks {

/** Options of the delivery worker. */
struct delivery_worker_options {
    std::string owner;                     ///< Lease owner; empty: host name, process id and a random suffix.
    std::size_t max_in_flight = 256;       ///< Deliveries sent at once.
    /** Deliveries of one tenant sent at once; 0: half of `max_in_flight`. A tenant whose
     *  endpoints hang until their timeout holds no more, and the other tenants' deliveries go on.
     *  A single-tenant embedder gives it `max_in_flight`. */
    std::size_t max_in_flight_per_tenant = 0;
    std::size_t batch = 256;               ///< Deliveries leased per claim.
    /** Threads that resolve endpoint names (an address in the URL needs none); one tenant's
     *  lookups use at most half of them, so its slow DNS delays no other tenant's deliveries. */
    std::size_t lookup_threads = 8;
    std::chrono::milliseconds idle_poll{250};       ///< Wait between claims while nothing is due.
    /** A lease lasts the send timeout plus this; a send starts only while at least half of it
     *  is left after its timeout, for its outcome to be recorded before another worker may claim. */
    std::chrono::milliseconds lease_margin{30'000};
    /** A delivery whose payload or signing secret the worker could not read (its own stores
     *  failing, not the endpoint) is tried again after this, with no attempt counted. One whose
     *  payload retention purged is dead-lettered unsent (`payload_expired`). */
    std::chrono::milliseconds local_retry{30'000};
    /** Where the detail of such a local failure goes (what the store or the resolver said), at
     *  most once per tenant and cause per `local_retry`, with a count of those not told; the
     *  delivery keeps only the cause (`deferredReason`), which its tenant reads. Called on the
     *  worker's threads: it should not block, and what it throws is ignored. The platform gives
     *  its `platform_options::log`. Null: not told. */
    std::function<void(std::string_view level, std::string_view message)> log;
    std::int64_t disable_after = 20;       ///< Consecutive failed attempts that disable a subscription; 0: never.
    /** ...once the first of them is at least this old: a burst of failures (a receiver down for the
     *  seconds of its deploy, with many deliveries in flight) does not disable it. */
    std::chrono::milliseconds disable_after_failing_for{std::chrono::hours(24)};
    std::size_t response_excerpt = 4'096;  ///< Bytes of the receiver's answer kept per attempt.
    double jitter = 0.2;                   ///< Each retry delay is scaled by a random factor in [1 - j, 1 + j].
    /** How the outcomes are committed (one transaction per tenant per sweep). Deferred by default:
     *  a commit lost to a power cut only sends those deliveries again, with the same webhook-id. */
    durability recording = durability::deferred;
};

/** What the worker has done since it started (for metrics). */
struct delivery_stats {
    std::atomic<std::uint64_t> in_flight{0};
    std::atomic<std::uint64_t> delivered_total{0};
    std::atomic<std::uint64_t> failed_attempts_total{0};
    std::atomic<std::uint64_t> dead_lettered_total{0};
    std::atomic<std::uint64_t> subscriptions_disabled_total{0};
    /** Deliveries put off because their payload or signing secret could not be read. */
    std::atomic<std::uint64_t> local_failures_total{0};
    std::atomic<std::int64_t> lag_ms{0};  ///< How long the oldest due delivery has waited, at the last claim.
};

/** Sends outbound webhook deliveries. `sweep` and `drain` are for tests and embedders driving it
 *  with a manual clock; `run` is the loop the platform runs on its own thread.
 *
 *  @par Example
 *  @code
 *  // the platform runs it; a test drives it:
 *  worker.sweep();  // leases what is due at the clock's now and starts sending
 *  worker.drain();  // waits for every send in flight and records the outcomes
 *  @endcode
 */
class INTEGRATION_EXPORT delivery_worker {
public:
    /** `check` is the egress guard's hop check; every reference must outlive the worker. */
    delivery_worker(storage::store& store, credentials::secret_store& secrets, blobs::blob_store& blobs,
                    http::transport& transport, http::hop_check check, resilience::rate_limit_store& limits,
                    clock const& clock, delivery_worker_options options = {});
    ~delivery_worker();
    delivery_worker(delivery_worker const&) = delete;
    delivery_worker& operator=(delivery_worker const&) = delete;

    /** Hands the sends that finished to the store (`store::transact_async`: they commit on its
     *  writer while this goes on), then leases due deliveries (up to the free in-flight slots) and
     *  starts them. Returns how many it started, or the error of a recording that failed since the
     *  last call (those leases lapse and the deliveries are sent again). While sends are in
     *  flight, both wait for a quarter of a batch (finished outcomes, free slots), so each
     *  transaction carries many deliveries; an outcome waits at most 50 ms to be recorded. */
    result<std::size_t> sweep();
    /** Waits until nothing is in flight and every outcome is committed. Returns how many outcomes
     *  it recorded itself. The destructor does the same after cancelling the sends in flight. */
    result<std::size_t> drain();
    /** Sweeps until `stop` is set, waiting `idle_poll` (or until `notify`) when nothing is due;
     *  then drains. */
    void run(std::atomic<bool> const& stop);
    /** Wakes `run` (a delivery was published). */
    void notify() noexcept;
    delivery_stats const& stats() const noexcept;

    struct state;

private:
    std::unique_ptr<state> s_;
};

}  // namespace integration::webhooks

#endif
