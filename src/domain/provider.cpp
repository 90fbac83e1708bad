#include <integration/core/id.hpp>
#include <integration/domain/event.hpp>
#include <integration/domain/provider.hpp>

#include "../detail/validate.hpp"

#include <algorithm>

namespace integration::providers {

using events::event_type::provider_deprecated;
using events::event_type::provider_registered;

result<void> validate(provider_spec const& s) {
    if (s.key.empty() || s.key.size() > 64 || !((s.key[0] >= 'a' && s.key[0] <= 'z') || (s.key[0] >= '0' && s.key[0] <= '9')) ||
        s.key.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789._-") != std::string::npos)
        return error{errc::invalid_argument,
                     "key must be 1-64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit"};
    if (auto r = detail::require_text(s.display_name, "displayName"); !r) return r;
    if (auto r = detail::require_base_url(s.base_url, "baseUrl"); !r) return r;
    for (auto const& c : s.capabilities)
        if (auto r = detail::require_text(c, "capabilities[]", 128); !r) return r;
    for (std::size_t i = 0; i < s.capabilities.size(); ++i)
        if (std::find(s.capabilities.begin(), s.capabilities.begin() + static_cast<std::ptrdiff_t>(i),
                      s.capabilities[i]) != s.capabilities.begin() + static_cast<std::ptrdiff_t>(i))
            return error{errc::invalid_argument, "capabilities lists \"" + s.capabilities[i] + "\" twice"};
    for (auto const& e : s.environments) {
        if (auto r = detail::require_text(e.name, "environments[].name", 64); !r) return r;
        if (auto r = detail::require_base_url(e.base_url, "environments[].baseUrl"); !r) return r;
    }
    if (s.rate_limit_profile)
        if (auto r = s.rate_limit_profile->validate(); !r) return r;
    if (s.health_check) {
        auto const& h = *s.health_check;
        if (h.method != "GET" && h.method != "HEAD" && h.method != "POST")
            return error{errc::invalid_argument, "healthCheck.method must be GET, HEAD or POST"};
        if (auto r = detail::require_path(h.path, "healthCheck.path"); !r) return r;
        if (detail::has_dot_segment(h.path))
            return error{errc::invalid_argument, "healthCheck.path must not have a '.' or '..' segment"};
        if (h.expect_status < 100 || h.expect_status > 599)
            return error{errc::invalid_argument, "healthCheck.expectStatus must be an HTTP status (100-599)"};
    }
    return {};
}

result<integration_provider> integration_provider::register_new(request_context const& ctx, time_point now,
                                                                provider_spec spec) {
    if (auto r = validate(spec); !r) return r.error();
    bool global = spec.scope == provider_scope::global;
    if (global && !ctx.admin)
        return error{errc::forbidden, "registering a global provider needs an admin key"};
    provider_data d;
    static_cast<provider_spec&>(d) = std::move(spec);
    d.provider_id = new_id(id_prefix::provider, now);
    d.status = provider_status::registered;
    integration_provider p(new_metadata(ctx, now, global), std::move(d));
    p.raise(std::string(provider_registered),
            {{"providerId", p.d_.provider_id}, {"key", p.d_.key}, {"category", to_string(p.d_.category)},
             {"scope", to_string(p.d_.scope)}});
    return p;
}

result<integration_provider> integration_provider::restore(metadata m, provider_data d) {
    if (!is_valid_id(d.provider_id, id_prefix::provider))
        return error{errc::invalid_argument, "providerId \"" + d.provider_id + "\" is not a provider id"};
    return integration_provider(std::move(m), std::move(d));
}

bool integration_provider::supports(std::string_view capability) const noexcept {
    return std::find(d_.capabilities.begin(), d_.capabilities.end(), capability) != d_.capabilities.end();
}

result<void> integration_provider::activate(std::size_t active_clients) {
    if (d_.status != provider_status::registered) return detail::bad_transition("provider", "activate", d_.status);
    if (active_clients == 0)
        return error{errc::invariant_violation,
                     "provider " + d_.provider_id + " has no Active API client; register and activate one first"};
    d_.status = provider_status::active;
    return {};
}

result<void> integration_provider::deprecate(std::string reason) {
    if (d_.status == provider_status::deprecated) return detail::bad_transition("provider", "deprecate", d_.status);
    d_.status = provider_status::deprecated;
    raise(std::string(provider_deprecated), {{"providerId", d_.provider_id}, {"key", d_.key}, {"reason", reason}});
    return {};
}

result<void> integration_provider::ensure_accepts_connections() const {
    if (d_.status != provider_status::active)
        return error{errc::invariant_violation, "provider " + d_.provider_id + " is " +
                                                    std::string(to_string(d_.status)) +
                                                    "; new connections need an Active provider"};
    return {};
}

}  // namespace integration::providers
