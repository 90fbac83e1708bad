#ifndef INTEGRATION_SRC_BACKENDS_SQLITE_WAL_SYNC_HPP
#define INTEGRATION_SRC_BACKENDS_SQLITE_WAL_SYNC_HPP

// Private to the SQLite backend, its tests and benchmarks: how a store makes its commits durable,
// replaceable so that a test can count or hold the syncs.

#include <integration/backends/sqlite/sqlite_store.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace integration::storage::sqlite {

/** Makes every commit so far in the WAL of the database at `path` durable (`sqlite::sync_wal`). */
using wal_sync = std::function<result<void>(std::string const& path)>;

/** `open_sqlite_store` whose store syncs its WAL with `sync`. */
result<std::unique_ptr<store>> open_store(sqlite_options o, wal_sync sync);

/** The WAL syncs a store made by `open_sqlite_store` has done so far (0 for any other store). */
std::uint64_t wal_syncs(store const& s);

}  // namespace integration::storage::sqlite

#endif
