#ifndef INTEGRATION_DOMAIN_SUBSCRIPTION_HPP
#define INTEGRATION_DOMAIN_SUBSCRIPTION_HPP

/** @file
 *  WebhookSubscription: delivery of an event type to an external endpoint.
 */

#include <integration/core/aggregate.hpp>

#include <boost/json/value.hpp>

#include <optional>
#include <string>

namespace integration::webhooks {

/** SubscriptionAttemptPolicy: per-subscription retry and timeout overrides. */
struct subscription_attempt_policy {
    std::int64_t max_attempts = 8;
    std::int64_t initial_delay_ms = 5'000;
    std::int64_t max_delay_ms = 36'000'000;
    std::int64_t timeout_ms = 15'000;

    static auto json_fields() {
        return std::make_tuple(field("maxAttempts", &subscription_attempt_policy::max_attempts),
                               field("initialDelayMs", &subscription_attempt_policy::initial_delay_ms),
                               field("maxDelayMs", &subscription_attempt_policy::max_delay_ms),
                               field("timeoutMs", &subscription_attempt_policy::timeout_ms));
    }
};

/** What a caller supplies to subscribe. */
struct subscription_spec {
    std::string project_id;
    std::string event_type;        ///< Exact (`order.created`) or a prefix pattern (`order.*`, `*`).
    std::string endpoint_url;      ///< Absolute http(s) URL; the egress policy decides where deliveries may go.
    std::string signing_secret_ref;  ///< KeyVaultRef of the signing secret; required.
    std::optional<boost::json::value> filter;
    std::optional<subscription_attempt_policy> attempt_policy;

    static auto json_fields() {
        return std::make_tuple(field("projectId", &subscription_spec::project_id),
                               field("eventType", &subscription_spec::event_type),
                               field("endpointUrl", &subscription_spec::endpoint_url),
                               field("signingSecretRef", &subscription_spec::signing_secret_ref),
                               field("filter", &subscription_spec::filter),
                               field("attemptPolicy", &subscription_spec::attempt_policy));
    }
};

/** The stored state of a subscription. */
struct subscription_data : subscription_spec {
    std::string subscription_id;
    bool active = true;

    static auto json_fields() {
        return std::tuple_cat(std::make_tuple(field("subscriptionId", &subscription_data::subscription_id)),
                              subscription_spec::json_fields(),
                              std::make_tuple(field("active", &subscription_data::active)));
    }
};

/** True when `event_type` matches `pattern` (exact, `prefix.*`, or `*`). */
bool event_type_matches(std::string_view pattern, std::string_view event_type) noexcept;

/** WebhookSubscription aggregate root. */
class webhook_subscription : public aggregate {
public:
    using data_type = subscription_data;

    /** Creates an active subscription (raises WebhookSubscribed). The endpoint must be an absolute
     *  `http(s)` URL without user information; whether the egress policy lets deliveries reach it
     *  is checked by the service that subscribes, since that depends on the operator's rules. */
    static result<webhook_subscription> create(request_context const& ctx, time_point now, subscription_spec spec);
    /** Rebuilds a stored subscription (stores only). */
    static result<webhook_subscription> restore(metadata m, subscription_data d);

    std::string const& id() const noexcept { return d_.subscription_id; }
    subscription_data const& data() const noexcept { return d_; }
    bool active() const noexcept { return d_.active; }
    /** True when active and subscribed to `event_type`; inactive subscriptions are skipped. */
    bool accepts(std::string_view event_type) const noexcept;
    /** The effective attempt policy. */
    subscription_attempt_policy attempt_policy() const { return d_.attempt_policy.value_or(subscription_attempt_policy{}); }

    /** Active → inactive (raises WebhookSubscriptionDeactivated). */
    result<void> deactivate(std::string reason);

private:
    webhook_subscription(metadata m, subscription_data d) : aggregate(std::move(m)), d_(std::move(d)) {}
    subscription_data d_;
};

}  // namespace integration::webhooks

#endif
