#include <integration/services/inbound_gateway.hpp>
#include <integration/core/id.hpp>
#include <integration/core/utf8.hpp>

#include <integration/domain/failure.hpp>
#include <integration/domain/inbound_body.hpp>
#include <integration/outbound/token_bucket.hpp>
#include <integration/services/webhook_signature.hpp>

#include "../detail/cache_margin.hpp"
#include "../detail/crypto.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <future>
#include <mutex>
#include <span>
#include <unordered_map>
#include <vector>

namespace integration::webhooks {
namespace {

/** At most this much of an unverified body goes into a failure record. */
constexpr std::size_t excerpt_bytes = 256;

/** A new vault name for a connection's secret: each registration and rotation stores its
 *  secret under a name of its own, which only the commit that saves it puts in use. Random, so
 *  two at once (or within a millisecond) never share one. */
std::string new_secret_name(std::string const& connection_id) {
    unsigned char r[8];
    id_bytes(r, sizeof r);
    return "inbound-webhook." + connection_id + "." + crypto::to_hex(r, sizeof r);
}

std::string blob_key_of(std::string const& delivery_id) { return "webhooks/inbound/" + delivery_id + "/payload"; }

bool is_poison(inbound_rejection r) {
    return r == inbound_rejection::malformed_signature || r == inbound_rejection::malformed_body;
}

/** The connection exists in the unit's tenant and is not Retired. */
result<void> active_connection(storage::unit_of_work& uow, std::string const& connection_id) {
    auto c = uow.connections().find(connection_id);
    if (!c) return c.error();
    if (c->status() == connections::connection_status::retired)
        return error{errc::invalid_state, "connection " + connection_id + " is Retired; it takes no inbound webhooks"};
    return {};
}

result<void> check_connection(storage::store& store, request_context const& ctx, std::string const& connection_id) {
    return store.read(ctx, [&](storage::unit_of_work& uow) { return active_connection(uow, connection_id); });
}

/** The secret to keep for `scheme`: Standard Webhooks takes only a key its verifier can use (a
 *  secret that could never verify would turn every correctly signed delivery into a 401). */
result<secret_bytes> inbound_secret(inbound_scheme scheme, secret_bytes const& secret) {
    if (secret.empty()) return error{errc::invalid_argument, "an inbound webhook secret must not be empty"};
    if (scheme == inbound_scheme::standard) return verification_key(secret);
    return secret.clone();
}

/** What a refused request leaves: a Failed delivery and its IntegrationFailure. */
struct refusal_record {
    webhook_delivery delivery;
    failures::integration_failure failure;
};

/** `unrecorded`: refusals of the connection before this one that `refusal_record_burst` left out. */
result<refusal_record> refusal_of(request_context const& ctx, time_point now, std::string const& connection_id,
                                  std::string const& provider_id, std::string const& event_type,
                                  inbound_refusal const& refusal, inbound_scheme scheme, std::string_view body,
                                  signature_status signature, std::uint64_t unrecorded = 0) {
    auto code = std::string(to_string(refusal.reason));
    auto d = webhook_delivery::refused_inbound(ctx, now, connection_id, provider_id, event_type, code, signature);
    if (!d) return d.error();
    // Slack's token leads a command's form and sits in every JSON body, in plain or escaped forms.
    auto message = refusal.detail + (scheme == inbound_scheme::slack
                                         ? std::string("; the body is not recorded (a Slack body carries the verification token)")
                                         : "; the body began: " + integration::utf8_excerpt(body, excerpt_bytes));
    if (unrecorded > 0)
        message += "; " + std::to_string(unrecorded) +
                   " refusals on this connection before this one were not recorded (refusal_record_burst)";
    failures::classification c{
        is_poison(refusal.reason) ? failures::failure_category::poison : failures::failure_category::validation,
        code, std::move(message), failures::next_action::dead_letter, std::nullopt};
    auto f = failures::integration_failure::record(ctx, now, failures::failure_source::delivery, d->id(), provider_id, c);
    if (!f) return f.error();
    // A refused request is never received again (the sender's retry is a new request), so its
    // delivery is dead-lettered as it is recorded and the failure resolved with it: retention
    // then removes both, the unverified excerpt with them, as it does every ended record.
    if (auto r = f->resolve(failures::source_outcome::dead_lettered, now); !r) return r.error();
    return refusal_record{std::move(*d), std::move(*f)};
}

result<void> save(storage::unit_of_work& uow, refusal_record& r) {
    if (auto s = uow.deliveries().save(r.delivery); !s) return s;
    return uow.failures().save(r.failure);
}

/** Slack puts its legacy verification token, a secret every app of the workspace shares, in each
 *  body it sends: a JSON body's `token`, a form's `token` field and the `token` of an interaction's
 *  JSON `payload` field. The canonical event, which subscribers receive, goes without it. True
 *  when one was removed. */
bool drop_slack_token(boost::json::value& body) {
    auto* o = body.if_object();
    if (!o) return false;
    bool dropped = o->erase("token") > 0;
    if (auto* payload = o->if_contains("payload"); payload && payload->is_string()) {
        boost::system::error_code ec;
        boost::json::parse_options deep;
        deep.max_depth = max_body_depth;
        auto inner = boost::json::parse(payload->get_string(), ec, {}, deep);
        if (!ec && inner.is_object() && inner.get_object().erase("token") > 0) {
            *payload = boost::json::serialize(inner);
            dropped = true;
        }
    }
    return dropped;
}

/** The refusal of a connection that is unknown, retired or has no inbound webhook: it says no
 *  more than that, whichever it is. */
inbound_refusal unknown_connection() {
    return {inbound_rejection::unknown_connection, "no active connection with an inbound webhook has this id"};
}

/** An accepted delivery on its way to the writer (built in full before it), and what the writer found. */
struct pending_delivery {
    storage::prepared_inbound prepared;
    inbound_scheme scheme;
    std::string excerpt;  ///< The body's first bytes when it is not in `prepared.payload` (for a failure record).
    std::optional<std::string> blob_ref;  ///< The payload, when it went to the blob store first.
    bool connection_gone = false;  ///< Set by the writer: the connection was retired meanwhile.
    // Set by the writer when the vendor's delivery id is taken:
    std::optional<std::string> earlier_id;    ///< ... by this body: a duplicate.
    std::optional<inbound_refusal> conflict;  ///< ... by another body: refused (`refusal` recorded).
    std::optional<refusal_record> refusal;
};

}  // namespace

/** A connection's registration with its scheme parsed and its secrets decrypted. */
struct inbound_gateway::endpoint {
    storage::inbound_endpoint_record record;
    inbound_scheme scheme{};
    /** The current secret, then those rotations replaced whose overlap has not ended, the
     *  longest-lived first. */
    std::vector<secret_bytes> secrets;
    std::vector<time_point> until;  ///< When each secret after the first stops verifying.
    time_point expires{};           ///< Read again from then on.

