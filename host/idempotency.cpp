#include "idempotency.hpp"

#include <sqlite3.h>

namespace integration::host {

result<void> idempotency_keys::claim(std::string const& tenant, std::string const& key, std::string const& request_hash) {
    return db_.with([&](sqlite3* db) -> result<void> {
        {
            statement s(db, "INSERT OR IGNORE INTO idempotency_keys (tenant_id, key, request_hash) VALUES (?, ?, ?)");
            if (!s) return sqlite_error(db, "cannot prepare the idempotency claim");
            s.bind(1, tenant);
            s.bind(2, key);
            s.bind(3, request_hash);
            if (s.step() != SQLITE_DONE) return sqlite_error(db, "cannot claim the idempotency key");
        }
        statement s(db, "SELECT request_hash FROM idempotency_keys WHERE tenant_id = ? AND key = ?");
        if (!s) return sqlite_error(db, "cannot prepare the idempotency lookup");
        s.bind(1, tenant);
        s.bind(2, key);
        if (s.step() != SQLITE_ROW) return sqlite_error(db, "cannot read the idempotency key");
        if (s.text(0) != request_hash)
            return error{errc::conflict, "Idempotency-Key '" + key +
                                             "' was already used with a different request body; use a new key"};
        return {};
    });
}

void idempotency_keys::release(std::string const& tenant, std::string const& key) {
    db_.with([&](sqlite3* db) {
        statement s(db, "DELETE FROM idempotency_keys WHERE tenant_id = ? AND key = ?");
        if (!s) return;
        s.bind(1, tenant);
        s.bind(2, key);
        (void)s.step();
    });
}

}  // namespace integration::host
