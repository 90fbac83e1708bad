#include <integration/services/delivery_worker.hpp>
#include <integration/core/utf8.hpp>

#include <integration/core/id.hpp>
#include <integration/domain/failure.hpp>
#include <integration/outbound/retry.hpp>
#include <integration/services/webhook_signature.hpp>

#include "../detail/fair_pool.hpp"

#include <boost/url/parse.hpp>

#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace integration::webhooks {

namespace {

using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

constexpr milliseconds longest_timeout{120'000};  // the bound subscription_attempt_policy::timeout_ms accepts
constexpr char const* user_agent = "integration-webhooks/1";
constexpr int max_record_tries = 3;      // units that conflict on a subscription saved by someone else meanwhile
constexpr milliseconds record_wait{50};  // the longest a finished send waits to be recorded with others
constexpr std::size_t trim_every = 10'000;  // outcomes recorded between two returns of freed heap to the system

/** What happened to one leased delivery, waiting to be recorded by the worker's thread. */
struct outcome {
    std::string tenant_id;
    webhook_delivery delivery;  // as leased: its version proves the lease at save time
    time_point attempted_at;
    std::optional<time_point> defer_until;  // the rate limit said "not now", or a local failure: no attempt
    /** Why it can never be sent (its payload purged): dead-lettered with a failure of this code
     *  and message, no attempt. */
    std::optional<std::pair<std::string, std::string>> unsendable;
    std::optional<int> status;
    std::optional<std::string> error;  // no answer, or nothing was sent; deferred: why, if its own failure
    std::string excerpt;
    milliseconds latency{0};
    std::optional<milliseconds> retry_after;
    milliseconds retry_delay{0};  // before the next attempt after a failure, from the subscription's policy
    milliseconds max_delay{0};    // the policy's cap on a Retry-After
    int record_tries = 0;         // transactions that conflicted on its subscription so far
};

/** One tenant's outcomes on their way through the store's writer, and what committing them did. */
struct recording {
    std::string tenant_id;
    std::vector<outcome> items;
    // Built by the worker before the writer sees them: each attempted item's delivery with its
    // outcome applied and its events serialized (`attempts`, recorded in one call), each
    // rate-limited or locally failed one deferred, each without a payload abandoned (`unsent`).
    // `slot[i]` is item i's index in its vector, or -1
    // when the delivery is no longer sendable (e.g. replayed meanwhile).
    std::vector<storage::prepared_attempt> attempts;
    std::vector<webhook_delivery> unsent;  // deferred or abandoned
    std::vector<std::ptrdiff_t> slot;
    std::uint64_t delivered = 0, failed = 0, dead = 0, disabled = 0;
};

std::string default_owner() {
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::snprintf(host, sizeof host, "host");
    std::random_device rd;
    return std::string(host) + ":" + std::to_string(::getpid()) + ":" + std::to_string(rd() % 1'000'000);
}

}  // namespace

struct delivery_worker::state {
    storage::store& store;
    credentials::secret_store& secrets;
    blobs::blob_store& blobs;
    http::transport& transport;
    http::hop_check check;
    resilience::rate_limit_store& limits;
    integration::clock const& clock_;
    delivery_worker_options options;

    delivery_stats stats;
    std::mutex rng_mutex;  // retry delays are drawn inside units of work, on the store's writer
    std::mt19937_64 rng{std::random_device{}()};
    std::shared_ptr<http::cancellation> closing = std::make_shared<http::cancellation>();

    std::mutex mutex;
    std::condition_variable cv;
    std::vector<outcome> finished;      // guarded by mutex
    steady::time_point finished_since;  // guarded by mutex: when the oldest unrecorded outcome came
    std::size_t in_flight = 0;          // guarded by mutex
    std::unordered_map<std::string, std::size_t> tenant_in_flight;  // guarded by mutex: of each tenant
    std::size_t recordings = 0;         // guarded by mutex: units handed to the store, not yet reported
    std::optional<error> record_error;  // guarded by mutex: a failed recording, reported once by sweep or drain
    bool woken = false;                 // guarded by mutex
    bool more_due = false;              // the last claim stopped early: more may be due once slots free up
    // The last claim left due deliveries only of tenants holding their whole share (mutex held):
    // the next is worth it once a quarter of a share has finished, a publish came, or retries may
    // have come due (`idle_poll`), not at every free slot.
    bool share_bound = false;
    std::size_t left_since_claim = 0;
    bool published = false;
    steady::time_point last_claim;
    std::size_t untrimmed = 0;          // outcomes handed to the store since the last trim (worker's thread)
    std::size_t quarter = 1;            // claims and records wait for this many, so each is one batch
    std::size_t share_quarter = 1;      // the same of one tenant's share

