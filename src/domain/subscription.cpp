#include <integration/core/id.hpp>
#include <integration/domain/credential.hpp>
#include <integration/domain/event.hpp>
#include <integration/domain/subscription.hpp>
#include <integration/domain/webhook_filter.hpp>

#include "../detail/validate.hpp"

#include <algorithm>
#include <utility>

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
    if (detail::has_userinfo(spec.endpoint_url))
        return error{errc::invalid_argument, "endpointUrl must not carry user information"};
    if (spec.signing_secret_ref.empty())
        return error{errc::invariant_violation, "a signingSecretRef is required so deliveries can be signed"};
    if (auto r = credentials::validate_key_vault_ref(spec.signing_secret_ref); !r)
        return error{errc::invalid_argument, "signingSecretRef: " + r.error().detail()};
    if (spec.attempt_policy) {
        auto const& a = *spec.attempt_policy;
        if (a.max_attempts < 1 || a.max_attempts > 50 || a.initial_delay_ms <= 0 || a.max_delay_ms < a.initial_delay_ms ||
            a.max_delay_ms > max_retry_delay_ms || a.timeout_ms <= 0 || a.timeout_ms > 120'000)
            return error{errc::invalid_argument, "attemptPolicy needs maxAttempts 1-50, 0 < initialDelayMs <= maxDelayMs <= " +
                                                     std::to_string(max_retry_delay_ms) + " (7 days), 0 < timeoutMs <= 120000"};
        if (a.schedule_ms) {
            if (static_cast<std::int64_t>(a.schedule_ms->size()) > a.max_attempts - 1)
                return error{errc::invalid_argument, "attemptPolicy.scheduleMs lists the delays after each failed "
                                                     "attempt, so it has at most maxAttempts - 1 (" +
                                                         std::to_string(a.max_attempts - 1) + ") entries"};
            for (std::size_t i = 0; i < a.schedule_ms->size(); ++i)
                if ((*a.schedule_ms)[i] < 0 || (*a.schedule_ms)[i] > max_retry_delay_ms)
                    return error{errc::invalid_argument, "attemptPolicy.scheduleMs[" + std::to_string(i) +
                                                             "] must be 0 to " + std::to_string(max_retry_delay_ms) + " (7 days)"};
        }
    }
    if (spec.max_per_second && (*spec.max_per_second < 1 || *spec.max_per_second > 10'000))
        return error{errc::invalid_argument, "maxPerSecond must be 1-10000 deliveries per second"};
    if (spec.filter)
        if (auto f = payload_filter::parse(*spec.filter); !f) return f.error();
    subscription_data d;
    static_cast<subscription_spec&>(d) = std::move(spec);
    d.subscription_id = new_id(id_prefix::subscription, now);
    d.active = true;
    webhook_subscription s(new_metadata(ctx, now), std::move(d));
    // Events go to every `*` subscriber of the tenant: the URL without its query, which may hold
    // the receiver's key (an Azure Function's `?code=`, a signed `&sig=`).
    s.raise(std::string(events::event_type::webhook_subscribed),
            {{"subscriptionId", s.d_.subscription_id}, {"projectId", s.d_.project_id}, {"eventType", s.d_.event_type},
             {"endpointUrl", detail::url_without_secrets(s.d_.endpoint_url)}});
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

std::chrono::milliseconds webhook_subscription::delay_before(std::int64_t next_attempt) const {
    if (next_attempt < 2) return std::chrono::milliseconds(0);
    auto const failed = static_cast<std::size_t>(next_attempt - 2);  // 0-based index of the failed attempt
    if (!d_.attempt_policy)
        return std::chrono::milliseconds(default_retry_schedule_ms[std::min(failed, default_retry_schedule_ms.size() - 1)]);
    auto const& p = *d_.attempt_policy;
    // Bounded again here: a policy stored before the bound was checked may hold more.
    auto const bounded = [](std::int64_t ms) { return std::chrono::milliseconds(std::clamp<std::int64_t>(ms, 0, max_retry_delay_ms)); };
    if (p.schedule_ms && !p.schedule_ms->empty()) return bounded((*p.schedule_ms)[std::min(failed, p.schedule_ms->size() - 1)]);
    auto delay = p.initial_delay_ms;
    for (std::size_t i = 0; i < failed && delay < p.max_delay_ms; ++i)
        delay = delay > p.max_delay_ms / 2 ? p.max_delay_ms : delay * 2;
    return bounded(std::min(delay, p.max_delay_ms));
}

namespace {

/** Every secret a rotation replaced, newest first. */
std::vector<replaced_signing_secret> replaced_of(subscription_data const& d) {
    std::vector<replaced_signing_secret> out;
    if (d.previous_signing_secret_ref && d.previous_secret_until)
        out.push_back({*d.previous_signing_secret_ref, *d.previous_secret_until});
    if (d.earlier_signing_secrets) out.insert(out.end(), d.earlier_signing_secrets->begin(), d.earlier_signing_secrets->end());
    return out;
}

}  // namespace

std::vector<std::string> webhook_subscription::signing_secret_refs(time_point now) const {
    std::vector<std::string> refs{d_.signing_secret_ref};
    for (auto const& r : replaced_of(d_))
        if (now < r.until) refs.push_back(r.ref);
    return refs;
}

result<void> webhook_subscription::deactivate(std::string reason) {
    if (!d_.active) return error{errc::invalid_state, "subscription " + d_.subscription_id + " is already inactive"};
    d_.active = false;
    d_.deactivation_reason = reason;
    raise(std::string(events::event_type::webhook_subscription_deactivated),
          {{"subscriptionId", d_.subscription_id}, {"reason", reason}});
    return {};
}

result<void> webhook_subscription::reactivate() {
    if (d_.active) return error{errc::invalid_state, "subscription " + d_.subscription_id + " is already active"};
    d_.active = true;
    d_.consecutive_failures = 0;
    d_.failing_since.reset();
    d_.deactivation_reason.reset();
    raise(std::string(events::event_type::webhook_subscription_reactivated), {{"subscriptionId", d_.subscription_id}});
    return {};
}

result<std::vector<std::string>> webhook_subscription::rotate_signing_secret(std::string new_ref, time_point now,
                                                                              std::chrono::milliseconds overlap) {
    if (overlap.count() < 0) return error{errc::invalid_argument, "the secret overlap must not be negative"};
    if (auto r = credentials::validate_key_vault_ref(new_ref); !r)
        return error{errc::invalid_argument, "signingSecretRef: " + r.error().detail()};
    if (new_ref == d_.signing_secret_ref)
        return error{errc::invalid_argument, "a rotation needs a signing secret other than the current one"};
    std::vector<replaced_signing_secret> live;
    std::vector<std::string> ended;
    for (auto& r : replaced_of(d_)) {
        if (now < r.until) live.push_back(std::move(r));
        else ended.push_back(std::move(r.ref));
    }
    if (live.size() >= max_replaced_signing_secrets)
        return error{errc::conflict, std::to_string(live.size()) + " replaced signing secrets of subscription " +
                                         d_.subscription_id + " still sign; rotate again once the oldest one's overlap ends (" +
                                         format_time(live.back().until) + ")"};
    auto const until = truncate_ms(now + overlap);
    d_.previous_signing_secret_ref = std::exchange(d_.signing_secret_ref, std::move(new_ref));
    d_.previous_secret_until = until;
    if (live.empty()) d_.earlier_signing_secrets.reset();
    else d_.earlier_signing_secrets = std::move(live);
    raise(std::string(events::event_type::webhook_signing_secret_rotated),
          {{"subscriptionId", d_.subscription_id}, {"previousSecretUntil", format_time(until)}});
    return ended;
}

bool webhook_subscription::record_outcome(bool delivered, time_point now, std::int64_t disable_after,
                                          std::chrono::milliseconds failing_for) {
    if (delivered) {
        d_.consecutive_failures = 0;
        d_.failing_since.reset();
        return false;
    }
    // A run counted before failing_since was kept starts its clock at its next failure.
    if (d_.consecutive_failures++ == 0 || !d_.failing_since) d_.failing_since = truncate_ms(now);
    if (disable_after <= 0 || d_.consecutive_failures < disable_after || !d_.active) return false;
    if (now - *d_.failing_since < failing_for) return false;
    return static_cast<bool>(
        deactivate("auto-disabled after " + std::to_string(d_.consecutive_failures) + " consecutive failures"));
}

}  // namespace integration::webhooks
