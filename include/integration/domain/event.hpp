#ifndef INTEGRATION_DOMAIN_EVENT_HPP
#define INTEGRATION_DOMAIN_EVENT_HPP

/** @file
 *  The canonical event envelope every domain event travels in, and the seed's event type names.
 */

#include <integration/core/aggregate.hpp>
#include <integration/export.hpp>

#include <boost/json/object.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace integration::events {

/** The seed's domain event names. */
namespace event_type {
inline constexpr std::string_view connection_established = "IntegrationConnectionEstablished";
inline constexpr std::string_view connection_retired = "IntegrationConnectionRetired";
inline constexpr std::string_view integration_failed = "IntegrationFailed";
inline constexpr std::string_view provider_registered = "IntegrationProviderRegistered";
inline constexpr std::string_view provider_deprecated = "IntegrationProviderDeprecated";
inline constexpr std::string_view credential_rotated = "CredentialRotated";
inline constexpr std::string_view credential_revoked = "CredentialRevoked";
inline constexpr std::string_view webhook_subscribed = "WebhookSubscribed";
inline constexpr std::string_view webhook_subscription_deactivated = "WebhookSubscriptionDeactivated";
inline constexpr std::string_view webhook_subscription_reactivated = "WebhookSubscriptionReactivated";
inline constexpr std::string_view webhook_signing_secret_rotated = "WebhookSigningSecretRotated";
inline constexpr std::string_view webhook_delivered = "WebhookDelivered";
inline constexpr std::string_view api_client_registered = "ExternalApiClientRegistered";
inline constexpr std::string_view api_client_deprecated = "ExternalApiClientDeprecated";
inline constexpr std::string_view run_completed = "IntegrationRunCompleted";
inline constexpr std::string_view failure_escalated = "IntegrationFailureEscalated";
inline constexpr std::string_view failure_resolved = "IntegrationFailureResolved";
/** Every event type the library raises (a canonical inbound event's type is the vendor's). */
inline constexpr std::string_view all[] = {
    connection_established, connection_retired, integration_failed, provider_registered, provider_deprecated,
    credential_rotated, credential_revoked, webhook_subscribed, webhook_subscription_deactivated,
    webhook_subscription_reactivated, webhook_signing_secret_rotated, webhook_delivered, api_client_registered,
    api_client_deprecated, run_completed, failure_escalated, failure_resolved};
}  // namespace event_type

/** The canonical envelope (schemaVersion 1). */
struct INTEGRATION_EXPORT event_envelope {
    std::string event_id;  ///< `evt-` ULID.
    std::string event_type;
    std::int64_t schema_version = 1;
    time_point occurred_at{};
    std::string tenant_id;       ///< Empty for events of global providers.
    std::string aggregate_type;  ///< e.g. "IntegrationConnection".
    std::string aggregate_id;
    std::int64_t aggregate_version = 0;
    std::string trace_id;  ///< W3C trace id of the request that caused the event.
    std::string span_id;
    std::string correlation_id;
    std::string causation_id;
    std::string source;  ///< The producing component, e.g. "integration".
    boost::json::object data;

    static auto json_fields() {
        return std::make_tuple(
            field("eventId", &event_envelope::event_id), field("eventType", &event_envelope::event_type),
            field("schemaVersion", &event_envelope::schema_version), field("occurredAt", &event_envelope::occurred_at),
            field("tenantId", &event_envelope::tenant_id), field("aggregateType", &event_envelope::aggregate_type),
            field("aggregateId", &event_envelope::aggregate_id),
            field("aggregateVersion", &event_envelope::aggregate_version), field("traceId", &event_envelope::trace_id),
            field("spanId", &event_envelope::span_id), field("correlationId", &event_envelope::correlation_id),
            field("causationId", &event_envelope::causation_id), field("source", &event_envelope::source),
            field("data", &event_envelope::data));
    }
};

/** Wraps `e`, raised by aggregate `aggregate_id` at `aggregate_version`, for `ctx` at `now`. */
INTEGRATION_EXPORT event_envelope make_envelope(domain_event e, request_context const& ctx,
                                                std::string_view aggregate_type, std::string aggregate_id,
                                                std::string tenant_id, std::int64_t aggregate_version, time_point now);

/** Which of an envelope's fields `serialize_envelope` writes. */
enum class envelope_fields {
    all,
    /** All but those that identify the event (`eventId`, `eventType`, `occurredAt`, `tenantId`,
     *  `aggregateType`, `aggregateId`, `aggregateVersion`): for a store that keeps them beside
     *  the text, as the outbox's columns. */
    without_identity,
};

/** The envelope as JSON text: with every field, the same document as
 *  `boost::json::serialize(to_json(e))`, written field by field without building its DOM (each
 *  outbox row stores one). */
INTEGRATION_EXPORT std::string serialize_envelope(event_envelope const& e, envelope_fields fields = envelope_fields::all);

}  // namespace integration::events

#endif
