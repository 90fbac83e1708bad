#include <integration/services/credential_service.hpp>

#include "../detail/cache_margin.hpp"
#include "../detail/crypto.hpp"
#include "../detail/validate.hpp"

#include <integration/core/id.hpp>
#include <integration/core/time.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <thread>

namespace integration::credentials {
namespace {

constexpr std::size_t max_secret_bytes = 64 * 1024;

/** An absolute http(s) URL a credential keeps (a token or identity endpoint): one with a
 *  password in it is refused, since the URL is stored and named in errors. */
result<void> require_endpoint_url(std::string_view value, std::string_view field) {
    if (auto r = detail::require_http_url(value, field); !r) return r;
    if (detail::has_userinfo(value))
        return error{errc::invalid_argument, std::string(field) + " must not carry user information; the credential holds the secret"};
    return {};
}

result<void> validate_request(new_credential const& s) {
    if (s.secret.empty() && s.auth_mode != auth_mode::managed_identity)
        return error{errc::invalid_argument, "secret must not be empty"};
    if (s.secret.size() > max_secret_bytes) return error{errc::invalid_argument, "secret must be at most 64 KiB"};
    // Another mode's settings would be dropped in silence (an OAuth2 client secret given with
    // authMode ApiKey would become an API key sent as Authorization).
    if (s.oauth2 && (s.scheme || s.auth_mode != auth_mode::oauth2_client_credentials))
        return error{errc::invalid_argument, "oauth2 settings are for authMode OAuth2ClientCredentials only"};
    if (s.managed_identity && (s.scheme || s.auth_mode != auth_mode::managed_identity))
        return error{errc::invalid_argument, "managedIdentity settings are for authMode ManagedIdentity only"};
    if (s.scheme) return {};  // the added scheme reads its own settings
    if (s.api_key && s.auth_mode != auth_mode::api_key)
        return error{errc::invalid_argument, "apiKey placement is for authMode ApiKey (or an added scheme) only"};
    switch (s.auth_mode) {
    case auth_mode::api_key:
        if (s.api_key) {
            if (s.api_key->in != "header" && s.api_key->in != "query")
                return error{errc::invalid_argument, "apiKey.in must be \"header\" or \"query\""};
            if (auto r = detail::require_text(s.api_key->name, "apiKey.name", 128); !r) return r;
            // Refused now, not at the first call: a header the transport would refuse to send.
            if (s.api_key->in == "header")
                if (auto r = http::check_header_field(s.api_key->name, s.api_key->prefix); !r)
                    return error{errc::invalid_argument, "apiKey: " + r.error().detail()};
        }
        return {};
    case auth_mode::oauth2_client_credentials:
        if (!s.oauth2) return error{errc::invalid_argument, "oauth2 {tokenUrl, clientId, scopes} is required for OAuth2ClientCredentials"};
        if (auto r = require_endpoint_url(s.oauth2->token_url, "oauth2.tokenUrl"); !r) return r;
        return detail::require_text(s.oauth2->client_id, "oauth2.clientId");
    case auth_mode::managed_identity:
        if (!s.managed_identity) return error{errc::invalid_argument, "managedIdentity {endpointUrl, resource} is required for ManagedIdentity"};
        if (auto r = require_endpoint_url(s.managed_identity->endpoint_url, "managedIdentity.endpointUrl"); !r) return r;
        return detail::require_text(s.managed_identity->resource, "managedIdentity.resource", 1024);
    default:
        return error{errc::invalid_argument, "authMode " + std::string(to_string(s.auth_mode)) +
                                                 " credentials are created through begin_authorization / complete_authorization"};
    }
}

/** The provider and the connection a new credential names, each looked up in the caller's tenant
 *  (another tenant's is not found, as on every route); the connection must be the provider's. */
result<void> find_references(storage::store& store, request_context const& ctx, std::string const& provider_id,
                             std::optional<std::string> const& connection_id) {
    return store.read(ctx, [&](storage::unit_of_work& uow) -> result<void> {
        if (auto p = uow.providers().find(provider_id); !p) return p.error();
        if (!connection_id) return {};
        auto c = uow.connections().find(*connection_id);
        if (!c) return c.error();
        if (c->data().provider_id != provider_id)
            return error{errc::invalid_argument, "connection " + *connection_id + " is provider " + c->data().provider_id +
                                                     "'s, not " + provider_id + "'s"};
        return {};
    });
}

/** After `c` moved to a new version: the one it replaced stays readable (a request that read the
 *  row just before may still fetch it), and the one that one replaced is disabled, for the secret
 *  store to destroy (storage.md keeps prior versions until the new one verifies; a provider
 *  rotating its refresh token on each refresh ends a version each time). Those before it were
 *  disabled by the moves before. */
void disable_older_versions(secret_store& secrets, std::string const& tenant, integration_credential const& c) {
    credential_version const* replaced = nullptr;
    credential_version const* before = nullptr;
    for (auto const& v : c.data().versions) {
        if (v.state != version_state::retired) continue;
        if (!replaced || v.version > replaced->version) {
            before = replaced;
            replaced = &v;
        } else if (!before || v.version > before->version) {
            before = &v;
        }
    }
    if (before)
        if (auto ref = secret_ref::parse(before->key_vault_ref)) (void)secrets.disable(tenant, *ref);
}

}  // namespace

namespace {

/** `egress` with `more` allowed as well. */
net::egress_policy allowing(net::egress_policy egress, std::vector<net::cidr> const& more) {
    egress.allow.insert(egress.allow.end(), more.begin(), more.end());
    return egress;
}

std::vector<std::unique_ptr<http::policy>> token_policies(net::egress_policy egress, net::resolver& names) {
    std::vector<std::unique_ptr<http::policy>> policies;
    policies.push_back(std::make_unique<http::egress_policy_step>(http::egress_hop_check(std::move(egress), names)));
    return policies;
}

/** The client secret and the refresh token (or code verifier) of an authorization document. */
result<std::pair<secret_bytes, secret_bytes>> parse_auth_document(secret_bytes const& doc,
                                                                   char const* second_name = "refreshToken");

}  // namespace

credential_service::credential_service(storage::store& store, secret_store& secrets, fingerprinter const& fingerprints,
                                       clock const& clock, http::transport& transport, net::egress_policy egress,
                                       net::resolver& names, credential_service_options options)
    : store_(store), secrets_(secrets), fingerprints_(fingerprints), clock_(clock),
      outbound_(transport, token_policies(egress, names)),
      identity_outbound_(transport, token_policies(allowing(std::move(egress), options.managed_identity_allow), names)),
      options_(options),
      lease_owner_(new_id("refresher", clock.now())) {
    add_builtin_schemes();
}

result<void> credential_service::add_scheme(std::string name, auth_scheme scheme) {
    if (auto r = detail::require_text(name, "scheme name", 64); !r) return r;
    if (!scheme) return error{errc::invalid_argument, "auth scheme \"" + name + "\" has no function"};
    std::unique_lock lock(schemes_mutex_);
    if (!schemes_.emplace(name, std::move(scheme)).second)
        return error{errc::already_exists, "an auth scheme named \"" + name + "\" is registered already"};
    return {};
}

std::string scheme_of(integration_credential const& c) {
    if (auto const* s = c.data().auth_parameters.if_contains("scheme"); s && s->is_string())
        return std::string(s->get_string());
    return std::string(to_string(c.data().auth_mode));
}

result<void> credential_service::may_use_managed_identity(std::string const& tenant) const {
    if (std::ranges::find(options_.managed_identity_tenants, tenant) != options_.managed_identity_tenants.end()) return {};
    return error{errc::forbidden, "a managed identity is the operator's own identity, and tenant " + tenant +
                                      " is not one the operator lets use it (credential_service_options::"
                                      "managed_identity_tenants; the host's --managed-identity-tenant)"};
}

result<integration_credential> credential_service::create(request_context const& ctx, new_credential spec) {
    // First: whatever else is wrong with it, a tenant not listed is told it may not.
    if (spec.scheme.value_or(std::string(to_string(spec.auth_mode))) == to_string(auth_mode::managed_identity))
        if (auto r = may_use_managed_identity(ctx.tenant_id); !r) return r.error();
    if (auto r = validate_request(spec); !r) return r.error();
    if (spec.scheme && parse_enum<auth_mode>(*spec.scheme, "scheme"))
        return error{errc::invalid_argument, "scheme \"" + *spec.scheme +
                                                 "\" is a built-in auth mode: give it as authMode, with its settings"};
    if (spec.expires_at && *spec.expires_at <= clock_.now())
        return error{errc::invalid_argument, "expiresAt " + format_time(*spec.expires_at) + " has passed; a credential must expire later"};
    if (spec.scheme) {
        std::shared_lock lock(schemes_mutex_);
        if (!schemes_.contains(*spec.scheme))
            return error{errc::invalid_argument, "scheme \"" + *spec.scheme +
                                                     "\" is not registered; add it with credential_service::add_scheme first"};
    }
    credential_spec cs;
    cs.provider_id = spec.provider_id;
    cs.connection_id = spec.connection_id;
    cs.auth_mode = spec.auth_mode;
    cs.fingerprint = fingerprints_.fingerprint(spec.secret);
    if (spec.scheme) {
        cs.auth_parameters["scheme"] = *spec.scheme;
        if (spec.api_key) cs.auth_parameters["placement"] = to_json(*spec.api_key);
    } else if (spec.auth_mode == auth_mode::api_key)
        cs.auth_parameters["placement"] = to_json(spec.api_key.value_or(api_key_placement{}));
    else if (spec.auth_mode == auth_mode::managed_identity)
        cs.auth_parameters["managedIdentity"] = to_json(*spec.managed_identity);
    else
        cs.auth_parameters["oauth2"] = to_json(*spec.oauth2);
    cs.rotation_policy = spec.rotation_policy;
    cs.expires_at = spec.expires_at;
    // Check the references first so a bad request leaves nothing in the secret store.
    if (auto r = find_references(store_, ctx, spec.provider_id, spec.connection_id); !r) return r.error();
    // A system-assigned managed identity has no client id; the version then records that choice.
    if (spec.secret.empty()) spec.secret = secret_bytes("system-assigned");
    cs.fingerprint = fingerprints_.fingerprint(spec.secret);
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
                                                          secret_bytes new_secret, verifier const& verify,
                                                          std::optional<time_point> new_expires_at) {
    if (new_secret.empty()) return error{errc::invalid_argument, "the new secret must not be empty"};
    if (new_secret.size() > max_secret_bytes) return error{errc::invalid_argument, "the new secret must be at most 64 KiB"};
    if (new_expires_at && *new_expires_at <= clock_.now())
        return error{errc::invalid_argument, "expiresAt " + format_time(*new_expires_at) + " has passed; the new version must expire later"};
    auto current = storage::read_for(store_, ctx, [&](storage::unit_of_work& uow) {
        return uow.credentials().find(credential_id);
    });
    if (!current) return current.error();
    if (current->status() != credential_status::active)
        return error{errc::invalid_state, "credential " + credential_id + " is " + std::string(to_string(current->status())) +
                                              "; only an Active credential can be rotated"};
    // Its secret is a document: the client secret with the refresh token the provider issued for it.
    if (current->data().auth_mode == auth_mode::oauth2_authorization_code && !parse_auth_document(new_secret))
        return error{errc::invalid_argument,
                     "an OAuth2AuthorizationCode credential rotates to the JSON document {\"clientSecret\": ..., "
                     "\"refreshToken\": ...} as its secret (a client secret alone has no refresh token to go with "
                     "it); to change only the client secret, authorize again"};
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
    auto const staged_version = staged->staged_version()->version;
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
        // The rotation worker may have ended this rotation (it ran past `abandoned_after`), and
        // another may have staged its own since: only the version this call staged is ended here
        // (its material may have been restaged meanwhile: a verification's refresh token rotated).
        if (auto const* now_staged = c->staged_version(); !now_staged || now_staged->version != staged_version)
            return error{errc::conflict, "the rotation to version " + std::to_string(staged_ref->version) +
                                             " was ended meanwhile (it ran longer than the rotation worker waits); rotate again"};
        auto r = verdict ? c->complete_rotation(clock_.now(), new_expires_at)
                         : c->fail_rotation(verdict.error().detail(), clock_.now());
        if (!r) return r.error();
        if (auto s = uow.credentials().save(*c); !s) return s.error();
        return std::move(*c);
    });
    invalidate_token(credential_id);
    if (!finished) return finished.error();
    if (verdict) disable_older_versions(secrets_, ctx.tenant_id, *finished);
    if (!verdict) {
        // The version as staged, and as restaged if its verification was given a new refresh
        // token: neither is used again.
        (void)secrets_.disable(ctx.tenant_id, *staged_ref);
        for (auto const& v : finished->data().versions)
            if (v.version == staged_version && v.key_vault_ref != staged_ref->uri())
                if (auto restaged = secret_ref::parse(v.key_vault_ref)) (void)secrets_.disable(ctx.tenant_id, *restaged);
        return error{errc::verification_failed, "version " + std::to_string(staged_ref->version) +
                                                    " failed verification (" + verdict.error().detail() + "); version " +
                                                    std::to_string(finished->data().current_version) + " stays active"};
    }
    return finished;
}

