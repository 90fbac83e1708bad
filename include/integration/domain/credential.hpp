#ifndef INTEGRATION_DOMAIN_CREDENTIAL_HPP
#define INTEGRATION_DOMAIN_CREDENTIAL_HPP

/** @file
 *  IntegrationCredential: a reference to secret material held in the secret store plus its
 *  rotation metadata. No field ever holds secret bytes: only a KeyVaultRef and a SecretFingerprint.
 */

#include <integration/core/aggregate.hpp>
#include <integration/domain/policies.hpp>
#include <integration/export.hpp>

#include <boost/json/object.hpp>

#include <optional>
#include <string>
#include <vector>

namespace integration::credentials {

/** Active ⇄ Rotating; any → Revoked (terminal). */
enum class credential_status { active, rotating, revoked };
/** A CredentialVersion's state: Staged → Active → Retired, Staged → Failed, any → Disabled on revoke. */
enum class version_state { staged, active, retired, failed, disabled };

}  // namespace integration::credentials

template <>
struct integration::enum_names<integration::credentials::credential_status> {
    static constexpr std::array<std::string_view, 3> values{"Active", "Rotating", "Revoked"};
};
template <>
struct integration::enum_names<integration::credentials::version_state> {
    static constexpr std::array<std::string_view, 5> values{"Staged", "Active", "Retired", "Failed", "Disabled"};
};

namespace integration::credentials {

/** KeyVaultRef: an opaque URI naming secret store, secret and version (`scheme://...`). */
INTEGRATION_EXPORT result<void> validate_key_vault_ref(std::string_view ref);
/** SecretFingerprint: `hmac-sha256:` and 64 lower-case hex digits; never the secret. */
INTEGRATION_EXPORT result<void> validate_fingerprint(std::string_view fingerprint);

/** RotationPolicy: rotate every `rotate_every_days` (0 = manual only), act `notify_before_days`
 *  before `expiresAt`. */
struct INTEGRATION_EXPORT rotation_policy {
    std::int64_t rotate_every_days = 0;
    std::int64_t notify_before_days = 7;

    static auto json_fields() {
        return std::make_tuple(field("rotateEveryDays", &rotation_policy::rotate_every_days),
                               field("notifyBeforeDays", &rotation_policy::notify_before_days));
    }
};

/** How many ended (Retired or Failed) versions a credential keeps, the newest: an OAuth2
 *  provider that rotates its refresh token on every refresh ends a version each time, and a
 *  history without bound would be read with the credential on every use. */
inline constexpr std::size_t max_ended_versions = 10;

/** CredentialVersion: one secret-store version pointer with its activation history. */
struct INTEGRATION_EXPORT credential_version {
    std::int64_t version = 0;
    std::string key_vault_ref;
    std::string fingerprint;
    version_state state = version_state::staged;
    time_point created_at{};
    std::optional<time_point> activated_at;
    std::optional<time_point> deactivated_at;

    static auto json_fields() {
        return std::make_tuple(field("version", &credential_version::version),
                               field("keyVaultRef", &credential_version::key_vault_ref),
                               field("fingerprint", &credential_version::fingerprint),
                               field("state", &credential_version::state),
                               field("createdAt", &credential_version::created_at),
                               field("activatedAt", &credential_version::activated_at),
                               field("deactivatedAt", &credential_version::deactivated_at));
    }
};

/** What a caller supplies to create a credential; the secret itself went to the secret store. */
struct INTEGRATION_EXPORT credential_spec {
    std::string provider_id;
    std::optional<std::string> connection_id;
    integration::auth_mode auth_mode = integration::auth_mode::api_key;
    std::string key_vault_ref;              ///< Where version 1 of the secret lives.
    std::string fingerprint;                ///< SecretFingerprint of version 1.
    boost::json::object auth_parameters;    ///< Non-secret settings: header name, token URL, client id, scopes.
    std::optional<credentials::rotation_policy> rotation_policy;
    std::optional<time_point> expires_at;

    static auto json_fields() {
        return std::make_tuple(field("providerId", &credential_spec::provider_id),
                               field("connectionId", &credential_spec::connection_id),
                               field("authMode", &credential_spec::auth_mode),
                               field("keyVaultRef", &credential_spec::key_vault_ref),
                               field("fingerprint", &credential_spec::fingerprint),
                               field("authParameters", &credential_spec::auth_parameters),
                               field("rotationPolicy", &credential_spec::rotation_policy),
                               field("expiresAt", &credential_spec::expires_at));
    }
};

/** The stored state of a credential. `key_vault_ref` and `fingerprint` are the active version's. */
struct INTEGRATION_EXPORT credential_data : credential_spec {
    std::string credential_id;
    std::int64_t current_version = 1;
    credential_status status = credential_status::active;
    std::optional<time_point> last_rotated_at;
    std::vector<credential_version> versions;

    static auto json_fields() {
        return std::tuple_cat(std::make_tuple(field("credentialId", &credential_data::credential_id)),
                              credential_spec::json_fields(),
                              std::make_tuple(field("currentVersion", &credential_data::current_version),
                                              field("status", &credential_data::status),
                                              field("lastRotatedAt", &credential_data::last_rotated_at),
                                              field("versions", &credential_data::versions)));
    }
};

/** IntegrationCredential aggregate root. */
class INTEGRATION_EXPORT integration_credential : public aggregate {
public:
    using data_type = credential_data;

    /** Creates an Active credential whose version 1 is active. Refuses `auth_parameters` keys that
     *  name secret material (secret, password, token, ...): those belong in the secret store. */
    static result<integration_credential> create(request_context const& ctx, time_point now, credential_spec spec);
    /** Rebuilds a stored credential (stores only); checks exactly one active version unless Revoked. */
    static result<integration_credential> restore(metadata m, credential_data d);

    std::string const& id() const noexcept { return d_.credential_id; }
    credential_data const& data() const noexcept { return d_; }
    credential_status status() const noexcept { return d_.status; }
    /** The one active version; null only when Revoked. */
    credential_version const* active_version() const noexcept;
    /** The staged version while Rotating, else null. */
    credential_version const* staged_version() const noexcept;

    /** Active → Rotating: stages a new version; the current one stays active. Returns its number. */
    result<std::int64_t> begin_rotation(std::string key_vault_ref, std::string fingerprint, time_point now);
    /** Rotating: the staged version's material is replaced while it is verified (an OAuth2
     *  provider rotated the refresh token that the verification used). */
    result<void> restage(std::string key_vault_ref, std::string fingerprint);
    /** Rotating → Active on the staged version, which passed verification; the prior one retires
     *  (raises CredentialRotated). */
    result<void> complete_rotation(time_point now, std::optional<time_point> new_expires_at = std::nullopt);
    /** Rotating → Active on the prior version; the staged one is marked Failed (raises IntegrationFailed). */
    result<void> fail_rotation(std::string reason, time_point now);
    /** → Revoked: every version Disabled (raises CredentialRevoked). */
    result<void> revoke(std::string reason, time_point now);
    /** Binds the credential to a connection. */
    result<void> attach_connection(std::string connection_id);
    /** Fails unless connection `connection_id` of provider `provider_id` may send this credential:
     *  it is that provider's, names no other connection, and is not Revoked (sent by another
     *  provider's connection, it would go to another vendor). */
    result<void> ensure_usable_by(std::string const& provider_id, std::string const& connection_id) const;

private:
    integration_credential(metadata m, credential_data d) : aggregate(std::move(m)), d_(std::move(d)) {}
    credential_version* find_state(version_state s) noexcept;
    credential_data d_;
};

}  // namespace integration::credentials

#endif
