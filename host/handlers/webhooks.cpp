#include "handlers/handlers.hpp"

#include <integration/core/enum.hpp>
#include <integration/core/json.hpp>
#include <integration/core/time.hpp>

namespace integration::host {
namespace {

// A generated signing secret is in this answer only: the store keeps its reference, the secret
// store the secret, and no other route returns it.
boost::json::object with_secret(webhooks::webhook_subscription const& sub, secret_bytes const& secret) {
    auto o = render(sub).as_object();
    o["signingSecret"] = std::string(secret.view());
    return o;
}

boost::json::array id_array(std::vector<std::string> const& ids) {
    boost::json::array a;
    for (auto const& id : ids) a.push_back(boost::json::string(id));
    return a;
}

}  // namespace

void add_webhook_routes(router& r, services& s) {
    r.add("POST", "/webhooks/subscriptions", [&s](call& c) -> result<reply> {
        auto body = c.json();
        if (!body) return body.error();
        auto spec = value_from_json<webhooks::subscription_spec>(*body, unknown_members::refuse);
        if (!spec) return spec.error();
        auto subscribed = s.subscriptions->subscribe(c.ctx, std::move(*spec));
        if (!subscribed) return subscribed.error();
        if (!subscribed->signing_secret) return json_reply(201, render(subscribed->subscription));
        return json_reply(201, with_secret(subscribed->subscription, *subscribed->signing_secret));
    }, {.calls_vendors = true});  // resolves the endpoint's name: a tenant's DNS may be slow

    r.add("GET", "/webhooks/subscriptions", [&s](call& c) -> result<reply> {
        auto page = c.page();
        if (!page) return page.error();
        auto list = s.subscriptions->list(c.ctx, *page);
        if (!list) return list.error();
        return json_reply(200, page_json(*list, render<webhooks::webhook_subscription>));
    }, {.query = {"limit", "cursor"}});

    r.add("GET", "/webhooks/subscriptions/{subscriptionId}", [&s](call& c) -> result<reply> {
        auto found = s.subscriptions->find(c.ctx, c.params["subscriptionId"]);
        if (!found) return found.error();
        return json_reply(200, render(*found));
    });

    // Deactivates: the subscription and its deliveries stay readable; nothing more is sent to it.
    r.add("DELETE", "/webhooks/subscriptions/{subscriptionId}", [&s](call& c) -> result<reply> {
        auto body = c.optional_json({"reason"});
        if (!body) return body.error();
        auto reason = optional_string(*body, "reason");
        if (!reason) return reason.error();
        auto done = s.subscriptions->deactivate(c.ctx, c.params["subscriptionId"], reason->value_or("deleted via the API"));
        if (!done) return done.error();
        return json_reply(200, render(*done));
    });

    r.add("POST", "/webhooks/subscriptions/{subscriptionId}/reactivate", [&s](call& c) -> result<reply> {
        // Takes no body: one with members is refused, not dropped in silence.
        if (auto none = c.no_fields(); !none) return none.error();
        auto done = s.subscriptions->reactivate(c.ctx, c.params["subscriptionId"]);
        if (!done) return done.error();
        return json_reply(200, render(*done));
    });

    r.add("POST", "/webhooks/subscriptions/{subscriptionId}/rotate-secret", [&s](call& c) -> result<reply> {
        // Takes no body: one with members is refused, not dropped in silence.
        if (auto none = c.no_fields(); !none) return none.error();
        auto done = s.subscriptions->rotate_secret(c.ctx, c.params["subscriptionId"]);
        if (!done) return done.error();
        return json_reply(200, with_secret(done->subscription, done->signing_secret));
    });

    r.add("POST", "/webhooks/subscriptions/{subscriptionId}/recover", [&s](call& c) -> result<reply> {
        auto body = c.json({"since"});
        if (!body) return body.error();
        auto since_text = optional_string(*body, "since");
        if (!since_text) return since_text.error();
        if (!*since_text) return error{errc::invalid_argument, "since is required (an RFC 3339 time)"};
        auto since = parse_time(**since_text);
        if (!since)
            return error{errc::invalid_argument,
                         "since must be an RFC 3339 time such as 2026-01-01T00:00:00Z, got '" + **since_text + "'"};
        auto const& id = c.params["subscriptionId"];
        auto replayed = s.subscriptions->recover(c.ctx, id, *since);
        if (!replayed) return replayed.error();
        boost::json::object o;
        o["subscriptionId"] = id;
        o["deliveryIds"] = id_array(*replayed);
        return json_reply(202, o);
    });

    r.add("POST", "/webhooks/deliveries", [&s](call& c) -> result<reply> {
        auto body = c.json({"eventType", "payload", "idempotencyKey"});
        if (!body) return body.error();
        auto type = optional_string(*body, "eventType");
        if (!type) return type.error();
        if (!*type || (*type)->empty()) return error{errc::invalid_argument, "eventType is required"};
        auto const* payload = body->if_contains("payload");
        if (!payload) return error{errc::invalid_argument, "payload is required (any JSON value)"};
        auto key = optional_string(*body, "idempotencyKey");
        if (!key) return key.error();
        if (*key && (*key)->size() > 255)
            return error{errc::invalid_argument, "idempotencyKey must be at most 255 characters"};
        auto published = s.publisher->publish(c.ctx, **type, *payload, *key);
        if (!published) return published.error();
        boost::json::object o;
        o["eventId"] = published->event_id;
        o["deliveryIds"] = id_array(published->delivery_ids);
        o["repeated"] = published->repeated;
        return json_reply(202, o);
    });

    r.add("GET", "/webhooks/deliveries", [&s](call& c) -> result<reply> {
        auto page = c.page();
        if (!page) return page.error();
        storage::delivery_query q;
        if (auto d = c.query_param("direction")) {
            auto parsed = parse_enum<webhooks::delivery_direction>(*d, "direction");
            if (!parsed) return parsed.error();
            q.direction = *parsed;
        }
        if (auto st = c.query_param("status")) {
            auto parsed = parse_enum<webhooks::delivery_status>(*st, "status");
            if (!parsed) return parsed.error();
            q.status = *parsed;
        }
        q.subscription_id = c.query_param("subscriptionId");
        q.connection_id = c.query_param("connectionId");
        q.event_id = c.query_param("eventId");
        auto list = s.publisher->list(c.ctx, q, *page);
        if (!list) return list.error();
        return json_reply(200, page_json(*list, render<webhooks::webhook_delivery>));
    }, {.query = {"direction", "subscriptionId", "connectionId", "status", "eventId", "limit", "cursor"}});

    r.add("GET", "/webhooks/deliveries/{deliveryId}", [&s](call& c) -> result<reply> {
        auto found = s.publisher->find(c.ctx, c.params["deliveryId"]);
        if (!found) return found.error();
        return json_reply(200, render(*found));
    });

    // Due at once, with the same webhook-id; GET the delivery to see how it ends.
    r.add("POST", "/webhooks/deliveries/{deliveryId}/replay", [&s](call& c) -> result<reply> {
        // Takes no body: one with members is refused, not dropped in silence.
        if (auto none = c.no_fields(); !none) return none.error();
        auto replayed = s.publisher->replay(c.ctx, c.params["deliveryId"]);
        if (!replayed) return replayed.error();
        return json_reply(202, render(*replayed));
    });
}

}  // namespace integration::host