result<std::optional<integration_credential>> credential_service::abandon_rotation(request_context const& ctx,
                                                                                   std::string const& credential_id,
                                                                                   time_point started_before) {
    std::optional<std::string> staged_uri;
    auto ended = storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<std::optional<integration_credential>> {
        staged_uri.reset();
        auto c = uow.credentials().find(credential_id);
        if (!c) return c.error();
        auto const* staged = c->staged_version();
        if (c->status() != credential_status::rotating || !staged || staged->created_at >= started_before)
            return std::optional<integration_credential>();
        staged_uri = staged->key_vault_ref;
        if (auto r = c->fail_rotation("the rotation to version " + std::to_string(staged->version) +
                                          " never ended (the process rotating it stopped); the prior version stays active",
                                      clock_.now());
            !r)
            return r.error();
        if (auto r = uow.credentials().save(*c); !r) return r.error();
        return std::optional(std::move(*c));
    });
    if (!ended || !*ended) return ended;
    invalidate_token(credential_id);
    if (auto ref = secret_ref::parse(*staged_uri)) (void)secrets_.disable(ctx.tenant_id, *ref);
    return ended;
}

result<integration_credential> credential_service::revoke(request_context const& ctx, std::string const& credential_id,
                                                          std::string reason) {
    if (auto r = detail::require_text(reason, "reason", 2000); !r) return r.error();  // a caller's words, kept and sent in events
    auto revoked = storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<integration_credential> {
        auto c = uow.credentials().find(credential_id);
        if (!c) return c.error();
        auto const now = clock_.now();
        if (auto r = c->revoke(reason, now); !r) return r.error();
        if (auto s = uow.credentials().save(*c); !s) return s.error();
        // "A connection cannot be Active without a resolvable credentialId": every connection
        // sending this credential is Unhealthy (an Active one Degraded) in the same commit.
        connections::health_probe_result const gone{health_status::unhealthy,
                                                    "credential " + credential_id + " was revoked",
                                                    failures::failure_category::auth};
        storage::page_request page{.limit = 500};
        do {
            auto list = uow.connections().list({}, page);
            if (!list) return list.error();
            for (auto& conn : list->items) {
                if (conn.data().credential_id != credential_id || conn.status() == connections::connection_status::retired)
                    continue;
                if (auto r = conn.record_health(gone, now); !r) return r.error();
                if (auto s = uow.connections().save(conn); !s) return s.error();
            }
            page.cursor = list->next_cursor;
        } while (!page.cursor.empty());
        return std::move(*c);
    });
    if (!revoked) return revoked;
    drop_token(credential_id);
    // Unreadable at once; destroyed when the store's recovery window ends (the retention sweep).
    for (auto const& v : revoked->data().versions)
        if (auto ref = secret_ref::parse(v.key_vault_ref); ref) {
            (void)secrets_.disable(ctx.tenant_id, *ref);
            (void)secrets_.soft_delete(ctx.tenant_id, ref->name);
        }
    return revoked;
}

