// The VFS every store connection opens through: a commit's WAL frames reach the file in one write,
// and every commit is in the file before any connection can see it.
#include "detail/sqlite/batched_wal.hpp"

#include "storage/fixtures.hpp"

#include <sqlite3.h>

#include <filesystem>
#include <string>

namespace integration::testing {
namespace {

using storage::sqlite::batched_wal_vfs;
using storage::sqlite::wal_os_writes_fcntl;

/** A raw connection, through the batched VFS or (`vfs` null) SQLite's default. */
struct connection {
    sqlite3* db = nullptr;
    connection(std::string const& path, char const* vfs) {
        EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs), SQLITE_OK);
    }
    ~connection() { sqlite3_close(db); }
    void exec(std::string const& sql) {
        char* msg = nullptr;
        EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &msg), SQLITE_OK)
            << (msg ? msg : "") << " in " << sql;
        sqlite3_free(msg);
    }
    std::string text(std::string const& sql) {
        sqlite3_stmt* st = nullptr;
        EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
        std::string v = "(no row)";
        if (sqlite3_step(st) == SQLITE_ROW) v = reinterpret_cast<char const*>(sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        return v;
    }
    std::int64_t scalar(std::string const& sql) { return std::stoll(text(sql)); }
    /** How many writes this connection's WAL has handed to the operating system. */
    std::int64_t wal_os_writes() {
        sqlite3_file* wal = nullptr;
        EXPECT_EQ(sqlite3_file_control(db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal), SQLITE_OK);
        std::int64_t n = -1;
        if (wal && wal->pMethods) {
            EXPECT_EQ(wal->pMethods->xFileControl(wal, wal_os_writes_fcntl, &n), SQLITE_OK);
        }
        return n;
    }
};

class sqlite_batched_wal : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_NE(batched_wal_vfs(), nullptr);
        writer_.exec("PRAGMA journal_mode = WAL");
        writer_.exec("PRAGMA synchronous = NORMAL");
        writer_.exec("PRAGMA wal_autocheckpoint = 0");
        writer_.exec("CREATE TABLE t (k INTEGER PRIMARY KEY, key TEXT NOT NULL, v TEXT NOT NULL)");
        writer_.exec("CREATE INDEX t_by_key ON t (key)");
    }
    /** One transaction of `rows` rows of 1 KiB, each with its own index key. */
    void commit_rows(int rows) {
        writer_.exec("BEGIN");
        for (int i = 0; i < rows; ++i)
            writer_.exec("INSERT INTO t (key, v) VALUES (printf('%.8d', " + std::to_string(next_++) +
                         "), hex(randomblob(512)))");
        writer_.exec("COMMIT");
    }

    /** Opens a copy of the database and its WAL as the operating system has them now: what a
     *  `kill -9` of the writer's process would leave (its memory lost, the files recovered). */
    connection crash_copy() {
        std::filesystem::copy_file(path_, copy_path_, std::filesystem::copy_options::overwrite_existing);
        std::filesystem::copy_file(path_ + "-wal", copy_path_ + "-wal", std::filesystem::copy_options::overwrite_existing);
        std::filesystem::remove(copy_path_ + "-shm");
        return connection{copy_path_, nullptr};
    }

    temp_dir dir_;
    temp_dir copy_dir_;
    std::string path_ = dir_.file("w.db");
    std::string copy_path_ = copy_dir_.file("w.db");
    connection writer_{path_, batched_wal_vfs()};
    int next_ = 0;
};

TEST_F(sqlite_batched_wal, a_commit_of_many_pages_is_one_write) {
    commit_rows(1);  // the WAL's header goes with the first commit
    auto before = writer_.wal_os_writes();
    ASSERT_GE(before, 1);
    auto wal_bytes = std::filesystem::file_size(path_ + "-wal");
    commit_rows(40);
    EXPECT_GE(std::filesystem::file_size(path_ + "-wal") - wal_bytes, 10 * (24 + 4096)) << "fewer frames than meant";
    EXPECT_EQ(writer_.wal_os_writes() - before, 1);
    commit_rows(1);
    EXPECT_EQ(writer_.wal_os_writes() - before, 2);
}

