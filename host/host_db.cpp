#include "host_db.hpp"

namespace integration::host {

namespace {
constexpr char const* schema = R"sql(
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
CREATE TABLE IF NOT EXISTS api_keys (
  key_hash   TEXT PRIMARY KEY,  -- hex SHA-256 of the whole key; the key itself is never stored
  tenant_id  TEXT NOT NULL,
  admin      INTEGER NOT NULL,
  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE IF NOT EXISTS idempotency_keys (
  tenant_id    TEXT NOT NULL,
  key          TEXT NOT NULL,
  request_hash TEXT NOT NULL,  -- SHA-256 of the request body the key was first used with
  created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  PRIMARY KEY (tenant_id, key)
);
CREATE TABLE IF NOT EXISTS inbound_webhooks (
  tenant_id     TEXT NOT NULL,
  connection_id TEXT NOT NULL,
  scheme        TEXT NOT NULL,
  secret_name   TEXT NOT NULL,
  PRIMARY KEY (tenant_id, connection_id)
);
)sql";
}  // namespace

result<std::unique_ptr<host_db>> host_db::open(std::string const& path) {
    auto db = database::open(path, false, 5000);
    if (!db) return db.error();
    if (auto r = (*db)->exec(schema); !r)
        return error{errc::storage_failure, "cannot create the host tables in " + path + ": " + r.error().detail()};
    return std::unique_ptr<host_db>(new host_db(std::move(*db)));
}

}  // namespace integration::host
