#include <integration/core/id.hpp>
#include <integration/domain/credential.hpp>
#include <integration/domain/event.hpp>
#include <integration/domain/subscription.hpp>

#include "../detail/validate.hpp"

namespace integration::webhooks {

bool event_type_matches(std::string_view pattern, std::string_view event_type) noexcept {
    if (pattern == "*") return true;
    if (pattern.ends_with(".*")) {
        auto prefix = pattern.substr(0, pattern.size() - 1);  // keeps the dot: "order."
        return event_type.size() > prefix.size() && event_type.starts_with(prefix);
    }
    return pattern == event_type;
}

namespace {

result<void> validate_event_pattern(std::string_view p) {
    if (auto r = detail::require_text(p, "eventType", 200); !r) return r;
    auto body = p == "*" ? std::string_view{} : p.ends_with(".*") ? p.substr(0, p.size() - 2) : p;
    if (p != "*" && (body.empty() || body.find('*') != std::string_view::npos ||
                     body.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-:") !=
                         std::string_view::npos))
        return error{errc::invalid_argument,
                     "eventType must be an event name such as order.created, a prefix such as order.*, or *"};
    return {};
}

}  // namespace

result<webhook_subscription> webhook_subscription::create(request_context const& ctx, time_point now,
                                                          subscription_spec spec) {
    if (auto r = detail::require_text(spec.project_id, "projectId", 128); !r) return r.error();
    if (auto r = validate_event_pattern(spec.event_type); !r) return r.error();
    if (auto r = detail::require_http_url(spec.endpoint_url, "endpointUrl"); !r) return r.error();
    if (auto authority = spec.endpoint_url.substr(spec.endpoint_url.find("//") + 2);
        authority.substr(0, authority.find_first_of("/?#")).find('@') != std::string::npos)
        return error{errc::invalid_argument, "endpointUrl must not carry user information"};
    if (spec.signing_secret_ref.empty())
        return error{errc::invariant_violation, "a signingSecretRef is required so deliveries can be signed"};
    if (auto r = credentials::validate_key_vault_ref(spec.signing_secret_ref); !r)
        return error{errc::invalid_argument, "signingSecretRef: " + r.error().detail()};
    if (spec.attempt_policy) {
        auto const& a = *spec.attempt_policy;
        if (a.max_attempts < 1 || a.max_attempts > 50 || a.initial_delay_ms <= 0 || a.max_delay_ms < a.initial_delay_ms ||
            a.timeout_ms <= 0 || a.timeout_ms > 120'000)
            return error{errc::invalid_argument,
                         "attemptPolicy needs maxAttempts 1-50, 0 < initialDelayMs <= maxDelayMs, 0 < timeoutMs <= 120000"};
    }
    subscription_data d;
    static_cast<subscription_spec&>(d) = std::move(spec);
    d.subscription_id = new_id(id_prefix::subscription, now);
    d.active = true;
    webhook_subscription s(new_metadata(ctx, now), std::move(d));
    s.raise(std::string(events::event_type::webhook_subscribed),
            {{"subscriptionId", s.d_.subscription_id}, {"projectId", s.d_.project_id}, {"eventType", s.d_.event_type},
             {"endpointUrl", s.d_.endpoint_url}});
    return s;
}

result<webhook_subscription> webhook_subscription::restore(metadata m, subscription_data d) {
    if (!is_valid_id(d.subscription_id, id_prefix::subscription))
        return error{errc::invalid_argument, "subscriptionId \"" + d.subscription_id + "\" is not a subscription id"};
    return webhook_subscription(std::move(m), std::move(d));
}

bool webhook_subscription::accepts(std::string_view event_type) const noexcept {
    return d_.active && event_type_matches(d_.event_type, event_type);
}

result<void> webhook_subscription::deactivate(std::string reason) {
    if (!d_.active) return error{errc::invalid_state, "subscription " + d_.subscription_id + " is already inactive"};
    d_.active = false;
    raise(std::string(events::event_type::webhook_subscription_deactivated),
          {{"subscriptionId", d_.subscription_id}, {"reason", reason}});
    return {};
}

}  // namespace integration::webhooks
