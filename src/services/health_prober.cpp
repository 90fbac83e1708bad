#include <integration/services/health_prober.hpp>

#include <integration/outbound/retry.hpp>

#include <integration/core/utf8.hpp>

#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>

namespace integration::connections {

namespace {

std::vector<std::unique_ptr<http::policy>> probe_policies(credentials::credential_service& credentials,
                                                          net::egress_policy egress, net::resolver& resolver) {
    std::vector<std::unique_ptr<http::policy>> policies;
    policies.push_back(std::make_unique<http::trace_context_policy>());
    policies.push_back(std::make_unique<http::egress_policy_step>(http::egress_hop_check(std::move(egress), resolver)));
    policies.push_back(std::make_unique<credentials::authentication_policy>(credentials));
    return policies;
}

}  // namespace

health_prober::health_prober(storage::store& store, credentials::credential_service& credentials,
                             http::transport& transport, net::egress_policy egress, net::resolver& resolver,
                             clock const& clock, health_prober_options options)
    : store_(store), outbound_(transport, probe_policies(credentials, std::move(egress), resolver)),
      clock_(clock), options_(options) {}

result<health_probe_result> health_prober::probe(request_context const& ctx, integration_connection const& c,
                                                 bool& credential_ok) {
    auto provider = storage::read_for(store_, ctx, [&](storage::unit_of_work& uow) {
        return uow.providers().find(c.data().provider_id);
    });
    if (!provider) return provider.error();
    auto check = provider->data().health_check.value_or(providers::health_check{});
    auto url = c.base_url(provider->data()) + check.path;

    // The pipeline checks the destination before it resolves the credential: a refused one says
    // so, and costs no token request.
    http::request req{.method = check.method, .url = url, .timeout = options_.timeout};
    http::call_context call{.ctx = &ctx, .credential_id = c.data().credential_id};
    auto res = outbound_.send(req, call);
    credential_ok = c.data().credential_id ? !call.credential_unresolved && (res || call.sent) : true;
    if (!res && res.error() == errc::egress_denied)
        return health_probe_result{health_status::unhealthy, res.error().detail(), failures::failure_category::poison};
    if (!res && call.credential_unresolved)
        return health_probe_result{health_status::unhealthy, "credential does not resolve: " + res.error().detail(),
                                   failures::failure_category::auth};
    if (!res) return health_probe_result{health_status::unhealthy, "probe failed: " + res.error().detail()};
    if (res->status == check.expect_status)
        return health_probe_result{health_status::healthy, "HTTP " + std::to_string(res->status) + " from " + check.path};
    auto category = res->status == 401 || res->status == 403 ? failures::failure_category::auth
                                                             : failures::failure_category::transient;
    return health_probe_result{health_status::unhealthy,
                               "expected HTTP " + std::to_string(check.expect_status) + " from " + check.path + ", got " +
                                   std::to_string(res->status),
                               category};
}

credentials::verifier health_prober::verifier_for(request_context const& ctx, std::string const& credential_id) {
    return [this, ctx, credential_id](credentials::resolved_credential const& material) -> result<void> {
        struct target {
            std::string url;
            providers::health_check check;
        };
        auto found = storage::read_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<std::optional<target>> {
            storage::page_request page{.limit = 500};
            do {
                auto list = uow.connections().list({}, page);
                if (!list) return list.error();
                for (auto const& conn : list->items) {
                    if (conn.data().credential_id != credential_id || conn.status() == connection_status::retired)
                        continue;
                    auto p = uow.providers().find(conn.data().provider_id);
                    if (!p) return p.error();
                    auto check = p->data().health_check.value_or(providers::health_check{});
                    return std::optional<target>(target{conn.base_url(p->data()) + check.path, check});
                }
                page.cursor = list->next_cursor;
            } while (!page.cursor.empty());
            return std::optional<target>{};
        });
        if (!found) return found.error();
        if (!*found) return {};
        auto url = (*found)->url;
        for (auto const& [name, value] : material.query) {
            url += url.find('?') == std::string::npos ? '?' : '&';
            url += boost::urls::encode(name, boost::urls::unreserved_chars) + "=" +
                   boost::urls::encode(value.view(), boost::urls::unreserved_chars);
        }
        // The new material is applied here, not by the authentication policy: it is not active yet.
        http::request req{.method = (*found)->check.method, .url = url, .timeout = options_.timeout};
        for (auto const& [name, value] : material.headers) req.headers.emplace_back(name, std::string(value.view()));
        http::call_context call{.ctx = &ctx};
        auto res = outbound_.send(req, call);
        if (!res) return res.error();
        if (res->status == (*found)->check.expect_status) return {};
        // The vendor busy or down says nothing of the new secret: an outage, tried again later.
        if (resilience::is_retryable_status(res->status))
            return error{errc::unavailable, "the health check answered HTTP " + std::to_string(res->status) +
                                                " (the vendor is unavailable): the new secret could not be verified"};
        return error{errc::verification_failed, "the health check answered HTTP " + std::to_string(res->status) +
                                                    " with the new secret, expected " +
                                                    std::to_string((*found)->check.expect_status)};
    };
}