resolved_credential resolved_credential::clone() const {
    resolved_credential out;
    out.auth_mode = auth_mode;
    out.expires_at = expires_at;
    for (auto const& [k, v] : headers) out.headers.emplace_back(k, v.clone());
    for (auto const& [k, v] : query) out.query.emplace_back(k, v.clone());
    for (auto const& v : secrets) out.secrets.push_back(v.clone());
    return out;
}

namespace {

result<api_key_placement> stored_placement(integration_credential const& c) {
    api_key_placement placement;
    if (auto const* p = c.data().auth_parameters.if_contains("placement"))
        if (auto r = from_json(*p, placement, "placement"); !r) return r.error();
    return placement;
}

}  // namespace

material_placement placement_of(integration_credential const& c) {
    switch (c.data().auth_mode) {
    case auth_mode::none: return {};
    case auth_mode::api_key: {
        auto p = stored_placement(c);
        if (!p) return {{"Authorization"}, {}};  // unreadable: resolving it fails anyway
        if (p->in == "query") return {{}, {p->name}};
        return {{p->name}, {}};
    }
    default: return {{"Authorization"}, {}};
    }
}

namespace {

constexpr std::string_view redacted_marker = "[REDACTED]";

// The characters of base64(`s`) that depend on `s` alone when it starts `shift` bytes into a
// three-byte group of a longer encoded text: the ones shared with its neighbours are dropped.
std::string base64_core(std::string_view s, std::size_t shift, bool url) {
    std::string padded(shift, '\0');
    padded += s;
    auto encoded = crypto::base64url(reinterpret_cast<unsigned char const*>(padded.data()), padded.size());
    crypto::wipe(padded);
    if (!url)
        for (auto& c : encoded) c = c == '-' ? '+' : c == '_' ? '/' : c;
    auto const first = (shift * 8 + 5) / 6;        // characters that hold bits of the leading bytes
    auto const last = (shift + s.size()) * 8 / 6;  // characters complete without the next byte
    auto core = last > first ? encoded.substr(first, last - first) : std::string();
    crypto::wipe(encoded);
    return core;
}

/** The forms a vendor may echo a secret in, longest first so that no form breaks a longer one. */
class echo_forms {
public:
    explicit echo_forms(resolved_credential const& m) {
        for (auto const& secret : m.secrets) {
            auto s = secret.view();
            if (s.size() < 4) continue;
            add(std::string(s));
            auto upper = http::form_encode(s);
            auto lower = upper;  // %2f rather than %2F
            for (auto at = lower.find('%'); at != std::string::npos; at = lower.find('%', at + 1))
                for (auto j : {at + 1, at + 2})
                    lower[j] = static_cast<char>(std::tolower(static_cast<unsigned char>(lower[j])));
            auto plus = upper;  // a space as '+' (application/x-www-form-urlencoded)
            for (auto at = plus.find("%20"); at != std::string::npos; at = plus.find("%20", at + 1))
                plus.replace(at, 3, "+");
            add(std::move(upper));
            add(std::move(lower));
            add(std::move(plus));
            auto quoted = boost::json::serialize(boost::json::string(s));
            auto escaped = quoted.substr(1, quoted.size() - 2);
            crypto::wipe(quoted);
            std::string slashes;  // some encoders escape '/' as well
            for (char c : escaped) slashes += c == '/' ? std::string("\\/") : std::string(1, c);
            add(std::move(escaped));
            add(std::move(slashes));
            for (std::size_t shift = 0; shift < 3; ++shift) {
                add(base64_core(s, shift, false));
                add(base64_core(s, shift, true));
            }
        }
        std::sort(forms_.begin(), forms_.end(), [](auto const& a, auto const& b) { return a.size() > b.size(); });
    }
    ~echo_forms() {
        for (auto& f : forms_) crypto::wipe(f);
    }
    echo_forms(echo_forms const&) = delete;
    echo_forms& operator=(echo_forms const&) = delete;

    /** True when `text` holds one of the forms. */
    bool found(std::string_view text) const {
        return std::any_of(forms_.begin(), forms_.end(), [&](auto const& f) { return text.find(f) != std::string_view::npos; });
    }

    /** True when `url` holds one of the forms, as it is or percent-decoded up to three times (a
     *  vendor's login redirect carries the original URL, query key included, encoded once more
     *  in its own query: `return_to=...%3Fkey%3Dabc%252F...`). */
    bool found_in_url(std::string_view url) const {
        std::string text(url);
        bool hit = false;
        for (int round = 0; round < 4 && !hit; ++round) {
            hit = found(text);
            auto decoded = percent_decoded(text);
            bool const same = decoded == text;
            crypto::wipe(text);
            text = std::move(decoded);
            if (same) break;
        }
        crypto::wipe(text);
        return hit;
    }

    /** Replaces every form in `text` with the marker, in one pass: replacing in place shifted
     *  the rest of the text at each match, quadratic in a body that echoes a key many times
     *  (a vendor's answer of 16 MiB held the transport's thread for minutes). */
    void apply(std::string& text) const {
        std::vector<std::pair<std::size_t, std::size_t>> hits;  // where, how long
        for (auto const& f : forms_)
            for (auto at = text.find(f); at != std::string::npos; at = text.find(f, at + f.size())) hits.emplace_back(at, f.size());
        if (hits.empty()) return;
        // By position, the longest first where two start together; one inside another is skipped.
        std::sort(hits.begin(), hits.end(), [](auto a, auto b) { return a.first != b.first ? a.first < b.first : a.second > b.second; });
        std::string out;
        out.reserve(text.size());
        std::size_t copied = 0;
        for (auto [at, n] : hits) {
            if (at < copied) continue;
            out.append(text, copied, at - copied);
            out += redacted_marker;
            copied = at + n;
        }
        out.append(text, copied);
        crypto::wipe(text);
        text = std::move(out);
    }

private:
    // `%XX` decoded (a broken escape is kept as it is); `+` stays, as URLs have it.
    static std::string percent_decoded(std::string_view text) {
        auto hex = [](char c) -> int {
            if (c >= '0' && c <= '9') return c - '0';
            c = static_cast<char>(c | 0x20);
            return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        };
        std::string out;
        out.reserve(text.size());
        for (std::size_t i = 0; i < text.size(); ++i) {
            int hi = 0, lo = 0;
            if (text[i] == '%' && i + 2 < text.size() && (hi = hex(text[i + 1])) >= 0 && (lo = hex(text[i + 2])) >= 0) {
                out += static_cast<char>(hi * 16 + lo);
                i += 2;
            } else {
                out += text[i];
            }
        }
        return out;
    }

    void add(std::string form) {
        if (form.size() < 4 || std::find(forms_.begin(), forms_.end(), form) != forms_.end()) {
            crypto::wipe(form);
            return;
        }
        forms_.push_back(std::move(form));
    }

    std::vector<std::string> forms_;
};

}  // namespace

namespace {

/** Adds the material to `r` for one call and tells `call` how to find it in a URL (a redirect
 *  that echoes a query-placed key must not take it to another origin); the destructor takes it
 *  out of both and wipes it. `m` must outlive it. */
class applied_material {
public:
    applied_material(http::request& r, resolved_credential const& m, http::call_context& call)
        : r_(r), call_(call), headers_(r.headers.size()) {
        call.carries_credential = [&m](std::string_view url) { return echo_forms(m).found_in_url(url); };
        for (auto const& [k, v] : m.headers) r.headers.emplace_back(k, std::string(v.view()));
        if (m.query.empty()) return;
        url_ = r.url;
        for (auto const& [k, v] : m.query) {
            r.url += r.url.find('?') == std::string::npos ? '?' : '&';
            r.url += http::form_encode(k) + "=" + http::form_encode(v.view());
        }
    }
    ~applied_material() {
        call_.carries_credential = nullptr;
        for (auto i = headers_; i < r_.headers.size(); ++i) crypto::wipe(r_.headers[i].second);
        r_.headers.resize(headers_);
        if (!url_) return;
        crypto::wipe(r_.url);
        r_.url = std::move(*url_);
    }
    applied_material(applied_material const&) = delete;
    applied_material& operator=(applied_material const&) = delete;

private:
    http::request& r_;
    http::call_context& call_;
    std::size_t headers_;
    std::optional<std::string> url_;
};

}  // namespace

