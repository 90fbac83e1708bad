#include <integration/services/connection_service.hpp>

#include "../detail/validate.hpp"

namespace integration::connections {

result<integration_connection> connection_service::create(request_context const& ctx, std::string const& provider_id,
                                                          connection_spec spec) {
    return storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<integration_connection> {
        auto p = uow.providers().find(provider_id);
        if (!p) return p.error();
        auto c = integration_connection::create(ctx, clock_.now(), *p, spec);
        if (!c) return c.error();
        for (auto const& e : c->data().endpoints)
            if (auto r = detail::require_allowed_url(egress_, e.base_url, "endpoints[].baseUrl"); !r) return r.error();
        if (auto r = detail::require_allowed_url(egress_, c->base_url(p->data()),
                                                  c->data().environment ? "the environment's baseUrl" : "the provider's baseUrl");
            !r)
            return r.error();
        if (auto const& id = c->data().credential_id) {
            auto cred = uow.credentials().find(*id);
            if (!cred) return cred.error();
            if (auto ok = cred->ensure_usable_by(provider_id, c->id()); !ok) return ok.error();
        }
        if (auto s = uow.connections().save(*c); !s) return s.error();
        return std::move(*c);
    });
}

result<integration_connection> connection_service::record_health(request_context const& ctx,
                                                                 std::string const& connection_id,
                                                                 health_probe_result const& probe) {
    return storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<integration_connection> {
        auto c = uow.connections().find(connection_id);
        if (!c) return c.error();
        if (auto h = c->record_health(probe, clock_.now()); !h) return h.error();
        if (auto s = uow.connections().save(*c); !s) return s.error();
        return std::move(*c);
    });
}

result<integration_connection> connection_service::retire(request_context const& ctx, std::string const& connection_id,
                                                          std::string reason) {
    if (auto r = detail::require_text(reason, "reason", 2000); !r) return r.error();  // a caller's words, kept and sent in events
    auto retired = storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<integration_connection> {
        auto c = uow.connections().find(connection_id);
        if (!c) return c.error();
        if (auto h = c->retire(reason); !h) return h.error();
        if (auto s = uow.connections().save(*c); !s) return s.error();
        // A Retired connection is probed no more: its open health failure ends with it.
        storage::page_request page{.limit = 100};
        do {
            auto open = uow.failures().list({.unresolved_only = true, .connection_id = connection_id}, page);
            if (!open) return open.error();
            for (auto& f : open->items) {
                if (f.data().source != failures::failure_source::health_probe) continue;
                if (auto r = f.resolve(failures::source_outcome::dead_lettered, clock_.now()); !r) return r.error();
                if (auto r = uow.failures().save(f); !r) return r.error();
            }
            page.cursor = open->next_cursor;
        } while (!page.cursor.empty());
        return std::move(*c);
    });
    if (retired && retired_) retired_(connection_id);
    return retired;
}

}  // namespace integration::connections
