#include <integration/core/id.hpp>
#include <integration/domain/event.hpp>
#include <integration/domain/api_client.hpp>

#include "../detail/validate.hpp"

#include <algorithm>

namespace integration::providers {
namespace {

bool contains(std::vector<std::string> const& v, std::string_view s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

result<void> validate(api_client_spec const& s, integration_provider const& provider) {
    if (auto r = detail::require_text(s.assembly_name, "assemblyName", 200); !r) return r;
    if (s.assembly_name.find_first_of(" /\\") != std::string::npos)
        return error{errc::invalid_argument, "assemblyName must not contain spaces or slashes"};
    if (auto v = semantic_version::parse(s.version); !v) return v.error();
    for (auto const& c : s.capabilities)
        if (!provider.supports(c))
            return error{errc::invariant_violation, "capability \"" + c + "\" is not declared by provider " +
                                                        provider.id() + "; a client may only declare its provider's capabilities"};
    for (auto const& op : s.operations) {
        if (!contains(s.capabilities, op.operation))
            return error{errc::invalid_argument,
                         "operation \"" + op.operation + "\" must be one of the client's capabilities"};
        if (op.method != "GET" && op.method != "POST" && op.method != "PUT" && op.method != "PATCH" &&
            op.method != "DELETE")
            return error{errc::invalid_argument, "operations[].method must be GET, POST, PUT, PATCH or DELETE"};
        if (auto r = detail::require_path(op.path, "operations[].path"); !r) return r;
        if (op.operation_class)
            if (auto r = detail::require_text(*op.operation_class, "operations[].operationClass", 64); !r) return r;
        // Whether it is a header a request may carry is the registry's check (HTTP is not the domain's).
        if (op.idempotency_header)
            if (auto r = detail::require_text(*op.idempotency_header, "operations[].idempotencyHeader", 64); !r) return r;
        // Every `{name}` closed and named, none nested: a template a run could never fill (an
        // unclosed brace asks for a parameter no input can give) is refused here, not at each run.
        for (std::size_t open = op.path.find_first_of("{}"); open != std::string::npos; open = op.path.find_first_of("{}", open + 1)) {
            auto close = op.path[open] == '{' ? op.path.find_first_of("{}", open + 1) : std::string::npos;
            if (close == std::string::npos || op.path[close] != '}' || close == open + 1)
                return error{errc::invalid_argument, "operations[].path \"" + op.path +
                                                         "\" has a '{' without its '}', a '}' without its '{', or an empty "
                                                         "'{}': a path parameter is written {name}"};
            open = close;
        }
        if (detail::has_dot_segment(op.path))
            return error{errc::invalid_argument,
                         "operations[].path \"" + op.path +
                             "\" has a '.' or '..' segment (also as %2e, or split by \\, %2f or "
                             "%5c); an operation must stay within its own path"};
    }
    if (s.rate_limit_profile)
        if (auto r = s.rate_limit_profile->validate(); !r) return r;
    return {};
}

}  // namespace

result<external_api_client> external_api_client::register_new(request_context const& ctx, time_point now,
                                                               integration_provider const& provider,
                                                               api_client_spec spec) {
    if (provider.status() == provider_status::deprecated)
        return error{errc::invariant_violation,
                     "provider " + provider.id() + " is Deprecated and accepts no new API clients"};
    if (auto r = validate(spec, provider); !r) return r.error();
    if (provider.is_global() && !ctx.admin)
        return error{errc::forbidden, "registering a client of a global provider needs an admin key"};
    api_client_data d;
    static_cast<api_client_spec&>(d) = std::move(spec);
    d.api_client_id = new_id(id_prefix::api_client, now);
    d.provider_id = provider.id();
    d.versions.push_back({d.version, truncate_ms(now)});
    external_api_client c(new_metadata(ctx, now, provider.is_global()), std::move(d));
    c.raise(std::string(events::event_type::api_client_registered),
            {{"apiClientId", c.d_.api_client_id}, {"providerId", c.d_.provider_id},
             {"assemblyName", c.d_.assembly_name}, {"version", c.d_.version}});
    return c;
}

result<external_api_client> external_api_client::restore(metadata m, api_client_data d) {
    if (!is_valid_id(d.api_client_id, id_prefix::api_client))
        return error{errc::invalid_argument, "apiClientId \"" + d.api_client_id + "\" is not a client id"};
    return external_api_client(std::move(m), std::move(d));
}

client_operation const* external_api_client::find_operation(std::string_view operation) const noexcept {
    for (auto const& op : d_.operations)
        if (op.operation == operation) return &op;
    return nullptr;
}

result<void> external_api_client::activate() {
    if (d_.status != client_status::registered) return detail::bad_transition("API client", "activate", d_.status);
    d_.status = client_status::active;
    return {};
}

result<void> external_api_client::deprecate() {
    if (d_.status == client_status::deprecated) return detail::bad_transition("API client", "deprecate", d_.status);
    d_.status = client_status::deprecated;
    raise(std::string(events::event_type::api_client_deprecated),
          {{"apiClientId", d_.api_client_id}, {"providerId", d_.provider_id}, {"assemblyName", d_.assembly_name},
           {"version", d_.version}});
    return {};
}

result<void> external_api_client::publish_version(std::string const& version, time_point now) {
    if (d_.status == client_status::deprecated)
        return detail::bad_transition("API client", "publish a version of", d_.status);
    auto next = semantic_version::parse(version);
    if (!next) return next.error();
    auto current = semantic_version::parse(d_.version);
    if (current && !(*current < *next))
        return error{errc::invalid_argument,
                     "version " + version + " must be greater than the current version " + d_.version};
    d_.version = next->to_string();
    d_.versions.push_back({d_.version, truncate_ms(now)});
    return {};
}

}  // namespace integration::providers
