#ifndef INTEGRATION_SERVICES_FINGERPRINT_HPP
#define INTEGRATION_SERVICES_FINGERPRINT_HPP

/** @file
 *  SecretFingerprint: HMAC-SHA256 under a per-installation key, so equal secrets are detectable
 *  without the database revealing them, and a short API key cannot be brute-forced offline from
 *  the database alone.
 */

#include <integration/core/error.hpp>
#include <integration/core/secret_bytes.hpp>
#include <integration/export.hpp>

#include <string>

namespace integration::credentials {

/** Computes fingerprints with an installation key. */
class INTEGRATION_EXPORT fingerprinter {
public:
    /** Loads the 32-byte key from `key_file`, creating it (mode 0600) when missing. */
    static result<fingerprinter> load_or_create(std::string const& key_file);
    /** Uses `key` directly (at least 32 bytes). */
    static result<fingerprinter> from_key(secret_bytes key);

    /** `hmac-sha256:` and 64 hex digits. */
    std::string fingerprint(secret_bytes const& secret) const;

    fingerprinter(fingerprinter&&) noexcept = default;
    fingerprinter& operator=(fingerprinter&&) noexcept = default;

private:
    explicit fingerprinter(secret_bytes key) : key_(std::move(key)) {}
    secret_bytes key_;
};

}  // namespace integration::credentials

#endif
