#ifndef INTEGRATION_STORAGE_SQLITE_STORE_HPP
#define INTEGRATION_STORAGE_SQLITE_STORE_HPP

/** @file
 *  The embedded default store: one SQLite file in WAL mode, migrated at open, with a writer thread
 *  that commits concurrent units of work together (group commit: one fsync for many).
 */

#include <integration/core/clock.hpp>
#include <integration/storage/store.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace integration::storage {

/** Options of `sqlite_store`. */
struct sqlite_options {
    std::string path;                         ///< Database file; created if missing.
    bool synchronous_full = true;             ///< False makes every commit `durability::deferred`.
    /** `durability::deferred` commits reach the disk within this interval (one fsync of the WAL). */
    std::chrono::milliseconds flush_interval{10};
    std::chrono::milliseconds busy_timeout{5'000};  ///< How long to wait for another process's lock.
    std::size_t max_batch = 512;              ///< Most units of work committed together.
    std::size_t readers = 4;                  ///< Pooled read connections.
    bool group_commit = true;                 ///< False commits each unit alone (for comparison).
    integration::clock const* clock = nullptr;  ///< Timestamps; the system clock when null.
    std::string source = "integration";       ///< The envelope `source` of events written here.
};

/** The newest schema version this library writes. */
inline constexpr int sqlite_schema_version = 3;

/** Opens (creating and migrating) a SQLite store. A database from a newer schema is refused.
 *
 *  @par Example
 *  @code
 *  auto store = integration::storage::open_sqlite_store({.path = "data/integration.db"}).value();
 *  @endcode
 */
result<std::unique_ptr<store>> open_sqlite_store(sqlite_options options);

}  // namespace integration::storage

#endif
