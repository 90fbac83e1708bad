#ifndef INTEGRATION_SRC_BLOBS_BLOB_KEYS_HPP
#define INTEGRATION_SRC_BLOBS_BLOB_KEYS_HPP

// Blob keys and `blob://<tenant>/<key>` references, shared by every blob-store backend.

#include <integration/core/error.hpp>

#include <string>
#include <string_view>

namespace integration::blobs::detail {

/** Checks a key: 1-512 characters of `[A-Za-z0-9._-]` segments separated by `/`, no `.`/`..`. */
result<void> validate_key(std::string_view key);

/** Checks `tenant` and `key` for a put, whose key segments are also at most 200 characters. */
result<void> validate_put(std::string const& tenant, std::string_view key);

/** The key that `ref` names in `tenant`; a reference of another tenant is not found. */
result<std::string> key_of(std::string const& tenant, std::string const& ref);

}  // namespace integration::blobs::detail

#endif
