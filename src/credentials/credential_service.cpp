#include <integration/credentials/credential_service.hpp>

#include "../crypto/crypto.hpp"
#include "../detail/validate.hpp"

#include <integration/core/id.hpp>

#include <boost/json/parse.hpp>

namespace integration::credentials {
namespace {

result<void> validate_request(new_credential const& s) {
    if (s.secret.empty()) return error{errc::invalid_argument, "secret must not be empty"};
    if (s.secret.size() > 64 * 1024) return error{errc::invalid_argument, "secret must be at most 64 KiB"};
    switch (s.auth_mode) {
    case auth_mode::api_key:
        if (s.api_key) {
            if (s.api_key->in != "header" && s.api_key->in != "query")
                return error{errc::invalid_argument, "apiKey.in must be \"header\" or \"query\""};
            if (auto r = detail::require_text(s.api_key->name, "apiKey.name", 128); !r) return r;
        }
        return {};
    case auth_mode::oauth2_client_credentials:
        if (!s.oauth2) return error{errc::invalid_argument, "oauth2 {tokenUrl, clientId, scopes} is required for OAuth2ClientCredentials"};
        if (auto r = detail::require_http_url(s.oauth2->token_url, "oauth2.tokenUrl"); !r) return r;
        return detail::require_text(s.oauth2->client_id, "oauth2.clientId");
    default:
        return error{errc::invalid_argument, "authMode " + std::string(to_string(s.auth_mode)) +
                                                 " is not available through this call yet; use ApiKey or OAuth2ClientCredentials"};
    }
}

}  // namespace

credential_service::credential_service(storage::store& store, secret_store& secrets, fingerprinter const& fingerprints,
                                       clock const& clock, http::transport& transport,
                                       credential_service_options options)
    : store_(store), secrets_(secrets), fingerprints_(fingerprints), clock_(clock), transport_(transport),
      options_(options) {}

result<integration_credential> credential_service::create(request_context const& ctx, new_credential spec) {
    if (auto r = validate_request(spec); !r) return r.error();
    credential_spec cs;
    cs.provider_id = spec.provider_id;
    cs.connection_id = spec.connection_id;
    cs.auth_mode = spec.auth_mode;
    cs.fingerprint = fingerprints_.fingerprint(spec.secret);
    if (spec.auth_mode == auth_mode::api_key)
        cs.auth_parameters["placement"] = to_json(spec.api_key.value_or(api_key_placement{}));
    else
        cs.auth_parameters["oauth2"] = to_json(*spec.oauth2);
    cs.rotation_policy = spec.rotation_policy;
    cs.expires_at = spec.expires_at;
    // Check the provider first so a bad request leaves nothing in the secret store.
    if (auto r = store_.read(ctx, [&](storage::unit_of_work& uow) -> result<void> {
            auto p = uow.providers().find(spec.provider_id);
            return p ? result<void>{} : result<void>{p.error()};
        });
        !r)
        return r.error();
    auto ref = secrets_.put(ctx.tenant_id, new_id("secret", clock_.now()), spec.secret);
    spec.secret.clear();
    if (!ref) return ref.error();
    cs.key_vault_ref = ref->uri();
    auto created = storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<integration_credential> {
        auto c = integration_credential::create(ctx, clock_.now(), cs);
        if (!c) return c.error();
        if (auto s = uow.credentials().save(*c); !s) return s.error();
        return std::move(*c);
    });
    if (!created) (void)secrets_.soft_delete(ctx.tenant_id, ref->name);
    return created;
}

