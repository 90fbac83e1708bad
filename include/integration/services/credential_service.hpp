#ifndef INTEGRATION_SERVICES_CREDENTIAL_SERVICE_HPP
#define INTEGRATION_SERVICES_CREDENTIAL_SERVICE_HPP

/** @file
 *  Credentials without plaintext: secret material goes straight into the secret store; the
 *  IntegrationCredential row keeps only its reference, version and fingerprint. Material is
 *  resolved per request, never logged, and never placed in events, errors or blobs.
 */

#include <integration/ports/clock.hpp>
#include <integration/domain/credential.hpp>
#include <integration/services/fingerprint.hpp>
#include <integration/ports/secret_store.hpp>
#include <integration/ports/transport.hpp>
#include <integration/outbound/egress_policy.hpp>
#include <integration/outbound/pipeline.hpp>
#include <integration/ports/store.hpp>
#include <integration/export.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string_view>

namespace integration::credentials {

/** Where an API key goes: a header or a query parameter, with an optional prefix ("Bearer "). */
struct INTEGRATION_EXPORT api_key_placement {
    std::string in = "header";  ///< "header" or "query".
    std::string name = "Authorization";
    std::string prefix;

    static auto json_fields() {
        return std::make_tuple(defaulted_field("in", &api_key_placement::in), field("name", &api_key_placement::name),
                               defaulted_field("prefix", &api_key_placement::prefix));
    }
};

/** OAuth2 client-credentials settings; the client secret itself is the credential's secret. */
struct INTEGRATION_EXPORT oauth2_client_settings {
    std::string token_url;
    std::string client_id;
    std::vector<std::string> scopes;

    static auto json_fields() {
        return std::make_tuple(field("tokenUrl", &oauth2_client_settings::token_url),
                               field("clientId", &oauth2_client_settings::client_id),
                               defaulted_field("scopes", &oauth2_client_settings::scopes));
    }
};

/** OAuth2 authorization-code settings (with PKCE S256 and `state`). */
struct INTEGRATION_EXPORT authorization_code_settings {
    std::string authorize_url;
    std::string token_url;
    std::string client_id;
    std::vector<std::string> scopes;
    std::string redirect_uri;  ///< Where the provider sends the user back (the host's callback).

    static auto json_fields() {
        return std::make_tuple(field("authorizeUrl", &authorization_code_settings::authorize_url),
                               field("tokenUrl", &authorization_code_settings::token_url),
                               field("clientId", &authorization_code_settings::client_id),
                               field("scopes", &authorization_code_settings::scopes),
                               field("redirectUri", &authorization_code_settings::redirect_uri));
    }
};

/** Managed identity: tokens from an IMDS-style endpoint (`GET <endpoint>?resource=...` with
 *  `Metadata: true`); the credential's secret is the identity's client id, if any. */
struct INTEGRATION_EXPORT managed_identity_settings {
    std::string endpoint_url;  ///< e.g. http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01
    std::string resource;      ///< The audience, e.g. https://management.azure.com/

    static auto json_fields() {
        return std::make_tuple(field("endpointUrl", &managed_identity_settings::endpoint_url),
                               field("resource", &managed_identity_settings::resource));
    }
};

/** The start of an authorization-code flow: send the user to `url`. */
struct authorization_request {
    std::string url;
    std::string state;
    time_point expires_at{};
};

/** What a caller supplies to create a credential. */
struct new_credential {
    std::string provider_id;
    std::optional<std::string> connection_id;
    integration::auth_mode auth_mode = integration::auth_mode::api_key;
    secret_bytes secret;  ///< The API key or client secret; moved into the secret store.
    /** An auth scheme added with `credential_service::add_scheme`, instead of the built-in one of
     *  `auth_mode`; the credential keeps its name and that scheme builds its material. */
    std::optional<std::string> scheme;
    std::optional<api_key_placement> api_key;       ///< For ApiKey.
    std::optional<oauth2_client_settings> oauth2;   ///< For OAuth2ClientCredentials.
    std::optional<managed_identity_settings> managed_identity;  ///< For ManagedIdentity.
    std::optional<credentials::rotation_policy> rotation_policy;
    std::optional<time_point> expires_at;
};

/** Material for one request: headers and query parameters to add. Wiped when destroyed. */
struct INTEGRATION_EXPORT resolved_credential {
    integration::auth_mode auth_mode = integration::auth_mode::api_key;
    std::vector<std::pair<std::string, secret_bytes>> headers;
    std::vector<std::pair<std::string, secret_bytes>> query;
    /** The secrets inside `headers` and `query` without their prefix (the key, the bearer token):
     *  what `credential_service::send_authorized` redacts from answers. */
    std::vector<secret_bytes> secrets;
    std::optional<time_point> expires_at;  ///< When a bearer token expires.