result<integration_connection> health_prober::test(request_context const& ctx, std::string const& connection_id) {
    auto current = storage::read_for(store_, ctx, [&](storage::unit_of_work& uow) {
        return uow.connections().find(connection_id);
    });
    if (!current) return current.error();
    if (current->status() == connection_status::retired)
        return error{errc::invalid_state, "connection " + connection_id + " is Retired and is not probed"};
    bool credential_ok = false;
    auto outcome = probe(ctx, *current, credential_ok);
    if (!outcome) return outcome.error();
    // A connection that was working (Healthy or Degraded) is Degraded by a failed probe and
    // Unhealthy after `unhealthy_after` in a row; one that never passed, or is Unhealthy, is
    // Unhealthy at once. The count is this process's: a restart starts it again.
    {
        std::lock_guard lock(failures_mutex_);
        auto const key = ctx.tenant_id + "/" + connection_id;
        // Only connections failing now are counted: a passing probe ends the count, and the entry
        // with it (kept at 0, every connection ever probed stayed for the life of the process).
        if (outcome->status == health_status::healthy) {
            consecutive_failures_.erase(key);
        } else {
            auto const n = ++consecutive_failures_[key];
            auto const was = current->data().health;
            if (n < options_.unhealthy_after && (was == health_status::healthy || was == health_status::degraded))
                outcome->status = health_status::degraded;
        }
    }
    return storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<integration_connection> {
        auto c = uow.connections().find(connection_id);
        if (!c) return c.error();
        auto now = clock_.now();
        bool working = c->status() == connection_status::active || c->status() == connection_status::degraded;
        auto seen = *outcome;
        bool usable = credential_ok;
        // A probe that passed with a credential revoked while it was in flight (or resolved from
        // another process's cache) does not bring the connection back: it stays Unhealthy, as the
        // revocation left it, and nothing is activated.
        if (seen.status == health_status::healthy && c->data().credential_id) {
            auto cred = uow.credentials().find(*c->data().credential_id);
            if (!cred && cred.error() != errc::not_found) return cred.error();
            auto ok = cred ? cred->ensure_usable_by(c->data().provider_id, c->id())
                           : result<void>(error{errc::invalid_state, "credential " + *c->data().credential_id + " is gone"});
            if (!ok) {
                seen = {health_status::unhealthy, ok.error().detail(), failures::failure_category::auth};
                usable = false;
            }
        }
        if (auto h = c->record_health(seen, now); !h) return h.error();
        // A Pending connection becomes Active only while its provider still takes connections:
        // one deprecated since it was created stays Pending, its health recorded.
        if (c->status() == connection_status::pending && seen.status == health_status::healthy && c->data().credential_id) {
            auto p = uow.providers().find(c->data().provider_id);
            if (!p && p.error() != errc::not_found) return p.error();
            if (p && p->ensure_accepts_connections())
                if (auto a = c->activate(usable, now); !a) return a.error();
        }
        if (auto s = uow.connections().save(*c); !s) return s.error();
        if (auto f = record_failure(uow, *c, seen, working, now); !f) return f.error();
        return std::move(*c);
    });
}

