#ifndef INTEGRATION_DOMAIN_FAILURE_HPP
#define INTEGRATION_DOMAIN_FAILURE_HPP

/** @file
 *  IntegrationFailure: a classified record of a failed run, delivery or health probe, driving
 *  retry and escalation.
 */

#include <integration/core/aggregate.hpp>
#include <integration/export.hpp>

#include <optional>
#include <string>
#include <vector>

namespace integration::failures {

/** FailureCategory: every failure is classified into one of these. */
enum class failure_category { transient, rate_limited, auth, validation, poison };
/** RetryDecision: what happens next. */
enum class next_action { retry, dead_letter, escalate };
/** What failed. */
enum class failure_source { run, delivery, health_probe, credential_rotation, credential_refresh, outbox_event };
/** The state of the failure's source, as far as resolving the failure is concerned. */
enum class source_outcome { in_progress, succeeded, dead_lettered, failed };

}  // namespace integration::failures

template <>
struct integration::enum_names<integration::failures::failure_category> {
    static constexpr std::array<std::string_view, 5> values{"Transient", "RateLimited", "Auth", "Validation",
                                                            "Poison"};
};
template <>
struct integration::enum_names<integration::failures::next_action> {
    static constexpr std::array<std::string_view, 3> values{"Retry", "DeadLetter", "Escalate"};
};
template <>
struct integration::enum_names<integration::failures::failure_source> {
    static constexpr std::array<std::string_view, 6> values{"Run", "Delivery", "HealthProbe", "CredentialRotation",
                                                            "CredentialRefresh", "OutboxEvent"};
};

namespace integration::failures {

/** A classification of one failed attempt. */
struct classification {
    failure_category category = failure_category::transient;
    std::string error_code;  ///< Stable, e.g. "http_503", "timeout", "invalid_token".
    std::string message;     ///< What happened; never secret material.
    failures::next_action next_action = failures::next_action::retry;
    std::optional<time_point> next_attempt_at;  ///< Required when next_action is Retry.
};

/** FailureAttempt: one entry of the history across retries. */
struct INTEGRATION_EXPORT failure_attempt {
    std::int64_t attempt = 0;
    failure_category category = failure_category::transient;
    std::string error_code;
    std::string message;
    time_point occurred_at{};

    static auto json_fields() {
        return std::make_tuple(field("attempt", &failure_attempt::attempt),
                               field("category", &failure_attempt::category),
                               field("errorCode", &failure_attempt::error_code),
                               field("message", &failure_attempt::message),
                               field("occurredAt", &failure_attempt::occurred_at));
    }
};

/** EscalationRecord: who escalated, why, when; required for audit. */
struct INTEGRATION_EXPORT escalation_record {
    std::string escalated_by;
    std::string reason;
    time_point escalated_at{};
    std::optional<std::string> ticket_ref;

    static auto json_fields() {
        return std::make_tuple(field("escalatedBy", &escalation_record::escalated_by),
                               field("reason", &escalation_record::reason),
                               field("escalatedAt", &escalation_record::escalated_at),
                               field("ticketRef", &escalation_record::ticket_ref));
    }
};

/** The stored state of a failure. Exactly one of run_id, delivery_id, connection_id, credential_id,
 *  event_id names the source, per `source`. */
struct INTEGRATION_EXPORT failure_data {
    std::string failure_id;
    failure_source source = failure_source::run;
    std::optional<std::string> run_id;
    std::optional<std::string> delivery_id;
    std::optional<std::string> connection_id;
    std::optional<std::string> credential_id;
    std::optional<std::string> event_id;  ///< An outbox event that could not be published.
    std::string provider_id;
    failure_category category = failure_category::transient;
    std::string error_code;
    std::string message;
    std::int64_t attempt = 1;
    failures::next_action next_action = failures::next_action::retry;
    std::optional<time_point> next_attempt_at;
    std::optional<time_point> resolved_at;
    std::vector<failure_attempt> failure_attempts;
    std::vector<escalation_record> escalations;

    static auto json_fields() {
        return std::make_tuple(
            field("failureId", &failure_data::failure_id), field("source", &failure_data::source),
            field("runId", &failure_data::run_id), field("deliveryId", &failure_data::delivery_id),
            field("connectionId", &failure_data::connection_id), field("credentialId", &failure_data::credential_id),
            field("eventId", &failure_data::event_id),
            field("providerId", &failure_data::provider_id), field("category", &failure_data::category),
            field("errorCode", &failure_data::error_code), field("message", &failure_data::message),
            field("attempt", &failure_data::attempt), field("nextAction", &failure_data::next_action),
            field("nextAttemptAt", &failure_data::next_attempt_at), field("resolvedAt", &failure_data::resolved_at),
            field("failureAttempts", &failure_data::failure_attempts),
            field("escalations", &failure_data::escalations));
    }
};

/** IntegrationFailure aggregate root. */
class INTEGRATION_EXPORT integration_failure : public aggregate {
public:
    using data_type = failure_data;

    /** Records a new failure of `source_id` (raises IntegrationFailed). Poison with Retry, or Retry
     *  without nextAttemptAt, is refused. */
    static result<integration_failure> record(request_context const& ctx, time_point now, failure_source source,
                                              std::string source_id, std::string provider_id,
                                              classification const& c);
    /** Rebuilds a stored failure (stores only). */
    static result<integration_failure> restore(metadata m, failure_data d);

    std::string const& id() const noexcept { return d_.failure_id; }
    failure_data const& data() const noexcept { return d_; }
    bool resolved() const noexcept { return d_.resolved_at.has_value(); }
    /** The id of the run, delivery, connection, credential or event that failed. */
    std::string const& source_id() const noexcept;

    /** Entries kept in `failure_attempts`: the first attempt and the latest ones (a connection
     *  that stays down adds one at every probe, and each save writes them all). */
    static constexpr std::size_t max_attempt_history = 100;

    /** Records another failed attempt of the same source; attempt grows by one, and the history
     *  keeps the first attempt and the latest `max_attempt_history - 1`. */
    result<void> record_attempt(classification const& c, time_point now);
    /** Resolves the failure; only when the source succeeded or was dead-lettered (raises
     *  IntegrationFailureResolved). */
    result<void> resolve(source_outcome outcome, time_point now);
    /** How many escalations a failure keeps at most: past them, `escalate` is refused. */
    static constexpr std::size_t max_escalations = 50;
    /** Escalates with an audit record naming who and why (raises IntegrationFailureEscalated); a
     *  `ticket_ref` is text of at most 256 characters. */
    result<void> escalate(escalation_record record);

private:
    integration_failure(metadata m, failure_data d) : aggregate(std::move(m)), d_(std::move(d)) {}
    failure_data d_;
};

}  // namespace integration::failures

#endif
