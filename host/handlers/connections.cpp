#include "handlers/handlers.hpp"

#include <integration/services/inbound_gateway.hpp>

namespace integration::host {
namespace {

result<secret_bytes> inbound_secret(boost::json::object const& body) {
    auto const* secret = body.if_contains("secret");
    if (!secret || !secret->is_string() || secret->get_string().empty())
        return error{errc::invalid_argument, "secret is required (a non-empty string: the vendor's signing secret)"};
    return secret_bytes(std::string_view(secret->get_string()));
}

boost::json::object endpoint_json(webhooks::inbound_endpoint const& e, serve_config const& config) {
    boost::json::object o;
    o["connectionId"] = e.connection_id;
    o["scheme"] = webhooks::to_string(e.scheme);
    o["inboundUrl"] = public_base_url(config) + "/webhooks/inbound/" + e.connection_id;
    return o;
}

}  // namespace

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
        auto spec = value_from_json<connections::connection_spec>(*body, unknown_members::refuse);
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
    }, {.query = {"projectId", "providerId", "status", "limit", "cursor"}});

    r.add("GET", "/integrations/connections/{connectionId}", [&s](call& c) -> result<reply> {
        auto found = storage::read_for(*s.store, c.ctx, [&](storage::unit_of_work& uow) {
            return uow.connections().find(c.params["connectionId"]);
        });
        if (!found) return found.error();
        return json_reply(200, render(*found));
    });

    r.add("POST", "/integrations/connections/{connectionId}/test", [&s](call& c) -> result<reply> {
        if (auto none = c.no_fields(); !none) return none.error();
        auto tested = s.prober->test(c.ctx, c.params["connectionId"]);
        if (!tested) return tested.error();
        return json_reply(200, render(*tested));
    }, {.calls_vendors = true});

    r.add("POST", "/integrations/connections/{connectionId}/retire", [&s](call& c) -> result<reply> {
        auto body = c.optional_json({"reason"});
        if (!body) return body.error();
        auto reason = optional_string(*body, "reason");
        if (!reason) return reason.error();
        auto retired = s.connections->retire(c.ctx, c.params["connectionId"], reason->value_or("retired via the API"));
        if (!retired) return retired.error();
        return json_reply(200, render(*retired));
    });

    // The scheme goes to the store, the secret to the secret store only; the answer names the
    // URL to give the vendor.
    r.add("POST", "/integrations/connections/{connectionId}/inbound-webhook", [&s](call& c) -> result<reply> {
        auto body = c.json({"scheme", "secret"});
        if (!body) return body.error();
        auto scheme_name = optional_string(*body, "scheme");
        if (!scheme_name) return scheme_name.error();
        auto scheme = webhooks::parse_inbound_scheme(scheme_name->value_or(""));
        if (!scheme) return error{errc::invalid_argument, "scheme must be one of standard, github, stripe, slack, twilio, shopify"};
        auto secret = inbound_secret(*body);
        if (!secret) return secret.error();
        auto registered = s.inbound->register_endpoint(c.ctx, c.params["connectionId"], *scheme, std::move(*secret));
        if (!registered) return registered.error();
        return json_reply(200, endpoint_json(*registered, s.config));
    });

    // The new secret verifies at once; the previous one keeps verifying for the overlap, so the
    // vendor can switch at any moment within it.
    r.add("POST", "/integrations/connections/{connectionId}/inbound-webhook/rotate-secret", [&s](call& c) -> result<reply> {
        auto body = c.json({"secret"});
        if (!body) return body.error();
        auto secret = inbound_secret(*body);
        if (!secret) return secret.error();
        auto rotated = s.inbound->rotate_secret(c.ctx, c.params["connectionId"], std::move(*secret));
        if (!rotated) return rotated.error();
        return json_reply(200, endpoint_json(*rotated, s.config));
    });
}

}  // namespace integration::host