namespace {

/** `res` with every form of the material's secrets replaced by `[REDACTED]`. */
result<http::response> redacted(result<http::response> res, resolved_credential const& material) {
    echo_forms const echoes(material);
    if (!res) {
        auto detail = res.error().detail();
        echoes.apply(detail);
        return error{res.error().code(), std::move(detail)};
    }
    for (auto& [name, value] : res->headers) {
        echoes.apply(name);
        echoes.apply(value);
    }
    echoes.apply(res->body);
    return res;
}

/** The material's header the request already sets, if any: the call is refused. */
std::optional<error> conflicting_header(http::request const& request, resolved_credential const& material,
                                        std::string const& credential_id) {
    for (auto const& [name, value] : request.headers)
        for (auto const& [own, secret] : material.headers)
            if (http::same_field_name(name, own))
                return error{errc::invalid_argument, "header \"" + own + "\" carries credential " + credential_id +
                                                         "; the request must not set it"};
    return std::nullopt;
}

}  // namespace

result<http::response> credential_service::send_authorized(request_context const& ctx, std::string const& credential_id,
                                                           http::request& request, http::next_policy const& next,
                                                           http::call_context& call) {
    for (int attempt = 0;; ++attempt) {
        auto material = resolve(ctx, credential_id);
        if (!material) {
            call.credential_unresolved = true;
            return material.error();
        }
        if (auto refused = conflicting_header(request, *material, credential_id)) return *refused;
        auto res = [&] {
            applied_material applied(request, *material, call);
            return next.send(request, call);
        }();
        res = redacted(std::move(res), *material);
        if (!res) return res;
        bool bearer_mode = material->auth_mode != auth_mode::api_key;
        if (res->status != 401 || !bearer_mode || attempt == 1) return res;
        token_refused(credential_id, *material);  // one forced refresh, then the answer stands
    }
}

void credential_service::start_authorized(request_context const& ctx, std::string credential_id, http::request& request,
                                          http::next_policy next, http::call_context& call, http::transport::completion done,
                                          bool refreshed) {
    auto material = resolve(ctx, credential_id);
    if (!material) {
        call.credential_unresolved = true;
        return done(material.error());
    }
    if (auto refused = conflicting_header(request, *material, credential_id)) return done(std::move(*refused));
    auto m = std::make_shared<resolved_credential>(std::move(*material));
    // Only the completion owns the applied material: the call may end on another thread and free
    // the request before this function returns, so no reference may be left here to wipe it after.
    auto applied = std::make_shared<applied_material>(request, *m, call);
    next.start(request, call, [this, &ctx, id = std::move(credential_id), &request, next, &call, done = std::move(done), m,
                               applied = std::move(applied), refreshed](result<http::response> res) mutable {
        applied.reset();  // the material leaves the request (wiped) once the call ended
        res = redacted(std::move(res), *m);
        if (!res || res->status != 401 || m->auth_mode == auth_mode::api_key || refreshed) return done(std::move(res));
        token_refused(id, *m);  // one forced refresh, then the answer stands
        // The refresh is a blocking token request: never on the transport's thread.
        http::go_on(call, [this, &ctx, id = std::move(id), &request, next, &call, done = std::move(done)]() mutable {
            start_authorized(ctx, std::move(id), request, next, call, std::move(done), true);
        });
    });
}

void authentication_policy::start(http::request& r, http::next_policy next, http::call_context& call,
                                  http::transport::completion done) {
    if (!call.credential_id) return next.start(r, call, std::move(done));
    if (!call.ctx) return done(error{errc::invalid_argument, "an authenticated call needs the caller's request context"});
    credentials_.start_authorized(*call.ctx, *call.credential_id, r, next, call, std::move(done));
}

result<http::response> authentication_policy::send(http::request& r, http::next_policy next, http::call_context& call) {
    if (!call.credential_id) return next.send(r, call);
    if (!call.ctx) return error{errc::invalid_argument, "an authenticated call needs the caller's request context"};
    return credentials_.send_authorized(*call.ctx, *call.credential_id, r, next, call);
}

void credential_service::forget_material(std::string const& credential_id) {
    std::unique_lock lock(material_mutex_);
    ++material_generation_;
    std::erase_if(materials_, [&](auto const& kv) {
        auto slash = kv.first.find('/');
        return std::string_view(kv.first).substr(slash + 1) == credential_id;
    });
}

bool credential_service::resolves_without_blocking(request_context const& ctx, std::string const& credential_id) {
    // Still valid a moment from now: the `resolve` that follows must not be the one that expires it.
    auto soon = clock_.now() + integration::detail::cache_margin;
    std::shared_lock lock(material_mutex_);
    auto it = materials_.find(ctx.tenant_id + "/" + credential_id);
    return it != materials_.end() && soon < it->second.valid_until;
}

result<resolved_credential> credential_service::resolve(request_context const& ctx, std::string const& credential_id) {
    auto key = ctx.tenant_id + "/" + credential_id;
    auto now = clock_.now();
    std::uint64_t generation;
    {
        std::shared_lock lock(material_mutex_);
        if (auto it = materials_.find(key); it != materials_.end() && now < it->second.valid_until)
            return it->second.material.clone();
        generation = material_generation_;
    }
    auto c = storage::read_for(store_, ctx, [&](storage::unit_of_work& uow) {
        return uow.credentials().find(credential_id);
    });
    if (!c) return c.error();
    auto const* active = c->active_version();
    if (!active) return error{errc::invalid_state, "credential " + credential_id + " is Revoked"};
    auto ref = secret_ref::parse(active->key_vault_ref);
    if (!ref) return ref.error();
    auto material = materialize(ctx, *c, *ref, true);
    if (!material || options_.material_ttl.count() <= 0) return material;
    auto valid_until = now + options_.material_ttl;
    if (material->expires_at) valid_until = std::min(valid_until, *material->expires_at - options_.refresh_margin);
    std::unique_lock lock(material_mutex_);
    // A revocation or rotation forgot the material while this was read: it is not cached again.
    if (generation == material_generation_) {
        // Amortised: expired entries (credentials no longer used) go each time the map doubles
        // past what the last sweep kept.
        if (materials_.size() >= materials_sweep_at_) {
            std::erase_if(materials_, [&](auto const& kv) { return kv.second.valid_until <= now; });
            materials_sweep_at_ = std::max<std::size_t>(1024, 2 * materials_.size());
        }
        materials_[key] = {material->clone(), valid_until};
    }
    return material;
}

result<resolved_credential> credential_service::materialize(request_context const& ctx, integration_credential const& c,
                                                            secret_ref const& ref, bool use_cache) {
    auto name = scheme_of(c);
    auth_scheme scheme;
    {
        std::shared_lock lock(schemes_mutex_);
        if (auto it = schemes_.find(name); it != schemes_.end()) scheme = it->second;
    }
    if (c.data().auth_mode == auth_mode::none && name == to_string(auth_mode::none))
        return error{errc::invalid_argument, "authMode None has no material to resolve"};
    if (!scheme)
        return error{errc::invalid_argument, "credential " + c.id() + " uses auth scheme \"" + name +
                                                 "\", which is not registered in this process"};
    auto secret = secrets_.get(ctx.tenant_id, ref);
    if (!secret) return secret.error();
    return scheme({ctx, c, *secret, ref.version, use_cache});
}

