#include <integration/core/id.hpp>
#include <integration/domain/credential.hpp>
#include <integration/domain/event.hpp>

#include "../detail/secret_names.hpp"
#include "../detail/validate.hpp"

#include <algorithm>
#include <cctype>
#include <functional>

namespace integration::detail {
namespace {

// Names that hold secret material; their values belong in the secret store, never in metadata.
bool names_secret(std::string_view name) {
    static constexpr std::string_view banned[] = {"secret", "password", "token", "apikey", "privatekey",
                                                  "credential"};
    std::string key(name);
    for (auto& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::erase(key, '_');
    std::erase(key, '-');
    if (key == "tokenurl" || key == "tokenendpoint") return false;
    for (auto b : banned)
        if (key.find(b) != std::string::npos) return true;
    return false;
}

}  // namespace

// A string under a secret-looking name is refused at any depth: nesting it in an object (say
// {"oauth": {"clientSecret": ...}}) keeps it secret. Non-string values such as a placement object
// {"in": "header", "name": "X-Api-Key"} describe where a secret goes, not the secret.
result<void> refuse_secret_parameters(boost::json::value const& v, std::string const& path, bool secret_name) {
    if (v.is_string() && secret_name)
        return error{errc::invariant_violation,
                     path + " looks like secret material; put it in the secret store and pass only its reference"};
    if (v.is_object())
        for (auto const& kv : v.get_object()) {
            auto child = path + "." + std::string(kv.key());
            if (auto r = refuse_secret_parameters(kv.value(), child, names_secret(kv.key())); !r) return r;
        }
    if (v.is_array())
        for (std::size_t i = 0; i < v.get_array().size(); ++i) {
            auto child = path + "[" + std::to_string(i) + "]";
            if (auto r = refuse_secret_parameters(v.get_array()[i], child, secret_name); !r) return r;
        }
    return {};
}

}  // namespace integration::detail

namespace integration::credentials {
namespace {

/** Rotation policy days, at most (a century): the rotation worker adds them to a time point. */
constexpr std::int64_t max_policy_days = 36'500;

}  // namespace

result<void> validate_key_vault_ref(std::string_view ref) {
    auto sep = ref.find("://");
    if (ref.size() > 1024 || sep == std::string_view::npos || sep == 0 || sep + 3 >= ref.size() ||
        ref.substr(0, sep).find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789+.-") != std::string_view::npos)
        return error{errc::invalid_argument, "keyVaultRef must be a URI such as vault://local/<tenant>/<name>?version=1"};
    return {};
}

result<void> validate_fingerprint(std::string_view f) {
    constexpr std::string_view prefix = "hmac-sha256:";
    if (f.size() != prefix.size() + 64 || !f.starts_with(prefix) ||
        f.substr(prefix.size()).find_first_not_of("0123456789abcdef") != std::string_view::npos)
        return error{errc::invalid_argument, "fingerprint must be hmac-sha256: followed by 64 lower-case hex digits"};
    return {};
}

namespace {

/** Drops the ended versions past the newest `max_ended_versions` (the newest keeps the highest
 *  number, from which the next version's is counted). */
void forget_old_versions(std::vector<credential_version>& versions) {
    auto ended = [](credential_version const& v) {
        return v.state == version_state::retired || v.state == version_state::failed;
    };
    std::vector<std::int64_t> numbers;
    for (auto const& v : versions)
        if (ended(v)) numbers.push_back(v.version);
    if (numbers.size() <= max_ended_versions) return;
    std::ranges::nth_element(numbers, numbers.begin() + static_cast<std::ptrdiff_t>(max_ended_versions - 1),
                             std::greater<>());
    auto const oldest_kept = numbers[max_ended_versions - 1];
    std::erase_if(versions, [&](credential_version const& v) { return ended(v) && v.version < oldest_kept; });
}

}  // namespace

result<integration_credential> integration_credential::create(request_context const& ctx, time_point now,
                                                              credential_spec spec) {
    if (!is_valid_id(spec.provider_id, id_prefix::provider))
        return error{errc::invalid_argument, "providerId \"" + spec.provider_id + "\" is not a provider id"};
    if (spec.connection_id && !is_valid_id(*spec.connection_id, id_prefix::connection))
        return error{errc::invalid_argument, "connectionId \"" + *spec.connection_id + "\" is not a connection id"};
    if (spec.auth_mode == auth_mode::none)
        return error{errc::invalid_argument, "authMode None needs no credential"};
    if (auto r = validate_key_vault_ref(spec.key_vault_ref); !r) return r.error();
    if (auto r = validate_fingerprint(spec.fingerprint); !r) return r.error();
    if (auto r = detail::refuse_secret_parameters(spec.auth_parameters, "authParameters"); !r)
        return r.error();
    // A century at most: the rotation worker adds these days to a time point, which wraps past 2262.
    if (spec.rotation_policy && (spec.rotation_policy->rotate_every_days < 0 || spec.rotation_policy->notify_before_days < 0 ||
                                 spec.rotation_policy->rotate_every_days > max_policy_days ||
                                 spec.rotation_policy->notify_before_days > max_policy_days))
        return error{errc::invalid_argument, "rotationPolicy days must be 0 to " + std::to_string(max_policy_days)};
    credential_data d;
    static_cast<credential_spec&>(d) = std::move(spec);
    d.credential_id = new_id(id_prefix::credential, now);
    d.current_version = 1;
    d.versions.push_back({1, d.key_vault_ref, d.fingerprint, version_state::active, truncate_ms(now), truncate_ms(now), {}});
    return integration_credential(new_metadata(ctx, now), std::move(d));
}

result<integration_credential> integration_credential::restore(metadata m, credential_data d) {
    if (!is_valid_id(d.credential_id, id_prefix::credential))
        return error{errc::invalid_argument, "credentialId \"" + d.credential_id + "\" is not a credential id"};
    auto active = std::count_if(d.versions.begin(), d.versions.end(),
                                [](auto const& v) { return v.state == version_state::active; });
    if (active != (d.status == credential_status::revoked ? 0 : 1))
        return error{errc::integrity_failure,
                     "credential " + d.credential_id + " has " + std::to_string(active) + " active versions"};
    return integration_credential(std::move(m), std::move(d));
}

credential_version* integration_credential::find_state(version_state s) noexcept {
    for (auto& v : d_.versions)
        if (v.state == s) return &v;
    return nullptr;
}

credential_version const* integration_credential::active_version() const noexcept {
    return const_cast<integration_credential*>(this)->find_state(version_state::active);
}

credential_version const* integration_credential::staged_version() const noexcept {
    if (d_.status != credential_status::rotating) return nullptr;
    return const_cast<integration_credential*>(this)->find_state(version_state::staged);
}

result<std::int64_t> integration_credential::begin_rotation(std::string key_vault_ref, std::string fingerprint,
                                                            time_point now) {
    if (d_.status != credential_status::active) return detail::bad_transition("credential", "rotate", d_.status);
    if (auto r = validate_key_vault_ref(key_vault_ref); !r) return r.error();
    if (auto r = validate_fingerprint(fingerprint); !r) return r.error();
    std::int64_t next = 1;
    for (auto const& v : d_.versions) next = std::max(next, v.version + 1);
    d_.versions.push_back({next, std::move(key_vault_ref), std::move(fingerprint), version_state::staged,
                           truncate_ms(now), {}, {}});
    d_.status = credential_status::rotating;
    return next;
}

result<void> integration_credential::restage(std::string key_vault_ref, std::string fingerprint) {
    auto* staged = find_state(version_state::staged);
    if (d_.status != credential_status::rotating || !staged)
        return detail::bad_transition("credential", "replace the staged version of", d_.status);
    if (auto r = validate_key_vault_ref(key_vault_ref); !r) return r.error();
    if (auto r = validate_fingerprint(fingerprint); !r) return r.error();
    staged->key_vault_ref = std::move(key_vault_ref);
    staged->fingerprint = std::move(fingerprint);
    return {};
}

result<void> integration_credential::complete_rotation(time_point now, std::optional<time_point> new_expires_at) {
    if (d_.status != credential_status::rotating)
        return detail::bad_transition("credential", "complete a rotation of", d_.status);
    auto* staged = find_state(version_state::staged);
    auto* prior = find_state(version_state::active);
    auto t = truncate_ms(now);
    std::int64_t previous = prior ? prior->version : 0;
    if (prior) {
        prior->state = version_state::retired;
        prior->deactivated_at = t;
    }
    staged->state = version_state::active;
    staged->activated_at = t;
    d_.current_version = staged->version;
    d_.key_vault_ref = staged->key_vault_ref;
    d_.fingerprint = staged->fingerprint;
    d_.last_rotated_at = t;
    d_.status = credential_status::active;
    if (new_expires_at) d_.expires_at = new_expires_at;
    forget_old_versions(d_.versions);
    raise(std::string(events::event_type::credential_rotated),
          {{"credentialId", d_.credential_id}, {"providerId", d_.provider_id}, {"previousVersion", previous},
           {"currentVersion", d_.current_version}, {"keyVaultRef", d_.key_vault_ref}, {"fingerprint", d_.fingerprint}});
    return {};
}

result<void> integration_credential::fail_rotation(std::string reason, time_point now) {
    if (d_.status != credential_status::rotating)
        return detail::bad_transition("credential", "fail a rotation of", d_.status);
    auto* staged = find_state(version_state::staged);
    staged->state = version_state::failed;
    staged->deactivated_at = truncate_ms(now);
    auto const failed_version = staged->version;  // `staged` may go with the old versions
    forget_old_versions(d_.versions);
    d_.status = credential_status::active;
    raise(std::string(events::event_type::integration_failed),
          {{"source", "CredentialRotation"}, {"credentialId", d_.credential_id}, {"providerId", d_.provider_id},
           {"category", "Auth"}, {"failedVersion", failed_version}, {"activeVersion", d_.current_version},
           {"message", reason}});
    return {};
}

result<void> integration_credential::revoke(std::string reason, time_point now) {
    if (d_.status == credential_status::revoked) return detail::bad_transition("credential", "revoke", d_.status);
    for (auto& v : d_.versions) {
        if (v.state == version_state::active || v.state == version_state::staged) v.deactivated_at = truncate_ms(now);
        v.state = version_state::disabled;
    }
    d_.status = credential_status::revoked;
    raise(std::string(events::event_type::credential_revoked),
          {{"credentialId", d_.credential_id}, {"providerId", d_.provider_id}, {"reason", reason}});
    return {};
}

result<void> integration_credential::ensure_usable_by(std::string const& provider_id, std::string const& connection_id) const {
    if (d_.provider_id != provider_id)
        return error{errc::invalid_argument, "credential " + d_.credential_id + " belongs to provider " + d_.provider_id +
                                                 ", not " + provider_id + "; create a credential for this provider"};
    if (d_.connection_id && *d_.connection_id != connection_id)
        return error{errc::invalid_argument, "credential " + d_.credential_id + " belongs to connection " +
                                                 *d_.connection_id + "; create a credential for this connection"};
    if (d_.status == credential_status::revoked) return error{errc::invalid_state, "credential " + d_.credential_id + " is Revoked"};
    return {};
}

result<void> integration_credential::attach_connection(std::string connection_id) {
    if (d_.status == credential_status::revoked)
        return detail::bad_transition("credential", "attach", d_.status);
    if (!is_valid_id(connection_id, id_prefix::connection))
        return error{errc::invalid_argument, "connectionId \"" + connection_id + "\" is not a connection id"};
    d_.connection_id = std::move(connection_id);
    return {};
}

}  // namespace integration::credentials
