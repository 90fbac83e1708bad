#ifndef INTEGRATION_SERVICES_FAILURE_SERVICE_HPP
#define INTEGRATION_SERVICES_FAILURE_SERVICE_HPP

/** @file
 *  The failure service: lists, escalates and resolves IntegrationFailures, every call in the
 *  caller's tenant.
 */

#include <integration/domain/failure.hpp>
#include <integration/export.hpp>
#include <integration/ports/clock.hpp>
#include <integration/ports/store.hpp>

#include <optional>
#include <string>

namespace integration::failures {

/** Lists, escalates and resolves failures.
 *
 *  @par Example
 *  @code
 *  failure_service failures(store, system_clock::instance());
 *  auto open = failures.list(ctx, {.unresolved_only = true}, {}).value();
 *  for (auto& f : open.items) failures.escalate(ctx, f.id(), "vendor down for a day", "OPS-42");
 *  @endcode
 */
class INTEGRATION_EXPORT failure_service {
public:
    failure_service(storage::store& store, clock const& clock);

    result<integration_failure> find(request_context const& ctx, std::string const& failure_id);
    /** Failures by run, delivery or unresolved only, a page at a time. */
    result<storage::page<integration_failure>> list(request_context const& ctx, storage::failure_query const& q,
                                                    storage::page_request const& page);
    /** Escalates with an audit record naming `ctx.actor`, `reason` (required) and an optional
     *  ticket (raises IntegrationFailureEscalated). A run the failure kept Running for the retry
     *  worker ends Failed in the same transaction: an escalated failure is never retried. */
    result<integration_failure> escalate(request_context const& ctx, std::string const& failure_id,
                                         std::string const& reason, std::optional<std::string> ticket_ref = {});
    /** Resolves a failure whose source succeeded or was dead-lettered (raises
     *  IntegrationFailureResolved); `errc::invalid_state` while its run or delivery is still
     *  under way. */
    result<integration_failure> resolve(request_context const& ctx, std::string const& failure_id,
                                        source_outcome outcome);

private:
    storage::store& store_;
    clock const& clock_;
};

}  // namespace integration::failures

#endif
