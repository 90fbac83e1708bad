#ifndef INTEGRATION_HOST_API_KEYS_HPP
#define INTEGRATION_HOST_API_KEYS_HPP

// Bearer API keys: `ik_` + 43 base64url characters (32 random bytes); only SHA-256 hashes are stored.

#include "host_db.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace integration::host {

struct api_key_owner {
    std::string tenant_id;
    bool admin = false;
};

class api_keys {
public:
    explicit api_keys(host_db& db) : db_(db) {}

    /** Creates a key for `tenant` and returns it; this is the only time it exists in clear. */
    result<std::string> create(std::string const& tenant, bool admin);
    /** The owner of `key`, or nothing when it is unknown. */
    result<std::optional<api_key_owner>> find(std::string_view key);

private:
    host_db& db_;
};

}  // namespace integration::host

#endif
