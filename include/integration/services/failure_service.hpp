#ifndef INTEGRATION_SERVICES_FAILURE_SERVICE_HPP
#define INTEGRATION_SERVICES_FAILURE_SERVICE_HPP

/** @file
 *  The failure service: lists, escalates, resolves and replays IntegrationFailures, every call
 *  in the caller's tenant.
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
     *  under way. Resolving an OutboxEvent failure drops its dead event (never published): its
     *  aggregate's later events, which waited behind it, go on. */
    result<integration_failure> resolve(request_context const& ctx, std::string const& failure_id,
                                        source_outcome outcome);
    /** Publishes again the outbox event an OutboxEvent failure tells of (the relay parked it as
     *  dead): the relay offers it before its aggregate's later events, with `max_attempts` tries
     *  again, and the failure is resolved (DeadLettered) in the same commit; parked again, the
     *  event gets a failure of its own. `errc::invalid_state` for a failure of another source,
     *  a resolved one, one whose event is no longer dead, or an inbound event whose body (the
     *  raw payload, kept 30 days) retention purged: resolve that one to drop it. */
    result<integration_failure> replay(request_context const& ctx, std::string const& failure_id);

private:
    storage::store& store_;
    clock const& clock_;
};

}  // namespace integration::failures

#endif
