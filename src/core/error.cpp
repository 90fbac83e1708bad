#include <integration/core/error.hpp>

#include <boost/system/system_error.hpp>
#include <boost/throw_exception.hpp>

namespace integration {
namespace {

class category final : public boost::system::error_category {
public:
    char const* name() const noexcept override { return "integration"; }
    std::string message(int ev) const override {
        switch (static_cast<errc>(ev)) {
        case errc::invalid_argument: return "invalid argument";
        case errc::invalid_state: return "operation not allowed in the current state";
        case errc::invariant_violation: return "domain invariant violated";
        case errc::not_found: return "not found";
        case errc::already_exists: return "already exists";
        case errc::conflict: return "concurrent modification";
        case errc::forbidden: return "forbidden";
        case errc::storage_failure: return "storage failure";
        case errc::storage_busy: return "storage busy";
        case errc::schema_too_new: return "database schema is newer than this library";
        case errc::database_missing: return "database file missing";
        case errc::unavailable: return "dependency unavailable";
        case errc::secret_store_failure: return "secret store failure";
        case errc::integrity_failure: return "integrity check failed";
        case errc::egress_denied: return "egress denied";
        case errc::timeout: return "timed out";
        case errc::cancelled: return "cancelled";
        case errc::verification_failed: return "verification failed";
        case errc::in_progress: return "still in progress";
        case errc::scope_not_granted: return "capability not granted to the connection";
        case errc::connection_lost: return "connection lost without an answer";
        case errc::idempotency_key_reused: return "idempotency key used for a different request";
        }
        return "unknown integration error";
    }
};

}  // namespace

boost::system::error_category const& integration_category() noexcept {
    static category const c;
    return c;
}

std::string error::message() const {
    if (detail_.empty()) return code_.message();
    return code_.message() + ": " + detail_;
}

void throw_exception_from_error(error const& e, boost::source_location const& loc) {
    boost::throw_exception(boost::system::system_error(e.code(), e.detail()), loc);
}

}  // namespace integration
