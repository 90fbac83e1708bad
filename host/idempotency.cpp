#include "idempotency.hpp"

namespace integration::host {

result<void> idempotency_keys::claim(std::string const& tenant, std::string const& key, std::string const& request_hash) {
    return db_.with([&](database& db) -> result<void> {
        auto insert = db.prepare("INSERT OR IGNORE INTO idempotency_keys (tenant_id, key, request_hash) VALUES (?, ?, ?)");
        if (!insert) return insert.error();
        (*insert)->bind_all({tenant, key, request_hash});
        if (auto r = (*insert)->run(); !r) return error{errc::storage_failure, "cannot claim the idempotency key: " + r.error().detail()};
        auto lookup = db.prepare("SELECT request_hash FROM idempotency_keys WHERE tenant_id = ? AND key = ?");
        if (!lookup) return lookup.error();
        (*lookup)->bind_all({tenant, key});
        auto row = (*lookup)->step();
        auto stored = row && *row ? (*lookup)->text(0) : std::string();
        (*lookup)->reset();
        if (!row || !*row) return error{errc::storage_failure, "cannot read the idempotency key back"};
        if (stored != request_hash)
            return error{errc::conflict, "Idempotency-Key '" + key +
                                             "' was already used with a different request body; use a new key"};
        return {};
    });
}

void idempotency_keys::release(std::string const& tenant, std::string const& key) {
    db_.with([&](database& db) {
        auto s = db.prepare("DELETE FROM idempotency_keys WHERE tenant_id = ? AND key = ?");
        if (!s) return;
        (*s)->bind_all({tenant, key});
        (void)(*s)->run();
    });
}

}  // namespace integration::host
