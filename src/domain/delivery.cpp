#include <integration/core/id.hpp>
#include <integration/core/utf8.hpp>
#include <integration/domain/event.hpp>
#include <integration/domain/delivery.hpp>

#include "../detail/validate.hpp"

namespace integration::webhooks {

result<webhook_delivery> webhook_delivery::outbound(request_context const& ctx, time_point now,
                                                    webhook_subscription const& subscription, std::string event_type,
                                                    std::string event_id, std::optional<std::string> payload_ref) {
    if (!subscription.accepts(event_type))
        return error{errc::invalid_state, "subscription " + subscription.id() +
                                              (subscription.active() ? " does not take " + event_type : " is inactive")};
    delivery_data d;
    d.delivery_id = new_id(id_prefix::delivery, now);
    d.direction = delivery_direction::outbound;
    d.subscription_id = subscription.id();
    d.event_type = std::move(event_type);
    d.event_id = std::move(event_id);
    d.payload_ref = std::move(payload_ref);
    d.signature_status = signature_status::signed_outbound;
    d.max_attempts = subscription.attempt_policy().max_attempts;
    d.next_attempt_at = truncate_ms(now);
    return webhook_delivery(new_metadata(ctx, now), std::move(d));
}

namespace {
// What every inbound delivery starts with: a new id, its connection and provider, one attempt.
delivery_data inbound_data(time_point now, std::string connection_id, std::string provider_id, std::string event_type) {
    delivery_data d;
    d.delivery_id = new_id(id_prefix::delivery, now);
    d.direction = delivery_direction::inbound;
    d.connection_id = std::move(connection_id);
    d.provider_id = std::move(provider_id);
    d.event_type = std::move(event_type);
    d.max_attempts = 1;
    return d;
}
}  // namespace

result<webhook_delivery> webhook_delivery::inbound(request_context const& ctx, time_point now,
                                                   std::string connection_id, std::string provider_id,
                                                   std::string provider_delivery_id, std::string event_type,
                                                   std::optional<std::string> payload_ref,
                                                   std::optional<std::string> payload_hash) {
    // As long as the schemes' delivery ids may be (1-256 printable characters).
    if (auto r = detail::require_text(provider_delivery_id, "provider delivery id", 256); !r) return r.error();
    if (auto r = detail::require_text(event_type, "eventType", 200); !r) return r.error();
    auto d = inbound_data(now, std::move(connection_id), std::move(provider_id), std::move(event_type));
    d.provider_delivery_id = std::move(provider_delivery_id);
    d.payload_ref = std::move(payload_ref);
    d.payload_hash = std::move(payload_hash);
    d.signature_status = signature_status::unverified;
    return webhook_delivery(new_metadata(ctx, now), std::move(d));
}

result<webhook_delivery> webhook_delivery::refused_inbound(request_context const& ctx, time_point now,
                                                           std::string connection_id, std::string provider_id,
                                                           std::string event_type, std::string reason,
                                                           signature_status signature) {
    if (auto r = detail::require_text(event_type, "eventType", 200); !r) return r.error();
    webhook_delivery out(new_metadata(ctx, now),
                         inbound_data(now, std::move(connection_id), std::move(provider_id), std::move(event_type)));
    if (auto r = out.reject(std::move(reason), now, signature); !r) return r.error();
    return out;
}

result<webhook_delivery> webhook_delivery::restore(metadata m, delivery_data d) {
    if (!is_valid_id(d.delivery_id, id_prefix::delivery))
        return error{errc::invalid_argument, "deliveryId \"" + d.delivery_id + "\" is not a delivery id"};
    return webhook_delivery(std::move(m), std::move(d));
}

bool webhook_delivery::terminal() const noexcept {
    return d_.status == delivery_status::delivered || d_.status == delivery_status::dead_lettered ||
           d_.status == delivery_status::accepted ||
           (d_.direction == delivery_direction::inbound && d_.status == delivery_status::failed);
}

result<void> webhook_delivery::accept(inbound_verification const& v, time_point now, boost::json::value body) {
    if (d_.direction != delivery_direction::inbound)
        return error{errc::invalid_state, "only inbound deliveries are accepted; outbound ones are delivered"};
    if (d_.status != delivery_status::pending) return detail::bad_transition("delivery", "accept", d_.status);
    if (!v.signature_valid)
        return error{errc::invariant_violation, "an inbound delivery is accepted only after its signature verifies"};
    if (!v.tenant_resolved)
        return error{errc::invariant_violation, "an inbound delivery is accepted only after its tenant is resolved"};
    d_.signature_status = signature_status::verified;
    d_.status = delivery_status::accepted;
    d_.last_attempt_at = truncate_ms(now);
    raise(std::string(events::event_type::webhook_delivered),
          {{"deliveryId", d_.delivery_id}, {"direction", "Inbound"}, {"eventType", d_.event_type},
           {"connectionId", d_.connection_id.value_or("")}, {"providerDeliveryId", d_.provider_delivery_id.value_or("")}});
    raise(d_.event_type, {{"deliveryId", d_.delivery_id},
                          {"connectionId", d_.connection_id.value_or("")},
                          {"providerId", d_.provider_id.value_or("")},
                          {"providerDeliveryId", d_.provider_delivery_id.value_or("")},
                          {"body", std::move(body)}});
    return {};
}

result<void> webhook_delivery::keep_payload(std::string payload_ref) {
    if (d_.direction != delivery_direction::inbound || d_.status != delivery_status::pending)
        return error{errc::invalid_state, "a payload is attached to an inbound delivery before it is accepted"};
    if (auto r = detail::require_text(payload_ref, "payloadRef", 2048); !r) return r;
    d_.payload_ref = std::move(payload_ref);
    return {};
}

result<void> webhook_delivery::reject(std::string reason, time_point now, signature_status signature) {
    if (d_.direction != delivery_direction::inbound)
        return error{errc::invalid_state, "only inbound deliveries are rejected"};
    if (d_.status != delivery_status::pending) return detail::bad_transition("delivery", "reject", d_.status);
    if (signature == signature_status::signed_outbound)
        return error{errc::invalid_argument, "a refused inbound request's signature is Unverified, Verified or Invalid"};
    d_.signature_status = signature;
    d_.status = delivery_status::failed;
    d_.last_attempt_at = truncate_ms(now);
    d_.rejection_reason = reason;
    raise(std::string(events::event_type::integration_failed),
          {{"source", "Delivery"}, {"deliveryId", d_.delivery_id}, {"direction", "Inbound"},
           {"category", "Validation"}, {"message", reason}});
    return {};
}

result<void> webhook_delivery::append_attempt(delivery_attempt& a) {
    if (d_.direction != delivery_direction::outbound)
        return error{errc::invalid_state, "attempts are recorded on outbound deliveries"};
    if (d_.status != delivery_status::pending && d_.status != delivery_status::failed)
        return detail::bad_transition("delivery", "attempt", d_.status);
    if (d_.attempts >= d_.max_attempts)
        return error{errc::invariant_violation, "delivery " + d_.delivery_id + " has used all " +
                                                    std::to_string(d_.max_attempts) + " attempts"};
    a.attempt = d_.attempts + 1;
    a.attempted_at = truncate_ms(a.attempted_at);
    d_.attempts = a.attempt;
    d_.last_attempt_at = a.attempted_at;
    d_.delivery_attempts.push_back(a);
    d_.deferred_reason.reset();  // it was sent: what put it off before is over
    return {};
}

result<void> webhook_delivery::record_success(delivery_attempt a) {
    if (auto r = append_attempt(a); !r) return r;
    d_.status = delivery_status::delivered;
    d_.next_attempt_at.reset();
    raise(std::string(events::event_type::webhook_delivered),
          {{"deliveryId", d_.delivery_id}, {"direction", "Outbound"}, {"eventType", d_.event_type},
           {"subscriptionId", d_.subscription_id.value_or("")}, {"attempts", d_.attempts}});
    return {};
}

result<void> webhook_delivery::record_failure(delivery_attempt a, time_point next_attempt_at) {
    if (auto r = append_attempt(a); !r) return r;
    if (d_.attempts >= d_.max_attempts) {
        d_.status = delivery_status::dead_lettered;
        d_.next_attempt_at.reset();
        raise(std::string(events::event_type::integration_failed),
              {{"source", "Delivery"}, {"deliveryId", d_.delivery_id}, {"direction", "Outbound"},
               {"subscriptionId", d_.subscription_id.value_or("")}, {"category", "Transient"},
               {"message", "retries exhausted after " + std::to_string(d_.attempts) + " attempts"}});
        return {};
    }
    d_.status = delivery_status::failed;
    d_.next_attempt_at = truncate_ms(next_attempt_at);
    return {};
}

result<void> webhook_delivery::hold() {
    if (d_.direction != delivery_direction::outbound)
        return error{errc::invalid_state, "only outbound deliveries are held"};
    if (d_.status != delivery_status::pending && d_.status != delivery_status::failed)
        return detail::bad_transition("delivery", "hold", d_.status);
    d_.next_attempt_at.reset();
    return {};
}

result<void> webhook_delivery::defer(time_point at, std::optional<std::string> reason) {
    if (d_.direction != delivery_direction::outbound)
        return error{errc::invalid_state, "only outbound deliveries are deferred"};
    if (d_.status != delivery_status::pending && d_.status != delivery_status::failed)
        return detail::bad_transition("delivery", "defer", d_.status);
    d_.next_attempt_at = truncate_ms(at);
    if (reason) d_.deferred_reason = utf8_excerpt(*reason, 512);  // a rate limit leaves an earlier reason
    return {};
}

result<void> webhook_delivery::record_gone(delivery_attempt a) {
    if (auto r = append_attempt(a); !r) return r;
    d_.status = delivery_status::dead_lettered;
    d_.next_attempt_at.reset();
    raise(std::string(events::event_type::integration_failed),
          {{"source", "Delivery"}, {"deliveryId", d_.delivery_id}, {"direction", "Outbound"},
           {"subscriptionId", d_.subscription_id.value_or("")}, {"category", "Validation"},
           {"message", "the receiver answered 410 Gone; the subscription is deactivated"}});
    return {};
}

result<void> webhook_delivery::abandon(std::string const& reason, time_point now) {
    if (d_.direction != delivery_direction::outbound)
        return error{errc::invalid_state, "only outbound deliveries are abandoned"};
    if (d_.status != delivery_status::pending && d_.status != delivery_status::failed)
        return detail::bad_transition("delivery", "abandon", d_.status);
    d_.status = delivery_status::dead_lettered;
    d_.next_attempt_at.reset();
    d_.deferred_reason.reset();  // the failure it raises says why
    d_.last_attempt_at = truncate_ms(now);
    raise(std::string(events::event_type::integration_failed),
          {{"source", "Delivery"}, {"deliveryId", d_.delivery_id}, {"direction", "Outbound"},
           {"subscriptionId", d_.subscription_id.value_or("")}, {"category", "Validation"}, {"message", reason}});
    return {};
}

result<void> webhook_delivery::replay(std::int64_t extra_attempts, time_point now) {
    if (d_.direction != delivery_direction::outbound)
        return error{errc::invalid_state, "only outbound deliveries are replayed"};
    if (d_.status == delivery_status::pending) return detail::bad_transition("delivery", "replay", d_.status);
    if (extra_attempts < 1) return error{errc::invalid_argument, "a replay needs at least one attempt"};
    d_.max_attempts = d_.attempts + extra_attempts;
    d_.status = delivery_status::pending;
    d_.next_attempt_at = truncate_ms(now);
    return {};
}

}  // namespace integration::webhooks
