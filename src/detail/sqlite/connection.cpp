#include "connection.hpp"

#include "batched_wal.hpp"

#include <sqlite3.h>

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <unistd.h>

namespace integration::storage::sqlite {

error sqlite_error(int rc, std::string_view what, char const* message) {
    std::string detail = std::string(what) + ": " + (message ? message : sqlite3_errstr(rc));
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return {errc::storage_busy, detail + " (another writer holds the lock; retry later)"};
    case SQLITE_CONSTRAINT:
        if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
            return {errc::already_exists, detail};
        return {errc::storage_failure, detail};
    case SQLITE_FULL: return {errc::storage_failure, detail + " (the disk is full; free space and retry)"};
    case SQLITE_IOERR:
        return {errc::storage_failure, detail + " (the database file could not be read or written; check free space, "
                                                "file size limits and the device; nothing of this unit was committed)"};
    default: return {errc::storage_failure, detail};
    }
}

result<void> sync_wal(std::string const& path) {
    int fd = ::open((path + "-wal").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return {};
        return error{errc::storage_failure, "cannot open the write-ahead log of " + path + " to sync it: " + std::strerror(errno)};
    }
    int rc = ::fdatasync(fd);
    int saved = errno;
    ::close(fd);
    if (rc != 0)
        return error{errc::storage_failure, "the write-ahead log of " + path +
                                                " could not be synced to disk (" + std::strerror(saved) +
                                                "): commits since the last sync may be lost on a power failure; check the device"};
    return {};
}

statement::~statement() { sqlite3_finalize(s_); }

void statement::bind(int i, value const& v) {
    std::visit(
        [&](auto const& x) {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, std::nullptr_t>)
                sqlite3_bind_null(s_, i);
            else if constexpr (std::is_same_v<T, std::int64_t>)
                sqlite3_bind_int64(s_, i, x);
            else if constexpr (std::is_same_v<T, double>)
                sqlite3_bind_double(s_, i, x);
            else if constexpr (std::is_same_v<T, std::string>)
                sqlite3_bind_text(s_, i, x.data(), static_cast<int>(x.size()), SQLITE_TRANSIENT);
            else
                sqlite3_bind_blob(s_, i, x.data(), static_cast<int>(x.size()), SQLITE_TRANSIENT);
        },
        v);
}

void statement::bind_all(std::vector<value> const& values) {
    for (std::size_t i = 0; i < values.size(); ++i) bind(static_cast<int>(i + 1), values[i]);
}

void statement::bind_null(int i) noexcept { sqlite3_bind_null(s_, i); }
void statement::bind_int(int i, std::int64_t v) noexcept { sqlite3_bind_int64(s_, i, v); }
void statement::bind_real(int i, double v) noexcept { sqlite3_bind_double(s_, i, v); }
void statement::bind_view(int i, std::string_view v) noexcept {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
}
void statement::bind_copy(int i, std::string_view v) noexcept {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
}
void statement::bind_blob_view(int i, std::string_view bytes) noexcept {
    // SQLite binds a null pointer as NULL: an empty view without storage is still an empty blob.
    sqlite3_bind_blob(s_, i, bytes.data() ? bytes.data() : "", static_cast<int>(bytes.size()), SQLITE_STATIC);
}

result<bool> statement::step() {
    int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    auto* db = sqlite3_db_handle(s_);
    return sqlite_error(sqlite3_extended_errcode(db), "statement failed", sqlite3_errmsg(db));
}

result<void> statement::run() {
    while (true) {
        auto r = step();
        if (!r) return r.error();
        if (!*r) return {};
    }
}

void statement::reset() noexcept {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
}

bool statement::is_null(int c) const noexcept { return sqlite3_column_type(s_, c) == SQLITE_NULL; }
std::int64_t statement::int64(int c) const noexcept { return sqlite3_column_int64(s_, c); }
double statement::real(int c) const noexcept { return sqlite3_column_double(s_, c); }
std::string statement::text(int c) const {
    auto const* p = reinterpret_cast<char const*>(sqlite3_column_text(s_, c));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s_, c))) : std::string();
}

std::vector<unsigned char> statement::blob(int c) const {
    auto const* p = static_cast<unsigned char const*>(sqlite3_column_blob(s_, c));
    return p ? std::vector<unsigned char>(p, p + sqlite3_column_bytes(s_, c)) : std::vector<unsigned char>();
}

