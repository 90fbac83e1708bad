#ifndef INTEGRATION_CORE_CONTEXT_HPP
#define INTEGRATION_CORE_CONTEXT_HPP

/** @file
 *  Who is acting, for which tenant, under which trace. Every store operation takes one, so every
 *  read and write is tenant-scoped and every event carries the caller's trace.
 */

#include <integration/core/error.hpp>
#include <integration/export.hpp>

#include <string>
#include <string_view>

namespace integration {

/** W3C trace context (`traceparent`) identifiers, lower-case hex. */
struct INTEGRATION_EXPORT trace_context {
    std::string trace_id;  ///< 32 hex digits.
    std::string span_id;   ///< 16 hex digits.

    /** A fresh random trace. */
    static trace_context generate();
    /** Parses a `traceparent` header value (version 00). */
    static result<trace_context> parse_traceparent(std::string_view header);
    /** A child span of this trace. */
    trace_context child() const;
    /** Renders `00-<trace>-<span>-01`. */
    std::string traceparent() const;
};

/** The caller of an operation. */
struct INTEGRATION_EXPORT request_context {
    std::string tenant_id;       ///< The tenant every read and write is scoped to.
    std::string actor;           ///< Recorded in createdBy / updatedBy.
    bool admin = false;          ///< May write global (shared) providers and clients.
    trace_context trace;         ///< Propagated into events and outbound calls.
    std::string correlation_id;  ///< Groups events of one business flow.
    std::string causation_id;    ///< The event or request that caused this one.

    /** A context for `tenant` acting as `actor`, with a new trace. */
    static request_context for_tenant(std::string tenant, std::string actor = "system");
};

/** Checks a tenant id: 1-64 characters of `[A-Za-z0-9._-]`. */
INTEGRATION_EXPORT result<void> validate_tenant_id(std::string_view tenant);

}  // namespace integration

#endif
