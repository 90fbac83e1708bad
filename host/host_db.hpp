#ifndef INTEGRATION_HOST_HOST_DB_HPP
#define INTEGRATION_HOST_HOST_DB_HPP

// The host's own SQLite file (`host.db`): API keys, idempotency fingerprints and inbound webhook
// registrations. Kept apart from integration.db so the library's schema and migrations stay the
// library's; it goes through the library's own SQLite wrapper (cached statements, mapped errors).

#include "detail/sqlite/connection.hpp"

#include <memory>
#include <mutex>
#include <string>

namespace integration::host {

using storage::sqlite::database;

class host_db {
public:
    static result<std::unique_ptr<host_db>> open(std::string const& path);

    /** Runs `fn(database&)` under the lock: one connection, short statements. */
    template <class F>
    auto with(F&& fn) {
        std::lock_guard lock(mutex_);
        return fn(*db_);
    }

private:
    explicit host_db(std::unique_ptr<database> db) : db_(std::move(db)) {}
    std::mutex mutex_;
    std::unique_ptr<database> db_;
};

}  // namespace integration::host

#endif
