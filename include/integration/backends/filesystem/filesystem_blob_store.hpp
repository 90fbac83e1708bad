#ifndef INTEGRATION_BACKENDS_FILESYSTEM_FILESYSTEM_BLOB_STORE_HPP
#define INTEGRATION_BACKENDS_FILESYSTEM_FILESYSTEM_BLOB_STORE_HPP

/** @file
 *  A backend of the blob-store port (component `filesystem`).
 */

#include <integration/export.hpp>
#include <integration/ports/blob_store.hpp>
#include <integration/ports/clock.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace integration::blobs {

/** A blob store in a directory: `<root>/<tenant>/<key>`, written via a temporary file and rename.
 *  An immediate put fsyncs its file; deferred puts are flushed together by one `syncfs` of the
 *  root's file system within `flush_interval`. */
INTEGRATION_EXPORT result<std::unique_ptr<blob_store>> open_filesystem_blob_store(
    std::string root, std::chrono::milliseconds flush_interval = std::chrono::milliseconds(10));

}  // namespace integration::blobs

#endif
