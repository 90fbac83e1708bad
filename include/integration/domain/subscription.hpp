#ifndef INTEGRATION_DOMAIN_SUBSCRIPTION_HPP
#define INTEGRATION_DOMAIN_SUBSCRIPTION_HPP

/** @file
 *  WebhookSubscription: delivery of an event type to an external endpoint.
 */

#include <integration/core/aggregate.hpp>
#include <integration/export.hpp>

#include <boost/json/value.hpp>

#include <array>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace integration::webhooks {

/** SubscriptionAttemptPolicy: per-subscription retry and timeout overrides.
 *
 *  Without a policy a delivery follows the default schedule: attempt 1 at once, then 5 s, 5 min,
 *  30 min, 2 h, 5 h, 10 h and 10 h after each failure (8 attempts), every delay with jitter.
 *  With one, `schedule_ms` (when given) lists the delays after each failed attempt; otherwise the
 *  delay starts at `initial_delay_ms` and doubles up to `max_delay_ms`. */
struct INTEGRATION_EXPORT subscription_attempt_policy {
    std::int64_t max_attempts = 8;
    std::int64_t initial_delay_ms = 5'000;
    std::int64_t max_delay_ms = 36'000'000;
    std::int64_t timeout_ms = 15'000;
    std::optional<std::vector<std::int64_t>> schedule_ms;  ///< Delay after failed attempt i (0-based).

    static auto json_fields() {
        return std::make_tuple(defaulted_field("maxAttempts", &subscription_attempt_policy::max_attempts),
                               defaulted_field("initialDelayMs", &subscription_attempt_policy::initial_delay_ms),
                               defaulted_field("maxDelayMs", &subscription_attempt_policy::max_delay_ms),
                               defaulted_field("timeoutMs", &subscription_attempt_policy::timeout_ms),
                               field("scheduleMs", &subscription_attempt_policy::schedule_ms));
    }
};

/** The longest delay a policy may set between attempts (7 days): a longer one would outlast the
 *  payload it retries, and far beyond it a time point overflows. */
inline constexpr std::int64_t max_retry_delay_ms = 7LL * 24 * 3600 * 1000;

/** The default schedule's delays after each failed attempt (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h). */
inline constexpr std::array<std::int64_t, 7> default_retry_schedule_ms{
    5'000, 300'000, 1'800'000, 7'200'000, 18'000'000, 36'000'000, 36'000'000};

/** What a caller supplies to subscribe. */
struct INTEGRATION_EXPORT subscription_spec {
    std::string project_id;
    std::string event_type;        ///< Exact (`order.created`) or a prefix pattern (`order.*`, `*`).
    std::string endpoint_url;      ///< Absolute http(s) URL; the egress policy decides where deliveries may go.
    std::string signing_secret_ref;  ///< KeyVaultRef of the signing secret; empty: the service generates one.
    std::optional<boost::json::value> filter;  ///< A payload predicate (`webhooks::payload_filter`).
    std::optional<subscription_attempt_policy> attempt_policy;
    bool ordered = false;  ///< FIFO: a delivery waits until the previous one is Delivered or DeadLettered.
    std::optional<std::int64_t> max_per_second;  ///< Deliveries per second to this endpoint (1-10000).

    static auto json_fields() {
        return std::make_tuple(field("projectId", &subscription_spec::project_id),
                               field("eventType", &subscription_spec::event_type),
                               field("endpointUrl", &subscription_spec::endpoint_url),
                               defaulted_field("signingSecretRef", &subscription_spec::signing_secret_ref),
                               field("filter", &subscription_spec::filter),
                               field("attemptPolicy", &subscription_spec::attempt_policy),
                               defaulted_field("ordered", &subscription_spec::ordered),
                               field("maxPerSecond", &subscription_spec::max_per_second));
    }
};

/** A signing secret a rotation replaced: it still signs until `until`. */
struct INTEGRATION_EXPORT replaced_signing_secret {
    std::string ref;
    time_point until{};

    static auto json_fields() {
        return std::make_tuple(field("ref", &replaced_signing_secret::ref), field("until", &replaced_signing_secret::until));
    }
};

