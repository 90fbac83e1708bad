#ifndef INTEGRATION_SERVICES_WEBHOOK_SIGNATURE_HPP
#define INTEGRATION_SERVICES_WEBHOOK_SIGNATURE_HPP

/** @file
 *  Standard Webhooks signatures (https://www.standardwebhooks.com; what Svix sends): the signed
 *  content is `{webhook-id}.{webhook-timestamp}.{raw body}`; `v1,` + base64 HMAC-SHA256 with the
 *  base64-decoded `whsec_` secret, or `v1a,` + base64 Ed25519 with a `whsk_` private key.
 */

#include <integration/core/error.hpp>
#include <integration/core/secret_bytes.hpp>
#include <integration/export.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace integration::webhooks {

/** A new symmetric signing secret: `whsec_` + base64 of 32 random bytes. */
INTEGRATION_EXPORT secret_bytes generate_signing_secret();

/** A new Ed25519 key pair for `v1a`: the private key as `whsk_` + base64 of its 32-byte seed,
 *  the public key as `whpk_` + base64 of its 32 bytes (give this one to receivers). */
struct ed25519_key_pair {
    secret_bytes private_key;
    std::string public_key;
};
INTEGRATION_EXPORT ed25519_key_pair generate_ed25519_key();

/** The signature of one message with one secret: `v1,<base64>` for a `whsec_` secret,
 *  `v1a,<base64>` for a `whsk_` private key. A secret of another form, or whose key is not 24-64
 *  bytes (v1) or 32 bytes (v1a), is `errc::invalid_argument` (the message never repeats it). */
INTEGRATION_EXPORT result<std::string> sign(secret_bytes const& secret, std::string_view webhook_id,
                                            std::int64_t timestamp, std::string_view body);

/** The `webhook-signature` header value: every secret's signature, space-separated (several
 *  while a secret rotates). */
INTEGRATION_EXPORT result<std::string> signature_header(std::span<secret_bytes const> secrets,
                                                        std::string_view webhook_id, std::int64_t timestamp,
                                                        std::string_view body);

/** The HMAC-SHA256 key of a `whsec_` secret: the 24-64 bytes its base64 encodes
 *  (`errc::invalid_argument` for anything else; the error never repeats the secret). */
INTEGRATION_EXPORT result<secret_bytes> hmac_key(secret_bytes const& secret);

/** The form of `secret` that `verify` takes: a `whsec_` secret of 24-64 bytes or a `whpk_` Ed25519
 *  public key as given, or the bare base64 of 24-64 bytes (which the vendors' libraries also take)
 *  with `whsec_` put in front. `errc::invalid_argument` for anything else, never repeating it. */
INTEGRATION_EXPORT result<secret_bytes> verification_key(secret_bytes const& secret);

/** Verifies a `webhook-signature` header against `secret` (a `whsec_` secret checks the `v1`
 *  entries in constant time, a `whpk_` public key the first 8 well-formed `v1a` ones; other
 *  entries are skipped) and the timestamp against `now_unix` within `tolerance_s` both ways.
 *  `errc::integrity_failure` when nothing matches or the timestamp is malformed or outside the
 *  tolerance. */
INTEGRATION_EXPORT result<void> verify(secret_bytes const& secret, std::string_view webhook_id,
                                       std::string_view timestamp, std::string_view body,
                                       std::string_view signature_header, std::int64_t now_unix,
                                       std::int64_t tolerance_s = 300);

}  // namespace integration::webhooks

#endif
