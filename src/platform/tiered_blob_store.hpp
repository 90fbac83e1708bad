#ifndef INTEGRATION_SRC_PLATFORM_TIERED_BLOB_STORE_HPP
#define INTEGRATION_SRC_PLATFORM_TIERED_BLOB_STORE_HPP

// The embedded default's blob store: small blobs in a store that many writes share one commit of
// (SQLite), large ones in a store that streams them (one file each).

#include <integration/ports/blob_store.hpp>

#include <cstddef>
#include <memory>

namespace integration::detail {

/** Puts blobs of at most `small_limit` bytes into `small` and larger ones into `large`; reads
 *  and removes look in both (a blob written by an older layout is found where it is). A put
 *  that replaces a blob of the other tier removes that copy, or is undone and refused. */
std::unique_ptr<blobs::blob_store> make_tiered_blob_store(std::unique_ptr<blobs::blob_store> small,
                                                          std::unique_ptr<blobs::blob_store> large,
                                                          std::size_t small_limit);

}  // namespace integration::detail

#endif
