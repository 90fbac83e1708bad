#include <integration/ports/store.hpp>

#include <boost/json/parse.hpp>

#include <algorithm>
#include <iterator>

namespace integration::storage {

std::string const& store::event_source() const noexcept {
    static std::string const source = "integration";
    return source;
}

namespace {

// Whether `v` holds a floating-point number anywhere.
bool holds_double(boost::json::value const& v) {
    switch (v.kind()) {
    case boost::json::kind::double_: return true;
    case boost::json::kind::array:
        return std::any_of(v.get_array().begin(), v.get_array().end(), [](auto const& x) { return holds_double(x); });
    case boost::json::kind::object:
        return std::any_of(v.get_object().begin(), v.get_object().end(),
                           [](auto const& kv) { return holds_double(kv.value()); });
    default: return false;
    }
}

// The aggregate's pending events as its next save at `version` would write them to the outbox.
// With `body_format`, an event's `data.body` is left out when the store can put the very same
// value back from the payload. Strings, integers, booleans and nulls read back from their text
// exactly as they were; a double's text, read back, may not.
template <class A>
std::vector<serialized_event> serialize_pending(A& a, std::string_view aggregate_type, request_context const& ctx,
                                                time_point now, std::string_view source, std::int64_t version,
                                                std::optional<webhooks::body_format> body_format = std::nullopt) {
    auto events = a.take_events();
    std::vector<serialized_event> out;
    out.reserve(events.size());
    for (auto& e : events) {
        auto env = events::make_envelope(std::move(e), ctx, aggregate_type, a.id(), ctx.tenant_id, version, now);
        env.source = source;
        std::optional<webhooks::body_format> from_payload;
        // The body is `data`'s last member, so that putting it back at the end restores its order.
        if (body_format && !env.data.empty() && std::prev(env.data.end())->key() == "body" &&
            !holds_double(std::prev(env.data.end())->value())) {
            env.data.erase(std::prev(env.data.end()));
            from_payload = body_format;
        }
        auto json = events::serialize_envelope(env, events::envelope_fields::without_identity);
        env.data = {};
        out.push_back({std::move(env), std::move(json), from_payload});
    }
    return out;
}

result<boost::json::value> parse_outbox_json(std::string_view json) {
    boost::system::error_code ec;
    // An envelope is two levels around its data, which holds a body as deep as an inbound one may be.
    boost::json::parse_options deep;
    deep.max_depth = webhooks::max_body_depth + 4;
    auto j = boost::json::parse(json, ec, {}, deep);
    if (ec) return error{errc::storage_failure, "outbox row is corrupt: " + ec.message()};
    return j;
}

// Puts back the `data.body` an outbox row's stored envelope left out: its delivery's payload.
result<void> put_body_back(boost::json::value& envelope, outbox_record const& row) {
    auto* data = envelope.is_object() ? envelope.get_object().if_contains("data") : nullptr;
    if (!data || !data->is_object()) return error{errc::storage_failure, "outbox row is invalid: it has no data"};
    auto const* id = envelope.get_object().if_contains("aggregateId");
    auto what = [&] {
        return "the body of an outbox event of delivery " + std::string(id && id->is_string() ? id->get_string() : "?");
    };
    if (!row.body)
        return error{errc::storage_failure, what() + " was its payload, which is gone (removed outside retention?)"};
    auto f = parse_enum<webhooks::body_format>(row.body_format, "body_from_payload");
    if (!f) return error{errc::storage_failure, "outbox row is invalid: " + f.error().detail()};
    auto body = webhooks::parse_body(*row.body, *f);
    if (!body)
        return error{errc::storage_failure, what() + " is its payload, which no longer reads as " + row.body_format};
    data->get_object().emplace("body", std::move(*body));
    return {};
}

}  // namespace

result<events::event_envelope> parse_outbox_envelope(outbox_record const& row) {
    auto j = parse_outbox_json(row.json);
    if (!j) return j.error();
    // The fields that identify the event are the row's columns (a row written before schema 18
    // has them in its text too, and they read the same).
    if (auto* o = j->if_object()) {
        auto const& e = row.envelope;
        o->emplace("eventId", e.event_id);
        o->emplace("eventType", e.event_type);
        o->emplace("occurredAt", format_time(e.occurred_at));
        o->emplace("tenantId", e.tenant_id);
        o->emplace("aggregateType", e.aggregate_type);
        o->emplace("aggregateId", e.aggregate_id);
        o->emplace("aggregateVersion", e.aggregate_version);
    }
    if (!row.body_format.empty())
        if (auto r = put_body_back(*j, row); !r) return r.error();
    auto env = value_from_json<events::event_envelope>(*j);
    if (!env) return error{errc::storage_failure, "outbox row is invalid: " + env.error().detail()};
    return env;
}

prepared_inbound prepare_inbound(webhooks::webhook_delivery d, request_context const& ctx, time_point now,
                                 std::string_view source, std::optional<std::string> payload,
                                 std::optional<webhooks::body_format> body_format) {
    prepared_inbound p{std::move(d), {}, std::move(payload)};
    // The first save makes the delivery version 1, as `save` would have stamped these.
    p.events = serialize_pending(p.delivery, "WebhookDelivery", ctx, now, source, 1,
                                 p.payload ? body_format : std::nullopt);
    return p;
}

result<void> webhook_delivery_repository::record_prepared_attempts(std::span<prepared_attempt> batch) {
    for (auto& p : batch) {
        auto r = record_prepared_attempt(p);
        if (!r && r.error() != errc::conflict) return r;
        p.recorded = r.has_value();
    }
    return {};
}

prepared_attempt prepare_attempt(webhooks::webhook_delivery d, request_context const& ctx, time_point now,
                                 std::string_view source) {
    prepared_attempt p{std::move(d), {}, false};
    p.events = serialize_pending(p.delivery, "WebhookDelivery", ctx, now, source, p.delivery.meta().version + 1);
    return p;
}

prepared_run prepare_run(runs::integration_run r, request_context const& ctx, time_point now, std::string_view source) {
    prepared_run p{std::move(r), {}};
    p.events = serialize_pending(p.run, "IntegrationRun", ctx, now, source, p.run.meta().version + 1);
    return p;
}

}  // namespace integration::storage
