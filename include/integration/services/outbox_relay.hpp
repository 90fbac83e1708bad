#ifndef INTEGRATION_SERVICES_OUTBOX_RELAY_HPP
#define INTEGRATION_SERVICES_OUTBOX_RELAY_HPP

/** @file
 *  The outbox relay: moves committed events from the store's outbox to an event publisher, at
 *  least once, in order per aggregate, and marks them published. An event that fails is tried
 *  again after a backoff, holding back only its own aggregate meanwhile, and is parked as dead
 *  after `max_attempts` (at once when its stored envelope cannot be read).
 */

#include <integration/export.hpp>
#include <integration/ports/clock.hpp>
#include <integration/ports/event_publisher.hpp>
#include <integration/ports/store.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>

namespace integration::events {

/** Options of `outbox_relay`. */
struct INTEGRATION_EXPORT outbox_relay_options {
    std::size_t batch = 256;                               ///< Events fetched per pass.
    integration::clock const* clock = nullptr;             ///< For `publishedAt`; system clock when null.
    /** Failed publications after which an event is parked as dead (with an IntegrationFailure);
     *  its aggregate's later events then wait behind it. With the backoff below, 20 attempts
     *  outlast an outage of about an hour (a consumer, a bus, a blob store down). */
    std::int64_t max_attempts = 20;
    /** The wait after an event's first failed publication, doubled after each one up to
     *  `retry_cap`; its aggregate's later events wait with it, other aggregates go on. */
    std::chrono::milliseconds retry_base{1'000};
    std::chrono::milliseconds retry_cap{std::chrono::minutes(5)};
    /** Called after a batch is read and before its first event is published, and after its last
     *  (the platform scopes the webhook publisher's per-batch subscription lookups with them). */
    std::function<void()> on_batch_begin;
    std::function<void()> on_batch_end;
};

/** What the relay has done since it was made. */
struct outbox_relay_stats {
    std::uint64_t published = 0;
    std::uint64_t failed_attempts = 0;  ///< Failed publications, the parked ones' included.
    std::uint64_t dead = 0;             ///< Events parked as dead.
    std::uint64_t read = 0;             ///< Rows read, whatever became of them (a full batch: more may wait).
};

/** Relays outbox rows to a publisher, one batch per `run_once`. It has no thread of its own: the
 *  platform's outbox worker calls `run_once` on its schedule (`worker_options::outbox`). */
class INTEGRATION_EXPORT outbox_relay {
public:
    outbox_relay(storage::store& store, event_publisher& publisher, outbox_relay_options options = {});
    outbox_relay(outbox_relay const&) = delete;
    outbox_relay& operator=(outbox_relay const&) = delete;

    /** Publishes one batch in commit order. A failed event, and the later events of its
     *  aggregate, wait for its backoff; other aggregates go on. An event failing for the
     *  `max_attempts`th time, or whose stored envelope cannot be parsed, is parked as dead and
     *  recorded as an IntegrationFailure (source OutboxEvent, in the event's tenant). Returns how
     *  many events were published and marked. */
    result<std::size_t> run_once();
    /** The relay's counters (for metrics). */
    outbox_relay_stats stats() const noexcept;

private:
    result<void> failed(storage::outbox_record const& rec, error const& why, bool poison);

    storage::store& store_;
    event_publisher& publisher_;
    outbox_relay_options options_;
    std::atomic<std::uint64_t> published_{0};
    std::atomic<std::uint64_t> failed_attempts_{0};
    std::atomic<std::uint64_t> dead_{0};
    std::atomic<std::uint64_t> read_{0};
};

}  // namespace integration::events

#endif
