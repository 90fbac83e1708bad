#include <integration/core/id.hpp>
#include <integration/domain/event.hpp>
#include <integration/domain/run.hpp>

#include "../detail/validate.hpp"

namespace integration::runs {

result<integration_run> integration_run::create(request_context const& ctx, time_point now,
                                                connections::integration_connection const& connection,
                                                std::string operation, std::optional<std::string> idempotency_key) {
    if (connection.status() == connections::connection_status::retired)
        return error{errc::invalid_state, "connection " + connection.id() + " is Retired and executes no runs"};
    if (auto r = detail::require_text(operation, "operation", 128); !r) return r.error();
    if (idempotency_key)
        if (auto r = detail::require_text(*idempotency_key, "Idempotency-Key", 255); !r) return r.error();
    run_data d;
    d.run_id = new_id(id_prefix::run, now);
    d.project_id = connection.data().project_id;
    d.connection_id = connection.id();
    d.provider_id = connection.data().provider_id;
    d.operation = std::move(operation);
    d.idempotency_key = std::move(idempotency_key);
    return integration_run(new_metadata(ctx, now), std::move(d));
}

result<integration_run> integration_run::restore(metadata m, run_data d) {
    if (!is_valid_id(d.run_id, id_prefix::run))
        return error{errc::invalid_argument, "runId \"" + d.run_id + "\" is not a run id"};
    return integration_run(std::move(m), std::move(d));
}

result<void> integration_run::start(connections::integration_connection const& connection, bool allow_degraded,
                                    time_point now) {
    if (d_.status != run_status::pending) return detail::bad_transition("run", "start", d_.status);
    if (connection.id() != d_.connection_id)
        return error{errc::invalid_argument, "run " + d_.run_id + " belongs to connection " + d_.connection_id};
    if (auto r = connection.ensure_can_execute(allow_degraded); !r) return r;
    d_.status = run_status::running;
    d_.started_at = truncate_ms(now);
    return {};
}

result<void> integration_run::record_attempt(run_attempt a) {
    if (d_.status != run_status::running) return detail::bad_transition("run", "record an attempt of", d_.status);
    if (a.attempt != d_.attempts + 1)
        return error{errc::invariant_violation, "attempt " + std::to_string(a.attempt) + " is out of order; run " +
                                                    d_.run_id + " expects attempt " + std::to_string(d_.attempts + 1)};
    if (a.latency_ms < 0) return error{errc::invalid_argument, "latencyMs must not be negative"};
    a.started_at = truncate_ms(a.started_at);
    d_.run_attempts.push_back(std::move(a));
    d_.attempts += 1;
    return {};
}

result<void> integration_run::set_request_ref(std::string ref) {
    if (d_.status == run_status::completed || d_.status == run_status::failed)
        return detail::bad_transition("run", "change the request of", d_.status);
    d_.request_ref = std::move(ref);
    return {};
}

void integration_run::finish(time_point now) {
    d_.completed_at = truncate_ms(now);
    d_.latency_ms = to_unix_ms(*d_.completed_at) - to_unix_ms(d_.started_at.value_or(*d_.completed_at));
}

result<void> integration_run::complete(time_point now, std::optional<std::string> external_ref,
                                       std::optional<std::string> response_ref) {
    if (d_.status != run_status::running) return detail::bad_transition("run", "complete", d_.status);
    if (d_.attempts == 0)
        return error{errc::invariant_violation, "run " + d_.run_id + " cannot complete without a recorded attempt"};
    d_.status = run_status::completed;
    d_.external_ref = std::move(external_ref);
    d_.response_ref = std::move(response_ref);
    finish(now);
    boost::json::object data{{"runId", d_.run_id},        {"connectionId", d_.connection_id},
                             {"providerId", d_.provider_id}, {"operation", d_.operation},
                             {"attempts", d_.attempts},     {"latencyMs", *d_.latency_ms}};
    if (d_.external_ref) data["externalRef"] = *d_.external_ref;
    raise(std::string(events::event_type::run_completed), std::move(data));
    return {};
}

result<void> integration_run::fail(time_point now, failures::classification const& c,
                                   std::optional<std::string> response_ref) {
    if (d_.status != run_status::running) return detail::bad_transition("run", "fail", d_.status);
    d_.status = run_status::failed;
    d_.response_ref = std::move(response_ref);
    finish(now);
    raise(std::string(events::event_type::integration_failed),
          {{"source", "Run"}, {"runId", d_.run_id}, {"connectionId", d_.connection_id},
           {"providerId", d_.provider_id}, {"operation", d_.operation}, {"category", to_string(c.category)},
           {"errorCode", c.error_code}, {"attempts", d_.attempts}});
    return {};
}

}  // namespace integration::runs
