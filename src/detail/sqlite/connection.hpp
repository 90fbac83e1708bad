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
    /** False once the engine has ended the open transaction (e.g. after an I/O error). */
    bool in_transaction() const noexcept;
    /** Number of rows changed by the last statement. */
    std::int64_t changes() const noexcept;
    /** Maps the connection's last error (or `rc`) to an `error`. */
    error last_error(int rc, std::string_view what) const;

private:
    explicit database(sqlite3* db) noexcept : db_(db) {}
    sqlite3* db_;
    std::unordered_map<std::string, std::unique_ptr<statement>> cache_;
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
    static result<savepoint> begin(database& db, std::string name = "sp");
    savepoint(savepoint&& o) noexcept : db_(std::exchange(o.db_, nullptr)), name_(std::move(o.name_)) {}
    savepoint& operator=(savepoint&&) = delete;
    ~savepoint();

    /** Keeps the savepoint's writes as part of the enclosing transaction. */
    result<void> release();

private:
    savepoint(database& db, std::string name) noexcept : db_(&db), name_(std::move(name)) {}
    database* db_;
    std::string name_;
};

/** Fsyncs the write-ahead log of the database at `path`: every commit made with
 *  `synchronous=NORMAL` so far becomes durable, as `FULL` would have made it at commit. */
void sync_wal(std::string const& path);

/** Maps an SQLite result code to an `error`. */
error sqlite_error(int rc, std::string_view what, char const* message);

}  // namespace integration::storage::sqlite

#endif
