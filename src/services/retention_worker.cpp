#include <integration/services/retention_worker.hpp>

#include <map>

#include <integration/core/aggregate.hpp>

#include "../detail/crypto.hpp"

#include <boost/json/serialize.hpp>

#include <algorithm>
#include <optional>
#include <utility>

namespace integration::retention {

result<void> validate(retention_options const& options) {
    // The store reads and deletes at most 500 rows a step: a larger batch would end each step
    // after its first (fewer rows than asked read as "the last ones").
    if (options.batch == 0 || options.batch > 500)
        return error{errc::invalid_argument,
                     "retention_options.batch is " + std::to_string(options.batch) +
                         "; set it to the rows archived per file and per step (1 to 500, 500 by default)"};
    // A cut-off is now minus the age, in the clock's nanoseconds: an age past a century would
    // overflow it into the future and make every row old enough.
    constexpr std::chrono::hours century{876'600};  // 36,525 days
    for (auto [name, age] : {std::pair{"runs", options.runs}, std::pair{"failures", options.failures},
                             std::pair{"bodies", options.bodies}, std::pair{"deliveries", options.deliveries},
                             std::pair{"payloads", options.payloads}, std::pair{"outbox", options.outbox},
                             std::pair{"connections", options.connections}, std::pair{"credentials", options.credentials}})
        if (age.count() <= 0 || age > century)
            return error{errc::invalid_argument, std::string("retention_options.") + name + " is " +
                                                     std::to_string(age.count()) +
                                                     " hours; keep rows between 1 hour and 100 years (876600 hours)"};
    return {};
}

namespace {

/** Runs `step` (which deletes at most `batch` rows) until a step deletes fewer; the rows deleted. */
template <class Step>
result<std::size_t> in_batches(std::size_t batch, Step step) {
    std::size_t removed = 0;
    while (true) {
        result<std::size_t> n = step();
        if (!n) return n.error();
        removed += *n;
        if (*n < batch) return removed;
    }
}

/** Soft-deletes secret `name` of `tenant`: one already deleted or never stored is no error. */
result<void> release_secret(credentials::secret_store& secrets, std::string const& tenant, std::string const& name) {
    if (auto r = secrets.soft_delete(tenant, name); !r && r.error() != errc::not_found) return r.error();
    return {};
}

constexpr auto holds_no_secret = [](auto const&) -> result<void> { return {}; };

}  // namespace

retention_worker::retention_worker(storage::store& store, blobs::blob_store& blobs, credentials::secret_store& secrets,
                                   clock const& clock, retention_options options)
    : store_(store), blobs_(blobs), secrets_(secrets), clock_(clock), options_(options) {}

template <class A, class Select, class Remove, class Release>
result<std::size_t> retention_worker::archive(request_context const& ctx, std::string const& kind, Select select,
                                              Remove remove, Release release) {
    std::size_t archived = 0;
    while (true) {
        auto rows = storage::read_for(store_, ctx, select);
        if (!rows) return rows.error();
        if (rows->empty()) return archived;
        std::string lines;
        for (auto const& a : *rows) lines += boost::json::serialize(aggregate_to_json(a)) + "\n";
        // Named by its rows and its content, so that no archive is ever written over: rows a
        // batch kept (changed after they were read) can be the first and last of a later batch,
        // and another process's sweep may read a different batch with the same first and last;
        // under one name the later file lost the rows the earlier one's batch deleted. The same
        // rows again (a crash came between the file and the delete) are the same file.
        auto key = "archive/" + kind + "/" + rows->front().id() + "_" + rows->back().id() + "." +
                   crypto::sha256_hex(lines).substr(0, 16) + ".jsonl";
        if (auto put = blobs_.put(ctx.tenant_id, key, lines); !put) return put.error();
        // The secrets a row names go before the row: a crash between the two leaves the row to
        // the next sweep, never a secret nothing names.
        for (auto const& a : *rows)
            if (auto r = release(a); !r) return r.error();
        auto removed = store_.transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
            // Only rows still as archived: one changed since it was read (a delivery replayed,
            // Pending again) stays, and a later sweep archives it as it is then.
            auto now_eligible = select(uow);
            if (!now_eligible) return now_eligible.error();
            std::map<std::string, std::int64_t> current;
            for (auto const& a : *now_eligible) current.emplace(a.id(), a.meta().version);
            for (auto const& a : *rows)
                if (auto c = current.find(a.id()); c != current.end() && c->second == a.meta().version)
                    if (auto r = remove(uow, a.id()); !r) return r;
            return {};
        });
        if (!removed) return removed.error();
        archived += rows->size();
        if (rows->size() < options_.batch) return archived;
    }
}

