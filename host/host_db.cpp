#include "host_db.hpp"

#include <sqlite3.h>

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

error sqlite_error(sqlite3* db, std::string const& what) {
    return error{errc::storage_failure, what + ": " + (db ? sqlite3_errmsg(db) : "cannot open")};
}

result<std::unique_ptr<host_db>> host_db::open(std::string const& path) {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr) !=
        SQLITE_OK) {
        auto e = sqlite_error(db, "cannot open " + path);
        sqlite3_close(db);
        return e;
    }
    sqlite3_busy_timeout(db, 5000);
    char* msg = nullptr;
    if (sqlite3_exec(db, schema, nullptr, nullptr, &msg) != SQLITE_OK) {
        std::string detail = msg ? msg : "unknown error";
        sqlite3_free(msg);
        sqlite3_close(db);
        return error{errc::storage_failure, "cannot create the host tables in " + path + ": " + detail};
    }
    return std::unique_ptr<host_db>(new host_db(db));
}

host_db::~host_db() { sqlite3_close(db_); }

statement::statement(sqlite3* db, char const* sql) { sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
statement::~statement() { sqlite3_finalize(stmt_); }
void statement::bind(int i, std::string const& text) {
    sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
}
void statement::bind(int i, long long v) { sqlite3_bind_int64(stmt_, i, v); }
int statement::step() { return sqlite3_step(stmt_); }
std::string statement::text(int column) const {
    auto const* p = sqlite3_column_text(stmt_, column);
    return p ? std::string(reinterpret_cast<char const*>(p), static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column)))
             : std::string();
}
long long statement::integer(int column) const { return sqlite3_column_int64(stmt_, column); }

}  // namespace integration::host
