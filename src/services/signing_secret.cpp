#include <integration/services/signing_secret.hpp>

#include <integration/core/id.hpp>

#include <openssl/evp.h>

namespace integration::webhooks {

result<new_signing_secret> create_signing_secret(credentials::secret_store& store, std::string const& tenant,
                                                 time_point now) {
    unsigned char key[24];
    random_bytes(key, sizeof key);
    auto out = secret_bytes::zeroed(6 + 32 + 1);
    std::copy_n("whsec_", 6, reinterpret_cast<char*>(out.data()));
    int n = EVP_EncodeBlock(out.data() + 6, key, sizeof key);  // 24 bytes -> 32 characters
    out.truncate(6 + static_cast<std::size_t>(n));
    std::fill(std::begin(key), std::end(key), 0);
    auto ref = store.put(tenant, new_id("whsec", now), out);
    if (!ref) return ref.error();
    return new_signing_secret{ref->uri(), std::move(out)};
}

}  // namespace integration::webhooks