    std::span<secret_bytes const> secrets_at(time_point now) const {
        std::size_t n = 1;
        while (n < secrets.size() && now < until[n - 1]) ++n;
        return std::span<secret_bytes const>(secrets).first(n);
    }
};

struct inbound_gateway::endpoint_cache {
    /** Bounds the map: past this many entries, expired ones are dropped when one is added. */
    static constexpr std::size_t prune_above = 4096;
    std::mutex mutex;
    std::unordered_map<std::string, std::shared_ptr<endpoint const>> entries;
    /** Bumped by `forget`: an entry read before a registration changed is not kept. */
    std::uint64_t generation = 0;
};

// Only connections that exist and take webhooks reach it, so it holds at most one entry each.
struct inbound_gateway::refusal_budget {
    explicit refusal_budget(clock const& c, inbound_gateway_options const& o)
        : limiter(c),
          profile{.requests_per_second = 1000.0 / static_cast<double>(std::max<std::int64_t>(o.refusal_record_interval.count(), 1)),
                  .burst = static_cast<std::int64_t>(std::max<std::size_t>(o.refusal_record_burst, 1))} {}

    /** Whether a refusal on `connection_id` is recorded; if so, how many before it were not.
     *  Refusals whose signature verified have a budget of their own, so that a flood of forged
     *  ones does not leave the vendor's own (a malformed body it signed) unrecorded. */
    std::optional<std::uint64_t> take(std::string const& connection_id, bool verified) {
        auto key = connection_id + (verified ? "\n1" : "\n0");
        auto got = limiter.try_acquire(key, profile);
        std::lock_guard lock(mutex);
        if (!got.granted) {
            ++unrecorded[key];
            return std::nullopt;
        }
        auto it = unrecorded.find(key);
        if (it == unrecorded.end()) return 0;
        auto n = it->second;
        unrecorded.erase(it);
        return n;
    }