void credential_service::add_builtin_schemes() {
    schemes_.emplace(to_string(auth_mode::api_key), [](auth_scheme_input const& in) -> result<resolved_credential> {
        resolved_credential out;
        out.auth_mode = auth_mode::api_key;
        auto placement = stored_placement(in.credential);
        if (!placement) return placement.error();
        auto combined = secret_bytes::zeroed(placement->prefix.size() + in.secret.size());
        std::copy(placement->prefix.begin(), placement->prefix.end(), combined.data());
        std::copy(in.secret.data(), in.secret.data() + in.secret.size(), combined.data() + placement->prefix.size());
        (placement->in == "query" ? out.query : out.headers).emplace_back(placement->name, std::move(combined));
        out.secrets.push_back(in.secret.clone());
        return out;
    });
    schemes_.emplace(to_string(auth_mode::oauth2_client_credentials), [this](auth_scheme_input const& in) -> result<resolved_credential> {
        oauth2_client_settings s;
        if (auto const* p = in.credential.data().auth_parameters.if_contains("oauth2"))
            if (auto r = from_json(*p, s, "oauth2"); !r) return r.error();
        return bearer(in.credential, in.version, in.use_cache, [&](cached_token&) {
            std::string body = "grant_type=client_credentials&client_id=" + http::form_encode(s.client_id) +
                               "&client_secret=" + http::form_encode(in.secret.view());
            if (!s.scopes.empty()) {
                std::string scope;
                for (auto const& sc : s.scopes) scope += (scope.empty() ? "" : " ") + sc;
                body += "&scope=" + http::form_encode(scope);
            }
            return token_request(s.token_url, std::move(body));
        });
    });
    schemes_.emplace(to_string(auth_mode::managed_identity), [this](auth_scheme_input const& in) -> result<resolved_credential> {
        // Checked at every use too: the operator may have taken the tenant off the list since.
        if (auto r = may_use_managed_identity(in.ctx.tenant_id); !r) return r.error();
        managed_identity_settings s;
        if (auto const* p = in.credential.data().auth_parameters.if_contains("managedIdentity"))
            if (auto r = from_json(*p, s, "managedIdentity"); !r) return r.error();
        return bearer(in.credential, in.version, in.use_cache, [&](cached_token&) -> result<token> {
            std::string url = s.endpoint_url + (s.endpoint_url.find('?') == std::string::npos ? "?" : "&") +
                              "resource=" + http::form_encode(s.resource);
            if (in.secret.view() != "system-assigned") url += "&client_id=" + http::form_encode(in.secret.view());
            return token_request(url, {});
        });
    });
    schemes_.emplace(to_string(auth_mode::oauth2_authorization_code), [this](auth_scheme_input const& in) {
        return bearer(in.credential, in.version, in.use_cache, [&](cached_token& entry) {
            return refresh_authorization(in.ctx, in.credential, in.secret, !in.use_cache, entry);
        });
    });
}

std::shared_ptr<credential_service::cached_token> credential_service::cache_entry(std::string const& credential_id) {
    std::lock_guard lock(cache_mutex_);
    auto& e = cache_[credential_id];
    if (!e) e = std::make_shared<cached_token>();
    return e;
}

namespace {

std::size_t token_hash(secret_bytes const& t) {
    return std::hash<std::string_view>{}(t.view()) | 1;  // never 0, which means "none refused"
}

}  // namespace

void credential_service::invalidate_token(std::string const& credential_id) {
    forget_material(credential_id);
    // Not under the entry's lock, which a refresh holds while it waits for the store's lease and
    // the token endpoint. An entry not made yet has nothing to drop.
    std::lock_guard lock(cache_mutex_);
    if (auto it = cache_.find(credential_id); it != cache_.end()) it->second->invalidated = true;
}

void credential_service::token_refused(std::string const& credential_id, resolved_credential const& sent) {
    forget_material(credential_id);
    // Called on the transport's event loop after a 401: not under the entry's lock (see above).
    // The calls in flight with a token all get their 401 after the first of them fetched the
    // next one: only the token they were sent with is dropped, not its successor each time.
    std::lock_guard lock(cache_mutex_);
    auto it = cache_.find(credential_id);
    if (it == cache_.end() || sent.secrets.empty()) return;
    // A bearer's secret is its token.
    if (token_hash(sent.secrets.back()) == it->second->token_hash.load()) it->second->invalidated = true;
}

credential_service::cache_sizes credential_service::cached() const {
    cache_sizes out;
    {
        std::lock_guard lock(cache_mutex_);
        out.tokens = cache_.size();
    }
    std::shared_lock lock(material_mutex_);
    out.materials = materials_.size();
    return out;
}

void credential_service::drop_token(std::string const& credential_id) {
    forget_material(credential_id);
    std::shared_ptr<cached_token> gone;
    {
        std::lock_guard lock(cache_mutex_);
        auto it = cache_.find(credential_id);
        if (it == cache_.end()) return;
        gone = std::move(it->second);
        cache_.erase(it);
    }
    // A fetch in flight holds the entry: it checks the revocation before it hands out its token,
    // and the entry (its token and authorization document wiped) goes with its last holder.
    gone->invalidated = true;
}

bool credential_service::refresh_exhausted(std::string const& credential_id) {
    auto e = cache_entry(credential_id);
    std::lock_guard lock(e->refresh);
    return e->exhausted;
}

result<resolved_credential> credential_service::bearer(integration_credential const& c, std::int64_t version,
                                                       bool use_cache, token_fetch const& fetch) {
    resolved_credential out;
    out.auth_mode = c.data().auth_mode;
    auto add = [&](secret_bytes const& t) {
        auto v = secret_bytes::zeroed(7 + t.size());
        std::copy_n("Bearer ", 7, reinterpret_cast<char*>(v.data()));
        std::copy(t.data(), t.data() + t.size(), v.data() + 7);
        out.headers.emplace_back("Authorization", std::move(v));
        out.secrets.push_back(t.clone());
    };
    if (!use_cache) {
        cached_token scratch;
        auto t = fetch(scratch);
        if (!t) return t.error();
        add(t->access);
        return out;
    }
    auto entry = cache_entry(c.id());
    // Single flight: callers queue on the entry and re-check after acquiring it.
    std::lock_guard lock(entry->refresh);
    if (entry->version < version) {
        // Newer material (a rotation): nothing the entry learnt of the older one holds for it.
        entry->token.clear();
        entry->token_hash = 0;
        entry->document.clear();
        entry->failing_since.reset();
        entry->last_failure.reset();
        entry->exhausted = false;
        entry->version = version;
    }
    if (entry->invalidated.exchange(false)) {
        entry->token.clear();
        entry->token_hash = 0;
    }
    // A token is fetched again `refresh_margin` before it expires, or half way through a shorter
    // life (a 60 s token was fetched again at every use).
    auto const margin = std::min<std::chrono::nanoseconds>(options_.refresh_margin, (entry->expires_at - entry->fetched_at) / 2);
    // An entry newer than the caller's version was refreshed by another caller since this one
    // read its material: its token serves (a refresh with the caller's spent token would not).
    if (entry->token.empty() || clock_.now() + margin >= entry->expires_at) {
        auto t = fetch(*entry);
        if (!t) return t.error();
        // A revocation that committed while the token was fetched: the token is not handed out,
        // and nothing the fetch kept (a rotated refresh token) stays in memory. (A store that
        // cannot answer does not stop the calls the token is for.)
        auto now_stored = storage::read_for(store_, request_context::for_tenant(c.meta().tenant_id, "credential-service"),
                                            [&](storage::unit_of_work& uow) { return uow.credentials().find(c.id()); });
        if (now_stored && now_stored->status() == credential_status::revoked) {
            entry->document.clear();
            return error{errc::invalid_state, "credential " + c.id() + " was revoked while its token was fetched"};
        }
        entry->token = std::move(t->access);
        entry->token_hash = token_hash(entry->token);
        entry->fetched_at = clock_.now();
        entry->expires_at = t->expires_at;
    }
    add(entry->token);
    out.expires_at = entry->expires_at;
    return out;
}

