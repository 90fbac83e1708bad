#ifndef INTEGRATION_HOST_IDEMPOTENCY_HPP
#define INTEGRATION_HOST_IDEMPOTENCY_HPP

// Idempotency-Key → hash of the request it was first used with. The library stores the key on the
// run (and replays it) but not what was asked, so the host refuses a key reused for another request.

#include "host_db.hpp"

#include <string>

namespace integration::host {

class idempotency_keys {
public:
    explicit idempotency_keys(host_db& db) : db_(db) {}

    /** Claims `key` for `request_hash`; errc::conflict when it was used with another request. */
    result<void> claim(std::string const& tenant, std::string const& key, std::string const& request_hash);
    /** Forgets a claim whose request recorded nothing (so a corrected request may use the key). */
    void release(std::string const& tenant, std::string const& key);

private:
    host_db& db_;
};

}  // namespace integration::host

#endif