result<std::unique_ptr<database>> database::open(std::string const& path, bool read_only, int busy_timeout_ms) {
    sqlite3* db = nullptr;
    int flags = (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) | SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(path.c_str(), &db, flags, batched_wal_vfs());
    if (rc != SQLITE_OK) {
        auto e = sqlite_error(rc, "cannot open database " + path, db ? sqlite3_errmsg(db) : nullptr);
        sqlite3_close(db);
        return e;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, busy_timeout_ms);
    return std::unique_ptr<database>(new database(db));
}

database::~database() {
    by_address_.clear();
    savepoints_.clear();
    cache_.clear();
    sqlite3_close(db_);
}

result<void> database::exec(std::string_view sql) {
    // Single statements (BEGIN, SAVEPOINT, COMMIT, ...) run on every unit of work: keep them
    // prepared instead of parsing them each time.
    if (sql.find(';') == std::string_view::npos) {
        auto st = prepare(std::string(sql));
        if (!st) return st.error();
        auto r = (*st)->run();
        (*st)->reset();
        return r;
    }
    char* msg = nullptr;
    int rc = sqlite3_exec(db_, std::string(sql).c_str(), nullptr, nullptr, &msg);
    if (rc == SQLITE_OK) return {};
    auto e = sqlite_error(sqlite3_extended_errcode(db_), "sql failed", msg);
    sqlite3_free(msg);
    return e;
}

result<statement*> database::prepare(std::string const& sql) {
    auto it = cache_.find(sql);
    if (it != cache_.end()) {
        it->second->reset();
        return it->second.get();
    }
    sqlite3_stmt* s = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &s, nullptr);
    if (rc != SQLITE_OK) return sqlite_error(sqlite3_extended_errcode(db_), "cannot prepare \"" + sql + "\"", sqlite3_errmsg(db_));
    auto [pos, _] = cache_.emplace(sql, std::make_unique<statement>(s));
    return pos->second.get();
}

result<statement*> database::prepare_static(std::string const& sql) {
    if (auto it = by_address_.find(&sql); it != by_address_.end()) {
        it->second->reset();
        return it->second;
    }
    auto st = prepare(sql);
    if (st) by_address_.emplace(&sql, *st);
    return st;
}

result<database::savepoint_sql const*> database::savepoint_statements(std::string const& name) {
    if (auto it = savepoints_.find(name); it != savepoints_.end()) return &it->second;
    savepoint_sql sql{};
    for (auto [slot, text] : {std::pair{&sql.begin, "SAVEPOINT " + name}, std::pair{&sql.release, "RELEASE " + name},
                              std::pair{&sql.rollback, "ROLLBACK TO " + name}}) {
        auto st = prepare(text);
        if (!st) return st.error();
        *slot = *st;
    }
    return &savepoints_.emplace(name, sql).first->second;
}

bool database::in_transaction() const noexcept { return sqlite3_get_autocommit(db_) == 0; }

std::int64_t database::changes() const noexcept { return sqlite3_changes64(db_); }

std::int64_t database::total_changes() const noexcept { return sqlite3_total_changes64(db_); }

result<transaction> transaction::begin(database& db) {
    if (auto r = db.exec("BEGIN IMMEDIATE"); !r) return r.error();
    return transaction(db);
}

result<transaction> transaction::begin_read(database& db) {
    if (auto r = db.exec("BEGIN"); !r) return r.error();
    return transaction(db);
}

transaction::~transaction() {
    // After an engine error SQLite may have ended the transaction already: nothing to undo then.
    if (db_ && db_->in_transaction()) try {
            (void)db_->exec("ROLLBACK");
        } catch (...) {
        }
}

result<void> transaction::commit() {
    if (!db_) return error{errc::invalid_state, "the transaction was already committed"};
    auto r = db_->exec("COMMIT");
    if (r) db_ = nullptr;
    return r;
}

namespace {
result<void> run_once(statement& st) {
    st.reset();
    auto r = st.run();
    st.reset();
    return r;
}
}  // namespace

result<savepoint> savepoint::begin(database& db, std::string const& name) {
    auto sql = db.savepoint_statements(name);
    if (!sql) return sql.error();
    if (auto r = run_once(*(*sql)->begin); !r) return r.error();
    return savepoint(db, *sql);
}

savepoint::~savepoint() {
    if (db_ && db_->in_transaction()) {
        (void)run_once(*sql_->rollback);
        (void)run_once(*sql_->release);
    }
}

result<void> savepoint::release() {
    if (!db_) return error{errc::invalid_state, "the savepoint was already released"};
    auto r = run_once(*sql_->release);
    if (r) db_ = nullptr;
    return r;
}

error database::last_error(int rc, std::string_view what) const { return sqlite_error(rc, what, sqlite3_errmsg(db_)); }

}  // namespace integration::storage::sqlite