namespace {

/** A token's `expires_in`: whole seconds between 0 and a year. A fraction is rounded down, a
 *  number out of that range bounded, and anything else (text that is not a whole number, another
 *  type) read as absent: an hour. IMDS sends the number as a string. */
std::chrono::seconds lifetime(boost::json::value const* v) {
    constexpr double year = 365.0 * 24 * 3600;
    double s = 3600;
    if (v && v->is_int64()) s = static_cast<double>(v->get_int64());
    else if (v && v->is_uint64()) s = static_cast<double>(v->get_uint64());
    else if (v && v->is_double() && std::isfinite(v->get_double())) s = v->get_double();
    else if (v && v->is_string()) {
        std::int64_t n = 0;
        auto const& text = v->get_string();
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
        if (ec == std::errc() && end == text.data() + text.size()) s = static_cast<double>(n);
        else if (ec == std::errc::result_out_of_range) s = text.starts_with("-") ? 0 : year;
    }
    return std::chrono::seconds(static_cast<std::int64_t>(std::clamp(s, 0.0, year)));
}

}  // namespace

result<credential_service::token> credential_service::token_request(std::string const& url, std::string body,
                                                                    bool spends_grant) {
    http::request req;
    req.url = url;
    req.timeout = options_.token_timeout;
    // libcurl re-sends a request whose reused connection dies before the answer: the provider may
    // have spent the grant on the first copy and would refuse the second as invalid_grant.
    req.repeatable = !spends_grant;
    req.headers = {{"Accept", "application/json"}};
    bool const body_was_empty = body.empty();
    if (body.empty()) {
        req.method = "GET";
        req.headers.emplace_back("Metadata", "true");
    } else {
        req.method = "POST";
        req.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
        req.body = std::move(body);
    }
    auto now = clock_.now();
    http::call_context call;
    // A GET is a managed identity's token request (the others POST their grant).
    auto res = (body_was_empty ? identity_outbound_ : outbound_).send(req, call);
    crypto::wipe(req.body);
    if (!res) return error{res.error().code(), "token endpoint " + detail::url_without_secrets(url) + ": " + res.error().detail()};
    boost::system::error_code ec;
    auto j = boost::json::parse(res->body, ec);
    crypto::wipe(res->body);
    auto* obj = ec ? nullptr : j.if_object();
    if (res->status == 400 || res->status == 401 || res->status == 403) {
        // Only the error codes of RFC 6749 section 5.2 are repeated: any other text the endpoint
        // sent is its own, and may hold what it was sent.
        static constexpr std::string_view known[] = {"invalid_request",     "invalid_client",         "invalid_grant",
                                                     "unauthorized_client", "unsupported_grant_type", "invalid_scope"};
        std::string code;
        if (obj)
            if (auto const* e = obj->if_contains("error"); e && e->is_string())
                if (std::find(std::begin(known), std::end(known), std::string_view(e->get_string())) != std::end(known))
                    code = e->get_string();
        return error{errc::forbidden, "token endpoint " + detail::url_without_secrets(url) + " refused the request (HTTP " + std::to_string(res->status) +
                                          (code.empty() ? "" : ", " + code) + "); check the client id and secret"};
    }
    if (res->status < 200 || res->status > 299)
        return error{errc::unavailable, "token endpoint " + detail::url_without_secrets(url) + " answered HTTP " + std::to_string(res->status)};
    auto* access = obj ? obj->if_contains("access_token") : nullptr;
    if (!access || !access->is_string() || access->get_string().empty())
        return error{errc::unavailable, "token endpoint " + detail::url_without_secrets(url) + " returned no access_token"};
    token t{secret_bytes(std::string_view(access->get_string())), now + lifetime(obj->if_contains("expires_in")), {}};
    if (auto* r = obj->if_contains("refresh_token"); r && r->is_string()) t.refresh = secret_bytes(std::string_view(r->get_string()));
    // The parsed document held the tokens too.
    for (auto* v : {access, obj->if_contains("refresh_token"), obj->if_contains("id_token")})
        if (v && v->is_string()) std::fill(v->get_string().begin(), v->get_string().end(), '\0');
    return t;
}

// ---- authorization code --------------------------------------------------------------------------

namespace {

/** The vault document of an authorization-code credential (the client secret and the refresh
 *  token), or of a pending authorization (the client secret and the PKCE verifier). */
secret_bytes auth_document(std::string_view client_secret, std::string_view second,
                           char const* second_name = "refreshToken") {
    boost::json::object o{{"clientSecret", client_secret}, {second_name, second}};
    auto text = boost::json::serialize(o);
    secret_bytes out(text);
    crypto::wipe(text);
    for (auto& kv : o) std::fill(kv.value().as_string().begin(), kv.value().as_string().end(), '\0');
    return out;
}

result<std::pair<secret_bytes, secret_bytes>> parse_auth_document(secret_bytes const& doc, char const* second_name) {
    boost::system::error_code ec;
    auto j = boost::json::parse(doc.view(), ec);
    auto* o = ec ? nullptr : j.if_object();
    auto* cs = o ? o->if_contains("clientSecret") : nullptr;
    auto* rt = o ? o->if_contains(second_name) : nullptr;
    if (!cs || !rt || !cs->is_string() || !rt->is_string())
        return error{errc::integrity_failure, "the stored authorization document is malformed"};
    std::pair out{secret_bytes(std::string_view(cs->get_string())), secret_bytes(std::string_view(rt->get_string()))};
    std::fill(cs->get_string().begin(), cs->get_string().end(), '\0');
    std::fill(rt->get_string().begin(), rt->get_string().end(), '\0');
    return out;
}

std::string random_token(std::size_t bytes) {
    std::vector<unsigned char> b(bytes);
    random_bytes(b.data(), b.size());
    return crypto::base64url(b.data(), b.size());
}

}  // namespace

result<authorization_request> credential_service::begin_authorization(request_context const& ctx,
                                                                       std::string const& provider_id,
                                                                       std::optional<std::string> connection_id,
                                                                       authorization_code_settings settings,
                                                                       secret_bytes client_secret) {
    if (auto r = require_endpoint_url(settings.authorize_url, "authorizeUrl"); !r) return r.error();
    if (auto r = require_endpoint_url(settings.token_url, "tokenUrl"); !r) return r.error();
    if (auto r = require_endpoint_url(settings.redirect_uri, "redirectUri"); !r) return r.error();
    if (auto r = detail::require_text(settings.client_id, "clientId"); !r) return r.error();
    if (client_secret.empty()) return error{errc::invalid_argument, "clientSecret must not be empty"};
    if (auto r = find_references(store_, ctx, provider_id, connection_id); !r) return r.error();
    // PKCE (RFC 7636): a 256-bit verifier; the challenge is its SHA-256, base64url.
    auto verifier_text = random_token(32);
    auto digest = crypto::from_hex(crypto::sha256_hex(verifier_text)).value();
    auto challenge = crypto::base64url(digest.data(), digest.size());
    auto state = random_token(24) + "." + ctx.tenant_id;
    std::string scope;
    for (auto const& sc : settings.scopes) scope += (scope.empty() ? "" : " ") + sc;
    std::string url = settings.authorize_url + (settings.authorize_url.find('?') == std::string::npos ? "?" : "&") +
                      "response_type=code&client_id=" + http::form_encode(settings.client_id) +
                      "&redirect_uri=" + http::form_encode(settings.redirect_uri) + "&state=" + http::form_encode(state) +
                      "&code_challenge=" + challenge + "&code_challenge_method=S256";
    if (!scope.empty()) url += "&scope=" + http::form_encode(scope);
    auto now = clock_.now();
    authorization_request out{url, state, now + options_.authorization_ttl};
    // The pending flow lives in the store (a callback may reach another host, or this one
    // restarted); its secrets live in the secret store, and only the state's hash is kept.
    auto doc = auth_document(client_secret.view(), verifier_text, "codeVerifier");
    crypto::wipe(verifier_text);
    auto ref = secrets_.put(ctx.tenant_id, new_id("secret", now), doc);
    if (!ref) return ref.error();
    storage::pending_authorization p{crypto::sha256_hex(state), provider_id, std::move(connection_id), ctx.actor,
                                     boost::json::serialize(to_json(settings)), ref->uri(), out.expires_at};
    std::vector<storage::pending_authorization> expired;
    auto stored = store_.transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
        auto purged = uow.authorizations().purge_expired(now);
        if (!purged) return purged.error();
        expired = std::move(*purged);
        return uow.authorizations().add(p);
    });
    if (!stored) {
        forget_secret(ctx.tenant_id, ref->uri());
        return stored.error();
    }
    for (auto const& e : expired) forget_secret(ctx.tenant_id, e.secret_ref);
    return out;
}

