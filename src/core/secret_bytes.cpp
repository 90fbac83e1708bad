#include <integration/core/secret_bytes.hpp>

#include <openssl/crypto.h>

namespace integration {

void secret_bytes::truncate(std::size_t n) noexcept {
    if (n >= bytes_.size()) return;
    OPENSSL_cleanse(bytes_.data() + n, bytes_.size() - n);
    bytes_.resize(n);
}

void secret_bytes::clear() noexcept {
    if (!bytes_.empty()) OPENSSL_cleanse(bytes_.data(), bytes_.size());
    bytes_.clear();
}

bool operator==(secret_bytes const& a, secret_bytes const& b) noexcept {
    return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace integration
