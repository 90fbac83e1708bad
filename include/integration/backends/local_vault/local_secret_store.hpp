#ifndef INTEGRATION_BACKENDS_LOCAL_VAULT_LOCAL_SECRET_STORE_HPP
#define INTEGRATION_BACKENDS_LOCAL_VAULT_LOCAL_SECRET_STORE_HPP

/** @file
 *  The embedded secret store: a SQLite file of sealed records with envelope encryption. Each
 *  secret version is sealed with AES-256-GCM under its own data key; each data key is sealed under
 *  a master key that lives in a separate key file (mode 0600) or an environment variable, never in
 *  the database. Record identity (tenant, name, version, key id) is authenticated data, so a
 *  swapped or edited record fails to open.
 */

#include <integration/export.hpp>
#include <integration/ports/clock.hpp>
#include <integration/ports/secret_store.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace integration::credentials {

/** Options of the local secret store. */
struct local_secret_store_options {
    std::string path;        ///< The sealed-records database, e.g. `data/secrets.db`.
    std::string key_file;    ///< Master key file; created (mode 0600) only while the store holds no record.
    std::string key_env = "INTEGRATION_MASTER_KEY";  ///< If set (64 hex digits), used instead of the key file.
    bool purge_protection = true;  ///< Refuse purges inside `retention`.
    std::chrono::hours retention{24 * 90};  ///< How long soft-deleted secrets stay recoverable.
    integration::clock const* clock = nullptr;  ///< The system clock when null.
    std::string store_name = "local";          ///< The `store` part of refs.
};

/** The local store, with master-key rotation. */
class INTEGRATION_EXPORT local_secret_store : public secret_store {
public:
    /** Re-seals every data key under a fresh master key while the store stays usable; the old
     *  key is dropped from the key file once nothing needs it. Not available with `key_env`. */
    virtual result<std::size_t> rotate_master_key() = 0;
    /** The id of the master key that seals new data keys. */
    virtual std::string current_key_id() const = 0;
    /** Checks that the master key opens the newest record's data key (an empty store passes):
     *  fails with `integrity_failure` when the key file is not the one the records were sealed
     *  under. The secret itself is not decrypted. */
    virtual result<void> verify_master_key() = 0;
};

/** Opens (creating) a local secret store. A missing key file is generated only while the store
 *  holds no record; with records it is an error naming the file (a new key would open none of
 *  them), as is a key file that exists but cannot be read.
 *
 *  @par Example
 *  @code
 *  auto vault = open_local_secret_store({.path = "data/secrets.db", .key_file = "data/master.key"}).value();
 *  auto ref = vault->put("tenant-1", "acme-api-key", secret_bytes("s3cr3t")).value();
 *  @endcode
 */
INTEGRATION_EXPORT result<std::unique_ptr<local_secret_store>> open_local_secret_store(
    local_secret_store_options options);

}  // namespace integration::credentials

#endif
