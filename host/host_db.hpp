#ifndef INTEGRATION_HOST_HOST_DB_HPP
#define INTEGRATION_HOST_HOST_DB_HPP

// The host's own SQLite file (`host.db`): API keys and idempotency fingerprints. Kept apart from
// integration.db so the library's schema and migrations stay the library's.

#include <integration/core/error.hpp>

#include <functional>
#include <memory>
#include <mutex>
#include <string>

struct sqlite3;
struct sqlite3_stmt;

namespace integration::host {

class host_db {
public:
    static result<std::unique_ptr<host_db>> open(std::string const& path);
    ~host_db();
    host_db(host_db const&) = delete;
    host_db& operator=(host_db const&) = delete;

    /** Runs `fn` with the connection under the lock: one connection, short statements. */
    template <class F>
    auto with(F&& fn) {
        std::lock_guard lock(mutex_);
        return fn(db_);
    }

private:
    explicit host_db(sqlite3* db) : db_(db) {}
    std::mutex mutex_;
    sqlite3* db_;
};

/** A prepared statement finalized at scope exit. */
class statement {
public:
    statement(sqlite3* db, char const* sql);
    ~statement();
    statement(statement const&) = delete;
    statement& operator=(statement const&) = delete;
    explicit operator bool() const noexcept { return stmt_ != nullptr; }
    sqlite3_stmt* get() const noexcept { return stmt_; }
    void bind(int i, std::string const& text);
    void bind(int i, long long v);
    /** SQLITE_ROW, SQLITE_DONE or an error code. */
    int step();
    std::string text(int column) const;
    long long integer(int column) const;

private:
    sqlite3_stmt* stmt_ = nullptr;
};

/** The detail of the last SQLite error, as a storage_failure. */
error sqlite_error(sqlite3* db, std::string const& what);

}  // namespace integration::host

#endif
