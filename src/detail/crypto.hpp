#ifndef INTEGRATION_SRC_CRYPTO_CRYPTO_HPP
#define INTEGRATION_SRC_CRYPTO_CRYPTO_HPP

// Small wrappers over OpenSSL for the secret store and fingerprints.

#include <integration/core/error.hpp>
#include <integration/core/secret_bytes.hpp>

#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace integration::crypto {

inline constexpr std::size_t key_size = 32;    // AES-256
inline constexpr std::size_t nonce_size = 12;  // GCM
inline constexpr std::size_t tag_size = 16;

/** A fresh random 256-bit key. */
secret_bytes random_key();
/** AES-256-GCM: returns nonce || ciphertext || tag, `aad` authenticated. */
std::vector<unsigned char> seal(secret_bytes const& key, unsigned char const* plaintext, std::size_t n,
                                std::string_view aad);
/** Opens what `seal` made; a wrong key, edited bytes or different `aad` is `errc::integrity_failure`. */
result<secret_bytes> open(secret_bytes const& key, std::vector<unsigned char> const& sealed, std::string_view aad);
/** HMAC-SHA256. */
std::vector<unsigned char> hmac_sha256(secret_bytes const& key, unsigned char const* data, std::size_t n);
/** The digests `hmac` offers: SHA-1 only for vendors that still sign with it (Twilio). */
enum class digest { sha1, sha256 };
/** HMAC of the concatenation of `parts`, which are not copied: 20 bytes (SHA-1) or 32 (SHA-256).
 *  Each thread keeps a few keyed contexts, so a key used again costs no key setup. */
std::vector<unsigned char> hmac(digest d, std::string_view key, std::initializer_list<std::string_view> parts);
std::vector<unsigned char> hmac(digest d, std::string_view key, std::span<std::string_view const> parts);
/** SHA-256 of text, lower-case hex. */
std::string sha256_hex(std::string_view data);
/** SHA-256 of the concatenation of `parts`, lower-case hex. */
std::string sha256_hex(std::initializer_list<std::string_view> parts);
std::string sha256_hex(std::span<std::string_view const> parts);
/** Lower-case hex. */
std::string to_hex(unsigned char const* data, std::size_t n);
/** Parses hex into secret bytes. */
result<secret_bytes> from_hex(std::string_view hex);
/** base64url without padding. */
std::string base64url(unsigned char const* data, std::size_t n);
/** Standard base64 (RFC 4648 section 4) with padding. */
std::string base64(unsigned char const* data, std::size_t n);
/** Decodes standard base64 with padding; anything else (whitespace, base64url, a missing pad) is
 *  `errc::invalid_argument`. The bytes may be a key, so they come back as secret bytes. */
result<secret_bytes> from_base64(std::string_view text);
/** Whether `text`, which `from_base64` decodes, is the one spelling of its bytes that `base64`
 *  writes: the bits after the last byte are zero. A signature compared as decoded bytes must
 *  also be spelled this way, or comparing bytes would accept what comparing the text refuses. */
bool canonical_base64(std::string_view text) noexcept;
/** Compares in time that depends only on the lengths, never on where the texts differ; texts of
 *  different lengths are unequal. */
bool equal_constant_time(std::string_view a, std::string_view b) noexcept;

inline constexpr std::size_t ed25519_seed_size = 32;
inline constexpr std::size_t ed25519_public_key_size = 32;
inline constexpr std::size_t ed25519_signature_size = 64;
/** The public key of an Ed25519 private key given as its 32-byte seed. */
std::vector<unsigned char> ed25519_public_key(secret_bytes const& seed);
/** An Ed25519 signature (64 bytes) of `message` with the private key `seed` (32 bytes). */
std::vector<unsigned char> ed25519_sign(secret_bytes const& seed, std::string_view message);
/** Whether `signature` is `public_key`'s Ed25519 signature of `message`. */
bool ed25519_verify(unsigned char const* public_key, std::size_t public_key_size, std::string_view message,
                    unsigned char const* signature, std::size_t signature_size);

/** Overwrites a string's bytes (a request body that carried a secret) before it is freed. */
void wipe(std::string& s) noexcept;

/** Writes `content` to `path` atomically (temp file + rename) with mode 0600. */
result<void> write_private_file(std::string const& path, std::string_view content);
/** As `write_private_file`, but only when `path` does not exist: `already_exists` when it does
 *  (another process made it first; read that one). Safe for processes racing to create it. */
result<void> create_private_file(std::string const& path, std::string_view content);
/** Reads a whole file; the caller wipes it. `not_found` only when the file does not exist. */
result<secret_bytes> read_private_file(std::string const& path);

}  // namespace integration::crypto

#endif
