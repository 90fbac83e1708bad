#include <integration/services/registry.hpp>

#include <integration/ports/transport.hpp>

#include "../detail/validate.hpp"

namespace integration::providers {

result<integration_provider> registry::register_provider(request_context const& ctx, provider_spec spec) {
    return storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<integration_provider> {
        auto p = integration_provider::register_new(ctx, clock_.now(), spec);
        if (!p) return p.error();
        // Paths are validated (they start with '/' and hold no control characters or spaces), so
        // an operation or health check reaches the host and port of the base URL it extends.
        if (auto r = detail::require_allowed_url(egress_, p->data().base_url, "baseUrl"); !r) return r.error();
        for (auto const& e : p->data().environments)
            if (auto r = detail::require_allowed_url(egress_, e.base_url, "environments[].baseUrl"); !r)
                return r.error();
        if (auto existing = uow.providers().find_by_key(p->data().key, p->data().scope); existing)
            return error{errc::already_exists, "a provider with key \"" + p->data().key + "\" already exists in this " +
                                                   std::string(to_string(p->data().scope)) + " scope"};
        if (auto s = uow.providers().save(*p); !s) return s.error();
        return std::move(*p);
    });
}

result<external_api_client> registry::register_client(request_context const& ctx, std::string const& provider_id,
                                                      api_client_spec spec) {
    for (auto const& op : spec.operations)
        if (op.idempotency_header)
            if (auto ok = http::check_header_field(*op.idempotency_header, ""); !ok)
                return error{errc::invalid_argument, "operations[].idempotencyHeader: " + ok.error().detail()};
    return storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<external_api_client> {
        auto p = uow.providers().find(provider_id);
        if (!p) return p.error();
        auto c = external_api_client::register_new(ctx, clock_.now(), *p, spec);
        if (!c) return c.error();
        // A provider stored before this check, or under a wider policy, may point somewhere refused.
        if (auto r = detail::require_allowed_url(egress_, p->data().base_url, "the provider's baseUrl"); !r)
            return r.error();
        if (auto s = uow.api_clients().save(*c); !s) return s.error();
        return std::move(*c);
    });
}

result<external_api_client> registry::activate_client(request_context const& ctx, std::string const& api_client_id) {
    return storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<external_api_client> {
        auto c = uow.api_clients().find(api_client_id);
        if (!c) return c.error();
        auto p = uow.providers().find(c->data().provider_id);
        if (!p) return p.error();
        if (p->status() == provider_status::deprecated)
            return error{errc::invariant_violation, "provider " + p->id() + " is Deprecated; its clients cannot be activated"};
        if (auto a = c->activate(); !a) return a.error();
        if (auto s = uow.api_clients().save(*c); !s) return s.error();
        return std::move(*c);
    });
}

namespace {

/** A global provider is every tenant's: only an admin changes it, whatever its state (a tenant
 *  was told 200 for activating an Active one, 409 for one with no client, 403 otherwise). */
result<void> may_change(request_context const& ctx, integration_provider const& p) {
    if (p.is_global() && !ctx.admin)
        return error{errc::forbidden, "provider " + p.id() + " is global; only an admin key may change it"};
    return {};
}

}  // namespace

result<integration_provider> registry::activate_provider(request_context const& ctx, std::string const& provider_id) {
    return storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<integration_provider> {
        auto p = uow.providers().find(provider_id);
        if (!p) return p.error();
        if (auto r = may_change(ctx, *p); !r) return r.error();
        if (p->status() == provider_status::deprecated)
            return error{errc::invalid_state, "provider " + provider_id + " is Deprecated and cannot be activated"};
        // Its Registered clients first, in the same commit: a refusal changes nothing.
        std::vector<external_api_client> registered;
        std::size_t active = 0;
        storage::page_request page{.limit = 500};
        do {
            auto list = uow.api_clients().list_by_provider(provider_id, page);
            if (!list) return list.error();
            for (auto& c : list->items) {
                if (c.status() == client_status::registered) registered.push_back(std::move(c));
                else if (c.status() == client_status::active) ++active;
            }
            page.cursor = list->next_cursor;
        } while (!page.cursor.empty());
        for (auto& c : registered) {
            if (auto a = c.activate(); !a) return a.error();
            if (auto s = uow.api_clients().save(c); !s) return s.error();
        }
        if (p->status() == provider_status::active) return std::move(*p);  // its clients registered since
        if (auto a = p->activate(active + registered.size()); !a) return a.error();
        if (auto s = uow.providers().save(*p); !s) return s.error();
        return std::move(*p);
    });
}

result<external_api_client> registry::deprecate_client(request_context const& ctx, std::string const& api_client_id) {
    return storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<external_api_client> {
        auto c = uow.api_clients().find(api_client_id);
        if (!c) return c.error();
        bool was_active = c->status() == client_status::active;
        if (auto d = c->deprecate(); !d) return d.error();
        if (auto s = uow.api_clients().save(*c); !s) return s.error();
        if (was_active) {
            auto n = uow.api_clients().count_active(c->data().provider_id);
            if (!n) return n.error();
            if (*n == 0) {
                auto p = uow.providers().find(c->data().provider_id);
                if (!p) return p.error();
                if (p->status() != provider_status::deprecated) {
                    if (auto d = p->deprecate("last Active API client " + c->id() + " was deprecated"); !d) return d.error();
                    if (auto s = uow.providers().save(*p); !s) return s.error();
                }
            }
        }
        return std::move(*c);
    });
}

result<integration_provider> registry::deprecate_provider(request_context const& ctx, std::string const& provider_id,
                                                          std::string reason) {
    if (auto r = detail::require_text(reason, "reason", 2000); !r) return r.error();  // a caller's words, kept and sent in events
    return storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<integration_provider> {
        auto p = uow.providers().find(provider_id);
        if (!p) return p.error();
        if (auto r = may_change(ctx, *p); !r) return r.error();
        if (auto d = p->deprecate(reason); !d) return d.error();
        if (auto s = uow.providers().save(*p); !s) return s.error();
        return std::move(*p);
    });
}

}  // namespace integration::providers
