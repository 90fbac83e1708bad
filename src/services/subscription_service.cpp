#include <integration/services/subscription_service.hpp>

#include <integration/core/id.hpp>
#include <integration/services/webhook_signature.hpp>

#include "../detail/validate.hpp"

#include <algorithm>

namespace integration::webhooks {

namespace {

constexpr std::array recoverable{delivery_status::failed, delivery_status::dead_lettered};

/** The names of the secrets of `ended` (refs whose overlap ended) that this service generated
 *  in `store` and that no subscription of the unit's tenant signs with any more: a ref is
 *  visible in every subscription, so another may name it (any version of it) as its own
 *  `signingSecretRef`. A tenant's own secret is never among them. */
result<std::vector<std::string>> deletable(storage::unit_of_work& uow, std::vector<std::string> const& ended,
                                          std::string const& store, time_point now) {
    auto const& tenant = uow.context().tenant_id;
    auto generated = [&](std::string const& uri) -> std::optional<std::string> {
        auto ref = credentials::secret_ref::parse(uri);
        if (ref && ref->store == store && ref->tenant == tenant && is_valid_id(ref->name, "whsec")) return ref->name;
        return std::nullopt;
    };
    std::vector<std::string> names;
    for (auto const& uri : ended)
        if (auto name = generated(uri)) names.push_back(std::move(*name));
    storage::page_request page{.limit = 500};
    while (!names.empty()) {  // rare: once per generated secret, when its overlap has ended
        auto subs = uow.subscriptions().list(page);
        if (!subs) return subs.error();
        for (auto const& s : subs->items)
            for (auto const& uri : s.signing_secret_refs(now))
                if (auto name = generated(uri)) std::erase(names, *name);
        if (subs->next_cursor.empty()) break;
        page.cursor = std::move(subs->next_cursor);
    }
    return names;
}

/** A secret the subscription service generated, taken back out of the store when the
 *  subscription that would have used it was not saved. */
class generated_secret {
public:
    generated_secret(credentials::secret_store& secrets, std::string tenant, time_point now)
        : secrets_(secrets), tenant_(std::move(tenant)), name_(new_id("whsec", now)), secret_(generate_signing_secret()) {}
    ~generated_secret() {
        if (stored_ && !kept_) (void)secrets_.soft_delete(tenant_, name_);
    }
    generated_secret(generated_secret const&) = delete;
    generated_secret& operator=(generated_secret const&) = delete;