    // Whether the finished outcomes are worth a transaction now (mutex held).
    bool record_ready() const {
        return !finished.empty() &&
               (finished.size() >= quarter || in_flight == 0 || steady::now() - finished_since >= record_wait);
    }
    // Whether enough slots are free to lease another batch (mutex held).
    bool claim_ready() const {
        auto free = options.max_in_flight - std::min(in_flight, options.max_in_flight);
        return free > 0 && (in_flight == 0 || free >= quarter) &&
               (!share_bound || left_since_claim >= share_quarter || published ||
                steady::now() - last_claim >= options.idle_poll);
    }

    // Per-sweep caches: one event fanned out to many subscriptions shares its payload, and one
    // subscription's deliveries share their secrets.
    std::unordered_map<std::string, std::string> payloads;
    std::unordered_map<std::string, secret_bytes> secret_cache;
    // Of each rate-limited subscription, when its next deferred delivery is due: kept across
    // sweeps (a backlog larger than one claim is spread over every claim it takes), dropped
    // once past.
    std::unordered_map<std::string, time_point> next_slot;

    // The operator's log of local failures: a cause (a vault outage, a full disk) defers every
    // delivery it touches, so each tenant's cause is told once per `local_retry` (on the worker's
    // clock, as the deferrals are), and the next message counts the deferrals meanwhile.
    struct told {
        time_point at;
        std::size_t since = 0;  // deferrals by the same cause since `at`, not told
    };
    std::mutex log_mutex;
    std::map<std::pair<std::string, std::string>, told> log_told;  // guarded by log_mutex: by tenant and cause
    time_point log_swept{};                                          // guarded by log_mutex

    void tell(std::string const& tenant, std::string const& delivery_id, std::string const& why, std::string_view detail) {
        if (!options.log) return;
        auto const now = clock_.now();
        std::size_t untold = 0;
        {
            std::lock_guard lock(log_mutex);
            auto [it, fresh] = log_told.try_emplace({tenant, why}, told{now});
            if (!fresh) {
                if (now - it->second.at < options.local_retry) {
                    ++it->second.since;
                    return;
                }
                untold = std::exchange(it->second, told{now}).since;
            }
            // Causes quiet for two `local_retry`s are forgotten (with a count not told yet), at
            // most once per `local_retry`: an outage of every tenant's vault is one entry each.
            if (log_told.size() > 1'024 && now - log_swept >= options.local_retry) {
                log_swept = now;
                std::erase_if(log_told, [&](auto const& kv) { return now - kv.second.at >= 2 * options.local_retry; });
            }
        }
        auto seconds = std::chrono::duration_cast<std::chrono::seconds>(options.local_retry).count();
        try {
            options.log("warning", "delivery-worker: delivery " + delivery_id + " of tenant " + tenant + " waits " +
                                       std::to_string(seconds) + " s: " + why + ": " + std::string(detail) +
                                       (untold ? " (and " + std::to_string(untold) +
                                                     " more deferrals of this tenant's deliveries for the same cause "
                                                     "since the last message)"
                                               : ""));
        } catch (...) {
            // The operator's log failing must not stop the deliveries of every tenant.
        }
    }

    /** What fails on this side (a secret or payload it cannot read, its resolver throwing, its own
     *  wait for a lookup thread) is put off for `local_retry`: neither an attempt nor a failure of
     *  the endpoint's. `why` is kept on the delivery (the tenant reads it: no detail of the
     *  host's); the operator's log gets `detail`. */
    void put_off(outcome o, std::string why, std::string_view detail, bool was_in_flight) {
        tell(o.tenant_id, o.delivery.id(), why, detail);
        o.defer_until = clock_.now() + options.local_retry;
        o.error = std::move(why);
        stats.local_failures_total.fetch_add(1);
        hand_over(std::move(o), was_in_flight);
    }

    void hand_over(outcome o, bool was_in_flight) {
        // Notified under the lock: once the count is zero, `settle` in the destructor may return
        // and `state` go before a notification made after unlocking.
        std::lock_guard lock(mutex);
        if (was_in_flight) leave(o.tenant_id);
        if (finished.empty()) finished_since = steady::now();
        finished.push_back(std::move(o));
        cv.notify_all();
    }

    // Mutex held: one delivery of `tenant` less in flight.
    void leave(std::string const& tenant) {
        stats.in_flight.store(--in_flight);
        ++left_since_claim;
        if (auto it = tenant_in_flight.find(tenant); it != tenant_in_flight.end() && --it->second == 0)
            tenant_in_flight.erase(it);
    }

    milliseconds jittered(milliseconds d) {
        if (options.jitter <= 0 || d.count() == 0) return d;
        std::uniform_real_distribution<double> factor(1.0 - options.jitter, 1.0 + options.jitter);
        std::lock_guard lock(rng_mutex);
        return milliseconds(static_cast<std::int64_t>(static_cast<double>(d.count()) * factor(rng)));
    }

