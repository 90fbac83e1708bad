#ifndef INTEGRATION_PORTS_BLOB_STORE_HPP
#define INTEGRATION_PORTS_BLOB_STORE_HPP

/** @file
 *  The blob-store port: raw webhook payloads and request/response bodies, partitioned by tenant,
 *  addressed by a `blob://<tenant>/<key>` reference, purged by age (storage.md: 30 days).
 */

#include <integration/ports/clock.hpp>
#include <integration/core/durability.hpp>
#include <integration/core/error.hpp>
#include <integration/export.hpp>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace integration::blobs {

/** The reference `put` returns for `key` in `tenant`: `blob://<tenant>/<key>`. */
INTEGRATION_EXPORT std::string reference(std::string const& tenant, std::string const& key);

/** One blob of a `put_many`. */
struct blob_write {
    std::string tenant;
    std::string key;
    std::string_view data;
};

/** The blob-store port. Every call names the tenant; a reference of another tenant is not found. */
class INTEGRATION_EXPORT blob_store {
public:
    virtual ~blob_store() = default;
    /** Writes `data` under `key` (`[A-Za-z0-9._-]` segments of at most 200 characters separated
     *  by `/`), replacing any previous content, and returns its reference. The write is atomic; `d`
     *  says whether it is on disk on return or within the backend's flush interval. A key cannot
     *  be both a blob and the folder of another (`a` and `a/b`) in a backend of files. */
    virtual result<std::string> put(std::string const& tenant, std::string const& key, std::string_view data,
                                    durability d = durability::immediate) = 0;
    /** Writes several blobs as `put` would and returns their references in order. A backend may
     *  write them in one transaction (the SQLite store does: all or none); the default puts them
     *  one by one and stops at the first error. */
    virtual result<std::vector<std::string>> put_many(std::vector<blob_write> const& blobs,
                                                      durability d = durability::immediate);
    /** Reads a blob by reference. */
    virtual result<std::string> get(std::string const& tenant, std::string const& ref) = 0;
    /** Deletes a blob; deleting a missing blob is not an error. */
    virtual result<void> remove(std::string const& tenant, std::string const& ref) = 0;
    /** Deletes every blob written before `cutoff` whose key starts with `key_prefix` (all
     *  tenants; an empty prefix matches every key); returns how many. */
    virtual result<std::size_t> purge_older_than(time_point cutoff, std::string_view key_prefix = {}) = 0;
};

}  // namespace integration::blobs

#endif