TEST_F(sqlite_batched_wal, every_commit_is_in_the_file_before_another_connection_sees_it) {
    // The reader opens through SQLite's own VFS: it sees only what the writer handed to the file.
    connection reader{path_, nullptr};
    for (int round = 1; round <= 50; ++round) {
        commit_rows(round % 7 + 1);
        EXPECT_EQ(reader.scalar("SELECT count(*) FROM t"), next_);
        EXPECT_EQ(reader.scalar("SELECT count(*) FROM t INDEXED BY t_by_key WHERE key >= ''"), next_);
        EXPECT_EQ(reader.text("PRAGMA quick_check"), "ok");
    }
    EXPECT_EQ(reader.scalar("SELECT count(*) FROM t WHERE length(v) = 1024"), next_);
}

TEST_F(sqlite_batched_wal, a_transaction_larger_than_the_cache_and_a_checkpoint_keep_every_row) {
    // A small cache spills pages to the WAL before the commit, and SQLite may write a spilled page
    // again in place and read frames back: the held writes must reach the file first.
    writer_.exec("PRAGMA cache_size = 10");
    commit_rows(2'000);
    writer_.exec("BEGIN");
    writer_.exec("UPDATE t SET v = v || 'x' WHERE k % 3 = 0");
    writer_.exec("DELETE FROM t WHERE k % 5 = 0");
    writer_.exec("COMMIT");
    writer_.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    connection reader{path_, nullptr};
    int kept = 0, changed = 0;
    for (int k = 1; k <= 2'000; ++k) {
        if (k % 5 == 0) continue;
        ++kept;
        if (k % 3 == 0) ++changed;
    }
    EXPECT_EQ(reader.scalar("SELECT count(*) FROM t"), kept);
    EXPECT_EQ(reader.scalar("SELECT count(*) FROM t WHERE v LIKE '%x'"), changed);
    EXPECT_EQ(reader.scalar("SELECT count(*) FROM t INDEXED BY t_by_key WHERE key >= ''"), kept);
    EXPECT_EQ(reader.text("PRAGMA integrity_check"), "ok");
}

TEST_F(sqlite_batched_wal, a_commit_that_rewrites_frames_it_spilled_is_whole_in_the_file_when_it_returns) {
    // Larger than the cache: pages are spilled to the WAL before the commit. Changing the first
    // rows again rewrites spilled pages in place, and SQLite then rewrites the checksums of every
    // frame from there to the commit, the commit's own header last, with no page after it.
    writer_.exec("PRAGMA cache_size = 10");
    writer_.exec("BEGIN");
    for (int i = 0; i < 600; ++i)
        writer_.exec("INSERT INTO t (key, v) VALUES (printf('%.8d', " + std::to_string(next_++) + "), hex(randomblob(512)))");
    writer_.exec("UPDATE t SET v = 'changed' WHERE k <= 40");
    writer_.exec("COMMIT");
    auto copy = crash_copy();
    EXPECT_EQ(copy.scalar("SELECT count(*) FROM t"), 600);
    EXPECT_EQ(copy.scalar("SELECT count(*) FROM t WHERE v = 'changed'"), 40);
    EXPECT_EQ(copy.text("PRAGMA integrity_check"), "ok");
}

TEST_F(sqlite_batched_wal, frames_of_a_rolled_back_transaction_never_land_on_another_connections_commits) {
    commit_rows(1);
    // An empty WAL: the rollback reads the pages it restores from the database file, not the WAL.
    writer_.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    writer_.exec("PRAGMA cache_size = 10");
    writer_.exec("BEGIN");
    for (int i = 0; i < 300; ++i) writer_.exec("INSERT INTO t (key, v) VALUES ('r', hex(randomblob(512)))");
    writer_.exec("ROLLBACK");
    // Another connection starts the WAL over and commits into the space those frames were meant for.
    {
        connection other{path_, batched_wal_vfs()};
        other.exec("PRAGMA wal_checkpoint(TRUNCATE)");
        for (int i = 0; i < 200; ++i) other.exec("INSERT INTO t (key, v) VALUES ('o', hex(randomblob(512)))");
    }
    // The writer's next reads and writes of the WAL.
    EXPECT_EQ(writer_.scalar("SELECT count(*) FROM t"), 201);
    commit_rows(1);
    auto copy = crash_copy();
    EXPECT_EQ(copy.scalar("SELECT count(*) FROM t WHERE key = 'o'"), 200);
    EXPECT_EQ(copy.scalar("SELECT count(*) FROM t"), 202);
    EXPECT_EQ(copy.text("PRAGMA integrity_check"), "ok");
}

}  // namespace
}  // namespace integration::testing
