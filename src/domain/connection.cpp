#include <integration/domain/connection.hpp>
#include <integration/core/id.hpp>
#include <integration/domain/event.hpp>

#include "../detail/secret_names.hpp"
#include "../detail/validate.hpp"

#include <algorithm>

namespace integration::connections {

result<integration_connection> integration_connection::create(request_context const& ctx, time_point now,
                                                              providers::integration_provider const& provider,
                                                              connection_spec spec) {
    if (auto r = provider.ensure_accepts_connections(); !r) return r.error();
    if (auto r = detail::require_text(spec.project_id, "projectId", 128); !r) return r.error();
    if (auto r = detail::require_text(spec.display_name, "displayName"); !r) return r.error();
    // Never Active without one (and nothing attaches one later): a connection made without it
    // would stay Pending for good.
    if (!spec.credential_id)
        return error{errc::invalid_argument, "credentialId is required: a connection is Active only with a resolvable credential"};
    if (!is_valid_id(*spec.credential_id, id_prefix::credential))
        return error{errc::invalid_argument, "credentialId \"" + *spec.credential_id + "\" is not a credential id"};
    for (auto const& e : spec.endpoints) {
        if (auto r = detail::require_text(e.operation_class, "endpoints[].operationClass", 64); !r) return r.error();
        if (auto r = detail::require_base_url(e.base_url, "endpoints[].baseUrl"); !r) return r.error();
    }
    for (auto const& s : spec.scopes) {
        if (auto r = detail::require_text(s, "scopes[]", 128); !r) return r.error();
        // A scope grants one of the provider's capabilities; any other name matches no operation
        // and would only refuse runs later.
        if (!provider.supports(s)) {
            std::string names;
            for (auto const& c : provider.data().capabilities) names += (names.empty() ? "" : ", ") + c;
            return error{errc::invalid_argument, "scopes[]: \"" + s + "\" is not a capability of provider " + provider.id() +
                                                     (names.empty() ? " (it declares none)" : " (" + names + ")")};
        }
    }
    // Stored, listed and sent in events as it is: a secret belongs in the credential.
    if (auto r = detail::refuse_secret_parameters(spec.configuration, "configuration"); !r) return r.error();
    if (spec.rate_limit_budget)
        if (auto r = spec.rate_limit_budget->validate(); !r) return r.error();
    if (spec.retry_policy)
        if (auto r = spec.retry_policy->validate(); !r) return r.error();
    if (spec.environment) {
        auto const& envs = provider.data().environments;
        if (std::none_of(envs.begin(), envs.end(), [&](auto const& e) { return e.name == *spec.environment; })) {
            std::string names;
            for (auto const& e : envs) names += (names.empty() ? "" : ", ") + e.name;
            return error{errc::invalid_argument, "environment \"" + *spec.environment + "\" is not an environment of provider " +
                                                     provider.id() + (names.empty() ? " (it declares none)" : " (" + names + ")")};
        }
    }
    connection_data d;
    static_cast<connection_spec&>(d) = std::move(spec);
    d.connection_id = new_id(id_prefix::connection, now);
    d.provider_id = provider.id();
    d.auth_mode = provider.data().auth_model;
    return integration_connection(new_metadata(ctx, now), std::move(d));
}

result<integration_connection> integration_connection::restore(metadata m, connection_data d) {
    if (!is_valid_id(d.connection_id, id_prefix::connection))
        return error{errc::invalid_argument, "connectionId \"" + d.connection_id + "\" is not a connection id"};
    return integration_connection(std::move(m), std::move(d));
}

result<void> integration_connection::record_health(health_probe_result const& probe, time_point now) {
    if (d_.status == connection_status::retired) return detail::bad_transition("connection", "probe", d_.status);
    if (probe.status == health_status::unknown)
        return error{errc::invalid_argument, "a health probe must report Healthy, Degraded or Unhealthy"};
    d_.health = probe.status;
    d_.health_reason = probe.detail;
    d_.last_checked_at = truncate_ms(now);
    if (probe.status == health_status::healthy) {
        if (d_.status == connection_status::degraded) d_.status = connection_status::active;
        return {};
    }
    if (d_.status == connection_status::active) d_.status = connection_status::degraded;
    raise(std::string(events::event_type::integration_failed),
          {{"source", "HealthProbe"}, {"connectionId", d_.connection_id}, {"providerId", d_.provider_id},
           {"health", to_string(probe.status)}, {"category", to_string(probe.category)}, {"message", probe.detail}});
    return {};
}

result<void> integration_connection::activate(bool credential_resolvable, time_point now) {
    if (d_.status != connection_status::pending) return detail::bad_transition("connection", "activate", d_.status);
    if (!d_.credential_id || !credential_resolvable)
        return error{errc::invariant_violation,
                     "connection " + d_.connection_id + " needs a resolvable credentialId before it can be Active"};
    if (d_.health != health_status::healthy)
        return error{errc::invariant_violation,
                     "connection " + d_.connection_id + " needs a passing initial health test before it can be Active"};
    d_.status = connection_status::active;
    d_.established_at = truncate_ms(now);
    raise(std::string(events::event_type::connection_established),
          {{"connectionId", d_.connection_id}, {"providerId", d_.provider_id}, {"projectId", d_.project_id},
           {"credentialId", *d_.credential_id}});
    return {};
}

result<void> integration_connection::attach_credential(std::string credential_id) {
    if (d_.status == connection_status::retired)
        return detail::bad_transition("connection", "attach a credential to", d_.status);
    if (!is_valid_id(credential_id, id_prefix::credential))
        return error{errc::invalid_argument, "credentialId \"" + credential_id + "\" is not a credential id"};
    d_.credential_id = std::move(credential_id);
    return {};
}

result<void> integration_connection::retire(std::string reason) {
    if (d_.status == connection_status::retired) return detail::bad_transition("connection", "retire", d_.status);
    d_.status = connection_status::retired;
    raise(std::string(events::event_type::connection_retired),
          {{"connectionId", d_.connection_id}, {"providerId", d_.provider_id}, {"reason", reason}});
    return {};
}

std::string integration_connection::base_url(providers::provider_data const& provider, std::string_view operation_class) const {
    auto endpoint = [&](std::string_view cls) -> std::string const* {
        for (auto const& e : d_.endpoints)
            if (e.operation_class == cls) return &e.base_url;
        return nullptr;
    };
    auto const* chosen = endpoint(operation_class);
    if (!chosen) chosen = endpoint("default");
    if (!chosen && d_.environment)
        for (auto const& e : provider.environments)
            if (e.name == *d_.environment) chosen = &e.base_url;
    std::string base = chosen ? *chosen : provider.base_url;
    while (!base.empty() && base.back() == '/') base.pop_back();
    return base;
}

result<void> integration_connection::ensure_scope_granted(std::string_view capability) const {
    if (d_.scopes.empty() || std::find(d_.scopes.begin(), d_.scopes.end(), capability) != d_.scopes.end()) return {};
    std::string granted;
    for (auto const& s : d_.scopes) granted += (granted.empty() ? "" : ", ") + s;
    return error{errc::scope_not_granted, "capability \"" + std::string(capability) + "\" is not granted to connection " +
                                              d_.connection_id + " (granted: " + granted +
                                              "); add it to the connection's scopes or use another connection"};
}

result<void> integration_connection::ensure_can_execute(bool allow_degraded) const {
    if (d_.status == connection_status::active && d_.health == health_status::healthy) return {};
    if (d_.status == connection_status::degraded && allow_degraded && d_.health != health_status::unhealthy) return {};
    std::string why = d_.status == connection_status::degraded && d_.health != health_status::unhealthy
                          ? "Degraded and this call does not permit degraded connections"
                          : std::string(to_string(d_.status)) + " (health " + std::string(to_string(d_.health)) + ")";
    return error{errc::invalid_state, "runs cannot execute on connection " + d_.connection_id + ": it is " + why};
}

bool integration_connection::waits_for_health(bool allow_degraded) const {
    return (d_.status == connection_status::active || d_.status == connection_status::degraded) &&
           !ensure_can_execute(allow_degraded);
}

}  // namespace integration::connections