result<void> health_prober::record_failure(storage::unit_of_work& uow, integration_connection const& c,
                                           health_probe_result const& outcome, bool working, time_point now) {
    // One open failure per connection: a connection that keeps failing adds attempts to it, and
    // the probe that passes again resolves it (its source succeeded).
    std::optional<failures::integration_failure> open;
    storage::page_request page{.limit = 100};
    do {
        auto list = uow.failures().list({.unresolved_only = true, .connection_id = c.id()}, page);
        if (!list) return list.error();
        for (auto& f : list->items)
            if (f.data().source == failures::failure_source::health_probe && !open) open = std::move(f);
        page.cursor = list->next_cursor;
    } while (!open && !page.cursor.empty());
    if (outcome.status == health_status::healthy) {
        if (!open) return {};
        if (auto r = open->resolve(failures::source_outcome::succeeded, now); !r) return r;
        return uow.failures().save(*open);
    }
    // A connection that never worked (its initial test) failed its creator's call, who was told;
    // one that worked is probed again by the periodic sweep, which is this failure's retry. What a
    // later probe cannot mend (a refused destination, a credential the vendor refuses) goes to a
    // human.
    if (!open && !working) return {};
    bool transient = outcome.category == failures::failure_category::transient ||
                     outcome.category == failures::failure_category::rate_limited;
    failures::classification cls{outcome.category, transient ? "health_check_failed" : "health_check_refused",
                                  outcome.detail,
                                  transient ? failures::next_action::retry : failures::next_action::escalate,
                                  transient ? std::optional(now + options_.interval) : std::nullopt};
    if (!open) {
        auto f = failures::integration_failure::record(uow.context(), now, failures::failure_source::health_probe,
                                                       c.id(), c.data().provider_id, cls);
        if (!f) return f.error();
        return uow.failures().save(*f);
    }
    // Once escalated (by this prober or by a person), it stays with a human until it is resolved.
    if (open->data().next_action == failures::next_action::escalate) {
        cls.next_action = failures::next_action::escalate;
        cls.next_attempt_at.reset();
    }
    if (auto r = open->record_attempt(cls, now); !r) return r;
    // "Escalation requires a recorded EscalationRecord", once.
    if (!transient && open->data().escalations.empty())
        if (auto r = open->escalate({"health-prober", utf8_excerpt(outcome.detail.empty() ? cls.error_code : outcome.detail, 2000),
                                     now, std::nullopt});
            !r)
            return r;
    return uow.failures().save(*open);
}

result<std::size_t> health_prober::sweep(std::atomic<bool> const& stop) {
    auto tenants = store_.tenants();
    if (!tenants) return tenants.error();
    std::size_t probed = 0;
    auto now = clock_.now();
    // One tenant's trouble (a row that cannot be read) stops no other tenant's probes (its
    // Degraded connections would refuse runs until a probe passes): the first error is
    // reported once every tenant was swept.
    std::optional<error> first_error;
    std::vector<std::pair<request_context, std::vector<std::string>>> due;  // by tenant
    for (auto const& tenant : *tenants) {
        auto ctx = request_context::for_tenant(tenant, "health-prober");
        std::vector<std::string> ids;
        auto r = store_.read(ctx, [&](storage::unit_of_work& uow) -> result<void> {
            for (auto status : {connection_status::active, connection_status::degraded}) {
                storage::page_request page{.limit = 500};
                do {
                    auto list = uow.connections().list({.status = status}, page);
                    if (!list) return list.error();
                    // Checked "later" than now: the clock stepped back, and the probe is due
                    // (it would wait out the whole step).
                    for (auto const& c : list->items)
                        if (auto const& at = c.data().last_checked_at; !at || *at + options_.interval <= now || *at > now)
                            ids.push_back(c.id());
                    page.cursor = list->next_cursor;
                } while (!page.cursor.empty());
            }
            return {};
        });
        if (!r) {
            if (!first_error) first_error = r.error();
            continue;
        }
        if (!ids.empty()) due.emplace_back(std::move(ctx), std::move(ids));
    }
    // One connection of each tenant in turn: a tenant with many connections to a vendor that
    // hangs until the timeout would otherwise hold every later tenant's probes (and the runs its
    // Degraded connections refuse until one passes) for all of its timeouts.
    for (std::size_t i = 0;; ++i) {
        bool more = false;
        for (auto const& [ctx, ids] : due) {
            if (i >= ids.size()) continue;
            if (stop.load()) return probed;
            more = true;
            if (test(ctx, ids[i])) ++probed;
        }
        if (!more) break;
    }
    if (first_error) return *first_error;
    return probed;
}

}  // namespace integration::connections
