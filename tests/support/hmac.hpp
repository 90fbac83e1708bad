#ifndef INTEGRATION_TESTS_SUPPORT_HMAC_HPP
#define INTEGRATION_TESTS_SUPPORT_HMAC_HPP

// Signing as a vendor does, for tests and benchmarks: OpenSSL's one-shot HMAC, not the library's
// code path, so a test never checks the library against itself.

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <string>
#include <string_view>

namespace integration::testing {

/** The raw MAC of `data` with `key` (`EVP_sha256()`, `EVP_sha1()`). */
inline std::string raw_hmac(EVP_MD const* md, std::string_view key, std::string_view data) {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    HMAC(md, key.data(), static_cast<int>(key.size()), reinterpret_cast<unsigned char const*>(data.data()), data.size(),
         out, &n);
    return {reinterpret_cast<char const*>(out), n};
}

/** Lower-case hex. */
inline std::string hex(std::string_view bytes) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    return out;
}

/** Hex HMAC-SHA256, as GitHub's `sha256=` signature carries it. */
inline std::string hmac_sha256_hex(std::string_view key, std::string_view data) {
    return hex(raw_hmac(EVP_sha256(), key, data));
}

}  // namespace integration::testing

#endif