result<std::size_t> retention_worker::purge_payloads(request_context const& ctx, time_point before) {
    std::size_t purged = 0;
    while (true) {
        auto rows = storage::read_for(store_, ctx, [&](storage::unit_of_work& uow) {
            return uow.deliveries().with_payload_before(before, options_.batch);
        });
        if (!rows) return rows.error();
        if (rows->empty()) return purged;
        // References first, blobs after their commit: a delivery a worker claimed since the read
        // keeps its payload (saving it would end the lease, and the next claim send it twice).
        // A crash between the two leaves blobs nobody references, which the purge by write time
        // below removes. One event's deliveries share its payload; deleting a missing blob is
        // not an error. A small inbound payload lives in the store: it goes with its reference.
        std::vector<std::string> unreferenced, still_used;
        std::size_t forgotten = 0;
        auto cleared = store_.transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
            unreferenced.clear();
            still_used.clear();
            forgotten = 0;
            auto now = clock_.now();
            for (auto const& old : *rows) {
                auto d = uow.deliveries().find(old.id());  // current, so this save never conflicts
                if (!d) {
                    if (d.error() == errc::not_found) continue;
                    return d.error();
                }
                auto held = uow.deliveries().leased(d->id(), now);
                if (!held) return held.error();
                if (!d->data().payload_ref) continue;
                auto const& ref = *d->data().payload_ref;
                if (*held) {
                    still_used.push_back(ref);  // one event's deliveries share a payload
                    continue;
                }
                if (storage::is_stored_payload_ref(ref)) {
                    if (auto r = uow.deliveries().remove_payload(d->id()); !r) return r;
                } else {
                    unreferenced.push_back(ref);
                }
                d->forget_payload();
                if (auto r = uow.deliveries().save(*d); !r) return r;
                ++forgotten;
            }
            return {};
        });
        if (!cleared) return cleared.error();
        std::ranges::sort(unreferenced);
        auto const repeats = std::ranges::unique(unreferenced);
        unreferenced.erase(repeats.begin(), repeats.end());
        for (auto const& ref : unreferenced)
            if (std::ranges::find(still_used, ref) == still_used.end())
                if (auto r = blobs_.remove(ctx.tenant_id, ref); !r) return r.error();
        purged += forgotten;
        if (rows->size() < options_.batch) return purged;
    }
}

