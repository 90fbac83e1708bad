#include "handlers/handlers.hpp"


#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>

namespace integration::host {
namespace {

// The secret of a create/rotate body: `secret`, or `oauth2.clientSecret` (`oauth2_secret`: an
// OAuth2 credential's). Never echoed.
result<secret_bytes> take_secret(boost::json::object& body, bool required, bool oauth2_secret = true) {
    if (auto* v = body.if_contains("secret"); v && !v->is_null()) {
        if (!v->is_string()) return error{errc::invalid_argument, "secret must be a string"};
        return secret_bytes(std::string_view(v->get_string()));
    }
    if (auto* o = body.if_contains("oauth2"); oauth2_secret && o && o->is_object())
        if (auto* v = o->as_object().if_contains("clientSecret"); v && v->is_string())
            return secret_bytes(std::string_view(v->get_string()));
    if (required) return error{errc::invalid_argument, "secret is required (or oauth2.clientSecret)"};
    return secret_bytes{};
}

boost::json::object render_credential(credentials::integration_credential const& c) {
    auto o = aggregate_to_json(c);
    if (auto const* v = c.active_version()) o["activeVersion"] = v->version;
    return o;
}

}  // namespace

void add_credential_routes(router& r, services& s) {
    r.add("POST", "/integrations/credentials", [&s](call& c) -> result<reply> {
        auto body = c.json({"providerId", "connectionId", "authMode", "secret", "apiKey", "oauth2", "managedIdentity",
                            "rotationPolicy", "expiresAt"});
        if (!body) return body.error();
        credentials::new_credential spec;
        auto provider = optional_string(*body, "providerId");
        if (!provider) return provider.error();
        if (!*provider) return error{errc::invalid_argument, "providerId is required"};
        spec.provider_id = **provider;
        auto connection = optional_string(*body, "connectionId");
        if (!connection) return connection.error();
        spec.connection_id = *connection;
        auto const* mode = body->if_contains("authMode");
        if (!mode) return error{errc::invalid_argument, "authMode is required"};
        if (auto m = from_json(*mode, spec.auth_mode, "authMode"); !m) return m.error();
        auto secret = take_secret(*body, spec.auth_mode != auth_mode::managed_identity,
                                  spec.auth_mode == auth_mode::oauth2_client_credentials);
        if (!secret) return secret.error();
        spec.secret = std::move(*secret);
        if (auto* a = body->if_contains("apiKey"); a && !a->is_null()) {
            if (!a->is_object()) return error{errc::invalid_argument, "apiKey must be an object"};
            auto placement = value_from_json<credentials::api_key_placement>(*a, unknown_members::refuse);
            if (!placement) return error{errc::invalid_argument, "apiKey." + placement.error().detail()};
            spec.api_key = std::move(*placement);
        }
        if (auto* a = body->if_contains("oauth2"); a && !a->is_null()) {
            if (!a->is_object()) return error{errc::invalid_argument, "oauth2 must be an object"};
            auto o = a->as_object();
            o.erase("clientSecret");
            auto settings = value_from_json<credentials::oauth2_client_settings>(o, unknown_members::refuse);
            if (!settings) return error{errc::invalid_argument, "oauth2." + settings.error().detail()};
            spec.oauth2 = std::move(*settings);
        }
        if (auto* a = body->if_contains("managedIdentity"); a && !a->is_null()) {
            if (!a->is_object()) return error{errc::invalid_argument, "managedIdentity must be an object"};
            auto settings = value_from_json<credentials::managed_identity_settings>(*a, unknown_members::refuse);
            if (!settings) return error{errc::invalid_argument, "managedIdentity." + settings.error().detail()};
            spec.managed_identity = std::move(*settings);
        }
        if (auto* a = body->if_contains("rotationPolicy"); a && !a->is_null()) {
            if (!a->is_object()) return error{errc::invalid_argument, "rotationPolicy must be an object"};
            auto policy = value_from_json<credentials::rotation_policy>(*a, unknown_members::refuse);
            if (!policy) return error{errc::invalid_argument, "rotationPolicy." + policy.error().detail()};
            spec.rotation_policy = *policy;
        }
        if (auto* a = body->if_contains("expiresAt"); a && !a->is_null()) {
            time_point at{};
            if (auto p = from_json(*a, at, "expiresAt"); !p) return p.error();
            spec.expires_at = at;
        }
        auto created = s.credentials->create(c.ctx, std::move(spec));
        if (!created) return created.error();
        return json_reply(201, render_credential(*created));
    });

    r.add("GET", "/integrations/credentials", [&s](call& c) -> result<reply> {
        auto page = c.page();
        if (!page) return page.error();
        storage::credential_query q{c.query_param("providerId"), c.query_param("connectionId")};
        auto list = storage::read_for(*s.store, c.ctx, [&](storage::unit_of_work& uow) { return uow.credentials().list(q, *page); });
        if (!list) return list.error();
        return json_reply(200, page_json(*list, render_credential));
    }, {.query = {"providerId", "connectionId", "limit", "cursor"}});

    r.add("GET", "/integrations/credentials/{credentialId}", [&s](call& c) -> result<reply> {
        auto found = storage::read_for(*s.store, c.ctx, [&](storage::unit_of_work& uow) {
            return uow.credentials().find(c.params["credentialId"]);
        });
        if (!found) return found.error();
        return json_reply(200, render_credential(*found));
    });

    r.add("POST", "/integrations/credentials/rotate", [&s](call& c) -> result<reply> {
        auto body = c.json({"credentialId", "secret", "oauth2", "expiresAt"});
        if (!body) return body.error();
        auto id = optional_string(*body, "credentialId");
        if (!id) return id.error();
        if (!*id) return error{errc::invalid_argument, "credentialId is required"};
        // A rotation changes the secret only: any other setting would be ignored, so it is refused.
        if (auto* o = body->if_contains("oauth2"); o && !o->is_null()) {
            if (!o->is_object()) return error{errc::invalid_argument, "oauth2 must be an object"};
            for (auto const& kv : o->as_object())
                if (kv.key() != "clientSecret")
                    return error{errc::invalid_argument, "oauth2." + std::string(kv.key()) +
                                                             " cannot be rotated: a rotation replaces the secret only; "
                                                             "create a new credential for other settings"};
        }
        auto secret = take_secret(*body, true);
        if (!secret) return secret.error();
        std::optional<time_point> expires;
        if (auto* a = body->if_contains("expiresAt"); a && !a->is_null()) {
            time_point at{};
            if (auto p = from_json(*a, at, "expiresAt"); !p) return p.error();
            expires = at;
        }
        auto rotated = s.credentials->rotate(c.ctx, **id, std::move(*secret), s.prober->verifier_for(c.ctx, **id), expires);
        if (!rotated) return rotated.error();
        return json_reply(200, render_credential(*rotated));
    }, {.calls_vendors = true});  // verifies the new material with the vendor

    r.add("POST", "/integrations/credentials/{credentialId}/revoke", [&s](call& c) -> result<reply> {
        auto body = c.optional_json({"reason"});
        if (!body) return body.error();
        auto reason = optional_string(*body, "reason");
        if (!reason) return reason.error();
        auto revoked = s.credentials->revoke(c.ctx, c.params["credentialId"], reason->value_or("revoked via the API"));
        if (!revoked) return revoked.error();
        return json_reply(200, render_credential(*revoked));
    });
}

}  // namespace integration::host