void credential_service::forget_secret(std::string const& tenant, std::string const& uri) {
    auto ref = secret_ref::parse(uri);
    if (!ref) return;
    (void)secrets_.soft_delete(tenant, ref->name);
    (void)secrets_.purge(tenant, ref->name);  // may be refused inside purge protection: soft-deleted is unreadable
}

std::string tenant_of_state(std::string_view state) {
    auto dot = state.find('.');
    auto tenant = dot == std::string_view::npos ? std::string() : std::string(state.substr(dot + 1));
    return validate_tenant_id(tenant) ? tenant : std::string();
}

result<std::pair<request_context, storage::pending_authorization>> credential_service::take_authorization(
    std::string const& state) {
    // The pending flow is looked up in the tenant the state names only.
    auto tenant = tenant_of_state(state);
    if (tenant.empty()) return error{errc::forbidden, "unknown or already used state; start the authorization again"};
    auto ctx = request_context::for_tenant(tenant, "authorization-callback");
    auto hash = crypto::sha256_hex(state);
    std::vector<storage::pending_authorization> expired;
    // Expired flows (this one too, if it is) are purged first and their secrets deleted.
    auto taken = storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<storage::pending_authorization> {
        auto purged = uow.authorizations().purge_expired(clock_.now());
        if (!purged) return purged.error();
        expired = std::move(*purged);
        auto t = uow.authorizations().take(hash, clock_.now());
        if (!t && t.error() == errc::not_found) return storage::pending_authorization{};  // commit the purge
        return t;
    });
    for (auto const& e : expired) forget_secret(tenant, e.secret_ref);
    if (!taken) return taken.error();
    if (taken->state_hash.empty()) {
        bool was_expired = std::any_of(expired.begin(), expired.end(), [&](auto const& e) { return e.state_hash == hash; });
        return error{errc::forbidden, was_expired ? "the authorization expired; start it again"
                                                  : "unknown or already used state; start the authorization again"};
    }
    return std::pair{std::move(ctx), std::move(*taken)};
}

result<void> credential_service::abandon_authorization(std::string const& state) {
    auto taken = take_authorization(state);
    if (!taken) return taken.error();
    forget_secret(taken->first.tenant_id, taken->second.secret_ref);
    return {};
}

result<integration_credential> credential_service::complete_authorization(std::string const& state,
                                                                          std::string const& code) {
    auto taken = take_authorization(state);
    if (!taken) return taken.error();
    auto& [ctx, p] = *taken;
    auto const& tenant = ctx.tenant_id;
    ctx.actor = p.actor;
    auto doc = [&]() -> result<secret_bytes> {
        auto ref = secret_ref::parse(p.secret_ref);
        if (!ref) return ref.error();
        return secrets_.get(tenant, *ref);
    }();
    forget_secret(tenant, p.secret_ref);
    if (!doc) return doc.error();
    auto secrets = parse_auth_document(*doc, "codeVerifier");
    if (!secrets) return secrets.error();
    authorization_code_settings s;
    {
        boost::system::error_code ec;
        auto j = boost::json::parse(p.settings, ec);
        if (ec) return error{errc::integrity_failure, "the stored authorization settings are malformed"};
        if (auto fr = from_json(j, s, "settings"); !fr) return fr.error();
    }
    if (code.empty()) return error{errc::invalid_argument, "the callback carried no code"};
    std::string body = "grant_type=authorization_code&code=" + http::form_encode(code) +
                       "&redirect_uri=" + http::form_encode(s.redirect_uri) + "&client_id=" + http::form_encode(s.client_id) +
                       "&client_secret=" + http::form_encode(secrets->first.view()) +
                       "&code_verifier=" + http::form_encode(secrets->second.view());
    auto t = token_request(s.token_url, std::move(body), true);
    if (!t) return t.error();
    if (t->refresh.empty()) return error{errc::unavailable, "the token endpoint returned no refresh_token; request offline access"};
    auto vault_doc = auth_document(secrets->first.view(), t->refresh.view());
    auto ref = secrets_.put(tenant, new_id("secret", clock_.now()), vault_doc);
    if (!ref) return ref.error();
    credential_spec cs;
    cs.provider_id = p.provider_id;
    cs.connection_id = p.connection_id;
    cs.auth_mode = auth_mode::oauth2_authorization_code;
    cs.key_vault_ref = ref->uri();
    cs.fingerprint = fingerprints_.fingerprint(vault_doc);
    cs.auth_parameters["oauth2"] = to_json(s);
    auto created = storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<integration_credential> {
        auto c = integration_credential::create(ctx, clock_.now(), cs);
        if (!c) return c.error();
        if (auto sv = uow.credentials().save(*c); !sv) return sv.error();
        return std::move(*c);
    });
    if (!created) {
        (void)secrets_.soft_delete(tenant, ref->name);
        return created;
    }
    // The exchange gave an access token already: cache it.
    auto entry = cache_entry(created->id());
    std::lock_guard lock(entry->refresh);
    entry->token = std::move(t->access);
    entry->expires_at = t->expires_at;
    entry->version = ref->version;
    return created;
}

