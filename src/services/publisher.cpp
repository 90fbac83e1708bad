#include <integration/services/publisher.hpp>

#include <integration/core/id.hpp>
#include <integration/domain/webhook_filter.hpp>

#include "../detail/crypto.hpp"
#include "../detail/validate.hpp"

#include <boost/json/serialize.hpp>

namespace integration::webhooks {

namespace {

/** Where an event's payload lives in its tenant's blob partition (retention purges it). */
std::string payload_key(std::string const& event_id) { return "webhooks/events/" + event_id + "/payload.json"; }

publication answer(storage::published_event const& e, bool repeated) {
    return {e.event_id, e.delivery_ids, repeated};
}

/** The earlier publication under the same key, or `idempotency_key_reused` when its event type or payload
 *  differed: an `order.cancelled` under the key of an `order.created` is another event. */
result<publication> repeat_of(storage::published_event const& earlier, std::string_view event_type,
                              std::string const& payload_hash) {
    if (earlier.event_type != event_type)
        return error{errc::idempotency_key_reused, "idempotency key '" + earlier.idempotency_key.value_or("") +
                                         "' was already used for event type " + earlier.event_type + "; use a new key"};
    if (earlier.payload_hash != payload_hash)
        return error{errc::idempotency_key_reused, "idempotency key '" + earlier.idempotency_key.value_or("") +
                                         "' was already used with a different payload; use a new key"};
    return answer(earlier, true);
}

/** Whether the subscription's payload filter lets `payload` through. A filter that no longer
 *  parses (stored before filters were checked) lets nothing through rather than everything. */
bool filter_matches(webhook_subscription const& s, boost::json::value const& payload) {
    auto const& spec = s.data().filter;
    if (!spec) return true;
    auto f = payload_filter::parse(*spec);
    return f && f->matches(payload);
}

/** Writes the payload once, then records the event with one delivery per matching subscription in
 *  one transaction; a repeated event id or key answers what the first call did. */
result<publication> record(storage::store& store, blobs::blob_store& blobs, clock const& clock,
                           request_context const& ctx, storage::published_event event, boost::json::value const& payload,
                           std::string const& payload_text) {
    auto ref = blobs.put(ctx.tenant_id, payload_key(event.event_id), payload_text);
    if (!ref) return ref.error();
    event.payload_ref = *ref;
    auto created = storage::transact_for(store, ctx, [&](storage::unit_of_work& uow) -> result<publication> {
        auto subs = uow.subscriptions().active_for_event(event.event_type);
        if (!subs) return subs.error();
        auto now = clock.now();
        event.delivery_ids.clear();
        for (auto const& s : *subs) {
            if (!filter_matches(s, payload)) continue;
            auto d = webhook_delivery::outbound(ctx, now, s, event.event_type, event.event_id, event.payload_ref);
            if (!d) return d.error();
            // The unique (subscription, event) index makes a repeated fan-out create nothing.
            if (auto r = uow.deliveries().save(*d); !r) {
                if (r.error() != errc::already_exists) return r.error();
                continue;
            }
            event.delivery_ids.push_back(d->id());
        }
        event.published_at = now;
        if (auto r = uow.published_events().add(event); !r) return r.error();
        return publication{event.event_id, event.delivery_ids, false};
    });
    if (created || created.error() != errc::already_exists) return created;
    // Another call recorded the same event or key first: answer what it did. The payload written
    // here goes, unless it is the one that call's deliveries read (the same event fanned out
    // twice writes one key: removing it lost the payload of every delivery the first made).
    auto earlier = storage::read_for(store, ctx, [&](storage::unit_of_work& uow) {
        return event.idempotency_key ? uow.published_events().find_by_idempotency_key(*event.idempotency_key)
                                     : uow.published_events().find(event.event_id);
    });
    if (!earlier) return created.error();  // left for retention, which purges it by age
    if (earlier->payload_ref != event.payload_ref) (void)blobs.remove(ctx.tenant_id, *ref);
    return repeat_of(*earlier, event.event_type, event.payload_hash);
}

/** Calls `on_due` when `r` created deliveries, which are due now. */
result<publication> due(result<publication> r, std::function<void()> const& on_due) {
    if (r && !r->repeated && !r->delivery_ids.empty() && on_due) on_due();
    return r;
}

}  // namespace

publisher::publisher(storage::store& store, blobs::blob_store& blobs, clock const& clock, std::function<void()> on_due)
    : store_(store), blobs_(blobs), clock_(clock), on_due_(std::move(on_due)) {}

result<publication> publisher::publish(request_context const& ctx, std::string const& event_type,
                                       boost::json::value const& payload, std::optional<std::string> idempotency_key) {
    if (auto r = integration::detail::require_text(event_type, "eventType", 200); !r) return r.error();
    if (event_type.find('*') != std::string::npos)
        return error{errc::invalid_argument, "eventType names one event type; '*' is only for subscriptions"};
    if (idempotency_key)
        if (auto r = integration::detail::require_text(*idempotency_key, "idempotency key", 255); !r) return r.error();
    auto text = boost::json::serialize(payload);
    auto hash = crypto::sha256_hex(text);
    if (idempotency_key) {
        auto earlier = storage::read_for(store_, ctx, [&](storage::unit_of_work& uow) {
            return uow.published_events().find_by_idempotency_key(*idempotency_key);
        });
        if (earlier) return repeat_of(*earlier, event_type, hash);
        if (earlier.error() != errc::not_found) return earlier.error();
    }
    storage::published_event e;
    e.event_id = new_id(id_prefix::event, clock_.now());
    e.event_type = event_type;
    e.idempotency_key = std::move(idempotency_key);
    e.payload_hash = std::move(hash);
    return due(record(store_, blobs_, clock_, ctx, std::move(e), payload, text), on_due_);
}

bool publisher::wants(events::event_envelope const& head) {
    // Events of global providers belong to no tenant, hence to no subscription. A delivery's own
    // events (WebhookDelivered, its IntegrationFailed) are not fanned out: a `*` subscription
    // would otherwise receive a delivery about each of its deliveries, without end. The canonical
    // event of an accepted inbound delivery (`github.push`, ...) is, like any other event.
    bool delivery_state = head.event_type == events::event_type::webhook_delivered ||
                          head.event_type == events::event_type::integration_failed;
    if (head.tenant_id.empty() || (head.aggregate_type == "WebhookDelivery" && delivery_state)) return false;
    // Most events have no subscriber: that is read once per tenant and type in a relay batch.
    std::lock_guard lock(batch_mutex_);
    return batch_thread_ != std::this_thread::get_id() || !unheard_.contains(head.tenant_id + '\0' + head.event_type);
}

result<publication> publisher::fan_out(events::event_envelope const& event) {
    publication none{event.event_id, {}, false};
    if (!wants(event)) return none;
    // The failure a dead-lettered delivery records is a delivery's state as well (see `wants`,
    // which sees no event's data): fanned out, a `*` subscription whose endpoint refused the
    // delivery would get one about that failure, fail it too, and so on. Its resolution likewise
    // (every refused inbound request records one resolved at once: one sent out per forged request).
    if ((event.event_type == events::event_type::integration_failed ||
         event.event_type == events::event_type::failure_resolved) &&
        event.aggregate_type == "IntegrationFailure")
        if (auto const* source = event.data.if_contains("source"); source && source->is_string() && source->get_string() == "Delivery")
            return none;
    auto ctx = request_context::for_tenant(event.tenant_id, "webhook-publisher");
    ctx.correlation_id = event.correlation_id;
    ctx.causation_id = event.event_id;
    auto key = event.tenant_id + '\0' + event.event_type;
    auto known = storage::read_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<std::optional<publication>> {
        auto subs = uow.subscriptions().active_for_event(event.event_type);
        if (!subs) return subs.error();
        if (subs->empty()) return std::optional<publication>(none);
        if (auto earlier = uow.published_events().find(event.event_id); earlier)
            return std::optional<publication>(answer(*earlier, true));
        else if (earlier.error() != errc::not_found) return earlier.error();
        return std::optional<publication>();
    });
    if (!known) return known.error();
    if (*known) {
        if (known->value().delivery_ids.empty() && !known->value().repeated) {
            std::lock_guard lock(batch_mutex_);
            if (batch_thread_ == std::this_thread::get_id()) unheard_.insert(std::move(key));
        }
        return std::move(**known);
    }
    auto payload = to_json(event);
    auto text = boost::json::serialize(payload);
    storage::published_event e;
    e.event_id = event.event_id;
    e.event_type = event.event_type;
    e.payload_hash = crypto::sha256_hex(text);
    return due(record(store_, blobs_, clock_, ctx, std::move(e), payload, text), on_due_);
}

