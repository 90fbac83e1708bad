#include <integration/services/signing_secret.hpp>

#include <integration/core/id.hpp>
#include <integration/services/webhook_signature.hpp>

namespace integration::webhooks {

result<new_signing_secret> create_signing_secret(credentials::secret_store& store, std::string const& tenant,
                                                 time_point now) {
    auto secret = generate_signing_secret();
    auto ref = store.put(tenant, new_id("whsec", now), secret);
    if (!ref) return ref.error();
    return new_signing_secret{ref->uri(), std::move(secret)};
}

}  // namespace integration::webhooks