    resilience::rate_limiter limiter;
    integration::rate_limit_profile profile;
    std::mutex mutex;
    std::unordered_map<std::string, std::uint64_t> unrecorded;
};

inbound_gateway::inbound_gateway(storage::store& store, credentials::secret_store& secrets, blobs::blob_store& blobs,
                                 clock const& clock, inbound_gateway_options options)
    : store_(store), secrets_(secrets), blobs_(blobs), clock_(clock), options_(options),
      cache_(std::make_unique<endpoint_cache>()), budget_(std::make_shared<refusal_budget>(clock, options)) {
    options_.tolerance_s = std::clamp(options_.tolerance_s, min_tolerance_s, max_tolerance_s);
}

inbound_gateway::~inbound_gateway() = default;

result<inbound_endpoint> inbound_gateway::register_endpoint(request_context const& ctx, std::string const& connection_id,
                                                            inbound_scheme scheme, secret_bytes secret) {
    auto kept = inbound_secret(scheme, secret);
    if (!kept) return kept.error();
    if (auto r = check_connection(store_, ctx, connection_id); !r) return r.error();
    // A name of its own, as for a rotation: the secrets in use change only with the commit that
    // names the new one, so a registration that fails leaves the one before it verifying.
    auto name = new_secret_name(connection_id);
    if (auto put = secrets_.put(ctx.tenant_id, name, *kept); !put) return put.error();
    std::optional<storage::inbound_webhook_registration> replaced;
    auto saved = store_.transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
        if (auto r = active_connection(uow, connection_id); !r) return r;
        if (auto before = uow.inbound_webhooks().find(connection_id)) replaced = std::move(*before);
        else if (before.error() != errc::not_found) return before.error();
        return uow.inbound_webhooks().save({connection_id, std::string(to_string(scheme)), name});
    });
    forget(connection_id);
    if (!saved) {
        (void)secrets_.soft_delete(ctx.tenant_id, name);
        return saved.error();
    }
    // Registering again replaces every secret at once (unlike a rotation): those it replaced go.
    if (replaced) {
        (void)secrets_.soft_delete(ctx.tenant_id, replaced->secret_name);
        for (auto const& old : replaced->previous) (void)secrets_.soft_delete(ctx.tenant_id, old.name);
    }
    return inbound_endpoint{connection_id, scheme};
}

