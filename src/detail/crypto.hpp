#ifndef INTEGRATION_SRC_CRYPTO_CRYPTO_HPP
#define INTEGRATION_SRC_CRYPTO_CRYPTO_HPP

// Small wrappers over OpenSSL for the secret store and fingerprints.

#include <integration/core/error.hpp>
#include <integration/core/secret_bytes.hpp>

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
/** SHA-256 of text, lower-case hex. */
std::string sha256_hex(std::string_view data);
/** Lower-case hex. */
std::string to_hex(unsigned char const* data, std::size_t n);
/** Parses hex into secret bytes. */
result<secret_bytes> from_hex(std::string_view hex);
/** base64url without padding. */
std::string base64url(unsigned char const* data, std::size_t n);

/** Overwrites a string's bytes (a request body that carried a secret) before it is freed. */
void wipe(std::string& s) noexcept;

/** Writes `content` to `path` atomically (temp file + rename) with mode 0600. */
result<void> write_private_file(std::string const& path, std::string_view content);
/** Reads a whole file; the caller wipes it. `not_found` only when the file does not exist. */
result<secret_bytes> read_private_file(std::string const& path);

}  // namespace integration::crypto

#endif
