#include "api_keys.hpp"

#include <integration/core/context.hpp>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <sqlite3.h>

#include <array>

namespace integration::host {

std::string sha256_hex(std::string_view data) {
    std::array<unsigned char, SHA256_DIGEST_LENGTH> digest{};
    SHA256(reinterpret_cast<unsigned char const*>(data.data()), data.size(), digest.data());
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(digest.size() * 2);
    for (auto b : digest) {
        out += hex[b >> 4];
        out += hex[b & 0xf];
    }
    return out;
}

namespace {
std::string base64url(unsigned char const* data, std::size_t n) {
    static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string out;
    std::size_t i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
        for (int s = 18; s >= 0; s -= 6) out += alphabet[(v >> s) & 63];
    }
    if (n - i == 1) {
        unsigned v = data[i] << 16;
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
    } else if (n - i == 2) {
        unsigned v = (data[i] << 16) | (data[i + 1] << 8);
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
        out += alphabet[(v >> 6) & 63];
    }
    return out;
}
}  // namespace

result<std::string> api_keys::create(std::string const& tenant, bool admin) {
    if (auto v = validate_tenant_id(tenant); !v) return v.error();
    std::array<unsigned char, 32> raw{};
    if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1)
        return error{errc::unavailable, "the system random generator failed; try again"};
    auto key = "ik_" + base64url(raw.data(), raw.size());
    OPENSSL_cleanse(raw.data(), raw.size());
    return db_.with([&](sqlite3* db) -> result<std::string> {
        statement s(db, "INSERT INTO api_keys (key_hash, tenant_id, admin) VALUES (?, ?, ?)");
        if (!s) return sqlite_error(db, "cannot prepare the key insert");
        s.bind(1, sha256_hex(key));
        s.bind(2, tenant);
        s.bind(3, admin ? 1LL : 0LL);
        if (s.step() != SQLITE_DONE) return sqlite_error(db, "cannot store the key");
        return key;
    });
}

result<std::optional<api_key_owner>> api_keys::find(std::string_view key) {
    if (key.rfind("ik_", 0) != 0) return std::optional<api_key_owner>{};
    auto hash = sha256_hex(key);
    return db_.with([&](sqlite3* db) -> result<std::optional<api_key_owner>> {
        statement s(db, "SELECT tenant_id, admin FROM api_keys WHERE key_hash = ?");
        if (!s) return sqlite_error(db, "cannot prepare the key lookup");
        s.bind(1, hash);
        auto rc = s.step();
        if (rc == SQLITE_DONE) return std::optional<api_key_owner>{};
        if (rc != SQLITE_ROW) return sqlite_error(db, "cannot look the key up");
        return std::optional<api_key_owner>(api_key_owner{s.text(0), s.integer(1) != 0});
    });
}

}  // namespace integration::host