result<inbound_endpoint> inbound_gateway::rotate_secret(request_context const& ctx, std::string const& connection_id,
                                                        secret_bytes secret) {
    // The registration as it is (its scheme says what a secret must be), read before the new
    // secret is stored, and again in the transaction that changes it.
    std::optional<inbound_scheme> scheme;
    auto registration = [&](storage::unit_of_work& uow) -> result<storage::inbound_webhook_registration> {
        if (auto r = active_connection(uow, connection_id); !r) return r.error();
        auto reg = uow.inbound_webhooks().find(connection_id);
        if (!reg) {
            if (reg.error() == errc::not_found)
                return error{errc::not_found, "connection " + connection_id +
                                                  " has no inbound webhook; register one before rotating its secret"};
            return reg.error();
        }
        auto parsed = parse_inbound_scheme(reg->scheme);
        if (!parsed) return error{errc::storage_failure, "the stored inbound scheme is invalid: " + parsed.error().detail()};
        scheme = *parsed;
        return reg;
    };
    auto read = store_.read(ctx, [&](storage::unit_of_work& uow) -> result<void> {
        auto reg = registration(uow);
        if (!reg) return reg.error();
        return {};
    });
    if (!read) return read.error();
    auto kept = inbound_secret(*scheme, secret);
    if (!kept) return kept.error();
    auto now = clock_.now();
    // The registration names both secrets, each at its latest version.
    auto name = new_secret_name(connection_id);
    if (auto put = secrets_.put(ctx.tenant_id, name, *kept); !put) return put.error();
    std::vector<std::string> dropped;  // secrets whose overlap has ended, out of use now
    auto saved = store_.transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
        dropped.clear();
        auto reg = registration(uow);
        if (!reg) return reg.error();
        // Each replaced secret keeps its own overlap: a second rotation within one does not cut
        // short the first's, which a vendor may still be signing with.
        std::erase_if(reg->previous, [&](storage::replaced_secret const& old) {
            if (now < old.until) return false;
            dropped.push_back(old.name);
            return true;
        });
        if (reg->previous.size() >= max_replaced_secrets)
            return error{errc::conflict, "connection " + connection_id + " already has " + std::to_string(reg->previous.size()) +
                                             " replaced secrets still verifying; rotate again once the oldest's overlap ends, "
                                             "or register the webhook again to replace every secret at once"};
        reg->previous.insert(reg->previous.begin(), {reg->secret_name, now + options_.secret_overlap});
        reg->secret_name = name;
        return uow.inbound_webhooks().save(*reg);
    });
    forget(connection_id);
    if (!saved) {
        (void)secrets_.soft_delete(ctx.tenant_id, name);
        return saved.error();
    }
    for (auto const& old : dropped)
        if (old != name) (void)secrets_.soft_delete(ctx.tenant_id, old);
    return inbound_endpoint{connection_id, *scheme};
}

result<std::string> inbound_gateway::payload(request_context const& ctx, std::string const& delivery_id) {
    std::string ref;
    auto stored = storage::read_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<std::optional<std::string>> {
        auto d = uow.deliveries().find(delivery_id);
        if (!d) return d.error();
        if (!d->data().payload_ref)
            return error{errc::not_found, "delivery " + delivery_id + " has no payload (raw payloads are kept 30 days)"};
        ref = *d->data().payload_ref;
        if (!storage::is_stored_payload_ref(ref)) return std::optional<std::string>();
        auto bytes = uow.deliveries().payload(delivery_id);
        if (!bytes) return bytes.error();
        return std::optional<std::string>(std::move(*bytes));
    });
    if (!stored) return stored.error();
    if (*stored) return std::move(**stored);
    return blobs_.get(ctx.tenant_id, ref);
}


void inbound_gateway::forget(std::string const& connection_id) {
    std::lock_guard lock(cache_->mutex);
    cache_->entries.erase(connection_id);
    ++cache_->generation;
}