    result<std::string const*> payload(std::string const& tenant, std::string const& ref) {
        auto key = tenant + '\n' + ref;
        if (auto it = payloads.find(key); it != payloads.end()) return &it->second;
        auto got = blobs.get(tenant, ref);
        if (!got) return got.error();
        return &payloads.emplace(std::move(key), std::move(*got)).first->second;
    }

    result<secret_bytes const*> secret(std::string const& tenant, std::string const& uri) {
        auto key = tenant + '\n' + uri;
        if (auto it = secret_cache.find(key); it != secret_cache.end()) return &it->second;
        auto ref = credentials::secret_ref::parse(uri);
        if (!ref) return ref.error();
        auto got = secrets.get(tenant, *ref);
        if (!got) return got.error();
        return &secret_cache.emplace(std::move(key), std::move(*got)).first->second;
    }

    /** What `send` needs of a started delivery besides its outcome: copies, since the sweep's
     *  caches go when it ends and a send may wait for a lookup thread. */
    struct sending {
        std::vector<secret_bytes> keys;
        std::string url;
        std::string body;
        milliseconds timeout;
        std::shared_ptr<http::cancellation> closing;
        time_point lease_until;  // a send that could outlast the lease is not made: it is claimed again
        time_point claimed;
    };
    std::unique_ptr<detail::fair_pool> lookups;  // made at the first name; last: stopped first

