#ifndef INTEGRATION_SERVICES_API_KEY_SERVICE_HPP
#define INTEGRATION_SERVICES_API_KEY_SERVICE_HPP

/** @file
 *  API keys of a host: `ik_` + 43 base64url characters (32 random bytes). Only their SHA-256
 *  hashes are stored.
 */

#include <integration/export.hpp>
#include <integration/ports/store.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace integration::keys {

/** Whom a key belongs to. */
struct api_key_owner {
    std::string tenant_id;
    bool admin = false;
    std::string key_hash;  ///< Names the key without revealing it (for per-key rate limits, logs).
};

/** Creates and checks API keys.
 *
 *  @par Example
 *  @code
 *  keys::api_key_service keys(store);
 *  auto key = keys.create("acme", false).value();   // shown once
 *  auto owner = keys.find(key).value();             // {"acme", false, ...}
 *  @endcode
 */
class INTEGRATION_EXPORT api_key_service {
public:
    explicit api_key_service(storage::store& store) : store_(store) {}

    /** Creates a key for `tenant` and returns it; this is the only time it exists in clear. */
    result<std::string> create(std::string const& tenant, bool admin);
    /** The owner of `key`, or nothing when the key is unknown or malformed. */
    result<std::optional<api_key_owner>> find(std::string_view key);

private:
    storage::store& store_;
};

}  // namespace integration::keys

#endif