result<std::shared_ptr<inbound_gateway::endpoint const>> inbound_gateway::endpoint_of(std::string const& connection_id,
                                                                                      time_point now) {
    bool const cached = options_.endpoint_cache_ttl.count() > 0;
    std::uint64_t generation = 0;
    if (cached) {
        std::lock_guard lock(cache_->mutex);
        auto it = cache_->entries.find(connection_id);
        if (it != cache_->entries.end() && now < it->second->expires) return it->second;
        generation = cache_->generation;
    }
    auto found = store_.find_inbound_endpoint(connection_id);
    if (!found) return found.error();
    if (!*found) return std::shared_ptr<endpoint const>();  // unknown ones are not kept: any id can be asked
    auto e = std::make_shared<endpoint>();
    e->record = std::move(**found);
    auto const& reg = e->record.registration;
    auto scheme = parse_inbound_scheme(reg.scheme);
    if (!scheme) return error{errc::storage_failure, "the stored inbound scheme is invalid: " + scheme.error().detail()};
    e->scheme = *scheme;
    auto const& tenant = e->record.tenant_id;
    auto current = secrets_.get(tenant, {secrets_.name(), tenant, reg.secret_name, 0});
    if (!current) return current.error();
    e->secrets.push_back(std::move(*current));
    e->expires = now + options_.endpoint_cache_ttl;
    auto previous = reg.previous;
    std::stable_sort(previous.begin(), previous.end(), [](auto const& a, auto const& b) { return a.until > b.until; });
    for (auto const& old : previous) {
        if (now >= old.until) break;
        // A replaced secret that is gone no longer verifies; that is not the sender's fault.
        auto secret = secrets_.get(tenant, {secrets_.name(), tenant, old.name, 0});
        if (secret) {
            e->secrets.push_back(std::move(*secret));
            e->until.push_back(old.until);
            // The entry expires when the replaced secret's overlap ends: it verifies nothing after
            // that (`secrets_at`), and the entry is replaced at the connection's next receive or
            // dropped by the next prune.
            e->expires = std::min(e->expires, old.until);
        } else if (secret.error() != errc::not_found && secret.error() != errc::invalid_state) {
            return secret.error();
        }
    }
    if (cached) {
        std::lock_guard lock(cache_->mutex);
        if (generation == cache_->generation) {
            if (cache_->entries.size() >= endpoint_cache::prune_above)
                std::erase_if(cache_->entries, [&](auto const& kv) { return now >= kv.second->expires; });
            cache_->entries[connection_id] = e;
        }
    }
    return std::shared_ptr<endpoint const>(std::move(e));
}

bool inbound_gateway::receives_without_blocking(std::string const& connection_id, std::size_t body_bytes) const {
    if (body_bytes > options_.inline_payload_bytes) return false;
    auto soon = clock_.now() + integration::detail::cache_margin;
    std::lock_guard lock(cache_->mutex);
    auto it = cache_->entries.find(connection_id);
    return it != cache_->entries.end() && soon < it->second->expires;
}

result<inbound_outcome> inbound_gateway::receive(std::string const& connection_id, inbound_request const& req) {
    std::promise<result<inbound_outcome>> answer;
    auto outcome = answer.get_future();
    receive(connection_id, req, [&answer](result<inbound_outcome> r) { answer.set_value(std::move(r)); });
    return outcome.get();
}

