#include <integration/core/id.hpp>
#include <integration/domain/event.hpp>

namespace integration::events {

event_envelope make_envelope(domain_event e, request_context const& ctx, std::string_view aggregate_type,
                             std::string aggregate_id, std::string tenant_id, std::int64_t aggregate_version,
                             time_point now) {
    event_envelope env;
    env.event_id = new_id(id_prefix::event, now);
    env.event_type = std::move(e.event_type);
    env.occurred_at = truncate_ms(now);
    env.tenant_id = std::move(tenant_id);
    env.aggregate_type = aggregate_type;
    env.aggregate_id = std::move(aggregate_id);
    env.aggregate_version = aggregate_version;
    env.trace_id = ctx.trace.trace_id;
    env.span_id = ctx.trace.span_id;
    env.correlation_id = ctx.correlation_id;
    env.causation_id = ctx.causation_id;
    env.data = std::move(e.data);
    return env;
}


}  // namespace integration::events