    /** The ref it will have once stored: its latest (only) version. */
    std::string planned_ref() const { return credentials::secret_ref{secrets_.name(), tenant_, name_, 0}.uri(); }
    result<void> store() {
        auto ref = secrets_.put(tenant_, name_, secret_);
        if (!ref) return ref.error();
        stored_ = true;
        return {};
    }
    /** The subscription was saved: keeps the stored secret and hands it over, to show once. */
    secret_bytes keep() {
        kept_ = true;
        return std::move(secret_);
    }

private:
    credentials::secret_store& secrets_;
    std::string tenant_;
    std::string name_;
    secret_bytes secret_;
    bool stored_ = false;
    bool kept_ = false;
};

error at_field(std::string_view field, error const& e) { return error{e.code(), std::string(field) + ": " + e.detail()}; }

void keep_named_secret(credentials::secret_store& secrets, std::string const& tenant, std::string const& uri) {
    // A rotation that scanned the subscriptions before this one's commit may have deleted the
    // secret after `subscribe` read it: a generated secret this subscription now signs with comes
    // back (the rotation's own check after its deletes covers a delete after this read).
    auto ref = credentials::secret_ref::parse(uri);
    if (!ref || ref->store != secrets.name() || ref->tenant != tenant || !is_valid_id(ref->name, "whsec")) return;
    if (auto got = secrets.get(tenant, *ref); !got && got.error() == errc::not_found) (void)secrets.recover(tenant, ref->name);
}

}  // namespace

subscription_service::subscription_service(storage::store& store, credentials::secret_store& secrets,
                                           http::hop_check check, clock const& clock,
                                           subscription_service_options options, std::function<void()> on_due)
    : store_(store), secrets_(secrets), check_(std::move(check)), clock_(clock), options_(options),
      on_due_(std::move(on_due)) {
    if (!check_)  // no egress rules means no destination is known to be safe
        check_ = [](std::string_view) -> result<std::optional<http::pinned_address>> {
            return error{errc::egress_denied, "no egress check is configured for webhook endpoints"};
        };
}

result<subscribed> subscription_service::subscribe(request_context const& ctx, subscription_spec spec) {
    auto const now = clock_.now();
    std::optional<generated_secret> generated;
    if (spec.signing_secret_ref.empty()) {
        generated.emplace(secrets_, ctx.tenant_id, now);
        spec.signing_secret_ref = generated->planned_ref();
    } else {
        // The caller's own secret: it must be the tenant's, and a key deliveries can be signed with.
        auto ref = credentials::secret_ref::parse(spec.signing_secret_ref);
        if (!ref) return at_field("signingSecretRef", ref.error());
        // A credential's secret is sent to its vendor and to no one else: signing deliveries with
        // it would hand any endpoint MACs made with it.
        if (is_valid_id(ref->name, "secret"))
            return error{errc::invalid_argument, "signingSecretRef names a credential's secret, which signs nothing; "
                                                 "leave signingSecretRef out to have a signing secret made"};
        auto secret = secrets_.get(ctx.tenant_id, *ref);
        if (!secret && secret.error() == errc::not_found)
            return error{errc::invalid_argument, "signingSecretRef: no such secret in this tenant's secret store"};
        if (!secret) return at_field("signingSecretRef", secret.error());
        if (auto probe = sign(*secret, "probe", 0, {}); !probe) return at_field("signingSecretRef", probe.error());
    }
    // The domain checks the form (https or http URL, filter, policy); the egress check resolves the
    // name and applies the operator's rules, plain http included (allowed only for allow-listed
    // addresses). The delivery worker checks again at every send, since DNS may change.
    auto s = webhook_subscription::create(ctx, now, std::move(spec));
    if (!s) return s.error();
    if (auto d = check_(s->data().endpoint_url); !d) return at_field("endpointUrl", d.error());
    if (generated)
        if (auto r = generated->store(); !r) return r.error();
    auto saved = store_.transact(ctx, [&](storage::unit_of_work& uow) { return uow.subscriptions().save(*s); });
    if (!saved) return saved.error();
    if (!generated) keep_named_secret(secrets_, ctx.tenant_id, s->data().signing_secret_ref);
    subscribed out{std::move(*s), std::nullopt};
    if (generated) out.signing_secret = generated->keep();
    return out;
}

result<webhook_subscription> subscription_service::find(request_context const& ctx, std::string const& subscription_id) {
    return storage::read_for(store_, ctx, [&](storage::unit_of_work& uow) { return uow.subscriptions().find(subscription_id); });
}

result<storage::page<webhook_subscription>> subscription_service::list(request_context const& ctx,
                                                                      storage::page_request const& page) {
    return storage::read_for(store_, ctx, [&](storage::unit_of_work& uow) { return uow.subscriptions().list(page); });
}

result<webhook_subscription> subscription_service::deactivate(request_context const& ctx,
                                                              std::string const& subscription_id, std::string reason) {
    if (auto r = integration::detail::require_text(reason, "reason", 2000); !r) return r.error();  // a caller's words, kept and sent in events
    return storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<webhook_subscription> {
        auto s = uow.subscriptions().find(subscription_id);
        if (!s) return s.error();
        if (auto r = s->deactivate(reason); !r) return r.error();
        if (auto r = uow.subscriptions().save(*s); !r) return r.error();
        return std::move(*s);
    });
}

result<webhook_subscription> subscription_service::reactivate(request_context const& ctx,
                                                              std::string const& subscription_id) {
    auto s = storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<webhook_subscription> {
        auto s = uow.subscriptions().find(subscription_id);
        if (!s) return s.error();
        if (auto r = s->reactivate(); !r) return r.error();
        if (auto r = uow.subscriptions().save(*s); !r) return r.error();
        return std::move(*s);
    });
    // Its deliveries that waited while it was inactive are claimable again.
    if (s && on_due_) on_due_();
    return s;
}

