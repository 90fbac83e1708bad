#ifndef INTEGRATION_PORTS_SECRET_STORE_HPP
#define INTEGRATION_PORTS_SECRET_STORE_HPP

/** @file
 *  The secret-store port: versioned secrets namespaced by tenant, with disable, soft delete,
 *  recover and purge (in the manner of Vault KV v2 and Azure Key Vault). Secret bytes exist only
 *  inside a store and, transiently, in `secret_bytes` at call time.
 */

#include <integration/ports/clock.hpp>
#include <integration/core/error.hpp>
#include <integration/core/secret_bytes.hpp>
#include <integration/export.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace integration::credentials {

/** A KeyVaultRef: `vault://<store>/<tenant>/<name>?version=<n>`, opaque to everyone but stores. */
struct INTEGRATION_EXPORT secret_ref {
    std::string store;    ///< Which store holds it, e.g. "local".
    std::string tenant;   ///< The namespace.
    std::string name;     ///< `[A-Za-z0-9._-]`, 1-128 characters.
    std::int64_t version = 0;  ///< 0 means the latest enabled version.

    /** Parses the URI form; errors say what shape is expected. */
    static result<secret_ref> parse(std::string_view uri);
    std::string uri() const;
    friend bool operator==(secret_ref const&, secret_ref const&) = default;
};

/** Checks a secret name. */
INTEGRATION_EXPORT result<void> validate_secret_name(std::string_view name);

/** One stored version of a secret. */
struct secret_version_info {
    std::int64_t version = 0;
    bool enabled = true;
    time_point created_at{};
};

/** The secret-store port. Every call names the tenant; a ref of another tenant is not found. */
class INTEGRATION_EXPORT secret_store {
public:
    virtual ~secret_store() = default;
    /** The store name used in refs. */
    virtual std::string const& name() const noexcept = 0;
    /** Stores `value` as the next version of `tenant`/`name` (creating the secret). */
    virtual result<secret_ref> put(std::string const& tenant, std::string const& name, secret_bytes const& value) = 0;
    /** Reads a version (or the latest enabled one when `ref.version` is 0). */
    virtual result<secret_bytes> get(std::string const& tenant, secret_ref const& ref) = 0;
    /** Every version, oldest first. */
    virtual result<std::vector<secret_version_info>> versions(std::string const& tenant, std::string const& name) = 0;
    /** Disables one version: it can no longer be read. */
    virtual result<void> disable(std::string const& tenant, secret_ref const& ref) = 0;
    /** Soft-deletes a secret: unreadable until recovered or purged. */
    virtual result<void> soft_delete(std::string const& tenant, std::string const& name) = 0;
    /** Undoes a soft delete. */
    virtual result<void> recover(std::string const& tenant, std::string const& name) = 0;
    /** Destroys a soft-deleted secret for good (refused inside the purge-protection window). */
    virtual result<void> purge(std::string const& tenant, std::string const& name) = 0;
    /** Destroys, in every tenant, each secret soft-deleted longer ago than the store keeps
     *  deleted secrets recoverable, and each disabled version (not a secret's newest) made that
     *  long ago; the number destroyed. A store that purges on its own
     *  schedule (a cloud vault's scheduled purge) destroys nothing here. The platform's
     *  retention sweep calls it; a store that wraps another forwards it. */
    virtual result<std::size_t> purge_expired() { return std::size_t{0}; }
};

}  // namespace integration::credentials

#endif
