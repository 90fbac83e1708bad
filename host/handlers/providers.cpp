#include "handlers/handlers.hpp"

#include "problem.hpp"

namespace integration::host {

result<std::optional<std::string>> optional_string(boost::json::object const& o, std::string_view name) {
    auto const* v = o.if_contains(name);
    if (!v || v->is_null()) return std::optional<std::string>{};
    if (!v->is_string()) return error{errc::invalid_argument, std::string(name) + " must be a string"};
    return std::optional<std::string>(std::string(v->get_string()));
}

void add_provider_routes(router& r, services& s) {
    r.add("POST", "/integrations/providers", [&s](call& c) -> result<reply> {
        auto body = c.json();
        if (!body) return body.error();
        auto spec = value_from_json<providers::provider_spec>(*body, unknown_members::refuse);
        if (!spec) return spec.error();
        auto p = s.registry->register_provider(c.ctx, std::move(*spec));
        if (!p) return p.error();
        return json_reply(201, render(*p));
    });

    r.add("GET", "/integrations/providers", [&s](call& c) -> result<reply> {
        auto page = c.page();
        if (!page) return page.error();
        auto list = storage::read_for(*s.store, c.ctx, [&](storage::unit_of_work& uow) { return uow.providers().list(*page); });
        if (!list) return list.error();
        return json_reply(200, page_json(*list, render<providers::integration_provider>));
    }, {.query = {"limit", "cursor"}});

    r.add("GET", "/integrations/providers/{providerId}", [&s](call& c) -> result<reply> {
        auto p = storage::read_for(*s.store, c.ctx, [&](storage::unit_of_work& uow) {
            return uow.providers().find(c.params["providerId"]);
        });
        if (!p) return p.error();
        return json_reply(200, render(*p));
    });

    r.add("POST", "/integrations/providers/{providerId}/clients", [&s](call& c) -> result<reply> {
        auto body = c.json();
        if (!body) return body.error();
        auto spec = value_from_json<providers::api_client_spec>(*body, unknown_members::refuse);
        if (!spec) return spec.error();
        auto client = s.registry->register_client(c.ctx, c.params["providerId"], std::move(*spec));
        if (!client) return client.error();
        return json_reply(201, render(*client));
    });

    r.add("GET", "/integrations/providers/{providerId}/clients", [&s](call& c) -> result<reply> {
        auto page = c.page();
        if (!page) return page.error();
        auto list = storage::read_for(*s.store, c.ctx, [&](storage::unit_of_work& uow)
                                                           -> result<storage::page<providers::external_api_client>> {
            auto p = uow.providers().find(c.params["providerId"]);
            if (!p) return p.error();
            return uow.api_clients().list_by_provider(p->id(), *page);
        });
        if (!list) return list.error();
        return json_reply(200, page_json(*list, render<providers::external_api_client>));
    }, {.query = {"limit", "cursor"}});

    // Activating a provider activates its Registered clients with it: the contract's 409 is for a
    // provider with no client at all.
    r.add("POST", "/integrations/providers/{providerId}/activate", [&s](call& c) -> result<reply> {
        if (auto none = c.no_fields(); !none) return none.error();
        auto p = s.registry->activate_provider(c.ctx, c.params["providerId"]);
        if (!p) return p.error();
        return json_reply(200, render(*p));
    });

    r.add("POST", "/integrations/providers/{providerId}/deprecate", [&s](call& c) -> result<reply> {
        auto body = c.optional_json({"reason"});
        if (!body) return body.error();
        auto reason = optional_string(*body, "reason");
        if (!reason) return reason.error();
        auto p = s.registry->deprecate_provider(c.ctx, c.params["providerId"], reason->value_or("deprecated via the API"));
        if (!p) return p.error();
        return json_reply(200, render(*p));
    });
}

}  // namespace integration::host