result<integration_credential> credential_service::rotate(request_context const& ctx, std::string const& credential_id,
                                                          secret_bytes new_secret, verifier const& verify) {
    if (new_secret.empty()) return error{errc::invalid_argument, "the new secret must not be empty"};
    std::optional<integration_credential> current;
    if (auto r = store_.read(ctx, [&](storage::unit_of_work& uow) -> result<void> {
            auto c = uow.credentials().find(credential_id);
            if (!c) return c.error();
            current = std::move(*c);
            return {};
        });
        !r)
        return r.error();
    if (current->status() != credential_status::active)
        return error{errc::invalid_state, "credential " + credential_id + " is " + std::string(to_string(current->status())) +
                                              "; only an Active credential can be rotated"};
    auto active_ref = secret_ref::parse(current->active_version()->key_vault_ref);
    if (!active_ref) return active_ref.error();
    // 1. The new version goes to the secret store; if that fails nothing has changed.
    auto staged_ref = secrets_.put(ctx.tenant_id, active_ref->name, new_secret);
    if (!staged_ref)
        return error{staged_ref.error().code(), staged_ref.error().detail() + "; the current version stays active, retry the rotation later"};
    auto fp = fingerprints_.fingerprint(new_secret);
    new_secret.clear();
    // 2. Stage it: the credential is Rotating, the prior version still active.
    auto staged = storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<integration_credential> {
        auto c = uow.credentials().find(credential_id);
        if (!c) return c.error();
        if (auto b = c->begin_rotation(staged_ref->uri(), fp, clock_.now()); !b) return b.error();
        if (auto s = uow.credentials().save(*c); !s) return s.error();
        return std::move(*c);
    });
    if (!staged) {
        (void)secrets_.disable(ctx.tenant_id, *staged_ref);
        return staged.error();
    }
    // 3. Verify the staged material.
    result<void> verdict;
    if (auto material = materialize(ctx, *staged, *staged_ref, false); !material)
        verdict = error{material.error().code(), "could not resolve the new version: " + material.error().detail()};
    else
        verdict = verify(*material);
    // 4. Activate it, or fall back to the prior version.
    auto finished = storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<integration_credential> {
        auto c = uow.credentials().find(credential_id);
        if (!c) return c.error();
        auto r = verdict ? c->complete_rotation(clock_.now()) : c->fail_rotation(verdict.error().detail(), clock_.now());
        if (!r) return r.error();
        if (auto s = uow.credentials().save(*c); !s) return s.error();
        return std::move(*c);
    });
    invalidate_token(credential_id);
    if (!finished) return finished.error();
    if (!verdict) {
        (void)secrets_.disable(ctx.tenant_id, *staged_ref);
        return error{errc::verification_failed, "version " + std::to_string(staged_ref->version) +
                                                    " failed verification (" + verdict.error().detail() + "); version " +
                                                    std::to_string(finished->data().current_version) + " stays active"};
    }
    return finished;
}

result<integration_credential> credential_service::revoke(request_context const& ctx, std::string const& credential_id,
                                                          std::string reason) {
    auto revoked = storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<integration_credential> {
        auto c = uow.credentials().find(credential_id);
        if (!c) return c.error();
        if (auto r = c->revoke(reason, clock_.now()); !r) return r.error();
        if (auto s = uow.credentials().save(*c); !s) return s.error();
        return std::move(*c);
    });
    if (!revoked) return revoked;
    invalidate_token(credential_id);
    for (auto const& v : revoked->data().versions)
        if (auto ref = secret_ref::parse(v.key_vault_ref); ref) (void)secrets_.disable(ctx.tenant_id, *ref);
    return revoked;
}

result<resolved_credential> credential_service::resolve(request_context const& ctx, std::string const& credential_id) {
    std::optional<integration_credential> c;
    if (auto r = store_.read(ctx, [&](storage::unit_of_work& uow) -> result<void> {
            auto found = uow.credentials().find(credential_id);
            if (!found) return found.error();
            c = std::move(*found);
            return {};
        });
        !r)
        return r.error();
    auto const* active = c->active_version();
    if (!active) return error{errc::invalid_state, "credential " + credential_id + " is Revoked"};
    auto ref = secret_ref::parse(active->key_vault_ref);
    if (!ref) return ref.error();
    return materialize(ctx, *c, *ref, true);
}

result<resolved_credential> credential_service::materialize(request_context const& ctx, integration_credential const& c,
                                                            secret_ref const& ref, bool use_cache) {
    auto secret = secrets_.get(ctx.tenant_id, ref);
    if (!secret) return secret.error();
    resolved_credential out;
    out.auth_mode = c.data().auth_mode;
    auto const& params = c.data().auth_parameters;
    if (c.data().auth_mode == auth_mode::api_key) {
        api_key_placement placement;
        if (auto const* p = params.if_contains("placement"))
            if (auto r = from_json(*p, placement, "placement"); !r) return r.error();
        auto value = secret_bytes(placement.prefix);
        auto combined = secret_bytes::zeroed(value.size() + secret->size());
        std::copy(value.data(), value.data() + value.size(), combined.data());
        std::copy(secret->data(), secret->data() + secret->size(), combined.data() + value.size());
        (placement.in == "query" ? out.query : out.headers).emplace_back(placement.name, std::move(combined));
        return out;
    }
    if (c.data().auth_mode == auth_mode::oauth2_client_credentials)
        return client_credentials(c, *secret, ref.version, use_cache);
    return error{errc::invalid_argument, "authMode " + std::string(to_string(c.data().auth_mode)) + " cannot be resolved yet"};
}

