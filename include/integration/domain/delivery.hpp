#ifndef INTEGRATION_DOMAIN_DELIVERY_HPP
#define INTEGRATION_DOMAIN_DELIVERY_HPP

/** @file
 *  WebhookDelivery: one inbound or outbound webhook crossing the boundary, with its attempts.
 */

#include <integration/core/aggregate.hpp>
#include <integration/domain/subscription.hpp>
#include <integration/export.hpp>

#include <boost/json/value.hpp>

#include <optional>
#include <string>
#include <vector>

namespace integration::webhooks {

enum class delivery_direction { inbound, outbound };
/** Outbound: Pending → Failed (retrying) → Delivered | DeadLettered. Inbound: Pending → Accepted | Failed. */
enum class delivery_status { pending, accepted, delivered, failed, dead_lettered };
/** SignatureStatus of an inbound delivery (outbound deliveries are Signed). */
enum class signature_status { unverified, verified, invalid, signed_outbound };

}  // namespace integration::webhooks

template <>
struct integration::enum_names<integration::webhooks::delivery_direction> {
    static constexpr std::array<std::string_view, 2> values{"Inbound", "Outbound"};
};
template <>
struct integration::enum_names<integration::webhooks::delivery_status> {
    static constexpr std::array<std::string_view, 5> values{"Pending", "Accepted", "Delivered", "Failed",
                                                            "DeadLettered"};
};
template <>
struct integration::enum_names<integration::webhooks::signature_status> {
    static constexpr std::array<std::string_view, 4> values{"Unverified", "Verified", "Invalid", "Signed"};
};

namespace integration::webhooks {

/** DeliveryAttempt: one try, with the receiver's answer. */
struct INTEGRATION_EXPORT delivery_attempt {
    std::int64_t attempt = 0;
    std::optional<std::int64_t> http_status;
    std::int64_t latency_ms = 0;
    std::optional<std::string> response_excerpt;  ///< First bytes of the receiver's answer.
    std::optional<std::string> error;             ///< Transport error, when there was no answer.
    time_point attempted_at{};

    static auto json_fields() {
        return std::make_tuple(field("attempt", &delivery_attempt::attempt),
                               field("httpStatus", &delivery_attempt::http_status),
                               field("latencyMs", &delivery_attempt::latency_ms),
                               field("responseExcerpt", &delivery_attempt::response_excerpt),
                               field("error", &delivery_attempt::error),
                               field("attemptedAt", &delivery_attempt::attempted_at));
    }
};

/** The stored state of a delivery. */
struct INTEGRATION_EXPORT delivery_data {
    std::string delivery_id;
    delivery_direction direction = delivery_direction::outbound;
    std::optional<std::string> subscription_id;       ///< Outbound.
    std::optional<std::string> provider_id;           ///< Inbound.
    std::optional<std::string> connection_id;         ///< Inbound.
    std::optional<std::string> provider_delivery_id;  ///< Inbound: the vendor's delivery id.
    std::string event_type;
    std::optional<std::string> event_id;
    std::optional<std::string> payload_ref;           ///< Blob holding the raw payload.
    std::optional<std::string> payload_hash;          ///< SHA-256 of the payload, to spot a reused id.
    webhooks::signature_status signature_status = webhooks::signature_status::unverified;
    delivery_status status = delivery_status::pending;
    std::int64_t attempts = 0;
    std::int64_t max_attempts = 1;
    std::optional<time_point> last_attempt_at;
    std::optional<time_point> next_attempt_at;
    std::vector<delivery_attempt> delivery_attempts;
    std::optional<std::string> rejection_reason;      ///< Inbound Failed: why it was refused.
    /** Outbound, put off without an attempt by the sender's own failure (a secret or payload it
     *  could not read): why; cleared by the next attempt. */
    std::optional<std::string> deferred_reason;

    static auto json_fields() {
        return std::make_tuple(
            field("deliveryId", &delivery_data::delivery_id), field("direction", &delivery_data::direction),
            field("subscriptionId", &delivery_data::subscription_id), field("providerId", &delivery_data::provider_id),
            field("connectionId", &delivery_data::connection_id),
            field("providerDeliveryId", &delivery_data::provider_delivery_id),
            field("eventType", &delivery_data::event_type), field("eventId", &delivery_data::event_id),
            field("payloadRef", &delivery_data::payload_ref), field("payloadHash", &delivery_data::payload_hash),
            field("signatureStatus", &delivery_data::signature_status), field("status", &delivery_data::status),
            field("attempts", &delivery_data::attempts), field("maxAttempts", &delivery_data::max_attempts),
            field("lastAttemptAt", &delivery_data::last_attempt_at),
            field("nextAttemptAt", &delivery_data::next_attempt_at),
            field("deliveryAttempts", &delivery_data::delivery_attempts),
            field("rejectionReason", &delivery_data::rejection_reason),
            field("deferredReason", &delivery_data::deferred_reason));
    }
};

/** The facts an inbound delivery needs before it can be Accepted. */
struct inbound_verification {
    bool signature_valid = false;
    bool tenant_resolved = false;
};

/** WebhookDelivery aggregate root. */
class INTEGRATION_EXPORT webhook_delivery : public aggregate {
public:
    using data_type = delivery_data;