void inbound_gateway::receive(std::string const& connection_id, inbound_request const& req, outcome_handler done) {
    inbound_outcome out;
    auto now = clock_.now();
    auto found = endpoint_of(connection_id, now);
    if (!found) return done(found.error());
    if (!*found) {
        out.refusal = unknown_connection();
        return done(std::move(out));
    }
    auto endpoint = std::move(*found);
    auto const& record = endpoint->record;
    out.tenant_id = record.tenant_id;
    auto ctx = request_context::for_tenant(record.tenant_id, "inbound-webhook");
    auto unverified = std::string(to_string(endpoint->scheme)) + ".unverified";

    if (req.body.size() > options_.max_body_bytes)
        return refuse(ctx, *endpoint, std::move(out), unverified,
                      {inbound_rejection::body_too_large,
                       "the body has " + std::to_string(req.body.size()) + " bytes; at most " +
                           std::to_string(options_.max_body_bytes) + " are accepted"},
                      req.body, signature_status::unverified, std::move(done));

    auto verdict = verify_inbound(endpoint->scheme, endpoint->secrets_at(now), req, to_unix_ms(now) / 1000,
                                  options_.tolerance_s);
    if (!verdict) {
        // A body refused for what it lacks may still carry a valid signature (the audit record
        // says which); this second look costs one more MAC, on this rare path only.
        auto signature = signature_status::invalid;
        if (verdict.refusal->reason == inbound_rejection::malformed_body)
            signature = check_inbound_signature(endpoint->scheme, endpoint->secrets_at(now), req, to_unix_ms(now) / 1000,
                                                options_.tolerance_s)
                            ? signature_status::unverified
                            : signature_status::verified;
        return refuse(ctx, *endpoint, std::move(out), unverified, std::move(*verdict.refusal), req.body, signature,
                      std::move(done));
    }
    auto identity = std::move(*verdict.identity);
    if (identity.challenge) {
        out.outcome = inbound_outcome::kind::challenge;
        out.identity = std::move(identity);
        return done(std::move(out));
    }
    auto format = body_format_of(req.media_type());
    auto body = parse_body(req.body, format);
    if (!body)
        return refuse(ctx, *endpoint, std::move(out), identity.event_type,
                      {inbound_rejection::malformed_body,
                       "the body verified but is neither JSON (at most " + std::to_string(max_body_depth) +
                           " levels deep, valid UTF-8) nor form fields"},
                      req.body, signature_status::verified, std::move(done));
    // The body then differs from the payload: the event keeps it rather than reading the payload.
    bool const redacted = endpoint->scheme == inbound_scheme::slack && drop_slack_token(*body);
    auto hash = crypto::sha256_hex(req.body);
    auto delivery = webhook_delivery::inbound(ctx, now, connection_id, record.provider_id, identity.provider_delivery_id,
                                              identity.event_type, std::nullopt, hash);
    if (!delivery)
        return refuse(ctx, *endpoint, std::move(out), unverified,
                      {inbound_rejection::malformed_body,
                       "the vendor's delivery id or event type is unusable: " + delivery.error().detail()},
                      req.body, signature_status::verified, std::move(done));

    // Everything but the writes happens here, on the caller: the writer's unit only probes the
    // unique index and inserts rows (it is the store's one thread, shared by every receive).
    std::optional<std::string> blob_ref;
    std::optional<std::string> inline_payload;
    if (req.body.size() <= options_.inline_payload_bytes) {
        // Small payloads commit with the delivery; large ones are written (and synced) first.
        inline_payload = std::string(req.body);
        if (auto r = delivery->keep_payload(storage::stored_payload_ref(ctx.tenant_id, delivery->id())); !r)
            return done(r.error());
    } else {
        auto put = blobs_.put(ctx.tenant_id, blob_key_of(delivery->id()), req.body);
        if (!put) return done(put.error());
        blob_ref = *put;
        if (auto r = delivery->keep_payload(*put); !r) return done(r.error());
    }
    if (auto r = delivery->accept({.signature_valid = true, .tenant_resolved = true}, now, std::move(*body)); !r)
        return done(r.error());
    auto p = std::make_shared<pending_delivery>(pending_delivery{
        storage::prepare_inbound(std::move(*delivery), ctx, now, store_.event_source(), std::move(inline_payload),
                                 redacted ? std::nullopt : std::optional(format)),
        endpoint->scheme, blob_ref ? std::string(req.body.substr(0, excerpt_bytes)) : std::string(), std::move(blob_ref), {}, {}, {}});
    out.identity = std::move(identity);

    // The writer runs one unit at a time, in order, so probing the id and inserting it is atomic,
    // and a repeat queued behind the first delivery finds it (its answer waits for the commit
    // that holds both). The unique index catches another process that got there first.
    // Twilio's delivery id is the digest of what it signed, so the same id is the same delivery
    // whatever the spelling of its form (order, encoding), which the body's own hash is not.
    bool const same_id_same_delivery = endpoint->scheme == inbound_scheme::twilio;
    auto unit = [p, hash = std::move(hash), same_id_same_delivery, budget = budget_,
                 &clock = clock_](storage::unit_of_work& uow) -> result<void> {
        auto earlier = uow.deliveries().add_inbound(p->prepared);
        if (!earlier && earlier.error() == errc::not_found) p->connection_gone = true;
        if (!earlier) return earlier.error();
        if (!*earlier) return {};
        if (same_id_same_delivery || (*earlier)->payload_hash == hash) {
            p->earlier_id = std::move((*earlier)->delivery_id);
            return {};
        }
        auto const& d = p->prepared.delivery.data();
        p->conflict = inbound_refusal{inbound_rejection::delivery_id_conflict,
                                      "delivery id " + integration::utf8_excerpt(*d.provider_delivery_id, 128) +
                                          " was received before (" + (*earlier)->delivery_id + ") with a different body"};
        // A vendor's id in an unsigned header (GitHub, Shopify) can be put on any other signed
        // body held: conflicts are recorded within the budget of verified refusals.
        auto taken = budget->take(*d.connection_id, true);
        if (!taken) return {};
        auto const& raw = p->prepared.payload ? *p->prepared.payload : p->excerpt;
        auto rec = refusal_of(uow.context(), clock.now(), *d.connection_id, *d.provider_id, d.event_type, *p->conflict, p->scheme,
                              raw, signature_status::verified, *taken);
        if (!rec) return rec.error();
        p->refusal.emplace(std::move(*rec));
        return save(uow, *p->refusal);
    };
    auto committed = [p, out = std::move(out), done = std::move(done), &blobs = blobs_](result<void> r) mutable {
        if (r && !p->earlier_id && !p->conflict) {
            out.outcome = inbound_outcome::kind::accepted;
            out.delivery_id = p->prepared.delivery.id();
            return done(std::move(out));
        }
        // The payload blob written for this delivery now belongs to nothing. (The blob store is
        // not the store whose writer runs this; this path is rare.) Not after a storage failure:
        // the unit may be committed without being durable (its sync failed), its delivery naming
        // the blob; an orphan goes with the other payloads by age.
        if (p->blob_ref && (r || r.error() != errc::storage_failure)) (void)blobs.remove(out.tenant_id, *p->blob_ref);
        if (!r && p->connection_gone) {  // retired since the gateway read it: as if unknown
            out.outcome = inbound_outcome::kind::rejected;
            out.identity.reset();
            out.refusal = unknown_connection();
            return done(std::move(out));
        }
        if (!r) return done(r.error());
        if (p->earlier_id) {
            out.outcome = inbound_outcome::kind::duplicate;
            out.delivery_id = *p->earlier_id;
            return done(std::move(out));
        }
        out.outcome = inbound_outcome::kind::rejected;
        out.identity.reset();
        if (p->refusal) out.delivery_id = p->refusal->delivery.id();
        out.refusal = std::move(p->conflict);
        done(std::move(out));
    };
    // The unit's checks (the probe) all come before its first write, and it only inserts new rows.
    store_.transact_async_checks_first(ctx, std::move(unit), options_.commit, std::move(committed));
}

