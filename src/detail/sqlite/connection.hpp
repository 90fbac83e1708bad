#ifndef INTEGRATION_SRC_STORAGE_SQLITE_CONNECTION_HPP
#define INTEGRATION_SRC_STORAGE_SQLITE_CONNECTION_HPP

// RAII wrappers over sqlite3 and sqlite3_stmt with a per-connection statement cache.

#include "../sql/value.hpp"

#include <integration/core/error.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace integration::storage::sqlite {

/** A value bound to a `?` parameter. */
using value = sql::value;

class statement {
public:
    explicit statement(sqlite3_stmt* s) noexcept : s_(s) {}
    ~statement();
    statement(statement const&) = delete;
    statement& operator=(statement const&) = delete;

    void bind(int index, value const& v);
    void bind_all(std::vector<value> const& values);
    // Binding without a `value` in between (the hot write paths bind an aggregate's fields).
    void bind_null(int index) noexcept;
    void bind_int(int index, std::int64_t v) noexcept;
    void bind_real(int index, double v) noexcept;
    /** Binds text without copying it: `v` must stay valid and unchanged until the statement is
     *  reset or rebound (a field of an object that outlives the step). */
    void bind_view(int index, std::string_view v) noexcept;
    /** Binds a copy of `v`. */
    void bind_copy(int index, std::string_view v) noexcept;
    /** Binds bytes as a BLOB without copying them (the same lifetime rule as `bind_view`). */
    void bind_blob_view(int index, std::string_view bytes) noexcept;
    /** Steps once: true when a row is available, false when done. */
    result<bool> step();
    /** Steps to completion. */
    result<void> run();
    void reset() noexcept;

    bool is_null(int col) const noexcept;
    std::int64_t int64(int col) const noexcept;
    double real(int col) const noexcept;
    std::string text(int col) const;
    std::vector<unsigned char> blob(int col) const;

private:
    sqlite3_stmt* s_;
};

/** One database connection. Not thread-safe: one thread at a time. */
class database {
public:
    /** Opens `path` read-write (creating it) or read-only, with the given busy timeout. */
    static result<std::unique_ptr<database>> open(std::string const& path, bool read_only, int busy_timeout_ms);
    ~database();

    result<void> exec(std::string_view sql);
    /** A cached prepared statement, reset and with bindings cleared. */
    result<statement*> prepare(std::string const& sql);
    /** `prepare` for SQL text held in a `static` that outlives the connection: the cache is keyed
     *  by the text's address, so a hot statement's (long) text is not hashed on every call. */
    result<statement*> prepare_static(std::string const& sql);
    /** False once the engine has ended the open transaction (e.g. after an I/O error). */
    bool in_transaction() const noexcept;
    /** Number of rows changed by the last statement. */
    std::int64_t changes() const noexcept;
    /** Rows changed by every statement that completed on this connection since it opened (a
     *  failed statement's changes, undone by the engine, are not counted). */
    std::int64_t total_changes() const noexcept;
    /** Maps the connection's last error (or `rc`) to an `error`. */
    error last_error(int rc, std::string_view what) const;

private:
    friend class savepoint;
    struct savepoint_sql {
        statement* begin;
        statement* release;
        statement* rollback;
    };
    result<savepoint_sql const*> savepoint_statements(std::string const& name);

    explicit database(sqlite3* db) noexcept : db_(db) {}
    sqlite3* db_;
    std::unordered_map<std::string, std::unique_ptr<statement>> cache_;
    std::unordered_map<std::string const*, statement*> by_address_;
    std::unordered_map<std::string, savepoint_sql> savepoints_;
};

/** A transaction on `db`: `commit()` ends it; the destructor rolls back whatever was not committed
 *  (an error return, an exception), so no error path writes its own ROLLBACK. */
class transaction {
public:
    /** A writer's transaction: takes the write lock at once (`BEGIN IMMEDIATE`). */
    static result<transaction> begin(database& db);
    /** A reader's snapshot (`BEGIN`), never committed: it ends when the transaction does. */
    static result<transaction> begin_read(database& db);
    transaction(transaction&& o) noexcept : db_(std::exchange(o.db_, nullptr)) {}
    transaction& operator=(transaction&&) = delete;
    ~transaction();

    /** Commits. On failure (e.g. `storage_busy`) the transaction stays open: commit again, or let
     *  the destructor roll it back. */
    result<void> commit();

private:
    explicit transaction(database& db) noexcept : db_(&db) {}
    database* db_;
};

/** A savepoint inside an open transaction: `release()` keeps its writes; the destructor rolls
 *  back to it (and only it: an outer savepoint or transaction keeps its own writes). Nests. */
class savepoint {
public:
    static result<savepoint> begin(database& db, std::string const& name = "sp");
    savepoint(savepoint&& o) noexcept : db_(std::exchange(o.db_, nullptr)), sql_(o.sql_) {}
    savepoint& operator=(savepoint&&) = delete;
    ~savepoint();

    /** Keeps the savepoint's writes as part of the enclosing transaction. */
    result<void> release();

private:
    savepoint(database& db, database::savepoint_sql const* sql) noexcept : db_(&db), sql_(sql) {}
    database* db_;
    database::savepoint_sql const* sql_;  // its three statements, prepared once per connection and name
};

/** Fsyncs (`fdatasync`) the write-ahead log of the database at `path`: every commit made with
 *  `synchronous=NORMAL` so far, by any connection or process, becomes durable, as `FULL` would
 *  have made it at commit. A missing log (nothing written since the last connection closed) is
 *  success; a failed sync is `errc::storage_failure`. */
result<void> sync_wal(std::string const& path);

/** Maps an SQLite result code to an `error`. */
error sqlite_error(int rc, std::string_view what, char const* message);

}  // namespace integration::storage::sqlite

#endif
