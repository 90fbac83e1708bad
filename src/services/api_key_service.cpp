#include <integration/services/api_key_service.hpp>

#include "../detail/cache_margin.hpp"
#include "../detail/crypto.hpp"

#include <integration/core/id.hpp>

#include <array>

namespace integration::keys {

result<std::string> api_key_service::create(std::string const& tenant, bool admin) {
    if (auto v = validate_tenant_id(tenant); !v) return v.error();
    std::array<unsigned char, 32> raw{};
    random_bytes(raw.data(), raw.size());
    auto key = "ik_" + crypto::base64url(raw.data(), raw.size());
    raw.fill(0);
    if (auto r = store_.api_keys().add({crypto::sha256_hex(key), tenant, admin}); !r) {
        crypto::wipe(key);
        return error{r.error().code(), "cannot store the key: " + r.error().detail()};
    }
    return key;
}

result<std::optional<api_key_owner>> api_key_service::find(std::string_view key) {
    if (key.rfind("ik_", 0) != 0) return std::optional<api_key_owner>{};
    auto hash = crypto::sha256_hex(key);
    auto now = clock_.now();
    if (options_.cache_ttl.count() > 0) {
        std::lock_guard lock(cache_mutex_);
        if (auto it = cache_.find(hash); it != cache_.end() && it->second.expires > now) return std::optional(it->second.owner);
    }
    auto found = store_.api_keys().find(hash);
    if (!found) return error{found.error().code(), "cannot look the key up: " + found.error().detail()};
    if (!*found) return std::optional<api_key_owner>{};
    api_key_owner owner{(*found)->tenant_id, (*found)->admin, std::move(hash)};
    if (options_.cache_ttl.count() > 0) {
        std::lock_guard lock(cache_mutex_);
        if (cache_.size() >= 10'000) std::erase_if(cache_, [&](auto const& kv) { return kv.second.expires <= now; });
        if (cache_.size() >= 10'000) cache_.clear();
        cache_.insert_or_assign(owner.key_hash, cached{owner, now + options_.cache_ttl});
    }
    return std::optional(std::move(owner));
}

bool api_key_service::found_without_store(std::string_view key) {
    if (key.rfind("ik_", 0) != 0) return true;
    if (options_.cache_ttl.count() <= 0) return false;
    auto hash = crypto::sha256_hex(key);
    // Still cached a moment from now: the `find` that follows must not be the one that expires it.
    auto soon = clock_.now() + integration::detail::cache_margin;
    std::lock_guard lock(cache_mutex_);
    auto it = cache_.find(hash);
    return it != cache_.end() && it->second.expires > soon;
}

}  // namespace integration::keys
