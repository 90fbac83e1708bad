#ifndef INTEGRATION_SERVICES_API_KEY_SERVICE_HPP
#define INTEGRATION_SERVICES_API_KEY_SERVICE_HPP

/** @file
 *  API keys of a host: `ik_` + 43 base64url characters (32 random bytes). Only their SHA-256
 *  hashes are stored.
 */

#include <integration/export.hpp>
#include <integration/ports/clock.hpp>
#include <integration/ports/store.hpp>

#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace integration::keys {

/** Whom a key belongs to. */
struct api_key_owner {
    std::string tenant_id;
    bool admin = false;
    std::string key_hash;  ///< Names the key without revealing it (for per-key rate limits, logs).
};

/** Options of the API key service. */
struct api_key_options {
    /** How long a key found in the store is trusted without reading it again: a key deleted from
     *  the store (revoked) stops working within this time. Unknown keys are never cached, so a
     *  new key works at once. Zero reads the store on every lookup. */
    std::chrono::milliseconds cache_ttl{1'000};
    integration::clock const* clock = nullptr;  ///< Null: the system clock.
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
    explicit api_key_service(storage::store& store, api_key_options options = {})
        : store_(store), options_(options), clock_(options.clock ? *options.clock : system_clock::instance()) {}

    /** Creates a key for `tenant` and returns it; this is the only time it exists in clear. */
    result<std::string> create(std::string const& tenant, bool admin);
    /** The owner of `key`, or nothing when the key is unknown or malformed. Thread-safe. */
    result<std::optional<api_key_owner>> find(std::string_view key);
    /** True when `find(key)` answers without reading the store (the key is cached for at least
     *  100 ms more, or is not a key at all), so that a caller on an event loop may call it there.
     *  Thread-safe. */
    bool found_without_store(std::string_view key);

private:
    struct cached {
        api_key_owner owner;
        time_point expires;
    };
    storage::store& store_;
    api_key_options options_;
    clock const& clock_;
    std::mutex cache_mutex_;
    std::unordered_map<std::string, cached> cache_;  // by key hash
};

}  // namespace integration::keys

#endif