result<retention_sweep> retention_worker::sweep() {
    if (auto valid = validate(options_); !valid) return valid.error();
    retention_sweep out;
    auto now = clock_.now();
    auto tenants = store_.tenants();
    if (!tenants) return tenants.error();
    // One step that fails (a tenant's unreadable row, an archive the full disk refuses, the
    // vault down) stops only itself: the tenant's other steps, the other tenants and the purges
    // still run (those that free space first), and the sweep then reports the first failure.
    std::optional<error> failed;
    auto note = [&](result<void> r) {
        if (!r && !failed) failed = r.error();
    };
    auto add = [&](result<std::size_t> r, std::size_t& to) {
        if (r) to += *r;
        else note(result<void>(r.error()));
    };
    auto one_tenant = [&](std::string const& tenant) {
        auto ctx = request_context::for_tenant(tenant, "retention-worker");
        add(purge_payloads(ctx, now - options_.payloads), out.payloads_purged);
        // Run bodies kept in the store (small ones) go by age like those in the blob store.
        add(in_batches(std::min<std::size_t>(options_.batch, 500), [&] {
                return storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) {
                    return uow.runs().purge_bodies(now - options_.bodies, options_.batch);
                });
            }),
            out.blobs_purged);
        add(in_batches(options_.batch, [&] {
                return storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) {
                    return uow.published_events().remove_before(now - options_.deliveries, options_.batch);
                });
            }),
            out.events_removed);
        auto runs = archive<runs::integration_run>(
            ctx, "runs",
            [&](storage::unit_of_work& uow) { return uow.runs().ended_before(now - options_.runs, options_.batch); },
            [](storage::unit_of_work& uow, std::string const& id) { return uow.runs().remove(id); }, holds_no_secret);
        // A key outlives nothing it names: it goes with the runs of its age, and stays while one
        // of them could not be archived (freed, it would let another request replay that run).
        if (runs)
            add(in_batches(options_.batch, [&] {
                    return storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) {
                        return uow.idempotency().remove_before(now - options_.runs, options_.batch);
                    });
                }),
                out.keys_removed);
        add(std::move(runs), out.runs_archived);
        add(archive<failures::integration_failure>(
                ctx, "failures",
                [&](storage::unit_of_work& uow) {
                    return uow.failures().ended_before(now - options_.failures, options_.batch);
                },
                [](storage::unit_of_work& uow, std::string const& id) -> result<void> {
                    // A dead event whose failure nobody answered within the window goes with it:
                    // its aggregate's later events wait no longer on a failure no one can see.
                    auto f = uow.failures().find(id);
                    if (!f) return f.error();
                    if (auto const& event_id = f->data().event_id; event_id && !f->resolved())
                        if (auto r = uow.release_dead_event(*event_id, false); !r && r.error() != errc::not_found)
                            return r;
                    return uow.failures().remove(id);
                },
                holds_no_secret),
            out.failures_archived);
        add(archive<webhooks::webhook_delivery>(
                ctx, "deliveries",
                [&](storage::unit_of_work& uow) {
                    return uow.deliveries().ended_before(now - options_.deliveries, options_.batch);
                },
                [](storage::unit_of_work& uow, std::string const& id) { return uow.deliveries().remove(id); },
                holds_no_secret),
            out.deliveries_archived);
        add(archive<connections::integration_connection>(
                ctx, "connections",
                [&](storage::unit_of_work& uow) {
                    return uow.connections().retired_before(now - options_.connections, options_.batch);
                },
                [](storage::unit_of_work& uow, std::string const& id) { return uow.connections().remove(id); },
                [&](connections::integration_connection const& c) -> result<void> {
                    auto reg = storage::read_for(store_, ctx, [&](storage::unit_of_work& uow) {
                        return uow.inbound_webhooks().find(c.id());
                    });
                    if (!reg) return reg.error() == errc::not_found ? result<void>() : result<void>(reg.error());
                    if (auto r = release_secret(secrets_, tenant, reg->secret_name); !r) return r;
                    for (auto const& old : reg->previous)
                        if (auto r = release_secret(secrets_, tenant, old.name); !r) return r;
                    return {};
                }),
            out.connections_archived);
        add(archive<credentials::integration_credential>(
                ctx, "credentials",
                [&](storage::unit_of_work& uow) {
                    return uow.credentials().revoked_before(now - options_.credentials, options_.batch);
                },
                [](storage::unit_of_work& uow, std::string const& id) { return uow.credentials().remove(id); },
                [&](credentials::integration_credential const& c) -> result<void> {
                    // Revoking soft-deleted them already, unless it was cut short.
                    for (auto const& v : c.data().versions)
                        if (auto ref = credentials::secret_ref::parse(v.key_vault_ref); ref)
                            if (auto r = release_secret(secrets_, tenant, ref->name); !r) return r;
                    return {};
                }),
            out.credentials_archived);
        // Flows a user never finished: their client secret and code verifier are in the vault,
        // which the tenant's next flow would delete, if it ever starts one.
        note([&]() -> result<void> {
            auto expired = storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) {
                return uow.authorizations().purge_expired(now);
            });
            if (!expired) return expired.error();
            out.authorizations_purged += expired->size();
            // The rows are gone: every secret is released even when one fails (the first error is told).
            result<void> first;
            for (auto const& e : *expired)
                if (auto ref = credentials::secret_ref::parse(e.secret_ref))
                    if (auto r = release_secret(secrets_, tenant, ref->name); !r && first) first = r;
            return first;
        }());
    };
    for (auto const& tenant : *tenants) one_tenant(tenant);
    // Published outbox rows go by age in one pass over every tenant's (and the global providers'
    // and clients', which belong to none), in commit order.
    note([&]() -> result<void> {
        for (std::int64_t after = 0;;) {
            auto trimmed = store_.remove_published(now - options_.outbox, options_.batch, after);
            if (!trimmed) return trimmed.error();
            out.outbox_removed += trimmed->removed;
            if (trimmed->done) return {};
            after = trimmed->next;
        }
    }());
    // Bodies and payloads, not the archive; the payloads no delivery references (an event that
    // matched no subscription) go by their write time.
    for (auto [prefix, age] : {std::pair{"runs/", options_.bodies}, std::pair{"webhooks/", options_.payloads}}) {
        add(blobs_.purge_older_than(now - age, prefix), out.blobs_purged);
    }
    add(secrets_.purge_expired(), out.secrets_purged);
    if (failed) return *failed;
    return out;
}

}  // namespace integration::retention