void inbound_gateway::refuse(request_context const& ctx, endpoint const& e, inbound_outcome out,
                             std::string const& event_type, inbound_refusal refusal, std::string_view body,
                             signature_status signature, outcome_handler done) {
    auto const& connection_id = e.record.registration.connection_id;
    // A signed request replayed with another Content-Type, or a signed body the vendor got
    // wrong, verifies too: whoever holds one such request could send it again and again.
    auto taken = budget_->take(connection_id, signature == signature_status::verified);
    if (!taken) {
        out.outcome = inbound_outcome::kind::rejected;
        out.refusal = std::move(refusal);
        return done(std::move(out));
    }
    auto unrecorded = *taken;
    auto rec = refusal_of(ctx, clock_.now(), connection_id, e.record.provider_id, event_type, refusal, e.scheme, body,
                          signature, unrecorded);
    if (!rec) return done(rec.error());
    out.outcome = inbound_outcome::kind::rejected;
    out.delivery_id = rec->delivery.id();
    out.refusal = std::move(refusal);
    auto records = std::make_shared<refusal_record>(std::move(*rec));
    // A refusal is a record, not a promise to the sender: it need not wait for its own fsync.
    store_.transact_async(
        ctx, [records](storage::unit_of_work& uow) { return save(uow, *records); }, durability::deferred,
        [out = std::move(out), done = std::move(done)](result<void> r) mutable {
            if (!r) return done(r.error());
            done(std::move(out));
        });
}

}  // namespace integration::webhooks
