#include "api_keys.hpp"

#include "detail/crypto.hpp"

#include <integration/core/context.hpp>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <array>

namespace integration::host {

result<std::string> api_keys::create(std::string const& tenant, bool admin) {
    if (auto v = validate_tenant_id(tenant); !v) return v.error();
    std::array<unsigned char, 32> raw{};
    if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1)
        return error{errc::unavailable, "the system random generator failed; try again"};
    auto key = "ik_" + crypto::base64url(raw.data(), raw.size());
    OPENSSL_cleanse(raw.data(), raw.size());
    return db_.with([&](database& db) -> result<std::string> {
        auto s = db.prepare("INSERT INTO api_keys (key_hash, tenant_id, admin) VALUES (?, ?, ?)");
        if (!s) return s.error();
        (*s)->bind_all({crypto::sha256_hex(key), tenant, std::int64_t{admin ? 1 : 0}});
        if (auto r = (*s)->run(); !r) return error{errc::storage_failure, "cannot store the key: " + r.error().detail()};
        return key;
    });
}

result<std::optional<api_key_owner>> api_keys::find(std::string_view key) {
    if (key.rfind("ik_", 0) != 0) return std::optional<api_key_owner>{};
    auto hash = crypto::sha256_hex(key);
    return db_.with([&](database& db) -> result<std::optional<api_key_owner>> {
        auto s = db.prepare("SELECT tenant_id, admin FROM api_keys WHERE key_hash = ?");
        if (!s) return s.error();
        (*s)->bind_all({hash});
        auto row = (*s)->step();
        std::optional<api_key_owner> owner;
        if (row && *row) owner = api_key_owner{(*s)->text(0), (*s)->int64(1) != 0};
        (*s)->reset();  // ends the read transaction: a cached statement left on a row would hold it open
        if (!row) return error{errc::storage_failure, "cannot look the key up: " + row.error().detail()};
        return owner;
    });
}

}  // namespace integration::host
