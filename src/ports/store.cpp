#include <integration/ports/store.hpp>

namespace integration::storage {

std::string const& store::event_source() const noexcept {
    static std::string const source = "integration";
    return source;
}

prepared_inbound prepare_inbound(webhooks::webhook_delivery d, request_context const& ctx, time_point now,
                                 std::string_view source, std::optional<std::string> payload) {
    prepared_inbound p{std::move(d), {}, std::move(payload)};
    auto events = p.delivery.take_events();
    p.events.reserve(events.size());
    for (auto& e : events) {
        // The first save makes the delivery version 1, as `save` would have stamped these.
        auto env = events::make_envelope(std::move(e), ctx, "WebhookDelivery", p.delivery.id(), ctx.tenant_id, 1, now);
        env.source = source;
        auto json = events::serialize_envelope(env);
        env.data = {};
        p.events.push_back({std::move(env), std::move(json)});
    }
    return p;
}

}  // namespace integration::storage