    /** A Pending outbound delivery of `event_type` to an active `subscription`, due now. */
    static result<webhook_delivery> outbound(request_context const& ctx, time_point now,
                                             webhook_subscription const& subscription, std::string event_type,
                                             std::string event_id, std::optional<std::string> payload_ref);
    /** A Pending inbound delivery received on `connection_id`; idempotent on `provider_delivery_id`. */
    static result<webhook_delivery> inbound(request_context const& ctx, time_point now, std::string connection_id,
                                            std::string provider_id, std::string provider_delivery_id,
                                            std::string event_type, std::optional<std::string> payload_ref,
                                            std::optional<std::string> payload_hash);
    /** An inbound request on `connection_id` that was refused before it had an identity (or
     *  whose identity conflicts with an earlier delivery): Failed at once, with `reason` and the
     *  signature as far as it was checked (`reject`) (raises IntegrationFailed). It holds no
     *  vendor delivery id, so it never blocks a later valid one. */
    static result<webhook_delivery> refused_inbound(request_context const& ctx, time_point now,
                                                    std::string connection_id, std::string provider_id,
                                                    std::string event_type, std::string reason,
                                                    signature_status signature = signature_status::invalid);
    /** Rebuilds a stored delivery (stores only). */
    static result<webhook_delivery> restore(metadata m, delivery_data d);

    std::string const& id() const noexcept { return d_.delivery_id; }
    delivery_data const& data() const noexcept { return d_; }
    delivery_status status() const noexcept { return d_.status; }
    bool terminal() const noexcept;

    /** Inbound Pending → Accepted, only with a valid signature and a resolved tenant. Raises
     *  WebhookDelivered, then the canonical event: its `eventType` (e.g. `github.push`) with
     *  `deliveryId`, `connectionId`, `providerId`, `providerDeliveryId` and `body`, the vendor's
     *  payload as parsed (JSON, or the form fields as an object). */
    result<void> accept(inbound_verification const& v, time_point now, boost::json::value body = nullptr);
    /** Inbound Pending → Failed with `reason` kept and the signature marked `signature` (Invalid
     *  by default; Verified when the request verified and was refused for what it carried)
     *  (raises IntegrationFailed). */
    result<void> reject(std::string reason, time_point now, signature_status signature = signature_status::invalid);
    /** Outbound: a 2xx answer → Delivered (raises WebhookDelivered). */
    result<void> record_success(delivery_attempt a);
    /** Outbound: a failed try. Retries at `next_attempt_at` until attempts reach maxAttempts, then
     *  DeadLettered (raises IntegrationFailed). */
    result<void> record_failure(delivery_attempt a, time_point next_attempt_at);
    /** Outbound Pending or Failed: not sent now, due again at `at`; no attempt is counted.
     *  `reason` says why when it is the sender's own failure (none: the subscription's rate limit). */
    result<void> defer(time_point at, std::optional<std::string> reason = std::nullopt);
    /** Outbound: the receiver answered 410 Gone. Dead-lettered at once (raises IntegrationFailed);
     *  the caller deactivates the subscription. */
    result<void> record_gone(delivery_attempt a);
    /** Outbound Pending or Failed that can never be sent (retention purged its payload):
     *  dead-lettered at `now` without an attempt, which would count
     *  against the endpoint (raises IntegrationFailed, Validation, with `reason`). `now` is
     *  kept as its last attempt's time, which retention ends deliveries by. */
    result<void> abandon(std::string const& reason, time_point now);
    /** Inbound Pending: where the raw payload is kept (known once the delivery has its id). */
    result<void> keep_payload(std::string payload_ref);
    /** Retention: the raw payload was purged from the blob store, so `payloadRef` is cleared. */
    void forget_payload() noexcept { d_.payload_ref.reset(); }
    /** Outbound, terminal or failed → Pending, due now, with `extra_attempts` more allowed. */
    result<void> replay(std::int64_t extra_attempts, time_point now);
    /** Outbound Pending or Failed of an inactive subscription: off the claims' order
     *  (`nextAttemptAt` cleared) until the subscription is reactivated, which makes it due. */
    result<void> hold();

private:
    webhook_delivery(metadata m, delivery_data d) : aggregate(std::move(m)), d_(std::move(d)) {}
    result<void> append_attempt(delivery_attempt& a);
    delivery_data d_;
};

}  // namespace integration::webhooks

#endif
