#include <integration/core/id.hpp>
#include <integration/core/utf8.hpp>
#include <integration/domain/event.hpp>

#include <boost/json/serialize.hpp>

#include <string>

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

namespace {

void append_quoted(std::string& out, std::string_view text) {
    static constexpr char hex[] = "0123456789abcdef";
    out += '"';
    for (char ch : text) {
        auto c = static_cast<unsigned char>(ch);
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
            if (c < 0x20) {
                out += "\\u00";
                out += hex[c >> 4];
                out += hex[c & 0xf];
            } else {
                out += ch;
            }
        }
    }
    out += '"';
}

}  // namespace

std::string serialize_envelope(event_envelope const& e, envelope_fields fields) {
    std::string out;
    out.reserve(512);
    auto text = [&](char const* name, std::string_view value) {
        out += name;
        append_quoted(out, value);
    };
    if (fields == envelope_fields::all) {
        text("{\"eventId\":", e.event_id);
        text(",\"eventType\":", e.event_type);
        out += ",\"schemaVersion\":" + std::to_string(e.schema_version);
        text(",\"occurredAt\":", format_time(e.occurred_at));
        text(",\"tenantId\":", e.tenant_id);
        text(",\"aggregateType\":", e.aggregate_type);
        text(",\"aggregateId\":", e.aggregate_id);
        out += ",\"aggregateVersion\":" + std::to_string(e.aggregate_version);
    } else {
        out += "{\"schemaVersion\":" + std::to_string(e.schema_version);
    }
    text(",\"traceId\":", e.trace_id);
    text(",\"spanId\":", e.span_id);
    text(",\"correlationId\":", e.correlation_id);
    text(",\"causationId\":", e.causation_id);
    text(",\"source\":", e.source);
    out += ",\"data\":";
    out += boost::json::serialize(e.data);
    out += '}';
    // Text from outside (a vendor's header, an inbound payload's field) may not be UTF-8, which
    // no JSON reader takes back: the stored event could then never be published. Every byte
    // outside ASCII is inside a string here, so replacing what is not UTF-8 keeps the JSON whole.
    if (!is_valid_utf8(out)) out = utf8_excerpt(out, std::string::npos);
    return out;
}

}  // namespace integration::events