/** At most this many replaced secrets sign beside the current one (each adds a signature to
 *  every delivery and a verification to every receiver's check). */
inline constexpr std::size_t max_replaced_signing_secrets = 8;

/** The stored state of a subscription. */
struct INTEGRATION_EXPORT subscription_data : subscription_spec {
    std::string subscription_id;
    bool active = true;
    /** During a secret rotation: the previous secret, still signing until `previous_secret_until`. */
    std::optional<std::string> previous_signing_secret_ref;
    std::optional<time_point> previous_secret_until;
    /** Secrets replaced before the previous one, newest first, each signing until its own `until`
     *  (a second rotation within the overlap keeps the first one's secret signing). */
    std::optional<std::vector<replaced_signing_secret>> earlier_signing_secrets;
    std::int64_t consecutive_failures = 0;  ///< Failed attempts since the last Delivered one.
    std::optional<time_point> failing_since;  ///< When the first of those failed.
    std::optional<std::string> deactivation_reason;

    static auto json_fields() {
        return std::tuple_cat(std::make_tuple(field("subscriptionId", &subscription_data::subscription_id)),
                              subscription_spec::json_fields(),
                              std::make_tuple(field("active", &subscription_data::active),
                                              field("previousSigningSecretRef",
                                                    &subscription_data::previous_signing_secret_ref),
                                              field("previousSecretUntil", &subscription_data::previous_secret_until),
                                              field("earlierSigningSecrets", &subscription_data::earlier_signing_secrets),
                                              field("consecutiveFailures", &subscription_data::consecutive_failures),
                                              field("failingSince", &subscription_data::failing_since),
                                              field("deactivationReason", &subscription_data::deactivation_reason)));
    }
};

/** True when `event_type` matches `pattern` (exact, `prefix.*`, or `*`). */
INTEGRATION_EXPORT bool event_type_matches(std::string_view pattern, std::string_view event_type) noexcept;

/** WebhookSubscription aggregate root. */
class INTEGRATION_EXPORT webhook_subscription : public aggregate {
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
    subscription_attempt_policy attempt_policy() const {
        return d_.attempt_policy.value_or(subscription_attempt_policy{});
    }

    /** Delay before attempt `next_attempt` (2-based: the first retry is attempt 2), without jitter. */
    std::chrono::milliseconds delay_before(std::int64_t next_attempt) const;
    /** The secret refs that sign a delivery at `now`: the current one, then each replaced one
     *  whose overlap window lasts, newest first. */
    std::vector<std::string> signing_secret_refs(time_point now) const;

    /** Active → inactive (raises WebhookSubscriptionDeactivated with `reason`). */
    result<void> deactivate(std::string reason);
    /** Inactive → active, its failure count reset (raises WebhookSubscriptionReactivated). */
    result<void> reactivate();
    /** Signs with `new_ref` from now on; the current secret keeps signing too until `now + overlap`,
     *  and each secret an earlier rotation replaced until its own end (raises
     *  WebhookSigningSecretRotated, naming no secret). Returns the refs whose overlap had ended,
     *  now unused. `errc::conflict` while `max_replaced_signing_secrets` still sign. */
    result<std::vector<std::string>> rotate_signing_secret(std::string new_ref, time_point now,
                                                           std::chrono::milliseconds overlap);
    /** Counts a delivery outcome at `now`: a success ends the run of failures; a failure extends
     *  it, and once it holds `disable_after` failures (0: never) and began `failing_for` or longer
     *  ago, the subscription deactivates itself with reason "auto-disabled after N consecutive
     *  failures". Both, so that neither a burst of concurrent failures (an endpoint down for the
     *  seconds of a deploy) nor one slow retry schedule disables it. Returns true when it did. */
    bool record_outcome(bool delivered, time_point now, std::int64_t disable_after,
                        std::chrono::milliseconds failing_for = std::chrono::milliseconds(0));

private:
    webhook_subscription(metadata m, subscription_data d) : aggregate(std::move(m)), d_(std::move(d)) {}
    subscription_data d_;
};

}  // namespace integration::webhooks

#endif
