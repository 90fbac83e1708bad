#include <integration/backends/sqlite/sqlite_blob_store.hpp>
#include <integration/ports/blob_store.hpp>

#include "../../detail/deferred_flush.hpp"
#include "../../detail/sqlite/connection.hpp"
#include "../../detail/blob_keys.hpp"

#include <mutex>

namespace integration::blobs {
namespace {

using storage::sqlite::database;

std::int64_t unix_ms(time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

class sqlite_blobs final : public blob_store {
public:
    sqlite_blobs(sqlite_blob_options o, std::unique_ptr<database> db)
        : o_(std::move(o)), clock_(o_.clock ? *o_.clock : system_clock::instance()), db_(std::move(db)),
          flush_(o_.flush_interval, [this] { (void)storage::sqlite::sync_wal(o_.path); }) {}

    result<std::string> put(std::string const& tenant, std::string const& key, std::string_view data,
                            durability d) override {
        if (auto r = detail::validate_put(tenant, key); !r) return r.error();
        std::lock_guard lock(mutex_);
        if (auto r = synchronous(d); !r) return r.error();
        if (auto r = insert(tenant, key, data); !r) return r.error();
        if (d == durability::deferred) flush_.mark();
        return reference(tenant, key);
    }

    // One transaction for all: one WAL commit instead of one per body.
    result<std::vector<std::string>> put_many(std::vector<blob_write> const& blobs, durability d) override {
        std::vector<std::string> refs;
        refs.reserve(blobs.size());
        for (auto const& b : blobs) {
            if (auto r = detail::validate_put(b.tenant, b.key); !r) return r.error();
            refs.push_back(reference(b.tenant, b.key));
        }
        std::lock_guard lock(mutex_);
        if (auto r = synchronous(d); !r) return r.error();
        auto tx = storage::sqlite::transaction::begin(*db_);
        if (!tx) return tx.error();
        for (auto const& b : blobs)
            if (auto r = insert(b.tenant, b.key, b.data); !r) return r.error();
        if (auto r = tx->commit(); !r) return r.error();
        if (d == durability::deferred) flush_.mark();
        return refs;
    }

    result<std::string> get(std::string const& tenant, std::string const& ref) override {
        auto key = detail::key_of(tenant, ref);
        if (!key) return key.error();
        std::lock_guard lock(mutex_);
        auto st = db_->prepare("SELECT data FROM blobs WHERE tenant_id = ? AND key = ?");
        if (!st) return st.error();
        (*st)->bind_all({tenant, *key});
        auto row = (*st)->step();
        if (!row) return row.error();
        if (!*row) return error{errc::not_found, "blob " + ref + " does not exist"};
        auto bytes = (*st)->blob(0);
        (*st)->reset();
        return std::string(bytes.begin(), bytes.end());
    }

    result<void> remove(std::string const& tenant, std::string const& ref) override {
        auto key = detail::key_of(tenant, ref);
        if (!key) return key.error();
        std::lock_guard lock(mutex_);
        auto st = db_->prepare("DELETE FROM blobs WHERE tenant_id = ? AND key = ?");
        if (!st) return st.error();
        (*st)->bind_all({tenant, *key});
        return (*st)->run();
    }

    result<std::size_t> purge_older_than(time_point cutoff, std::string_view key_prefix) override {
        std::lock_guard lock(mutex_);
        auto st = db_->prepare("DELETE FROM blobs WHERE written_at < ? AND substr(key, 1, length(?)) = ?");
        if (!st) return st.error();
        (*st)->bind_all({unix_ms(cutoff), std::string(key_prefix), std::string(key_prefix)});
        if (auto r = (*st)->run(); !r) return r.error();
        return static_cast<std::size_t>(db_->changes());
    }

private:
    result<void> synchronous(durability d) {
        bool full = d == durability::immediate;
        if (full == full_) return {};
        if (auto r = db_->exec(full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL"); !r) return r;
        full_ = full;
        return {};
    }

    result<void> insert(std::string const& tenant, std::string const& key, std::string_view data) {
        auto st = db_->prepare("INSERT INTO blobs (tenant_id, key, written_at, data) VALUES (?, ?, ?, ?) "
                               "ON CONFLICT (tenant_id, key) DO UPDATE SET written_at = excluded.written_at, data = excluded.data");
        if (!st) return st.error();
        (*st)->bind_all({tenant, key, unix_ms(clock_.now()), std::vector<unsigned char>(data.begin(), data.end())});
        return (*st)->run();
    }

    sqlite_blob_options o_;
    clock const& clock_;
    std::mutex mutex_;
    std::unique_ptr<database> db_;
    bool full_ = true;
    integration::detail::deferred_flush flush_;  // last: flushes before the connection closes
};

}  // namespace

result<std::unique_ptr<blob_store>> open_sqlite_blob_store(sqlite_blob_options o) {
    if (o.path.empty()) return error{errc::invalid_argument, "sqlite_blob_options.path must name the database file"};
    auto db = database::open(o.path, false, 5'000);
    if (!db) return db.error();
    for (auto sql : {"PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL",
                     "CREATE TABLE IF NOT EXISTS blobs (tenant_id TEXT NOT NULL, key TEXT NOT NULL, "
                     "written_at INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (tenant_id, key))",
                     "CREATE INDEX IF NOT EXISTS blobs_by_age ON blobs (written_at)"})
        if (auto r = (*db)->exec(sql); !r) return r.error();
    return std::unique_ptr<blob_store>(new sqlite_blobs(std::move(o), std::move(*db)));
}

}  // namespace integration::blobs