    /** An explicit copy. */
    resolved_credential clone() const;
};

/** Where a credential's material goes in a request: header names (an API key's header, or
 *  `Authorization` for bearer tokens) and query parameter names. */
struct material_placement {
    std::vector<std::string> headers;
    std::vector<std::string> query;
};

/** Where `c` puts its material; reads only its auth parameters, no secret. A caller's request
 *  that already uses one of these names is refused, so a caller's value never precedes or
 *  replaces the credential's. */
INTEGRATION_EXPORT material_placement placement_of(integration_credential const& c);

/** What an auth scheme gets to build the material of one request. */
struct auth_scheme_input {
    request_context const& ctx;
    integration_credential const& credential;  ///< Its `auth_parameters` hold the scheme's settings.
    secret_bytes const& secret;                ///< The secret of the version being resolved.
    std::int64_t version = 0;                  ///< That version's number.
    bool use_cache = true;                     ///< False while a rotation verifies a staged version.
};

/** An auth scheme: how a credential's secret becomes headers or query parameters of one request,
 *  with the secrets to redact from answers (`resolved_credential::secrets`). The built-in schemes
 *  are named after their `auth_mode` (`ApiKey`, `OAuth2ClientCredentials`,
 *  `OAuth2AuthorizationCode`, `ManagedIdentity`); a vendor adapter adds its own with
 *  `credential_service::add_scheme`. */
using auth_scheme = std::function<result<resolved_credential>(auth_scheme_input const&)>;

/** The name of the scheme that builds `c`'s material: the added scheme it was created with, else
 *  its `auth_mode`'s name. */
INTEGRATION_EXPORT std::string scheme_of(integration_credential const& c);

/** Checks candidate material (typically the connection's health check) before a rotation
 *  activates it. */
using verifier = std::function<result<void>(resolved_credential const&)>;

/** Options of the credential service. */
struct credential_service_options {
    std::chrono::seconds refresh_margin{120};  ///< Refresh cached tokens this long before expiry.
    std::chrono::milliseconds token_timeout{10'000};
    /** How long a refresh of an authorization-code token holds the credential's refresh lease in
     *  the store, and at most how long another caller (in any process on the store) waits for it:
     *  the provider takes a refresh token once, so refreshes of one credential take turns. A
     *  lease left by a process that stopped lapses after this. At least twice `token_timeout`
     *  (a shorter value is raised to that). */
    std::chrono::milliseconds refresh_lease{30'000};
    std::chrono::seconds refresh_cooldown{30};        ///< No new refresh attempt this soon after a failed one.
    std::chrono::hours refresh_exhausted_after{
        96};  ///< Failing this long (or invalid_grant) exhausts the refresh token.
    std::chrono::minutes authorization_ttl{10};       ///< How long a started authorization may be completed.
    /** How long resolved material is reused in memory. Rotation and revocation through this
     *  service drop it at once; this bounds how long another process's change takes to show. */
    std::chrono::milliseconds material_ttl{30'000};
    /** The tenants that may create and use ManagedIdentity credentials. A managed identity is
     *  the operator's own (the machine's), and its tokens go to whatever provider the credential
     *  serves: a tenant not listed is refused (`errc::forbidden`), at creation and at every use.
     *  Empty: none. */
    std::vector<std::string> managed_identity_tenants;
    /** Addresses that managed-identity token requests, and only they, may reach beside the
     *  egress policy's allow-list: the instance metadata endpoint (`169.254.169.254/32`).
     *  Allowed in the shared policy instead, every tenant's runs could reach it and read the
     *  machine's tokens. */
    std::vector<net::cidr> managed_identity_allow;
};

/** The tenant an OAuth2 authorization's `state` names (it is `<random>.<tenant>`: the callback
 *  carries no API key), unverified: for counting a callback against its tenant before the state
 *  is checked. Empty when the state names no valid tenant. */
INTEGRATION_EXPORT std::string tenant_of_state(std::string_view state);

/** Creates, rotates, revokes and resolves credentials.
 *
 *  Every call it makes itself (OAuth2 token, authorization-code exchange and refresh, managed
 *  identity) goes through an outbound pipeline with the egress policy of `egress` and `names`:
 *  the same egress check and DNS pin as a run. Material comes from a registry of auth schemes
 *  (`add_scheme`).
 *
 *  @par Example
 *  @code
 *  credential_service creds(store, vault, fingerprints, clock, transport, egress, dns);
 *  auto c = creds.create(ctx, {.provider_id = p.id(), .secret = secret_bytes(key),
 *                              .api_key = api_key_placement{.name = "X-Api-Key"}}).value();
 *  auto material = creds.resolve(ctx, c.id()).value();  // headers to add to one request
 *  @endcode
 */
class INTEGRATION_EXPORT credential_service {
public:
    /** `transport` and `names` must outlive the service. */
    credential_service(storage::store& store, secret_store& secrets, fingerprinter const& fingerprints,
                       clock const& clock, http::transport& transport, net::egress_policy egress, net::resolver& names,
                       credential_service_options options = {});

    /** Adds an auth scheme under `name`, which `new_credential::scheme` then names. Fails
     *  (`errc::already_exists`) when the name is taken, by a built-in scheme too, and
     *  (`errc::invalid_argument`) when it is empty or `scheme` is empty. Thread-safe. */
    result<void> add_scheme(std::string name, auth_scheme scheme);

    /** Stores the secret in the secret store and the reference in a new Active credential
     *  (ApiKey, OAuth2ClientCredentials, ManagedIdentity, or an added scheme). `provider_id` and `connection_id` are
     *  resolved in the caller's tenant: another tenant's is `errc::not_found`. */
    result<integration_credential> create(request_context const& ctx, new_credential spec);
    /** Stages `new_secret` as the next version, verifies it, and activates it only if it passes;
     *  otherwise the prior version stays active and IntegrationFailed is raised. When the secret
     *  store fails, nothing changes and the error says to retry. */
    result<integration_credential> rotate(request_context const& ctx, std::string const& credential_id,
                                          secret_bytes new_secret, verifier const& verify,
                                          std::optional<time_point> new_expires_at = std::nullopt);
    /** Ends a rotation that began (its version staged) before `started_before` and never ended:
     *  the process rotating it stopped, and a Rotating credential can be neither rotated nor
     *  refreshed. The prior version stays active, the staged one is Failed and disabled in the
     *  secret store. Nothing happens (nullopt) when the credential is not Rotating or its
     *  rotation is younger. The rotation worker calls it on every sweep. */
    result<std::optional<integration_credential>> abandon_rotation(request_context const& ctx, std::string const& credential_id,
                                                                   time_point started_before);
    /** Revokes the credential and disables its versions in the secret store; every connection
     *  using it is Unhealthy (an Active one Degraded) in the same commit, so it runs nothing. */
    result<integration_credential> revoke(request_context const& ctx, std::string const& credential_id,
                                          std::string reason);
    /** Material for one request with the active version (tokens cached and refreshed early). */
    result<resolved_credential> resolve(request_context const& ctx, std::string const& credential_id);
    /** True when `resolve` answers from memory (the material is cached and valid for at least
     *  100 ms more): no store or vault read and no token request, so a caller on an event loop
     *  may resolve there. */
    bool resolves_without_blocking(request_context const& ctx, std::string const& credential_id);

    /** What this process keeps in memory, for metrics: credentials with a token entry, and
     *  resolved materials (a revoked credential's are dropped; expired ones go as new ones come). */
    struct cache_sizes {
        std::size_t tokens = 0;
        std::size_t materials = 0;
    };
    cache_sizes cached() const;
    /** Sends `request` with the credential's material applied. On a 401 with a bearer token
     *  (OAuth2 or managed identity) the token is refreshed once and the request sent again; a
     *  second 401 is returned for the caller to classify as Auth.
     *
     *  The answer's header names and values and its body, and an error's detail, come back with
     *  every secret of the material replaced by `[REDACTED]`, so a vendor that echoes the key or
     *  token never gets it recorded: raw (so also after its `Bearer` or API-key prefix), percent-
     *  or form-encoded, JSON-escaped, and in base64 or base64url at any alignment. Secrets shorter
     *  than 4 bytes are left alone (too short to tell from ordinary text). A request that already
     *  carries one of the credential's header names is refused (`errc::invalid_argument`).
     *
     *  The material is added to `request` for the call and removed (and wiped) after it, and the
     *  rest of the pipeline (`next`) sends it: this is the authentication step of an outbound
     *  pipeline (`authentication_policy`), never a way around it.
     *  `call.credential_unresolved` is set when the material did not resolve (nothing was sent). */
    result<http::response> send_authorized(request_context const& ctx, std::string const& credential_id,
                                            http::request& request, http::next_policy const& next,
                                            http::call_context& call);
    /** The asynchronous form of `send_authorized`: the rest of the pipeline is started with
     *  `next.start` and `done` runs once with the redacted answer (after one refresh and resend
     *  on a 401 for bearer tokens). `ctx`, `request` and `call` must live until then. */
    void start_authorized(request_context const& ctx, std::string credential_id, http::request& request,
                          http::next_policy next, http::call_context& call, http::transport::completion done,
                          bool refreshed = false);
    /** Drops a credential's cached token and material: the next resolve reads and fetches afresh. */
    void invalidate_token(std::string const& credential_id);

    /** Starts an authorization-code flow: keeps the flow in the store for `authorization_ttl`
     *  (the hash of a random `state`, which ends in `.<tenant>`; the client secret and a PKCE
     *  verifier in the secret store), so any instance on the same store completes it, also after
     *  a restart. Returns the URL to send the user to. `provider_id` and `connection_id` are
     *  resolved in the caller's tenant, as for `create`. */
    result<authorization_request> begin_authorization(request_context const& ctx, std::string const& provider_id,
                                                      std::optional<std::string> connection_id,
                                                      authorization_code_settings settings, secret_bytes client_secret);
    /** The callback: checks `state`, exchanges `code` (with the PKCE verifier) and stores the
     *  refresh token and client secret in the secret store as a new OAuth2AuthorizationCode
     *  credential. An unknown, reused or expired state is refused (`errc::forbidden`); a state
     *  is used once, and expired flows are purged. */
    result<integration_credential> complete_authorization(std::string const& state, std::string const& code);
    /** The callback of a flow the provider refused (`error=`): uses up `state` and deletes the
     *  flow's secrets, so the state can never complete later. Errors as `complete_authorization`. */
    result<void> abandon_authorization(std::string const& state);
    /** True when the credential's refresh token is exhausted (refreshes stopped until re-authorized). */
    bool refresh_exhausted(std::string const& credential_id);

private:
    /** Takes the pending flow of `state` out of the store (once), purging expired flows. */
    result<std::pair<request_context, storage::pending_authorization>> take_authorization(std::string const& state);

    struct token {
        secret_bytes access;
        time_point expires_at{};
        secret_bytes refresh;  ///< A rotated refresh token, when the server sent one.
    };
    struct cached_token {
        std::mutex refresh;  // single flight: one fetch per credential at a time
        std::atomic<bool> invalidated{false};  // the next use fetches another token
        /** A hash of `token`, read without the entry's lock: a 401 to a call sent with another
         *  (older) token leaves this one alone. */
        std::atomic<std::size_t> token_hash{0};
        secret_bytes token;
        time_point fetched_at{};
        time_point expires_at{};
        std::int64_t version = 0;  // the secret store version the entry holds what it learnt of
        /** The authorization document after the refresh token rotated: callers that read the
         *  stored one before hold the spent token, and the store may not have it yet. */
        secret_bytes document;
        std::optional<time_point> failing_since;
        std::optional<time_point> last_failure;
        bool exhausted = false;
    };
    using token_fetch = std::function<result<token>(cached_token&)>;

    result<resolved_credential> materialize(request_context const& ctx, integration_credential const& c,
                                            secret_ref const& ref, bool use_cache);
    result<resolved_credential> bearer(integration_credential const& c, std::int64_t version, bool use_cache,
                                       token_fetch const& fetch);
    /** A vendor answered 401 to a call sent with `sent`: its token is not used again. */
    void token_refused(std::string const& credential_id, resolved_credential const& sent);
    /** A revoked credential's cached token and material leave memory. */
    void drop_token(std::string const& credential_id);
    /** `spends_grant`: the body carries a one-time grant (an authorization code, a refresh token
     *  the provider may rotate), so it is never sent twice. */
    result<token> token_request(std::string const& url, std::string body, bool spends_grant = false);
    result<void> may_use_managed_identity(std::string const& tenant) const;
    void add_builtin_schemes();
    /** `retried`: this is the second try, with a document another process stored meanwhile. */
    result<token> refresh_authorization(request_context const& ctx, integration_credential const& c,
                                        secret_bytes const& document, bool staged, cached_token& entry, bool retried = false);
    void mark_exhausted(request_context const& ctx, integration_credential const& c, std::string const& reason);
    /** Waits (at most as long as a lease lasts) for credential `id`'s refresh lease and takes
     *  it; the returned guard gives it up. When the store cannot take it the guard is empty. */
    result<std::shared_ptr<void>> take_refresh_lease(request_context const& ctx, std::string const& id);
    /** Puts in `entry` the authorization document `c`'s row names now, when it is a newer
     *  version than the one a refresh would use (the entry's, else `c`'s); false when not. */
    bool adopt_newer_document(request_context const& ctx, integration_credential const& c, cached_token& entry);
    std::shared_ptr<cached_token> cache_entry(std::string const& credential_id);
    void forget_material(std::string const& credential_id);
    /** Deletes a secret that is no longer needed (a pending authorization's). */
    void forget_secret(std::string const& tenant, std::string const& uri);

    struct cached_material {
        resolved_credential material;
        time_point valid_until{};
    };

    storage::store& store_;
    secret_store& secrets_;
    fingerprinter const& fingerprints_;
    clock const& clock_;
    http::pipeline outbound_;
    http::pipeline identity_outbound_;  // outbound_ with `managed_identity_allow` allowed too
    credential_service_options options_;
    std::shared_mutex schemes_mutex_;
    std::map<std::string, auth_scheme, std::less<>> schemes_;
    mutable std::mutex cache_mutex_;
    std::map<std::string, std::shared_ptr<cached_token>> cache_;
    mutable std::shared_mutex material_mutex_;
    std::map<std::string, cached_material, std::less<>> materials_;  // "tenant/credentialId"
    std::uint64_t material_generation_ = 0;  // under material_mutex_; one more at each forget_material
    std::size_t materials_sweep_at_ = 1024;  // under material_mutex_: the size at which expired entries go
    std::string lease_owner_;  // this service's name on refresh leases in the store
};

/** The authentication step of an outbound pipeline: when `call.credential_id` is set, applies
 *  that credential with `credential_service::send_authorized` (material added for the call only,
 *  one refresh on a 401 for bearer tokens, echoed secrets redacted from the answer). `call.ctx`
 *  names the tenant. */
class INTEGRATION_EXPORT authentication_policy final : public http::policy {
public:
    /** `credentials` must outlive the policy. */
    explicit authentication_policy(credential_service& credentials) : credentials_(credentials) {}
    result<http::response> send(http::request& r, http::next_policy next, http::call_context& call) override;
    void start(http::request& r, http::next_policy next, http::call_context& call, http::transport::completion done) override;

private:
    credential_service& credentials_;
};

}  // namespace integration::credentials

#endif
