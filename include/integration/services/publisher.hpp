#ifndef INTEGRATION_SERVICES_PUBLISHER_HPP
#define INTEGRATION_SERVICES_PUBLISHER_HPP

/** @file
 *  The webhook publisher: publishes an event to the tenant's matching subscriptions (one
 *  WebhookDelivery each, in the transaction that records the event), reads and replays deliveries,
 *  and fans the library's own domain events out to their subscribers.
 */

#include <integration/domain/delivery.hpp>
#include <integration/domain/event.hpp>
#include <integration/export.hpp>
#include <integration/ports/blob_store.hpp>
#include <integration/ports/clock.hpp>
#include <integration/ports/store.hpp>

#include <boost/json/value.hpp>

#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

namespace integration::webhooks {

/** What a publish created (or, for a repeated idempotency key, had created). */
struct publication {
    std::string event_id;
    std::vector<std::string> delivery_ids;
    bool repeated = false;  ///< The key was used before with the same payload; nothing new was created.
};

/** Publishes events and manages their deliveries.
 *
 *  @par Example
 *  @code
 *  auto pub = p->publisher().publish(ctx, "order.paid", {{"orderId", "o-1"}}, "order-o-1-paid").value();
 *  // pub.delivery_ids: one per active subscription of "order.*", "order.paid" or "*" whose filter matches
 *  @endcode
 */
class INTEGRATION_EXPORT publisher {
public:
    /** `on_due`, when set, is called after a publish, fan-out or replay made deliveries due (the
     *  platform wakes its delivery worker with it). */
    publisher(storage::store& store, blobs::blob_store& blobs, clock const& clock, std::function<void()> on_due = {});

    /** Writes the payload once to the blob store and creates one Pending delivery per active
     *  subscription whose event type and filter match, with the event, in one transaction.
     *  Idempotent on `idempotency_key`: the same key and payload answer the first publication
     *  (`repeated`), another payload (or event type) is `errc::idempotency_key_reused`. */
    result<publication> publish(request_context const& ctx, std::string const& event_type,
                                boost::json::value const& payload,
                                std::optional<std::string> idempotency_key = std::nullopt);
    /** Fans a committed domain event (IntegrationRunCompleted, IntegrationFailed, ...) out to the
     *  subscriptions of its tenant, with the envelope as payload. Idempotent per event id, so the
     *  outbox relay may call it again after a crash. */
    result<publication> fan_out(events::event_envelope const& event);
    /** False when `fan_out` of the event `head` describes (its columns only) would create
     *  nothing without looking at the rest: no tenant, a delivery's own event, or a tenant and
     *  type found unheard earlier in this thread's batch. The relay then never parses it. */
    bool wants(events::event_envelope const& head);
    /** Scopes the fan-outs of one outbox relay batch, up to `end_batch`: within it, that a tenant
     *  has no active subscription matching an event type is read once and remembered, so the
     *  batch's other events of that tenant and type cost no read at all. Call it after reading
     *  the batch: every subscription committed before is seen, later ones from the next batch
     *  (whichever process created them). Only the calling thread's fan-outs use what is
     *  remembered; other callers read as before. */
    void begin_batch();
    /** Ends the scope `begin_batch` opened; `fan_out` then reads the subscriptions every time. */
    void end_batch();
    result<webhook_delivery> find(request_context const& ctx, std::string const& delivery_id);
    result<storage::page<webhook_delivery>> list(request_context const& ctx, storage::delivery_query const& q,
                                                 storage::page_request const& page);
    /** Sends a Delivered, Failed or DeadLettered outbound delivery again, due now, with the same
     *  `webhook-id`. */
    result<webhook_delivery> replay(request_context const& ctx, std::string const& delivery_id);

private:
    storage::store& store_;
    blobs::blob_store& blobs_;
    clock const& clock_;
    std::function<void()> on_due_;
    std::mutex batch_mutex_;
    std::thread::id batch_thread_;             ///< The relay's thread during a batch; no thread otherwise.
    std::unordered_set<std::string> unheard_;  ///< "tenant\0event type" without a subscriber, this batch.
};

}  // namespace integration::webhooks

#endif
