#include <integration/connections/connection_service.hpp>

namespace integration::connections {

result<integration_connection> connection_service::create(request_context const& ctx, std::string const& provider_id,
                                                          connection_spec spec) {
    std::optional<integration_connection> out;
    auto r = store_.transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
        auto p = uow.providers().find(provider_id);
        if (!p) return p.error();
        auto c = integration_connection::create(ctx, clock_.now(), *p, spec);
        if (!c) return c.error();
        if (c->data().credential_id)
            if (auto cred = uow.credentials().find(*c->data().credential_id); !cred) return cred.error();
        if (auto s = uow.connections().save(*c); !s) return s;
        out = std::move(*c);
        return {};
    });
    if (!r) return r.error();
    return std::move(*out);
}

result<integration_connection> connection_service::record_health(request_context const& ctx,
                                                                 std::string const& connection_id,
                                                                 health_probe_result const& probe) {
    std::optional<integration_connection> out;
    auto r = store_.transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
        auto c = uow.connections().find(connection_id);
        if (!c) return c.error();
        if (auto h = c->record_health(probe, clock_.now()); !h) return h;
        if (auto s = uow.connections().save(*c); !s) return s;
        out = std::move(*c);
        return {};
    });
    if (!r) return r.error();
    return std::move(*out);
}

result<integration_connection> connection_service::retire(request_context const& ctx, std::string const& connection_id,
                                                          std::string reason) {
    std::optional<integration_connection> out;
    auto r = store_.transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
        auto c = uow.connections().find(connection_id);
        if (!c) return c.error();
        if (auto h = c->retire(reason); !h) return h;
        if (auto s = uow.connections().save(*c); !s) return s;
        out = std::move(*c);
        return {};
    });
    if (!r) return r.error();
    return std::move(*out);
}

}  // namespace integration::connections
