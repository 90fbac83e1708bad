#include <integration/core/id.hpp>
#include <integration/core/utf8.hpp>
#include <integration/domain/event.hpp>
#include <integration/domain/failure.hpp>

#include "../detail/validate.hpp"

namespace integration::failures {
namespace {

result<void> check(classification const& c) {
    if (auto r = detail::require_text(c.error_code, "errorCode", 128); !r) return r;
    if (c.category == failure_category::poison && c.next_action == next_action::retry)
        return error{errc::invariant_violation, "a Poison failure is never retried automatically; "
                                                "choose DeadLetter or Escalate"};
    if (c.next_action == next_action::retry && !c.next_attempt_at)
        return error{errc::invalid_argument, "a failure to Retry needs nextAttemptAt"};
    return {};
}

}  // namespace

result<integration_failure> integration_failure::record(request_context const& ctx, time_point now,
                                                        failure_source source, std::string source_id,
                                                        std::string provider_id, classification const& c) {
    if (auto r = check(c); !r) return r.error();
    if (auto r = detail::require_text(source_id, "source id", 64); !r) return r.error();
    failure_data d;
    d.failure_id = new_id(id_prefix::failure, now);
    d.source = source;
    switch (source) {
    case failure_source::run: d.run_id = source_id; break;
    case failure_source::delivery: d.delivery_id = source_id; break;
    case failure_source::health_probe: d.connection_id = source_id; break;
    case failure_source::credential_rotation:
    case failure_source::credential_refresh: d.credential_id = source_id; break;
    case failure_source::outbox_event: d.event_id = source_id; break;
    }
    d.provider_id = std::move(provider_id);
    d.category = c.category;
    d.error_code = c.error_code;
    d.message = c.message;
    d.attempt = 1;
    d.next_action = c.next_action;
    if (c.next_action == next_action::retry) d.next_attempt_at = truncate_ms(*c.next_attempt_at);
    d.failure_attempts.push_back({1, c.category, c.error_code, c.message, truncate_ms(now)});
    integration_failure f(new_metadata(ctx, now), std::move(d));
    f.raise(std::string(events::event_type::integration_failed),
            {{"failureId", f.d_.failure_id}, {"source", to_string(source)}, {"sourceId", source_id},
             {"providerId", f.d_.provider_id}, {"category", to_string(c.category)}, {"errorCode", c.error_code},
             {"nextAction", to_string(c.next_action)}});
    // "Escalation requires a recorded EscalationRecord": a failure that goes to a human from the
    // start (an Auth failure, an interrupted run) is escalated now, by whoever hit it, so that
    // IntegrationFailureEscalated reaches whoever is paged on it.
    if (c.next_action == next_action::escalate)
        if (auto r = f.escalate({utf8_excerpt(ctx.actor.empty() ? "integration" : ctx.actor, 128),
                                 utf8_excerpt(c.message.empty() ? c.error_code : c.message, 2000), now, std::nullopt});
            !r)
            return r.error();
    return f;
}

result<integration_failure> integration_failure::restore(metadata m, failure_data d) {
    if (!is_valid_id(d.failure_id, id_prefix::failure))
        return error{errc::invalid_argument, "failureId \"" + d.failure_id + "\" is not a failure id"};
    return integration_failure(std::move(m), std::move(d));
}

std::string const& integration_failure::source_id() const noexcept {
    static std::string const none;
    auto const& s = d_.run_id ? d_.run_id : d_.delivery_id ? d_.delivery_id : d_.connection_id ? d_.connection_id
                                                                                     : d_.credential_id ? d_.credential_id : d_.event_id;
    return s ? *s : none;
}

result<void> integration_failure::record_attempt(classification const& c, time_point now) {
    if (resolved()) return error{errc::invalid_state, "failure " + d_.failure_id + " is already resolved"};
    if (auto r = check(c); !r) return r;
    d_.attempt += 1;
    d_.category = c.category;
    d_.error_code = c.error_code;
    d_.message = c.message;
    d_.next_action = c.next_action;
    d_.next_attempt_at = c.next_action == next_action::retry ? std::optional(truncate_ms(*c.next_attempt_at)) : std::nullopt;
    d_.failure_attempts.push_back({d_.attempt, c.category, c.error_code, c.message, truncate_ms(now)});
    if (d_.failure_attempts.size() > max_attempt_history) d_.failure_attempts.erase(d_.failure_attempts.begin() + 1);
    return {};
}

result<void> integration_failure::resolve(source_outcome outcome, time_point now) {
    if (resolved()) return error{errc::invalid_state, "failure " + d_.failure_id + " is already resolved"};
    if (outcome != source_outcome::succeeded && outcome != source_outcome::dead_lettered)
        return error{errc::invariant_violation,
                     "failure " + d_.failure_id +
                         " can be resolved only when its source succeeded or was dead-lettered"};
    d_.resolved_at = truncate_ms(now);
    d_.next_attempt_at.reset();
    raise(std::string(events::event_type::failure_resolved),
          {{"failureId", d_.failure_id}, {"source", to_string(d_.source)}, {"sourceId", source_id()},
           {"outcome", outcome == source_outcome::succeeded ? "Succeeded" : "DeadLettered"}});
    return {};
}

result<void> integration_failure::escalate(escalation_record record) {
    if (resolved()) return error{errc::invalid_state, "failure " + d_.failure_id + " is already resolved"};
    if (auto r = detail::require_text(record.escalated_by, "escalatedBy", 128); !r) return r;
    if (auto r = detail::require_text(record.reason, "reason", 2000); !r) return r;
    if (record.ticket_ref)
        if (auto r = detail::require_text(*record.ticket_ref, "ticketRef", 256); !r) return r;
    // Each escalation is kept, rendered and saved with the failure: a loop of escalations must not grow it for ever.
    if (d_.escalations.size() >= max_escalations)
        return error{errc::invalid_state, "failure " + d_.failure_id + " has been escalated " + std::to_string(max_escalations) +
                                              " times already; resolve it, or follow the earlier escalations"};
    record.escalated_at = truncate_ms(record.escalated_at);
    d_.next_action = next_action::escalate;
    d_.next_attempt_at.reset();
    raise(std::string(events::event_type::failure_escalated),
          {{"failureId", d_.failure_id}, {"sourceId", source_id()}, {"escalatedBy", record.escalated_by},
           {"reason", record.reason}});
    d_.escalations.push_back(std::move(record));
    return {};
}

}  // namespace integration::failures
