#include "handlers/handlers.hpp"

#include "problem.hpp"

#include <integration/core/time.hpp>

#include <algorithm>
#include <iterator>

namespace integration::host {
namespace {

constexpr std::string_view callback_path = "/integrations/oauth2/callback";

// A refusal of the callback: the state is unknown, used or expired, or the provider or its token
// endpoint refused. Not `forbidden` ("this key may not do that"): the callback carries no key.
reply authorization_refused(std::string detail) {
    return problem(403, "authorization-refused", "The authorization was refused", std::move(detail));
}

}  // namespace

void add_oauth2_routes(router& r, services& s) {
    // Start: keeps the client secret, a state and a PKCE verifier for a while, and answers the URL
    // to send the user to. The credential is created by the callback.
    r.add("POST", "/integrations/oauth2/authorize", [&s](call& c) -> result<reply> {
        auto body = c.json({"providerId", "connectionId", "oauth2"});
        if (!body) return body.error();
        auto provider = optional_string(*body, "providerId");
        if (!provider) return provider.error();
        if (!*provider) return error{errc::invalid_argument, "providerId is required"};
        auto connection = optional_string(*body, "connectionId");
        if (!connection) return connection.error();
        auto const* o = body->if_contains("oauth2");
        if (!o || !o->is_object())
            return error{errc::invalid_argument,
                         "oauth2 {authorizeUrl, tokenUrl, clientId, clientSecret, scopes[], redirectUri?} is required"};
        auto settings_json = o->as_object();
        auto secret = optional_string(settings_json, "clientSecret");
        if (!secret) return error{errc::invalid_argument, "oauth2." + secret.error().detail()};
        if (!*secret || (*secret)->empty()) return error{errc::invalid_argument, "oauth2.clientSecret is required"};
        secret_bytes client_secret(**secret);
        settings_json.erase("clientSecret");
        // The host's own callback unless the caller names another (a proxy in front of the host).
        if (auto const* u = settings_json.if_contains("redirectUri"); !u || u->is_null())
            settings_json["redirectUri"] = public_base_url(s.config) + std::string(callback_path);
        auto settings = value_from_json<credentials::authorization_code_settings>(settings_json, unknown_members::refuse);
        if (!settings) return error{errc::invalid_argument, "oauth2." + settings.error().detail()};
        auto redirect_uri = settings->redirect_uri;
        auto started = s.credentials->begin_authorization(c.ctx, **provider, *connection, std::move(*settings),
                                                          std::move(client_secret));
        if (!started) return started.error();
        return json_reply(201, boost::json::object{{"authorizationUrl", started->url},
                                                   {"state", started->state},
                                                   {"redirectUri", redirect_uri},
                                                   {"expiresAt", format_time(started->expires_at)}});
    });

    // The callback: reached by the user's browser, so it carries no API key. The state is the only
    // authority: it names the tenant, provider and settings of the start, and works once.
    r.add("GET", std::string(callback_path), [&s](call& c) -> result<reply> {
        auto state = c.query_param("state");
        if (!state || state->empty())
            return error{errc::invalid_argument, "the callback needs the state the authorization was started with"};
        if (auto refused = c.query_param("error")) {
            // RFC 6749 4.1.2.1. Only the standard codes are repeated; any other text is the provider's.
            static constexpr std::string_view known[] = {"invalid_request", "unauthorized_client", "access_denied",
                                                         "unsupported_response_type", "invalid_scope", "server_error",
                                                         "temporarily_unavailable"};
            bool standard = std::find(std::begin(known), std::end(known), *refused) != std::end(known);
            // The refused flow is over: its state can never complete later.
            if (auto abandoned = s.credentials->abandon_authorization(*state); !abandoned && abandoned.error() != errc::forbidden)
                return abandoned.error();
            return authorization_refused("the provider refused the authorization" +
                                         (standard ? " (" + *refused + ")" : std::string()) +
                                         "; start it again with POST /integrations/oauth2/authorize");
        }
        auto code = c.query_param("code");
        if (!code || code->empty()) return error{errc::invalid_argument, "the callback needs the code the provider sent"};
        auto created = s.credentials->complete_authorization(*state, *code);
        if (!created) {
            if (created.error() == errc::forbidden) return authorization_refused(created.error().detail());
            return created.error();
        }
        auto out = json_reply(201, render(*created));
        // The page's URL held the code: never send it on as a Referer.
        out.headers.emplace_back("Referrer-Policy", "no-referrer");
        return out;
    }, {.who = access::open, .calls_vendors = true, .no_head = true, .query = {"state", "code", "error"}, .any_query = true,
        .counted_by_state = true});
}

}  // namespace integration::host
