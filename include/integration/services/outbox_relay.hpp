#ifndef INTEGRATION_SERVICES_OUTBOX_RELAY_HPP
#define INTEGRATION_SERVICES_OUTBOX_RELAY_HPP

/** @file
 *  The outbox relay: moves committed events from the store's outbox to an event publisher, at
 *  least once, in order per aggregate, and marks them published. An event that keeps failing
 *  holds back only its own aggregate, and is parked as dead after `max_attempts`.
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
     *  its aggregate's later events then wait behind it. */
    std::int64_t max_attempts = 10;
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
};

/** Relays outbox rows to a publisher, one batch per `run_once`. It has no thread of its own: the
 *  platform's outbox worker calls `run_once` on its schedule (`worker_options::outbox`). */
class INTEGRATION_EXPORT outbox_relay {
public:
    outbox_relay(storage::store& store, event_publisher& publisher, outbox_relay_options options = {});
    outbox_relay(outbox_relay const&) = delete;
    outbox_relay& operator=(outbox_relay const&) = delete;

    /** Publishes one batch in commit order. After a failed event, the later events of its
     *  aggregate wait for the next pass; other aggregates go on. An event failing for the
     *  `max_attempts`th time is parked as dead and recorded as an IntegrationFailure (source
     *  OutboxEvent, in the event's tenant). Returns how many events were published and marked. */
    result<std::size_t> run_once();
    /** The relay's counters (for metrics). */
    outbox_relay_stats stats() const noexcept;

private:
    result<void> failed(storage::outbox_record const& rec, error const& why);

    storage::store& store_;
    event_publisher& publisher_;
    outbox_relay_options options_;
    std::atomic<std::uint64_t> published_{0};
    std::atomic<std::uint64_t> failed_attempts_{0};
    std::atomic<std::uint64_t> dead_{0};
};

}  // namespace integration::events

#endif
