#ifndef INTEGRATION_TESTS_SUPPORT_SQLITE_FILE_HPP
#define INTEGRATION_TESTS_SUPPORT_SQLITE_FILE_HPP

// A SQLite file read and written straight through SQLite, as an older version of the library,
// another tool or an operator would: to age a file, tamper with it, or check what it holds.

#include <gtest/gtest.h>

#include <sqlite3.h>

#include <string>
#include <vector>

namespace integration::testing {

/** Runs `sql` (one or more statements) on the SQLite file at `path`; a failure fails the test. */
inline void exec_sql(std::string const& path, std::string const& sql) {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK) << path;
    char* message = nullptr;
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &message), SQLITE_OK) << (message ? message : "") << "\n" << sql;
    sqlite3_free(message);
    sqlite3_close(db);
}

/** The rows `sql` returns from the file at `path`, opened read-only, with its `?`s bound to
 *  `params` in order: each row's columns as their bytes joined by "|". Empty when the file
 *  cannot be opened or the query fails. */
inline std::vector<std::string> query_rows(std::string const& path, std::string const& sql,
                                           std::vector<std::string> const& params = {}) {
    std::vector<std::string> out;
    sqlite3* db = nullptr;
    sqlite3_stmt* st = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK) {
        for (std::size_t i = 0; i < params.size(); ++i)
            sqlite3_bind_text(st, static_cast<int>(i + 1), params[i].data(), static_cast<int>(params[i].size()), SQLITE_TRANSIENT);
        while (sqlite3_step(st) == SQLITE_ROW) {
            std::string row;
            for (int c = 0; c < sqlite3_column_count(st); ++c) {
                auto const* bytes = static_cast<char const*>(sqlite3_column_blob(st, c));
                if (c > 0) row += '|';
                if (bytes) row.append(bytes, static_cast<std::size_t>(sqlite3_column_bytes(st, c)));
            }
            out.push_back(std::move(row));
        }
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

}  // namespace integration::testing

#endif