std::shared_ptr<credential_service::cached_token> credential_service::cache_entry(std::string const& credential_id) {
    std::lock_guard lock(cache_mutex_);
    auto& e = cache_[credential_id];
    if (!e) e = std::make_shared<cached_token>();
    return e;
}

void credential_service::invalidate_token(std::string const& credential_id) {
    std::lock_guard lock(cache_mutex_);
    cache_.erase(credential_id);
}

result<resolved_credential> credential_service::client_credentials(integration_credential const& c,
                                                                   secret_bytes const& client_secret,
                                                                   std::int64_t version, bool use_cache) {
    oauth2_client_settings settings;
    if (auto const* p = c.data().auth_parameters.if_contains("oauth2"))
        if (auto r = from_json(*p, settings, "oauth2"); !r) return r.error();
    resolved_credential out;
    out.auth_mode = auth_mode::oauth2_client_credentials;
    auto bearer = [&](secret_bytes const& token) {
        auto v = secret_bytes::zeroed(7 + token.size());
        std::copy_n("Bearer ", 7, reinterpret_cast<char*>(v.data()));
        std::copy(token.data(), token.data() + token.size(), v.data() + 7);
        out.headers.emplace_back("Authorization", std::move(v));
    };
    if (!use_cache) {
        auto fetched = fetch_token(settings, client_secret);
        if (!fetched) return fetched.error();
        bearer(fetched->first);
        return out;
    }
    auto entry = cache_entry(c.id());
    // Single flight: callers queue on the entry and re-check after acquiring it.
    std::lock_guard lock(entry->refresh);
    if (entry->token.empty() || entry->version != version || clock_.now() + options_.refresh_margin >= entry->expires_at) {
        auto fetched = fetch_token(settings, client_secret);
        if (!fetched) return fetched.error();
        entry->token = std::move(fetched->first);
        entry->expires_at = fetched->second;
        entry->version = version;
    }
    bearer(entry->token);
    return out;
}

result<std::pair<secret_bytes, time_point>> credential_service::fetch_token(oauth2_client_settings const& s,
                                                                            secret_bytes const& client_secret) {
    http::request req;
    req.method = "POST";
    req.url = s.token_url;
    req.timeout = options_.token_timeout;
    req.headers = {{"Content-Type", "application/x-www-form-urlencoded"}, {"Accept", "application/json"}};
    req.body = "grant_type=client_credentials&client_id=" + http::form_encode(s.client_id) +
               "&client_secret=" + http::form_encode(client_secret.view());
    if (!s.scopes.empty()) {
        std::string scope;
        for (auto const& sc : s.scopes) scope += (scope.empty() ? "" : " ") + sc;
        req.body += "&scope=" + http::form_encode(scope);
    }
    auto now = clock_.now();
    auto res = transport_.send(req);
    crypto::wipe(req.body);
    if (!res) return error{res.error().code(), "token endpoint " + s.token_url + ": " + res.error().detail()};
    if (res->status == 400 || res->status == 401 || res->status == 403)
        return error{errc::forbidden, "token endpoint " + s.token_url + " refused the client credentials (HTTP " +
                                          std::to_string(res->status) + "); check the client id and secret"};
    if (res->status < 200 || res->status > 299)
        return error{errc::unavailable, "token endpoint " + s.token_url + " answered HTTP " + std::to_string(res->status)};
    boost::system::error_code ec;
    auto j = boost::json::parse(res->body, ec);
    crypto::wipe(res->body);
    auto const* obj = ec ? nullptr : j.if_object();
    auto const* token = obj ? obj->if_contains("access_token") : nullptr;
    if (!token || !token->is_string() || token->get_string().empty())
        return error{errc::unavailable, "token endpoint " + s.token_url + " returned no access_token"};
    std::int64_t expires_in = 3600;
    if (auto const* e = obj->if_contains("expires_in"); e && e->is_number()) expires_in = e->to_number<std::int64_t>();
    secret_bytes out(std::string_view(token->get_string()));
    // The parsed document held the token too.
    auto& str = j.as_object()["access_token"].as_string();
    std::fill(str.begin(), str.end(), '\0');
    return std::pair{std::move(out), now + std::chrono::seconds(expires_in)};
}

}  // namespace integration::credentials