result<credential_service::token> credential_service::refresh_authorization(request_context const& ctx,
                                                                            integration_credential const& c,
                                                                            secret_bytes const& stored, bool staged,
                                                                            cached_token& entry, bool retried) {
    // After a rotation the entry holds the newest refresh token; the caller's may be spent.
    auto now = clock_.now();
    if (entry.exhausted)
        return error{errc::forbidden, "the refresh token of credential " + c.id() + " is exhausted; authorize again"};
    if (entry.last_failure && now < *entry.last_failure + options_.refresh_cooldown)
        return error{errc::unavailable, "the last refresh of credential " + c.id() + " failed; cooling down until " +
                                            format_time(*entry.last_failure + options_.refresh_cooldown)};
    std::shared_ptr<void> lease;
    if (!staged) {
        // A verification (staged) refreshes a version no other process uses yet; the active one
        // is refreshed by one process at a time, and what another stored meanwhile serves here.
        auto held = take_refresh_lease(ctx, c.id());
        if (!held) {
            entry.last_failure = clock_.now();  // callers queued behind this one do not wait again
            return held.error();
        }
        lease = std::move(*held);
        now = clock_.now();  // the wait may have been long
        if (!retried) adopt_newer_document(ctx, c, entry);
    }
    auto const& document = entry.document.empty() ? stored : entry.document;
    // The version that document is: a rotation that ends while this refresh waits moves the row
    // past it, and the refresh then must not put the old client secret back.
    auto const refreshed = secret_ref::parse(c.data().key_vault_ref);
    if (!refreshed) return refreshed.error();
    auto const refreshed_version = entry.document.empty() ? refreshed->version : entry.version;
    auto parts = parse_auth_document(document);
    if (!parts) return parts.error();
    authorization_code_settings s;
    if (auto const* p = c.data().auth_parameters.if_contains("oauth2"))
        if (auto r = from_json(*p, s, "oauth2"); !r) return r.error();
    std::string body = "grant_type=refresh_token&refresh_token=" + http::form_encode(parts->second.view()) +
                       "&client_id=" + http::form_encode(s.client_id) +
                       "&client_secret=" + http::form_encode(parts->first.view());
    auto t = token_request(s.token_url, std::move(body), true);
    if (!t) {
        // A version being verified that the provider refuses fails its verification only: the
        // active version, and the connections using it, are as they were.
        if (staged) return t.error();
        bool revoked = t.error().detail().find("invalid_grant") != std::string::npos;
        if (revoked && !retried) {
            // Another process may have used this refresh token and stored the one the provider
            // rotated it to (without the lease: the store was unavailable to it, or its lease
            // lapsed): that one is tried once before the credential counts as exhausted.
            if (adopt_newer_document(ctx, c, entry)) return refresh_authorization(ctx, c, entry.document, staged, entry, true);
        }
        entry.last_failure = now;
        if (!entry.failing_since) entry.failing_since = now;
        if (revoked || now - *entry.failing_since >= options_.refresh_exhausted_after) {
            entry.exhausted = true;
            mark_exhausted(ctx, c, revoked ? "the provider refused the refresh token (invalid_grant)"
                                           : "refreshes kept failing: " + t.error().detail());
        }
        return t.error();
    }
    entry.last_failure.reset();
    entry.failing_since.reset();
    if (!t->refresh.empty() && !(t->refresh == parts->second)) {
        // Refresh-token rotation: the old token is now invalid, so the new one is kept (in the
        // entry at once, in the secret store before the access token is used) and the
        // credential's version moves to it. A staged version being verified is replaced in place.
        auto doc = auth_document(parts->first.view(), t->refresh.view());
        auto name = secret_ref::parse(staged && c.staged_version() ? c.staged_version()->key_vault_ref : c.data().key_vault_ref);
        if (!name) return name.error();
        // Kept in the entry before the secret store is asked: the provider has spent the old
        // token, so if the store fails the new one is the only one left, and this process goes
        // on refreshing with it (and storing its successor) instead of being refused.
        if (!staged) entry.document = doc.clone();
        auto ref = secrets_.put(ctx.tenant_id, name->name, doc);
        if (!ref) {
            if (staged) return ref.error();
            return t;  // the access token is good; the next refresh stores the token after this one
        }
        auto fp = fingerprints_.fingerprint(doc);
        bool superseded = false, revoked = false;
        std::optional<integration_credential> moved;  // the row, moved to the new version
        auto saved = store_.transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
            moved.reset();
            superseded = revoked = false;
            auto fresh = uow.credentials().find(c.id());
            if (!fresh) return fresh.error();
            if (staged) {
                if (auto r = fresh->restage(ref->uri(), fp); !r) return r;
            } else {
                revoked = fresh->status() == credential_status::revoked;
                if (revoked) return error{errc::invalid_state, "credential " + c.id() + " was revoked during its refresh"};
                auto row = secret_ref::parse(fresh->data().key_vault_ref);
                superseded = !row || row->name != refreshed->name || row->version != refreshed_version;
                if (superseded) return {};
                if (auto b = fresh->begin_rotation(ref->uri(), fp, now); !b) return b.error();
                if (auto d = fresh->complete_rotation(now); !d) return d;
            }
            if (auto r = uow.credentials().save(*fresh); !r) return r;
            if (!staged) moved = std::move(*fresh);
            return {};
        });
        if (superseded || revoked) {
            // Newer material (a rotation) or none (a revocation) replaced what was refreshed: the
            // version put here is named by nothing, and the entry forgets the document.
            (void)secrets_.disable(ctx.tenant_id, *ref);
            entry.document = secret_bytes();
            if (revoked) return saved.error();
            return t;
        }
        // The access token is good either way. Unsaved, the new refresh token still serves this
        // process from the entry, and its next refresh saves the one after it; a verification's
        // goes with its staged version. Saved, the entry keeps it too: a caller that read the
        // credential before this refresh holds the spent token, and refreshes with the entry's.
        // The entry takes the version only once the row names it: unsaved (the store failed, or
        // a rotation under way refused the change), the row's next version is newer material
        // that replaces what the entry holds.
        if (!saved && staged) {
            (void)secrets_.disable(ctx.tenant_id, *ref);  // named by no version: the rotation fails
            return saved.error();
        }
        if (saved && !staged) {
            entry.version = ref->version;
            disable_older_versions(secrets_, ctx.tenant_id, *moved);
        }
    }
    return t;
}

result<std::shared_ptr<void>> credential_service::take_refresh_lease(request_context const& ctx, std::string const& id) {
    // A lease outlives the token request it covers; a shorter setting would let refreshes overlap.
    auto lasts = std::max<std::chrono::milliseconds>(options_.refresh_lease, 2 * options_.token_timeout);
    // The wait is measured on the steady clock: a lease left by a stopped process lapses on the
    // service's clock, and a caller gives up (for now) rather than wait longer than a lease lives.
    auto give_up = std::chrono::steady_clock::now() + lasts;
    auto pause = std::chrono::milliseconds(10);
    for (;;) {
        auto now = clock_.now();
        bool taken = false;
        // Not fsynced: a lease lost to a power cut only lets the next refresh start sooner.
        auto r = store_.transact(
            ctx,
            [&](storage::unit_of_work& uow) -> result<void> {
                auto t = uow.credentials().lease_refresh(id, lease_owner_, now, now + lasts);
                if (!t) return t.error();
                taken = *t;
                return {};
            },
            durability::deferred);
        // A store that cannot take the lease (full, read-only, gone) does not stop the refresh
        // that keeps the vendor calls going: it goes ahead as it did before leases.
        if (!r) return std::shared_ptr<void>();
        if (taken)
            return std::shared_ptr<void>(nullptr, [this, ctx, id](void*) noexcept {
                try {
                    (void)store_.transact(
                        ctx, [&](storage::unit_of_work& uow) { return uow.credentials().end_refresh_lease(id, lease_owner_); },
                        durability::deferred);
                } catch (...) {  // the lease lapses on its own
                }
            });
        if (std::chrono::steady_clock::now() >= give_up)
            return error{errc::unavailable, "another process has been refreshing the token of credential " + id +
                                                " for longer than the refresh lease; try again"};
        std::this_thread::sleep_for(pause);
        pause = std::min(pause * 2, std::chrono::milliseconds(200));
    }
}

bool credential_service::adopt_newer_document(request_context const& ctx, integration_credential const& c,
                                              cached_token& entry) {
    auto used = secret_ref::parse(c.data().key_vault_ref);  // the caller's version, unless the entry has one
    if (!used) return false;
    auto version = entry.document.empty() ? used->version : entry.version;
    auto fresh = storage::read_for(store_, ctx, [&](storage::unit_of_work& uow) { return uow.credentials().find(c.id()); });
    auto newest = fresh ? secret_ref::parse(fresh->data().key_vault_ref) : result<secret_ref>(fresh.error());
    // Another secret's version is a rotation's business, not a refresh token's successor.
    if (!newest || newest->name != used->name || newest->version <= version) return false;
    auto doc = secrets_.get(ctx.tenant_id, *newest);
    if (!doc) return false;
    entry.document = std::move(*doc);
    entry.version = newest->version;
    return true;
}

void credential_service::mark_exhausted(request_context const& ctx, integration_credential const& c,
                                        std::string const& reason) {
    auto now = clock_.now();
    (void)store_.transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
        auto f = failures::integration_failure::record(
            ctx, now, failures::failure_source::credential_refresh, c.id(), c.data().provider_id,
            {failures::failure_category::auth, "refresh_exhausted", reason, failures::next_action::escalate, {}});
        if (!f) return f.error();
        if (auto s = uow.failures().save(*f); !s) return s;
        if (!c.data().connection_id) return {};
        auto conn = uow.connections().find(*c.data().connection_id);
        if (!conn) return {};
        if (conn->status() == connections::connection_status::retired) return {};
        if (auto h = conn->record_health({health_status::degraded, "refresh token exhausted: " + reason,
                                          failures::failure_category::auth},
                                         now);
            !h)
            return h;
        return uow.connections().save(*conn);
    });
}

}  // namespace integration::credentials
