#include "problem.hpp"

#include <integration/core/utf8.hpp>

#include <boost/json/object.hpp>

namespace integration::host {
namespace {

struct mapping {
    errc code;
    unsigned status;
    std::string_view slug;
    std::string_view title;
};

// egress_denied is 422: the request is well formed, but its destination is refused by the
// operator's egress policy, which the caller can only fix by pointing somewhere else.
// verification_failed is 422 too: the new secret was checked and rejected; the old one stays.
constexpr mapping table[] = {
    {errc::invalid_argument, 400, "validation", "The request is not valid"},
    {errc::not_found, 404, "not-found", "No such resource"},
    {errc::already_exists, 409, "already-exists", "The resource already exists"},
    {errc::conflict, 409, "conflict", "The resource changed or the request conflicts with an earlier one"},
    {errc::invalid_state, 409, "invalid-state", "The resource's status does not allow this"},
    {errc::invariant_violation, 409, "invariant-violation", "This would break a rule of the domain"},
    {errc::forbidden, 403, "forbidden", "This key may not do that"},
    {errc::unavailable, 503, "unavailable", "A dependency is unavailable"},
    {errc::storage_busy, 503, "storage-busy", "The store is busy"},
    {errc::secret_store_failure, 503, "secret-store-unavailable", "The secret store failed"},
    {errc::database_missing, 503, "database-missing", "The database file is gone"},
    {errc::egress_denied, 422, "egress-denied", "The destination is not allowed by the egress policy"},
    {errc::verification_failed, 422, "verification-failed", "The new material did not pass verification"},
    {errc::timeout, 504, "timeout", "A deadline passed"},
    {errc::in_progress, 409, "idempotency-in-progress", "A request with this Idempotency-Key is still executing"},
    {errc::scope_not_granted, 403, "scope-not-granted", "The connection is not granted this capability"},
    {errc::connection_lost, 502, "connection-lost", "The vendor closed the connection without an answer"},
    {errc::idempotency_key_reused, 409, "idempotency-key-reused", "The idempotency key was used for a different request"},
};

}  // namespace

reply problem(unsigned status, std::string_view slug, std::string_view title, std::string detail) {
    boost::json::object o;
    o["type"] = std::string(problem_base) + std::string(slug);
    o["title"] = title;
    o["status"] = status;
    // A detail may repeat what the caller sent (a path, a query value): JSON text is UTF-8 only.
    o["detail"] = is_valid_utf8(detail) ? std::move(detail) : utf8_excerpt(detail, detail.size() * 3);
    return reply{status, std::move(o), "application/problem+json", {}};
}

reply problem_from(error const& e) {
    if (e.code().category() == integration_category())
        for (auto const& m : table)
            if (e == m.code) return problem(m.status, m.slug, m.title, e.detail());
    return problem(500, "internal", "Internal error",
                   "the server failed to complete the request; the access log's traceId identifies it");
}

}  // namespace integration::host
