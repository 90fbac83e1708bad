#include "handlers/handlers.hpp"

#include <algorithm>

namespace integration::host {

void add_connection_routes(router& r, services& s) {
    // Created Pending, then probed at once: Active only with a resolvable credential and a passing
    // health check, as the contract says. A probe that cannot run leaves it Pending.
    r.add("POST", "/integrations/connections", [&s](call& c) -> result<reply> {
        auto body = c.json();
        if (!body) return body.error();
        auto provider = optional_string(*body, "providerId");
        if (!provider) return provider.error();
        if (!*provider) return error{errc::invalid_argument, "providerId is required"};
        body->erase("providerId");
        auto spec = value_from_json<connections::connection_spec>(*body);
        if (!spec) return spec.error();
        auto created = s.connections->create(c.ctx, **provider, std::move(*spec));
        if (!created) return created.error();
        auto tested = s.prober->test(c.ctx, created->id());
        return json_reply(201, render(tested ? *tested : *created));
    }, {.calls_vendors = true});

    r.add("GET", "/integrations/connections", [&s](call& c) -> result<reply> {
        auto page = c.page();
        if (!page) return page.error();
        storage::connection_query q{c.query_param("projectId"), c.query_param("providerId"), std::nullopt};
        if (auto st = c.query_param("status")) {
            auto parsed = parse_enum<connections::connection_status>(*st, "status");
            if (!parsed) return parsed.error();
            q.status = *parsed;
        }
        auto list = storage::read_for(*s.store, c.ctx, [&](storage::unit_of_work& uow) { return uow.connections().list(q, *page); });
        if (!list) return list.error();
        return json_reply(200, page_json(*list, render<connections::integration_connection>));
    });

    r.add("GET", "/integrations/connections/{connectionId}", [&s](call& c) -> result<reply> {
        auto found = storage::read_for(*s.store, c.ctx, [&](storage::unit_of_work& uow) {
            return uow.connections().find(c.params["connectionId"]);
        });
        if (!found) return found.error();
        return json_reply(200, render(*found));
    });

    r.add("POST", "/integrations/connections/{connectionId}/test", [&s](call& c) -> result<reply> {
        auto tested = s.prober->test(c.ctx, c.params["connectionId"]);
        if (!tested) return tested.error();
        return json_reply(200, render(*tested));
    }, {.calls_vendors = true});

    r.add("POST", "/integrations/connections/{connectionId}/retire", [&s](call& c) -> result<reply> {
        auto body = c.optional_json();
        if (!body) return body.error();
        auto reason = optional_string(*body, "reason");
        if (!reason) return reason.error();
        auto retired = s.connections->retire(c.ctx, c.params["connectionId"], reason->value_or("retired via the API"));
        if (!retired) return retired.error();
        return json_reply(200, render(*retired));
    });

    // The scheme and the secret's name go to the store; the secret itself to the secret store. Verifying inbound deliveries comes with the inbound-webhooks milestone.
    r.add("POST", "/integrations/connections/{connectionId}/inbound-webhook", [&s](call& c) -> result<reply> {
        auto body = c.json();
        if (!body) return body.error();
        auto scheme = optional_string(*body, "scheme");
        if (!scheme) return scheme.error();
        static constexpr std::string_view schemes[] = {"standard", "github", "stripe", "slack", "twilio", "shopify"};
        if (!*scheme || std::find(std::begin(schemes), std::end(schemes), **scheme) == std::end(schemes))
            return error{errc::invalid_argument, "scheme must be one of standard, github, stripe, slack, twilio, shopify"};
        auto const* secret = body->if_contains("secret");
        if (!secret || !secret->is_string() || secret->get_string().empty())
            return error{errc::invalid_argument, "secret is required"};
        auto const& id = c.params["connectionId"];
        auto conn = storage::read_for(*s.store, c.ctx, [&](storage::unit_of_work& uow) { return uow.connections().find(id); });
        if (!conn) return conn.error();
        if (conn->status() == connections::connection_status::retired)
            return error{errc::invalid_state, "connection " + id + " is Retired"};
        auto name = "inbound-webhook." + id;
        auto ref = s.secrets->put(c.ctx.tenant_id, name, secret_bytes(std::string_view(secret->get_string())));
        if (!ref) return ref.error();
        auto stored = s.store->transact(c.ctx, [&](storage::unit_of_work& uow) {
            return uow.inbound_webhooks().save({id, std::string(**scheme), name});
        });
        if (!stored) return stored.error();
        boost::json::object o;
        o["connectionId"] = id;
        o["scheme"] = **scheme;
        o["inboundUrl"] = public_base_url(s.config) + "/webhooks/inbound/" + id;
        return json_reply(200, o);
    });
}

}  // namespace integration::host
