#ifndef INTEGRATION_CORE_ERROR_HPP
#define INTEGRATION_CORE_ERROR_HPP

/** @file
 *  The error model: one `errc` enumeration with its category, an `error` that carries a detail
 *  message saying what to fix, and `result<T>` for every operation a caller can recover from.
 */

#include <integration/export.hpp>

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <string>
#include <string_view>
#include <type_traits>

namespace integration {

/** Error conditions reported by the library. Values are stable: they are persisted and mapped to
 *  problem types by the host. */
enum class errc {
    invalid_argument = 1,  ///< A field is missing or malformed; the detail names it.
    invalid_state,         ///< The aggregate's status does not allow the operation.
    invariant_violation,   ///< A domain invariant would be broken.
    not_found,             ///< No such resource in the caller's tenant.
    already_exists,        ///< A uniqueness rule (key, assembly+version, delivery id) was hit.
    conflict,              ///< Optimistic concurrency: the stored version moved on.
    forbidden,             ///< The caller may not touch this resource (e.g. a global provider).
    storage_failure,       ///< The store reported an I/O or engine error.
    storage_busy,          ///< The store stayed locked past the retry budget.
    schema_too_new,        ///< The database was written by a newer library version.
    database_missing,      ///< The database file vanished under a running store.
    unavailable,           ///< A dependency (store, vault, vendor) cannot be reached.
    secret_store_failure,  ///< The secret store refused or failed an operation.
    integrity_failure,     ///< Authenticated data did not verify (tampering, wrong key).
    egress_denied,         ///< An outbound destination is not allowed by the egress policy.
    timeout,               ///< A deadline passed.
    cancelled,             ///< The operation was cancelled.
    verification_failed,   ///< New material did not pass verification; the prior version stays active.
    in_progress,           ///< The same request (an Idempotency-Key's run) is still executing; retry later.
    scope_not_granted,     ///< The operation's capability is outside the connection's granted scopes.
    /** A request went out (or may have) and the connection ended without a complete answer: the
     *  other side may have acted on it. */
    connection_lost,
    /** An idempotency key was used before for a different request: never retry with it, use a
     *  new key (a `conflict` is a race worth retrying after a reload). */
    idempotency_key_reused,
};

}  // namespace integration

template <>
struct boost::system::is_error_code_enum<integration::errc> : std::true_type {};

namespace integration {

/** The category of `errc`; its name is "integration". */
INTEGRATION_EXPORT boost::system::error_category const& integration_category() noexcept;

/** Makes an `error_code` from an `errc`. */
inline boost::system::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), integration_category()};
}

/** An error code plus a human-readable detail that says what went wrong and what to do. */
class INTEGRATION_EXPORT error {
public:
    /** No error (what `result<T>::error()` returns when there is a value). */
    error() = default;
    error(errc code, std::string detail) : code_(make_error_code(code)), detail_(std::move(detail)) {}
    error(boost::system::error_code code, std::string detail) : code_(code), detail_(std::move(detail)) {}

    /** The machine-readable code; compare with `errc` values. */
    boost::system::error_code const& code() const noexcept { return code_; }
    /** The detail alone, e.g. "displayName must not be empty". */
    std::string const& detail() const noexcept { return detail_; }
    /** Category message and detail, e.g. "invalid argument: displayName must not be empty". */
    std::string message() const;

    friend bool operator==(error const& e, errc c) noexcept { return e.code_ == make_error_code(c); }

private:
    boost::system::error_code code_;
    std::string detail_;
};

/** Throws `boost::system::system_error` carrying the detail; found by `result<T>::value()`. */
[[noreturn]] INTEGRATION_EXPORT void throw_exception_from_error(error const& e, boost::source_location const& loc);

/** The return type of every fallible operation: a value or an `error`. */
template <class T>
using result = boost::system::result<T, error>;

/** Shorthand for a failed result. */
inline error fail(errc code, std::string detail) { return {code, std::move(detail)}; }

}  // namespace integration

#endif
