#include <integration/services/rotation_worker.hpp>

#include <integration/core/time.hpp>

namespace integration::credentials {

rotation_worker::rotation_worker(storage::store& store, credential_service& credentials, clock const& clock,
                                 rotation_worker_options options)
    : store_(store), credentials_(credentials), clock_(clock), options_(std::move(options)) {}

bool rotation_worker::due(integration_credential const& c, time_point now) const {
    auto const& d = c.data();
    if (c.status() != credential_status::active) return false;
    auto notice = d.rotation_policy ? std::chrono::hours(24 * d.rotation_policy->notify_before_days) : options_.default_notice;
    if (d.expires_at && now + notice >= *d.expires_at) return true;
    if (d.rotation_policy && d.rotation_policy->rotate_every_days > 0) {
        auto since = d.last_rotated_at.value_or(c.meta().created_at);
        return now >= since + std::chrono::hours(24 * d.rotation_policy->rotate_every_days);
    }
    return false;
}

namespace {

// Whether the credential has its one open rotation failure already, about the version active
// now: one raised before a rotation made since (by hand, as its message asks) is about material
// that is gone, and holds nothing back.
result<bool> has_open_rotation_failure(storage::unit_of_work& uow, integration_credential const& c) {
    auto open = uow.failures().list({.unresolved_only = true, .credential_id = c.id()}, {.limit = 500});
    if (!open) return open.error();
    auto const* active = c.active_version();
    auto const since = active ? active->activated_at.value_or(active->created_at) : time_point{};
    for (auto const& f : open->items)
        if (f.data().credential_id == c.id() && f.data().source == failures::failure_source::credential_rotation &&
            f.meta().created_at >= since)
            return true;
    return false;
}

}  // namespace

result<void> rotation_worker::escalate(request_context const& ctx, integration_credential const& c, time_point now,
                                       std::string const& why) {
    return store_.transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
        // One open failure per credential: later sweeps do not pile up duplicates.
        auto open = has_open_rotation_failure(uow, c);
        if (!open) return open.error();
        if (*open) return {};
        std::string when = c.data().expires_at ? "expires at " + format_time(*c.data().expires_at) : "is due for rotation";
        auto f = failures::integration_failure::record(
            ctx, now, failures::failure_source::credential_rotation, c.id(), c.data().provider_id,
            {failures::failure_category::auth, "rotation_required", "credential " + c.id() + " " + when + " and " + why,
             failures::next_action::escalate, {}});
        if (!f) return f.error();
        return uow.failures().save(*f);
    });
}

result<rotation_sweep> rotation_worker::sweep() {
    rotation_sweep out;
    auto tenants = store_.tenants();
    if (!tenants) return tenants.error();
    auto now = clock_.now();
    // One tenant's trouble (a row that cannot be read) ends no other tenant's rotations: the
    // first error is reported once every tenant was swept.
    std::optional<error> first_error;
    auto keep = [&](error e) {
        if (!first_error) first_error = std::move(e);
    };
    for (auto const& tenant : *tenants) {
        auto ctx = request_context::for_tenant(tenant, "credential-rotation-worker");
        std::vector<integration_credential> candidates, escalated, stuck;
        auto r = store_.read(ctx, [&](storage::unit_of_work& uow) -> result<void> {
            // Every page: a due credential is not only among the first of a tenant (nor among the
            // first to expire, which stay due while no minter can rotate them).
            storage::page_request page{.limit = options_.batch};
            do {
                auto all = uow.credentials().list({}, page);
                if (!all) return all.error();
                for (auto& c : all->items) {
                    if (due(c, now)) {
                        // Escalated already (nothing could mint, or new material failed its
                        // verification): for a person now, not minted again at every sweep.
                        auto open = has_open_rotation_failure(uow, c);
                        if (!open) return open.error();
                        (*open ? escalated : candidates).push_back(std::move(c));
                    } else if (auto const* v = c.staged_version(); v && v->created_at < now - options_.abandoned_after) {
                        stuck.push_back(std::move(c));  // a rotation that should have ended long ago
                    }
                }
                page.cursor = std::move(all->next_cursor);
            } while (!page.cursor.empty());
            return {};
        });
        if (!r) {
            keep(r.error());
            continue;
        }
        out.escalated += escalated.size();
        for (auto const& c : stuck) {  // one credential's trouble ends no other's rotation
            auto ended = credentials_.abandon_rotation(ctx, c.id(), now - options_.abandoned_after);
            if (!ended) ++out.failed;
            else if (*ended) ++out.abandoned;
        }
        for (auto const& c : candidates) {
            auto minted = options_.mint ? options_.mint(c) : std::nullopt;
            if (!minted) {
                if (auto e = escalate(ctx, c, now, "no rotator can mint new material; rotate it"); !e) {
                    keep(e.error());
                    ++out.failed;
                    continue;
                }
                ++out.escalated;
                continue;
            }
            auto check = options_.verifier_for ? options_.verifier_for(ctx, c)
                                               : verifier([](resolved_credential const&) -> result<void> { return {}; });
            // Whether the vendor refused the new material, as opposed to not answering (a
            // timeout, a 503, the vault): only a refusal is for a person.
            auto refused = std::make_shared<bool>(false);
            verifier verify = [check, refused](resolved_credential const& m) -> result<void> {
                auto r = check(m);
                if (!r)
                    *refused = r.error() != errc::unavailable && r.error() != errc::timeout && r.error() != errc::connection_lost &&
                               r.error() != errc::storage_failure && r.error() != errc::storage_busy &&
                               r.error() != errc::secret_store_failure;
                return r;
            };
            auto rotated = credentials_.rotate(ctx, c.id(), std::move(minted->secret), verify, minted->expires_at);
            if (rotated) {
                ++out.rotated;
                continue;
            }
            ++out.failed;
            // Material the vendor refused would be refused again: a new one minted at every
            // sweep, the credential expiring meanwhile with nobody told. An outage (the vault,
            // the store) is retried next sweep.
            if (rotated.error() == errc::verification_failed && *refused)
                if (auto e = escalate(ctx, c, now, "its rotation failed: " + rotated.error().detail() +
                                                       "; check the vendor, then rotate it or resolve this failure to let "
                                                       "the worker try again");
                    !e)
                    keep(e.error());
        }
    }
    if (first_error) return *first_error;
    return out;
}

}  // namespace integration::credentials
