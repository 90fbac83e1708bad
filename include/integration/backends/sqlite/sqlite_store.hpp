#ifndef INTEGRATION_BACKENDS_SQLITE_SQLITE_STORE_HPP
#define INTEGRATION_BACKENDS_SQLITE_SQLITE_STORE_HPP

/** @file
 *  The embedded default store: one SQLite file in WAL mode, migrated at open, with two threads of
 *  its own. The writer (`integ-sql-write`) commits concurrent units of work together (group
 *  commit), every commit with `synchronous=NORMAL`; the sync thread (`integ-sql-sync`)
 *  fdatasyncs the WAL and only then reports the `durability::immediate` units committed before
 *  that sync began, while the writer commits the next batch, so the batches committed during one
 *  sync share the next. A sync that fails reports its units `storage_failure` (committed, not
 *  known durable), and every later read and write of the store fails the same way until it is
 *  reopened: the kernel may have dropped the pages it could not write, which no later sync
 *  would cover. See docs/architecture.md, "Durability".
 */

#include <integration/export.hpp>
#include <integration/ports/clock.hpp>
#include <integration/ports/store.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace integration::storage {

/** Options of `sqlite_store`. */
struct sqlite_options {
    std::string path;                         ///< Database file; created if missing.
    /** True: an immediate unit is reported once the WAL is synced after its commit. False makes
     *  every commit `durability::deferred`. */
    bool synchronous_full = true;
    /** `durability::deferred` commits reach the disk within this interval (one fsync of the WAL
     *  on the sync thread). */
    std::chrono::milliseconds flush_interval{10};
    std::chrono::milliseconds busy_timeout{5'000};  ///< How long to wait for another process's lock.
    std::size_t max_batch = 512;              ///< Most units of work committed together.
    std::size_t readers = 4;                  ///< Pooled read connections.
    /** Bytes of the database file each connection reads through a memory map (`PRAGMA mmap_size`);
     *  0 reads with `pread`. Mapped pages count in the process's resident set (`VmRSS`) once
     *  read, up to this size per file, so the default keeps the RSS to what the page cache
     *  does not hold; see bench/README.md for what a map gains. */
    std::size_t mmap_bytes = 0;
    /** Page size of a database file this store creates (a power of two, 512 to 65536); an existing
     *  file keeps its own. Every commit writes each page it changes whole to the WAL: 1024 writes
     *  a third fewer bytes per inbound receive, but costs the writer more CPU per row of 1 KiB or
     *  more (see bench/README.md, "Store commits"). */
    std::size_t page_size = 4096;
    /** The writer copies the WAL back into the database file (a checkpoint, with two fsyncs on
     *  the writer's thread) once the WAL holds this many bytes; the WAL then starts over, so it
     *  stays near this size while readers come and go. */
    std::size_t checkpoint_bytes = 4u << 20;
    bool group_commit = true;                 ///< False commits each unit alone (for comparison).
    integration::clock const* clock = nullptr;  ///< Timestamps; the system clock when null.
    std::string source = "integration";       ///< The envelope `source` of events written here.
};

/** The newest schema version this library writes. */
inline constexpr int sqlite_schema_version = 32;

/** Opens (creating and migrating) a SQLite store. A database from a newer schema is refused.
 *
 *  @par Example
 *  @code
 *  auto store = integration::storage::open_sqlite_store({.path = "data/integration.db"}).value();
 *  @endcode
 */
INTEGRATION_EXPORT result<std::unique_ptr<store>> open_sqlite_store(sqlite_options options);

/** Copies the API keys and inbound webhook registrations of a former reference-host `host.db`
 *  into the store database at `store_path` (opened, so migrated, before); rows the store has
 *  already are kept. Returns the number of rows copied. Its Idempotency-Key records are not
 *  copied: they hold digests of HTTP bodies, where the run service claims a key for a digest of
 *  the request itself (a run with the key still replays by it). The host calls it once, on the
 *  first start after the upgrade, and then renames `host.db`. */
INTEGRATION_EXPORT result<std::size_t> import_host_database(std::string const& store_path,
                                                            std::string const& host_db_path);

/** What a SQLite store's writer has committed since the store was opened. */
struct sqlite_stats {
    std::uint64_t commits = 0;  ///< Write transactions committed (each may carry several units).
    std::uint64_t units = 0;    ///< Units of work those commits carried; a unit rolled back alone is not counted.
};

/** The counters of a store made by `open_sqlite_store` (`std::nullopt` for any other store).
 *  With group commit, concurrent units share commits: fewer commits than units (and the commits
 *  made during one WAL sync share the next sync: fewer syncs than commits).
 *
 *  @par Example
 *  @code
 *  auto stats = integration::storage::sqlite_store_stats(*store).value();
 *  double units_per_commit = double(stats.units) / double(stats.commits);
 *  @endcode
 */
INTEGRATION_EXPORT std::optional<sqlite_stats> sqlite_store_stats(store const& s);

}  // namespace integration::storage

#endif