void publisher::begin_batch() {
    std::lock_guard lock(batch_mutex_);
    batch_thread_ = std::this_thread::get_id();
    unheard_.clear();
}

void publisher::end_batch() {
    std::lock_guard lock(batch_mutex_);
    batch_thread_ = {};
    unheard_.clear();
}

result<webhook_delivery> publisher::find(request_context const& ctx, std::string const& delivery_id) {
    return storage::read_for(store_, ctx, [&](storage::unit_of_work& uow) { return uow.deliveries().find(delivery_id); });
}

result<storage::page<webhook_delivery>> publisher::list(request_context const& ctx, storage::delivery_query const& q,
                                                        storage::page_request const& page) {
    return storage::read_for(store_, ctx, [&](storage::unit_of_work& uow) { return uow.deliveries().list(q, page); });
}

result<webhook_delivery> publisher::replay(request_context const& ctx, std::string const& delivery_id) {
    auto replayed = storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<webhook_delivery> {
        auto d = uow.deliveries().find(delivery_id);
        if (!d) return d.error();
        if (d->data().direction != delivery_direction::outbound)
            return error{errc::invalid_state, "delivery " + delivery_id + " is inbound; only outbound deliveries are replayed"};
        if (!d->data().payload_ref)
            return error{errc::invalid_state, "delivery " + delivery_id +
                                                  " has no payload any more (payloads are kept 30 days); publish the event again"};
        auto sub = uow.subscriptions().find(d->data().subscription_id.value_or(""));
        if (!sub) return sub.error();
        auto held = uow.deliveries().leased(delivery_id, clock_.now());
        if (!held) return held.error();
        if (*held)
            return error{errc::conflict, "delivery " + delivery_id +
                                             " is being sent now; replay it once this attempt is recorded (its status changes)"};
        if (auto r = d->replay(sub->attempt_policy().max_attempts, clock_.now()); !r) return r.error();
        // An inactive subscription's delivery waits for its reactivation off the claims' order,
        // as its others do: due now, every claim would walk past it.
        if (!sub->active())
            if (auto r = d->hold(); !r) return r.error();
        if (auto r = uow.deliveries().save(*d); !r) return r.error();
        return std::move(*d);
    });
    if (replayed && on_due_) on_due_();
    return replayed;
}

}  // namespace integration::webhooks
