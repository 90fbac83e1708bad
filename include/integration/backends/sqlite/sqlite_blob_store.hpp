#ifndef INTEGRATION_BACKENDS_SQLITE_SQLITE_BLOB_STORE_HPP
#define INTEGRATION_BACKENDS_SQLITE_SQLITE_BLOB_STORE_HPP

/** @file
 *  A backend of the blob-store port (component `sqlite`).
 */

#include <integration/export.hpp>
#include <integration/ports/blob_store.hpp>
#include <integration/ports/clock.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace integration::blobs {

/** Options of the SQLite blob store. */
struct sqlite_blob_options {
    std::string path;  ///< Database file; created if missing.
    /** `durability::deferred` puts reach the disk within this interval (one fsync for all). */
    std::chrono::milliseconds flush_interval{10};
    integration::clock const* clock = nullptr;  ///< Write times for purging; the system clock when null.
};

/** A blob store in one SQLite file (WAL). For the small bodies most vendor calls exchange it
 *  writes several times faster than a file per blob, since it creates no inode per body. */
INTEGRATION_EXPORT result<std::unique_ptr<blob_store>> open_sqlite_blob_store(sqlite_blob_options options);

}  // namespace integration::blobs

#endif