result<rotated> subscription_service::rotate_secret(request_context const& ctx, std::string const& subscription_id) {
    // Found first, so that nothing is written to the secret store for a subscription the caller cannot see.
    if (auto s = find(ctx, subscription_id); !s) return s.error();
    auto const now = clock_.now();
    generated_secret secret(secrets_, ctx.tenant_id, now);
    if (auto r = secret.store(); !r) return r.error();
    std::vector<std::string> replaced_refs, ended;
    auto s = storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<webhook_subscription> {
        auto s = uow.subscriptions().find(subscription_id);
        if (!s) return s.error();
        auto replaced = s->rotate_signing_secret(secret.planned_ref(), now, options_.secret_overlap);
        if (!replaced) return replaced.error();
        if (auto r = uow.subscriptions().save(*s); !r) return r.error();
        auto free = deletable(uow, *replaced, secrets_.name(), now);
        if (!free) return free.error();
        replaced_refs = std::move(*replaced);
        ended = std::move(*free);
        return std::move(*s);
    });
    if (!s) return s.error();
    // Generated secrets whose overlap ended and that no subscription signs with any more leave
    // the secret store. Best effort: the rotation has committed.
    std::vector<std::string> deleted;
    for (auto const& name : ended)
        if (secrets_.soft_delete(ctx.tenant_id, name)) deleted.push_back(name);
    if (!deleted.empty()) {
        // A subscription saved since the scan may name one of them: it read the secret before
        // the delete and committed after the scan. A read begun after the deletes sees every such
        // save (a later one reads the secret again: `keep_named_secret`); those come back, and
        // all of them if the read fails (a secret kept too long beats a subscription without one).
        auto still_free = storage::read_for(store_, ctx, [&](storage::unit_of_work& uow) {
            return deletable(uow, replaced_refs, secrets_.name(), now);
        });
        for (auto const& name : deleted)
            if (!still_free || std::ranges::find(*still_free, name) == still_free->end())
                (void)secrets_.recover(ctx.tenant_id, name);
    }
    return rotated{std::move(*s), secret.keep()};
}

result<std::vector<std::string>> subscription_service::recover(request_context const& ctx,
                                                               std::string const& subscription_id, time_point since) {
    // A page of deliveries per transaction: the store has one writer, and replaying a long
    // outage's deliveries in one transaction would hold every tenant's commits behind it. A
    // failure part way leaves the pages before it replayed; recovering again replays the rest.
    std::vector<std::string> replayed;
    auto const now = clock_.now();
    result<void> outcome;
    for (auto status : recoverable) {
        storage::delivery_query q{.direction = delivery_direction::outbound,
                                  .subscription_id = subscription_id,
                                  .status = status,
                                  .since = since};
        storage::page_request page{.limit = 500};
        do {
            std::vector<std::string> page_ids;  // this page's, once its commit holds them
            outcome = store_.transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
                page_ids.clear();
                auto s = uow.subscriptions().find(subscription_id);
                if (!s) return s.error();
                // Each replay gets the subscription's whole schedule again; an inactive
                // subscription's deliveries wait until it is reactivated.
                auto const attempts = s->attempt_policy().max_attempts;
                auto batch = uow.deliveries().list(q, page);
                if (!batch) return batch.error();
                for (auto& d : batch->items) {
                    // One a worker is sending now is left to that attempt: replaying it would
                    // take the lease away and send it a second time beside the first.
                    auto held = uow.deliveries().leased(d.id(), now);
                    if (!held) return held.error();
                    if (*held) continue;
                    // Retention purged its payload: it can never be sent again.
                    if (!d.data().payload_ref) continue;
                    if (auto r = d.replay(attempts, now); !r) return r.error();
                    if (!s->active())  // off the claims' order until it is reactivated
                        if (auto r = d.hold(); !r) return r.error();
                    if (auto r = uow.deliveries().save(d); !r) return r.error();
                    page_ids.push_back(d.id());
                }
                page.cursor = std::move(batch->next_cursor);
                return {};
            });
            if (outcome) replayed.insert(replayed.end(), page_ids.begin(), page_ids.end());
        } while (outcome && !page.cursor.empty());
        if (!outcome) break;
    }
    if (!replayed.empty() && on_due_) on_due_();
    if (!outcome) return outcome.error();
    return replayed;
}

}  // namespace integration::webhooks
