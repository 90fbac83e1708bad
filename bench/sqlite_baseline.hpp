#ifndef INTEGRATION_BENCH_SQLITE_BASELINE_HPP
#define INTEGRATION_BENCH_SQLITE_BASELINE_HPP

// The baseline every durable-commit figure is compared with: raw sqlite3 on one file (WAL,
// synchronous=FULL), one INSERT of `payload` per transaction, so one fsync per row.

#include <benchmark/benchmark.h>
#include <sqlite3.h>

#include <filesystem>
#include <string>
#include <string_view>

namespace integration::bench {

inline void raw_sqlite_single_row(benchmark::State& state, std::filesystem::path const& path, std::string_view payload) {
    for (auto ext : {"", "-wal", "-shm"}) std::filesystem::remove(path.string() + ext);
    sqlite3* db = nullptr;
    sqlite3_open(path.c_str(), &db);
    sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT)",
                 nullptr, nullptr, nullptr);
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, "INSERT INTO t(body) VALUES (?)", -1, &st, nullptr);
    for (auto _ : state) {
        sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
        sqlite3_bind_text(st, 1, payload.data(), static_cast<int>(payload.size()), SQLITE_STATIC);
        sqlite3_step(st);
        sqlite3_reset(st);
        sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    state.SetItemsProcessed(state.iterations());
}

}  // namespace integration::bench

#endif
