#include <integration/services/outbox_relay.hpp>

#include <algorithm>
#include <exception>
#include <set>
#include <string>

namespace integration::events {

outbox_relay::outbox_relay(storage::store& store, event_publisher& publisher, outbox_relay_options options)
    : store_(store), publisher_(publisher), options_(options) {
    if (!options_.clock) options_.clock = &system_clock::instance();
}

result<std::size_t> outbox_relay::run_once() {
    auto pending = store_.pending_event_rows(options_.batch);
    if (!pending) return pending.error();
    read_ += pending->size();
    if (pending->empty()) return 0;
    if (options_.on_batch_begin) options_.on_batch_begin();
    struct batch_end {
        std::function<void()> const& f;
        ~batch_end() {
            if (f) f();
        }
    } end{options_.on_batch_end};
    std::vector<std::int64_t> done;
    done.reserve(pending->size());
    // "tenant/type/id" of aggregates with a failed event in this pass: their later events wait.
    std::set<std::string> held;
    result<void> status;
    for (auto& rec : *pending) {
        auto& e = rec.envelope;
        auto aggregate = e.tenant_id + "/" + e.aggregate_type + "/" + e.aggregate_id;
        if (held.contains(aggregate)) continue;
        bool poison = false;
        auto published = [&]() -> result<void> {
            // A listener that throws fails this event like one that returns an error: thrown
            // through the relay, it would leave the batch's published events unmarked (sent
            // again at every pass) and never count, nor park, the event it threw on.
            try {
                // Most events are heard by nobody (no subscription of their tenant and type):
                // their columns say so, and their stored JSON is never parsed.
                if (!rec.json.empty() && publisher_.wants(e)) {
                    auto whole = storage::parse_outbox_envelope(rec);
                    if (!whole) {
                        poison = true;
                        return whole.error();
                    }
                    e = std::move(*whole);
                }
                return publisher_.publish(e);
            } catch (std::exception const& x) {
                return error{errc::unavailable, std::string("a listener threw: ") + x.what()};
            } catch (...) {
                return error{errc::unavailable, "a listener threw"};
            }
        }();
        if (!published) {
            held.insert(std::move(aggregate));
            if (auto f = failed(rec, published.error(), poison); !f && status) status = f;
            continue;
        }
        done.push_back(rec.sequence);
    }
    if (!done.empty()) {
        if (auto r = store_.mark_published(done, options_.clock->now()); !r) return r.error();
        published_ += done.size();
    }
    if (!status) return status.error();
    return done.size();
}

result<void> outbox_relay::failed(storage::outbox_record const& rec, error const& why, bool poison) {
    ++failed_attempts_;
    // A consumer or a store that is down for a while fails every try meanwhile: the tries
    // spread out (doubling up to the cap, a week at most) rather than spend `max_attempts`
    // within seconds and park events that would have gone once it was back.
    constexpr std::chrono::milliseconds week{7LL * 24 * 3600 * 1000};
    auto const cap = std::clamp(options_.retry_cap, std::chrono::milliseconds(1), week);
    auto wait = std::clamp(options_.retry_base, std::chrono::milliseconds(1), cap);
    for (std::int64_t i = 0; i < rec.attempts && wait < cap; ++i) wait = wait > cap / 2 ? cap : wait * 2;
    auto attempts = store_.count_failed_publication(rec.sequence, wait);
    if (!attempts) return attempts.error();
    // An envelope that cannot be parsed fails the same way every time.
    if (!poison && *attempts < options_.max_attempts) return {};
    auto now = options_.clock->now();
    auto const& e = rec.envelope;
    // Parked with the failure that tells of it, in one commit: never a dead event nobody hears
    // of. A failure belongs to a tenant; an event of a global provider has none to show it to
    // (the counter still counts it).
    request_context ctx;
    storage::store::work tell;
    if (!e.tenant_id.empty()) {
        ctx = request_context::for_tenant(e.tenant_id, "outbox-relay");
        ctx.correlation_id = e.correlation_id;
        ctx.causation_id = e.event_id;
        tell = [&](storage::unit_of_work& uow) -> result<void> {
            failures::classification c{failures::failure_category::poison, "publish_failed",
                                       "event " + e.event_type + " of " + e.aggregate_type + " " + e.aggregate_id +
                                           " failed " + std::to_string(*attempts) +
                                           " publications and was parked as dead; last error: " + why.message(),
                                       failures::next_action::dead_letter, std::nullopt};
            auto f = failures::integration_failure::record(ctx, now, failures::failure_source::outbox_event, e.event_id, "", c);
            if (!f) return f.error();
            return uow.failures().save(*f);
        };
    }
    if (auto r = store_.park_dead(rec.sequence, now, ctx, tell); !r) {
        // Published or parked by another relay on the same store meanwhile: nothing to tell.
        if (r.error() == errc::not_found) return {};
        return r;
    }
    ++dead_;
    return {};
}

outbox_relay_stats outbox_relay::stats() const noexcept {
    return {published_.load(), failed_attempts_.load(), dead_.load(), read_.load()};
}

}  // namespace integration::events