    void start(webhook_subscription const& sub, storage::claimed_delivery c, time_point now);
    /** Checks the endpoint (resolving its name), signs and sends; counted in `in_flight`. */
    void send(outcome o, sending next);
    /** A counted delivery of `tenant` that is neither sent nor recorded: its lease lapses. */
    void gone(std::string const& tenant);
    void prepare(recording& batch, request_context const& ctx);
    std::size_t record_finished(bool all);
    void record_tenant(std::shared_ptr<recording> batch);
    result<void> apply(storage::unit_of_work& uow, recording& batch);
    void recorded(std::shared_ptr<recording> batch, result<void> r);
    result<std::size_t> settle();
};

void delivery_worker::state::start(webhook_subscription const& sub, storage::claimed_delivery c, time_point now) {
    outcome o{std::move(c.tenant_id), std::move(c.delivery), now, {}, {}, {}, {}, {}, {}, {}, {}};
    auto const& tenant = o.tenant_id;
    // A replay gives the delivery the policy's whole schedule again (`max_attempts` more
    // attempts): its delays count from the replay's first attempt, not from the first ever.
    auto const& dd = o.delivery.data();
    auto const round_start = std::clamp<std::int64_t>(dd.max_attempts - sub.attempt_policy().max_attempts, 0, dd.attempts);
    o.retry_delay = jittered(sub.delay_before(dd.attempts - round_start + 2));
    o.max_delay = milliseconds(std::min(sub.attempt_policy().max_delay_ms, webhooks::max_retry_delay_ms));
    // What the worker cannot read is its own failure, not the endpoint's: no attempt is counted
    // (a vault outage would otherwise disable every subscription), and it is waited out, whatever
    // it is (a master key restored, a store renamed back, a deleted secret rotated away). Only a
    // payload that is gone ends the delivery: retention purged it, and it never comes back.
    auto unreadable = [&](std::string why, std::string_view detail) { put_off(std::move(o), std::move(why), detail, false); };
    auto purged = [&](std::string const& detail) {
        o.unsendable.emplace("payload_expired", "its payload was purged by retention (kept 30 days) before it could be "
                                                "delivered (" + detail + "); publish the event again");
        hand_over(std::move(o), false);
    };
    if (auto per_second = sub.data().max_per_second) {
        rate_limit_profile limit{static_cast<double>(*per_second), std::max<std::int64_t>(*per_second, 1)};
        auto token = limits.try_acquire("webhook/" + tenant + "/" + sub.id(), limit);
        if (!token.granted) {
            // Each refused delivery takes the subscription's next free slot, one token interval
            // after the one before, so a backlog comes back at the subscription's rate instead
            // of all at the next refill.
            auto& slot = next_slot[sub.id()];
            slot = std::max(slot, now + std::max(milliseconds(1), std::chrono::ceil<milliseconds>(token.retry_after)));
            o.defer_until = slot;
            slot += std::chrono::duration_cast<time_point::duration>(std::chrono::duration<double>(1.0 / static_cast<double>(*per_second)));
            hand_over(std::move(o), false);
            return;
        }
    }
    auto const& d = o.delivery.data();
    if (!d.payload_ref) return purged("no payload reference");
    auto body = payload(tenant, *d.payload_ref);
    if (!body)
        return body.error() == errc::not_found ? purged(body.error().detail())
                                               : unreadable("its payload could not be read from the blob store",
                                                            body.error().detail());
    sending next{{}, sub.data().endpoint_url, **body, milliseconds(sub.attempt_policy().timeout_ms), closing,
                 now + longest_timeout + options.lease_margin, now};
    auto const refs = sub.signing_secret_refs(now);
    for (auto const& uri : refs) {
        auto k = secret(tenant, uri);
        // A replaced secret deleted as its overlap ended (a rotation meanwhile) signs nothing more.
        if (!k && uri != refs.front() && (k.error() == errc::not_found || k.error() == errc::invalid_state)) continue;
        if (!k) return unreadable("its signing secret could not be read from the secret store", k.error().detail());
        next.keys.push_back((*k)->clone());
    }
    {
        std::lock_guard lock(mutex);
        stats.in_flight.store(++in_flight);
        ++tenant_in_flight[tenant];
    }
    // A name is resolved by the egress check, which may take as long as the tenant's DNS does:
    // that happens on the lookup threads, where one tenant's slow names hold at most half of them,
    // never on this thread, which starts every tenant's deliveries.
    auto host = boost::urls::parse_uri(next.url);
    if (host && (host->host_type() == boost::urls::host_type::ipv4 || host->host_type() == boost::urls::host_type::ipv6))
        return send(std::move(o), std::move(next));
    if (!lookups) lookups = std::make_unique<detail::fair_pool>(options.lookup_threads, 0, "integ-dlv-dns");
    // Shared: a job is a std::function, which copies, and the keys do not.
    auto job = std::make_shared<std::pair<outcome, sending>>(std::move(o), std::move(next));
    lookups->post(job->first.tenant_id, [this, job] {
        if (job->second.closing->cancelled()) return gone(job->first.tenant_id);  // closing: the lease lapses
        send(std::move(job->first), std::move(job->second));
    });
}

void delivery_worker::state::gone(std::string const& tenant) {
    // Notified under the lock: `settle` in the destructor may return, and `state` go, the moment
    // the count reaches zero.
    std::lock_guard lock(mutex);
    leave(tenant);
    cv.notify_all();
}

void delivery_worker::state::send(outcome o, sending next) {
    auto const& d = o.delivery.data();
    auto fail_now = [&](std::string why) {
        o.error = std::move(why);
        hand_over(std::move(o), true);
    };
    // As in `start`: what fails on this side (the embedder's resolver throwing, a signing secret
    // that signs nothing) is put off, neither an attempt nor a failure of the endpoint's.
    auto local_failure = [&](std::string why, std::string_view detail) { put_off(std::move(o), std::move(why), detail, true); };
    // The endpoint's name is checked again at every send: it may resolve elsewhere since subscribe.
    // A name that does not resolve, or resolves where egress is denied, is the endpoint's failure.
    result<std::optional<http::pinned_address>> pin = error{errc::unavailable, "not checked"};
    // Half the margin is kept for recording the outcome: a send that ends as its lease does could
    // be claimed and sent again before its outcome commits. Past that, not even a failure can be
    // recorded: the lease lapses, and the delivery is claimed again. A send is at least a second.
    constexpr milliseconds shortest_send{1'000};
    auto const asked = clock_.now();
    if (asked + options.lease_margin / 2 > next.lease_until) return gone(o.tenant_id);
    auto const queued_too_long = [&] {
        return local_failure("a name lookup thread was free too late to send within the lease",
                             "the delivery waited for one of the worker's lookup threads");
    };
    if (asked + options.lease_margin / 2 + shortest_send > next.lease_until) return queued_too_long();  // no lookup spent on it
    try {
        pin = check(next.url);
    } catch (std::exception const& e) {
        return local_failure("the host's name resolver failed", e.what());
    }
    auto const now = clock_.now();
    if (now + options.lease_margin / 2 > next.lease_until) return gone(o.tenant_id);
    if (!pin) {
        return fail_now(
            (pin.error() == errc::egress_denied ? "egress denied: " : "the endpoint could not be checked: ") +
            pin.error().detail());
    }
    // A send that waited for a lookup thread, or a lookup, gets what is left of its lease for its
    // timeout: in full it could outlast the lease, and go out beside the one a worker makes after
    // claiming it again.
    // A name that took most of the lease to resolve is the endpoint's failure, as one that does
    // not resolve is (claimed again, it would be looked up as slowly again); a wait for a lookup
    // thread is this side's: it is put off, and a send it cut short that times out is too.
    bool const waited_for_a_thread = asked - next.claimed > now - asked;
    auto const left = std::chrono::duration_cast<milliseconds>(next.lease_until - options.lease_margin / 2 - now);
    bool shortened = false;
    if (left < next.timeout) {
        if (left < shortest_send) {
            if (waited_for_a_thread) return queued_too_long();
            return fail_now("the endpoint's name took " +
                            std::to_string(std::chrono::duration_cast<std::chrono::seconds>(now - asked).count()) +
                            " s to resolve");
        }
        next.timeout = left;
        shortened = waited_for_a_thread;
    }
    // Signed as it leaves, after the check's lookup: the receiver judges the timestamp's age.
    auto timestamp = std::chrono::duration_cast<std::chrono::seconds>(clock_.now().time_since_epoch()).count();
    auto signature = signature_header(next.keys, d.delivery_id, timestamp, next.body);
    if (!signature)
        return local_failure("its signing secret signs nothing (not a webhook signing secret)", signature.error().detail());

    http::request r{.method = "POST",
                    .url = std::move(next.url),
                    .headers = {{"Content-Type", "application/json"},
                                {"User-Agent", user_agent},
                                {"webhook-id", d.delivery_id},
                                {"webhook-timestamp", std::to_string(timestamp)},
                                {"webhook-signature", std::move(*signature)}},
                    .body = std::move(next.body),
                    .timeout = next.timeout,
                    .pin = std::move(*pin),
                    .cancel = next.closing,
                    // Only an excerpt is recorded: a receiver's large answer is never held whole.
                    .body_excerpt = std::max<std::size_t>(options.response_excerpt, 1)};
    auto sent = steady::now();
    auto cap = options.response_excerpt;
    transport.start(std::move(r), [this, o = std::move(o), sent, cap, shortened](result<http::response> res) mutable {
        o.latency = std::chrono::duration_cast<milliseconds>(steady::now() - sent);
        if (!res && res.error() == errc::timeout && shortened) {
            // Cut short by this side's wait for a lookup thread, not the endpoint's doing.
            return put_off(std::move(o), "a send shortened by the wait for a lookup thread timed out", res.error().detail(), true);
        }
        if (res) {
            o.status = res->status;
            o.excerpt = integration::utf8_excerpt(res->body, cap);
            o.retry_after = resilience::server_requested_delay(res->headers, o.attempted_at);
        } else if (res.error() == errc::cancelled && closing->cancelled()) {
            // The worker is closing: nothing is recorded, the lease lapses and the delivery is sent again.
            return gone(o.tenant_id);
        } else {
            o.error = res.error().detail().empty() ? res.error().message() : res.error().detail();
        }
        hand_over(std::move(o), true);
    });
}

// On the worker's thread: every outcome applied to a copy of its leased delivery and the events
// it raised built, so that the unit on the store's writer only writes (the leased copy stays, for
// a unit that conflicted and is recorded again).
void delivery_worker::state::prepare(recording& batch, request_context const& ctx) {
    auto now = clock_.now();
    batch.attempts.clear();
    batch.unsent.clear();
    batch.slot.clear();
    batch.attempts.reserve(batch.items.size());
    for (auto const& o : batch.items) {
        auto d = o.delivery;
        result<void> applied;
        if (o.defer_until) {
            applied = d.defer(*o.defer_until, o.error);
        } else if (o.unsendable) {
            applied = d.abandon(o.unsendable->second, now);
        } else {
            delivery_attempt a{.attempt = d.data().attempts + 1,
                               .http_status = o.status,
                               .latency_ms = o.latency.count(),
                               .response_excerpt = o.status ? std::optional(o.excerpt) : std::nullopt,
                               .error = o.error,
                               .attempted_at = o.attempted_at};
            if (o.status && *o.status >= 200 && *o.status < 300)
                applied = d.record_success(std::move(a));
            else if (o.status == 410)
                applied = d.record_gone(std::move(a));
            else
                // The endpoint's Retry-After (or rate-limit reset) may put the next attempt off,
                // never bring it forward: gateways send a reset of 0 with every answer.
                applied = d.record_failure(
                    std::move(a), now + std::max(o.retry_delay, o.retry_after ? std::min(*o.retry_after, o.max_delay) : milliseconds(0)));
        }
        if (!applied) {
            batch.slot.push_back(-1);
        } else if (o.defer_until || o.unsendable) {
            batch.slot.push_back(static_cast<std::ptrdiff_t>(batch.unsent.size()));
            batch.unsent.push_back(std::move(d));  // no attempt: `save`d
        } else {
            batch.slot.push_back(static_cast<std::ptrdiff_t>(batch.attempts.size()));
            batch.attempts.push_back(storage::prepare_attempt(std::move(d), ctx, now, store.event_source()));
        }
    }
}

result<void> delivery_worker::state::apply(storage::unit_of_work& uow, recording& batch) {
    auto const& ctx = uow.context();
    auto now = clock_.now();
    batch.delivered = batch.failed = batch.dead = batch.disabled = 0;
    // Each subscription is loaded once and saved once per batch, whatever its number of outcomes.
    std::map<std::string, std::optional<webhook_subscription>> subs;
    std::map<std::string, bool> changed;
    auto sub_of = [&](webhook_delivery const& d) -> webhook_subscription* {
        auto id = d.data().subscription_id.value_or("");
        auto it = subs.find(id);
        if (it == subs.end()) {
            auto s = uow.subscriptions().find(id);
            it = subs.emplace(id, s ? std::optional(std::move(*s)) : std::nullopt).first;
        }
        return it->second ? &*it->second : nullptr;
    };
    if (auto s = uow.deliveries().record_prepared_attempts(batch.attempts); !s) return s;
    for (std::size_t i = 0; i < batch.items.size(); ++i) {
        auto const& o = batch.items[i];
        if (batch.slot[i] < 0) continue;  // not sendable any more (e.g. replayed meanwhile)
        if (o.defer_until || o.unsendable) {
            auto& d = batch.unsent[static_cast<std::size_t>(batch.slot[i])];
            // A save that conflicts means another worker took the lease over: its outcome wins.
            if (auto s = uow.deliveries().save(d); !s) {
                if (s.error() == errc::conflict) continue;
                return s;
            }
            if (!o.unsendable) continue;
            // Not the endpoint's doing: the subscription's count of failures is left alone.
            ++batch.dead;
            failures::classification c{failures::failure_category::validation, o.unsendable->first,
                                       "delivery dead-lettered unsent: " + o.unsendable->second,
                                       failures::next_action::dead_letter, std::nullopt};
            auto f = failures::integration_failure::record(ctx, now, failures::failure_source::delivery, d.id(), "", c);
            if (!f) return f.error();
            if (auto r = f->resolve(failures::source_outcome::dead_lettered, now); !r) return r;
            if (auto r = uow.failures().save(*f); !r) return r;
            continue;
        }
        auto const& p = batch.attempts[static_cast<std::size_t>(batch.slot[i])];
        if (!p.recorded) continue;
        auto const& d = p.delivery;
        bool ok = o.status && *o.status >= 200 && *o.status < 300;
        bool gone = o.status == 410;
        if (ok)
            ++batch.delivered;
        else
            ++batch.failed;
        // A delivery dead-lettered, then replayed and delivered: its failure is resolved. (Only
        // a dead letter records a failure, and a delivery sent once had none.)
        if (ok && d.data().attempts > 1) {
            storage::page_request page{.limit = 100};
            auto open = uow.failures().list({.delivery_id = d.id(), .unresolved_only = true}, page);
            if (!open) return open.error();
            for (auto& f : open->items) {
                if (auto r = f.resolve(failures::source_outcome::succeeded, now); !r) return r;
                if (auto r = uow.failures().save(f); !r) return r;
            }
        }
        if (d.status() == delivery_status::dead_lettered) {
            ++batch.dead;
            auto last = d.data().delivery_attempts.back();
            failures::classification c{
                gone ? failures::failure_category::validation : failures::failure_category::transient,
                last.http_status ? "http_" + std::to_string(*last.http_status) : "delivery_failed",
                gone ? "the endpoint answered 410 Gone; the subscription was deactivated"
                     : "delivery dead-lettered after " + std::to_string(d.data().attempts) + " attempts; last: " +
                           (last.http_status ? "HTTP " + std::to_string(*last.http_status)
                                             : last.error.value_or("no answer")),
                failures::next_action::dead_letter, std::nullopt};
            auto f =
                failures::integration_failure::record(ctx, now, failures::failure_source::delivery, d.id(), "", c);
            if (!f) return f.error();
            // Recorded as it ends, as a dead-lettered run's is: retention archives and removes it
            // with its delivery (unresolved, it would stay forever).
            if (auto r = f->resolve(failures::source_outcome::dead_lettered, now); !r) return r;
            if (auto s = uow.failures().save(*f); !s) return s;
        }
        auto* sub = sub_of(d);
        if (!sub) continue;
        if (gone) {
            if (sub->active() && sub->deactivate("endpoint answered 410 Gone")) changed[sub->id()] = true;
        } else {
            auto before = sub->data().consecutive_failures;
            if (sub->record_outcome(ok, now, options.disable_after, options.disable_after_failing_for)) ++batch.disabled;
            if (sub->data().consecutive_failures != before || !sub->active()) changed[sub->id()] = true;
        }
    }
    for (auto& [id, s] : subs)
        if (s && changed[id])
            if (auto r = uow.subscriptions().save(*s); !r) return r;
    return {};
}

// The outcomes commit on the store's writer while this thread goes on leasing and sending: no
// thread waits for the commit. Until it is durable the leases hold, so a worker that dies
// meanwhile loses nothing: the leases lapse and those deliveries are sent again, same webhook-id.
void delivery_worker::state::record_tenant(std::shared_ptr<recording> batch) {
    {
        std::lock_guard lock(mutex);
        ++recordings;
    }
    auto ctx = request_context::for_tenant(batch->tenant_id, "delivery-worker");
    prepare(*batch, ctx);
    store.transact_async(
        ctx, [this, batch](storage::unit_of_work& uow) { return apply(uow, *batch); }, options.recording,
        [this, batch](result<void> r) mutable { recorded(std::move(batch), std::move(r)); });
}

// On the store's writer thread: counts what committed, or hands back the outcomes of a unit that
// conflicted (a subscription saved by someone else meanwhile) to be recorded again.
void delivery_worker::state::recorded(std::shared_ptr<recording> batch, result<void> r) {
    if (r) {
        stats.delivered_total += batch->delivered;
        stats.failed_attempts_total += batch->failed;
        stats.dead_lettered_total += batch->dead;
        stats.subscriptions_disabled_total += batch->disabled;
    }
    {
        std::lock_guard lock(mutex);
        if (!r && r.error() == errc::conflict && batch->items.front().record_tries + 1 < max_record_tries) {
            if (finished.empty()) finished_since = steady::now();
            for (auto& o : batch->items) {
                ++o.record_tries;
                finished.push_back(std::move(o));
            }
        } else if (!r) {
            record_error = r.error();  // the unrecorded leases lapse and those deliveries go again
        }
        --recordings;
        cv.notify_all();  // under the lock, as in hand_over
    }
}

std::size_t delivery_worker::state::record_finished(bool all) {
    std::vector<outcome> taken;
    {
        std::lock_guard lock(mutex);
        if (all || record_ready()) taken.swap(finished);
    }
    std::map<std::string, std::shared_ptr<recording>> by_tenant;
    for (auto& o : taken) {
        auto& b = by_tenant[o.tenant_id];
        if (!b) b = std::make_shared<recording>(recording{o.tenant_id, {}});
        b->items.push_back(std::move(o));
    }
    for (auto& [tenant, batch] : by_tenant) record_tenant(std::move(batch));
    // An outcome's memory is allocated on one thread (the worker's, libcurl's loop) and freed on
    // another (the store's writer): glibc's per-thread heaps fragment and keep the freed pages, so
    // a draining backlog's resident heap creeps up (not with MALLOC_ARENA_MAX=1). Handing the free
    // pages back now and then keeps it flat, for about a millisecond per 10,000 deliveries.
    if ((untrimmed += taken.size()) >= trim_every) {
        untrimmed = 0;
#if defined(__GLIBC__)
        ::malloc_trim(0);
#endif
    }
    return taken.size();
}

// Waits until nothing is in flight and every outcome is committed (or failed to commit).
result<std::size_t> delivery_worker::state::settle() {
    std::size_t handed = 0;
    while (true) {
        {
            std::unique_lock lock(mutex);
            cv.wait(lock, [&] { return in_flight == 0 && recordings == 0; });
            if (finished.empty()) {
                if (auto e = std::exchange(record_error, std::nullopt)) return *e;
                return handed;
            }
        }
        handed += record_finished(true);
    }
}

delivery_worker::delivery_worker(storage::store& store, credentials::secret_store& secrets, blobs::blob_store& blobs,
                                 http::transport& transport, http::hop_check check,
                                 resilience::rate_limit_store& limits, clock const& clock,
                                 delivery_worker_options options)
    : s_(new state{store, secrets, blobs, transport, std::move(check), limits, clock, std::move(options)}) {
    if (s_->options.owner.empty()) s_->options.owner = default_owner();
    s_->options.max_in_flight = std::max<std::size_t>(s_->options.max_in_flight, 1);
    auto& share = s_->options.max_in_flight_per_tenant;
    share = std::clamp<std::size_t>(share == 0 ? s_->options.max_in_flight / 2 : share, 1, s_->options.max_in_flight);
    s_->options.batch = std::max<std::size_t>(s_->options.batch, 1);
    s_->quarter = std::max<std::size_t>(std::min(s_->options.batch, s_->options.max_in_flight) / 4, 1);
    s_->share_quarter = std::max<std::size_t>(std::min(s_->quarter, share / 4), 1);
}

delivery_worker::~delivery_worker() {
    // Sends in flight are cancelled; what finished is recorded, and the commits are waited for
    // (their callbacks use this state).
    s_->closing->cancel();
    (void)s_->settle();
}

result<std::size_t> delivery_worker::sweep() {
    auto& s = *s_;
    s.record_finished(false);
    std::size_t free;
    storage::delivery_share share{.per_tenant = s.options.max_in_flight_per_tenant, .held = {}};
    {
        std::lock_guard lock(s.mutex);
        if (auto e = std::exchange(s.record_error, std::nullopt)) return *e;
        if (!s.claim_ready()) return std::size_t{0};
        free = s.options.max_in_flight - std::min(s.in_flight, s.options.max_in_flight);
        share.held.assign(s.tenant_in_flight.begin(), s.tenant_in_flight.end());
        s.left_since_claim = 0;
        s.published = false;
    }
    auto now = s.clock_.now();
    if (auto oldest = s.store.oldest_due_delivery(); oldest && *oldest)
        s.stats.lag_ms.store(
            std::max<std::int64_t>(0, std::chrono::duration_cast<milliseconds>(now - **oldest).count()));
    else if (oldest)
        s.stats.lag_ms.store(0);
    auto limit = std::min(free, s.options.batch);
    auto claimed =
        s.store.claim_deliveries(now, s.options.owner, now + longest_timeout + s.options.lease_margin, limit, share);
    if (!claimed) return claimed.error();
    // Short of its limit, a claim took every due delivery but those of the tenants that hold their
    // share: known once what it took is started (what is deferred or fails at once holds no slot).
    auto claimed_all = [&, more = claimed->more] {
        std::lock_guard lock(s.mutex);
        s.more_due = more;
        s.share_bound = !more && std::any_of(s.tenant_in_flight.begin(), s.tenant_in_flight.end(),
                                             [&](auto const& t) { return t.second >= share.per_tenant; });
        s.last_claim = steady::now();
    };
    if (claimed->deliveries.empty()) {
        claimed_all();
        return std::size_t{0};
    }

    std::map<std::string, std::vector<storage::claimed_delivery*>> by_tenant;
    for (auto& c : claimed->deliveries) by_tenant[c.tenant_id].push_back(&c);
    std::size_t started = 0;
    for (auto& [tenant, items] : by_tenant) {
        std::unordered_map<std::string, std::optional<webhook_subscription>> subs;
        auto read = s.store.read(request_context::for_tenant(tenant, "delivery-worker"),
                                 [&](storage::unit_of_work& uow) -> result<void> {
                                     for (auto* c : items) {
                                         auto id = c->delivery.data().subscription_id.value_or("");
                                         if (subs.contains(id)) continue;
                                         auto sub = uow.subscriptions().find(id);
                                         if (!sub && sub.error() != errc::not_found) return sub.error();
                                         subs.emplace(id, sub ? std::optional(std::move(*sub)) : std::nullopt);
                                     }
                                     return {};
                                 });
        if (!read) continue;  // this tenant's leases lapse; its deliveries are claimed again later
        for (auto* c : items) {
            auto const& sub = subs[c->delivery.data().subscription_id.value_or("")];
            if (!sub || !sub->active()) continue;  // deactivated since: no longer claimable once its lease lapses
            s.start(*sub, std::move(*c), now);
            ++started;
        }
    }
    s.payloads.clear();
    s.secret_cache.clear();
    std::erase_if(s.next_slot, [&](auto const& e) { return e.second <= now; });
    claimed_all();
    return started;
}

result<std::size_t> delivery_worker::drain() {
    return s_->settle();
}

void delivery_worker::run(std::atomic<bool> const& stop) {
    auto& s = *s_;
    std::optional<std::chrono::steady_clock::time_point> told;  // when a failed sweep was last logged
    while (!stop.load()) {
        auto started = sweep();
        if (started && *started > 0) continue;
        // A store that keeps failing the claims stops every delivery: the operator hears of it,
        // once per `local_retry` while it lasts.
        if (auto now = std::chrono::steady_clock::now(); !started && s.options.log && (!told || now - *told >= s.options.local_retry)) {
            told = now;
            try {
                s.options.log("error", "webhook delivery worker: a sweep failed, nothing is sent until one succeeds: " +
                                           started.error().detail());
            } catch (...) {  // the log's own failure is ignored, as documented
            }
        }
        std::unique_lock lock(s.mutex);
        auto wait = s.finished.empty() ? s.options.idle_poll : std::min(s.options.idle_poll, record_wait);
        s.cv.wait_for(lock, wait,
                      [&] { return s.woken || stop.load() || s.record_ready() || (s.more_due && s.claim_ready()); });
        s.woken = false;
    }
    // Sends in flight are cancelled rather than waited for (an endpoint may hang until its
    // timeout); their leases lapse and they are sent again. Finished ones are recorded.
    s.closing->cancel();
    (void)drain();
    s.closing = std::make_shared<http::cancellation>();
}

void delivery_worker::notify() noexcept {
    {
        std::lock_guard lock(s_->mutex);
        s_->woken = true;
        s_->published = true;
    }
    s_->cv.notify_all();
}

delivery_stats const& delivery_worker::stats() const noexcept {
    return s_->stats;
}

}  // namespace integration::webhooks
