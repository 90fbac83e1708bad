#include <integration/backends/sqlite/sqlite_blob_store.hpp>
#include <integration/backends/local_vault/local_secret_store.hpp>
#include <integration/services/retention_worker.hpp>

#include <integration/services/publisher.hpp>

#include "storage/fixtures.hpp"
#include "support/hooked_blobs.hpp"
#include "support/sqlite_file.hpp"

#include <integration/core/aggregate.hpp>
#include <integration/core/id.hpp>
#include <integration/backends/sqlite/sqlite_store.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <filesystem>
#include <functional>

namespace integration::testing {
namespace {

using namespace std::chrono_literals;

class retention_worker_test : public ::testing::Test {
protected:
    /** A finished run (and, when `failed`, its resolved failure) in `ctx`'s tenant, ended now. */
    std::string finished_run(request_context const& ctx, bool failed) {
        std::string id;
        must(store_->transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
            auto p = must(providers::integration_provider::register_new(ctx, clock_.now(), provider_spec("p" + std::to_string(++n_))));
            must(p.activate(1));
            must(uow.providers().save(p));
            auto spec = connection_spec();
            spec.credential_id = new_id("cred", clock_.now());
            auto c = must(connections::integration_connection::create(ctx, clock_.now(), p, spec));
            must(c.record_health({health_status::healthy, "ok"}, clock_.now()));
            must(c.activate(true, clock_.now()));
            must(uow.connections().save(c));
            auto run = must(runs::integration_run::create(ctx, clock_.now(), c, "sms.send"));
            must(run.start(c, false, clock_.now()));
            must(run.record_attempt({1, failed ? runs::attempt_status::failed : runs::attempt_status::succeeded, std::nullopt,
                                     std::int64_t{failed ? 422 : 200}, 5, clock_.now()}));
            failures::classification cls{failures::failure_category::validation, "http_422", "bad", failures::next_action::dead_letter,
                                         std::nullopt};
            if (failed) {
                must(run.fail(clock_.now(), cls, std::nullopt));
                auto f = must(failures::integration_failure::record(ctx, clock_.now(), failures::failure_source::run, run.id(),
                                                                    p.id(), cls));
                must(f.resolve(failures::source_outcome::dead_lettered, clock_.now()));
                must(uow.failures().save(f));
            } else {
                must(run.complete(clock_.now(), std::nullopt, std::nullopt));
            }
            id = run.id();
            return uow.runs().save(run);
        }));
        return id;
    }

    /** An active subscription of `ctx`'s tenant to `event_type`. */
    void subscribe(request_context const& ctx, std::string event_type) {
        must(store_->transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
            auto s = must(webhooks::webhook_subscription::create(
                ctx, clock_.now(),
                {.project_id = "shop", .event_type = std::move(event_type), .endpoint_url = "https://hooks.customer.example/in",
                 .signing_secret_ref = "vault://local/t/whsec?version=1"}));
            return uow.subscriptions().save(s);
        }));
    }

    /** The keys of `tenant`'s archives of `kind` whose rows run from `first` to `last`. */
    std::vector<std::string> archive_keys(std::string const& tenant, std::string const& kind, std::string const& first,
                                          std::string const& last) {
        return query_rows(dir_.file("b.db"), "SELECT key FROM blobs WHERE tenant_id = ? AND instr(key, ?) = 1 ORDER BY key",
                          {tenant, "archive/" + kind + "/" + first + "_" + last + "."});
    }

    /** The reference of the one archive `archive_keys` finds. */
    std::string archive_ref(std::string const& tenant, std::string const& kind, std::string const& first, std::string const& last) {
        auto keys = archive_keys(tenant, kind, first, last);
        EXPECT_EQ(keys.size(), 1u) << kind << " " << first << "_" << last;
        return keys.empty() ? std::string() : blobs::reference(tenant, keys.front());
    }

    /** A connection of `ctx`'s tenant, Retired now when `retired`; with an inbound webhook whose
     *  current and replaced secrets are `secrets` in the vault, when any. */
    std::string connection(request_context const& ctx, bool retired, std::vector<std::string> const& secrets = {}) {
        std::string id;
        must(store_->transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
            auto p = active_provider(ctx, clock_.now(), "p" + std::to_string(++n_));
            must(uow.providers().save(p));
            auto c = active_connection(ctx, clock_.now(), p);
            if (retired) must(c.retire("gone"));
            id = c.id();
            if (!secrets.empty()) {
                storage::inbound_webhook_registration reg{id, "github", secrets.front()};
                for (auto it = secrets.begin() + 1; it != secrets.end(); ++it) reg.previous.push_back({*it, clock_.now()});
                must(uow.inbound_webhooks().save(reg));
            }
            return uow.connections().save(c);
        }));
        for (auto const& name : secrets) must(vault_->put(ctx.tenant_id, name, secret_bytes("whsec-" + name)));
        return id;
    }

    /** A credential of `ctx`'s tenant whose secret `name` is in the vault; revoked now when `revoked`. */
    std::string credential(request_context const& ctx, std::string const& name, bool revoked) {
        auto ref = must(vault_->put(ctx.tenant_id, name, secret_bytes("sk-" + name)));
        std::string id;
        must(store_->transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
            auto p = active_provider(ctx, clock_.now(), "p" + std::to_string(++n_));
            must(uow.providers().save(p));
            auto spec = credential_spec(p.id());
            spec.key_vault_ref = ref.uri();
            auto c = must(credentials::integration_credential::create(ctx, clock_.now(), spec));
            if (revoked) must(c.revoke("leaked", clock_.now()));
            id = c.id();
            return uow.credentials().save(c);
        }));
        return id;
    }

    /** Whether `tenant`'s secret `name` still has versions in the vault (soft-deleted or not). */
    bool in_vault(std::string const& tenant, std::string const& name) { return vault_->versions(tenant, name).has_value(); }

    /** A provider registered in `ctx`'s tenant now (one outbox row); its id. */
    std::string registered_provider(request_context const& ctx) {
        std::string id;
        must(store_->transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
            auto p = must(providers::integration_provider::register_new(ctx, clock_.now(), provider_spec("p" + std::to_string(++n_))));
            id = p.id();
            return uow.providers().save(p);
        }));
        return id;
    }

    std::size_t count_runs(request_context const& ctx) {
        return must(storage::read_for(*store_, ctx, [](storage::unit_of_work& uow) { return uow.runs().list({}, {.limit = 500}); }))
            .items.size();
    }

    temp_dir dir_;
    manual_clock clock_;
    std::unique_ptr<storage::store> store_ = must(storage::open_sqlite_store({.path = dir_.file("i.db"), .clock = &clock_}));
    std::unique_ptr<blobs::blob_store> blobs_ = must(blobs::open_sqlite_blob_store({.path = dir_.file("b.db"), .clock = &clock_}));
    std::unique_ptr<credentials::local_secret_store> vault_ = must(credentials::open_local_secret_store(
        {.path = dir_.file("secrets.db"), .key_file = dir_.file("master.key"), .key_env = "", .clock = &clock_}));
    request_context a_ = request_context::for_tenant("tenant-a");
    request_context b_ = request_context::for_tenant("tenant-b");
    int n_ = 0;
};

TEST_F(retention_worker_test, runs_and_resolved_failures_are_archived_as_json_lines_then_deleted_after_180_days) {
    auto old_completed = finished_run(a_, false);
    auto old_failed = finished_run(a_, true);
    auto other_tenant = finished_run(b_, false);
    must(blobs_->put("tenant-a", "runs/" + old_completed + "/response", "old body"));
    clock_.advance(100 * 24h);
    auto recent = finished_run(a_, false);
    auto recent_body = must(blobs_->put("tenant-a", "runs/" + recent + "/response", "recent body"));
    clock_.advance(81 * 24h);  // the first runs are 181 days old, the recent one 81

    retention::retention_worker worker(*store_, *blobs_, *vault_, clock_);
    auto swept = must(worker.sweep());
    EXPECT_EQ(swept.runs_archived, 3u);
    EXPECT_EQ(swept.failures_archived, 1u);
    EXPECT_EQ(swept.blobs_purged, 2u);  // both bodies are past 30 days
    EXPECT_EQ(count_runs(a_), 1u);
    EXPECT_EQ(count_runs(b_), 0u);
    must(store_->read(a_, [&](storage::unit_of_work& uow) -> result<void> {
        EXPECT_EQ(uow.runs().find(old_failed).error(), errc::not_found);
        EXPECT_TRUE(must(uow.failures().list({}, {})).items.empty());
        EXPECT_EQ(must(uow.runs().find(recent)).id(), recent);
        return {};
    }));
    EXPECT_EQ(blobs_->get("tenant-a", recent_body).error(), errc::not_found);

    // The archive holds every deleted row, as JSON lines, in its own tenant's partition.
    auto first = std::min(old_completed, old_failed), last = std::max(old_completed, old_failed);
    auto lines = must(blobs_->get("tenant-a", archive_ref("tenant-a", "runs", first, last)));
    std::vector<std::string> ids;
    for (std::size_t start = 0, end; (end = lines.find('\n', start)) != std::string::npos; start = end + 1)
        ids.push_back(std::string(boost::json::parse(lines.substr(start, end - start)).at("runId").as_string()));
    EXPECT_EQ(ids, (std::vector<std::string>{first, last}));
    EXPECT_TRUE(blobs_->get("tenant-b", archive_ref("tenant-b", "runs", other_tenant, other_tenant)));
    EXPECT_EQ(blobs_->get("tenant-b", archive_ref("tenant-a", "runs", first, last)).error(), errc::not_found);

    // A second sweep finds nothing more, and the archives outlive the body purge.
    clock_.advance(100 * 24h);
    auto again = must(worker.sweep());
    EXPECT_EQ(again.runs_archived, 1u);  // the recent run has now passed 180 days too
    EXPECT_TRUE(blobs_->get("tenant-a", archive_ref("tenant-a", "runs", first, last)));
}

// Small run bodies live in the store with their run (run_service's write-behind): they go by age
// like the bodies in the blob store, only in their own tenant, and with their run.
TEST_F(retention_worker_test, run_bodies_kept_in_the_store_are_purged_after_30_days_and_deleted_with_their_run) {
    auto put = [&](request_context const& ctx, std::string const& run, storage::run_body part, std::string_view bytes) {
        return store_->transact(ctx, [&](storage::unit_of_work& uow) { return uow.runs().put_body(run, part, bytes); });
    };
    auto body = [&](std::string const& run, storage::run_body part) {
        return storage::read_for(*store_, a_, [&](storage::unit_of_work& uow) { return uow.runs().body(run, part); });
    };
    auto old_run = finished_run(a_, false);
    must(put(a_, old_run, storage::run_body::response, "old"));
    clock_.advance(20 * 24h);
    auto recent = finished_run(a_, false);
    must(put(a_, recent, storage::run_body::request, "recent"));
    EXPECT_EQ(put(b_, recent, storage::run_body::response, "other tenant").error(), errc::not_found);
    clock_.advance(11 * 24h);  // 31 and 11 days old

    retention::retention_worker worker(*store_, *blobs_, *vault_, clock_);
    auto swept = must(worker.sweep());
    EXPECT_EQ(swept.blobs_purged, 1u);
    EXPECT_EQ(swept.runs_archived, 0u);
    EXPECT_EQ(body(old_run, storage::run_body::response).error(), errc::not_found);
    EXPECT_EQ(must(body(recent, storage::run_body::request)), "recent");
    EXPECT_EQ(body(recent, storage::run_body::response).error(), errc::not_found);

    must(store_->transact(a_, [&](storage::unit_of_work& uow) { return uow.runs().remove(recent); }));
    EXPECT_EQ(body(recent, storage::run_body::request).error(), errc::not_found);
}

// One tenant whose archive cannot be written (the disk is full) stops neither its own purges,
// nor the other tenants' retention, nor the purges that would free space; the sweep reports the
// failure after them.
TEST_F(retention_worker_test, a_tenant_whose_archive_fails_stops_only_its_own_retention) {
    auto stuck = finished_run(a_, false);
    auto other = finished_run(b_, false);
    must(blobs_->put("tenant-a", "runs/" + stuck + "/response", "old body"));
    must(store_->transact(a_, [&](storage::unit_of_work& uow) {
        return uow.runs().put_body(stuck, storage::run_body::request, "old body in the store");
    }));
    auto claim = [&](std::string const& hash) {
        return store_->transact(a_, [&](storage::unit_of_work& uow) { return uow.idempotency().claim("k-stuck", hash); });
    };
    must(claim("first-request"));
    clock_.advance(181 * 24h);
    hooked_blobs blobs(*blobs_);
    blobs.refused_tenant = "tenant-a";
    retention::retention_worker worker(*store_, blobs, *vault_, clock_);
    auto swept = worker.sweep();
    ASSERT_FALSE(swept);
    EXPECT_EQ(swept.error(), errc::storage_failure);
    EXPECT_EQ(count_runs(a_), 1u) << "its run went without its archive";
    EXPECT_EQ(count_runs(b_), 0u) << "the other tenant's retention did not run";
    EXPECT_EQ(archive_keys("tenant-b", "runs", other, other).size(), 1u);
    EXPECT_TRUE(query_rows(dir_.file("b.db"), "SELECT key FROM blobs WHERE key LIKE 'runs/%'").empty())
        << "the purge of old bodies did not run";
    auto kept = storage::read_for(*store_, a_, [&](storage::unit_of_work& uow) { return uow.runs().body(stuck, storage::run_body::request); });
    EXPECT_EQ(kept.error(), errc::not_found) << "the failing tenant's own purges did not run";
    // The keys of runs that could not be archived stay: freed, they would let another request
    // replay the run still stored.
    EXPECT_EQ(claim("another-request").error(), errc::idempotency_key_reused);
    blobs.refused_tenant.reset();
    EXPECT_EQ(must(worker.sweep()).runs_archived, 1u);
    must(claim("another-request"));  // its run archived, the key is free
}

// A batch of 0 took no rows per step, so each step's loop never saw a short batch and the
// sweep never returned; it is refused before anything is read.
TEST_F(retention_worker_test, a_batch_of_zero_is_refused_with_what_to_set) {
    finished_run(a_, true);
    clock_.advance(400 * 24h);
    retention::retention_worker worker(*store_, *blobs_, *vault_, clock_, {.batch = 0});
    auto swept = worker.sweep();
    ASSERT_FALSE(swept);
    EXPECT_EQ(swept.error(), errc::invalid_argument);
    EXPECT_NE(swept.error().message().find("retention_options.batch"), std::string::npos) << swept.error().message();
    EXPECT_EQ(count_runs(a_), 1u);
    EXPECT_FALSE(retention::validate({.batch = 0}));
    EXPECT_TRUE(retention::validate({.batch = 1}));
    // The store takes at most 500 rows a step: 501 would stop each step after its first.
    EXPECT_TRUE(retention::validate({.batch = 500}));
    EXPECT_FALSE(retention::validate({.batch = 501}));
}

// Archiving reads a batch, writes its file, then deletes the rows: a delivery replayed between
// the file and the delete (Pending again, to be sent) was deleted, its new state nowhere. Only
// rows still as they were archived go; the replayed one stays, to be archived once it ends.
TEST_F(retention_worker_test, a_row_that_changes_after_it_was_archived_is_not_deleted) {
    webhooks::publisher pub(*store_, *blobs_, clock_);
    subscribe(a_, "order.*");
    std::vector<std::string> ids;
    for (int i = 0; i < 2; ++i) ids.push_back(must(pub.publish(a_, "order.paid", boost::json::value{{"n", i}})).delivery_ids.at(0));
    for (auto const& id : ids)
        must(store_->transact(a_, [&](storage::unit_of_work& uow) -> result<void> {
            auto d = must(uow.deliveries().find(id));
            must(d.record_success({0, 200, 4, {}, {}, clock_.now()}));
            return uow.deliveries().save(d);
        }));
    clock_.advance(91 * 24h);
    hooked_blobs hooked(*blobs_, "archive/");
    hooked.after_put = [&] {
        must(store_->transact(a_, [&](storage::unit_of_work& uow) -> result<void> {
            auto d = must(uow.deliveries().find(ids[1]));
            must(d.replay(3, clock_.now()));
            return uow.deliveries().save(d);
        }));
    };
    retention::retention_worker worker(*store_, hooked, *vault_, clock_);
    auto swept = must(worker.sweep());
    auto find = [&](std::string const& id) {
        return storage::read_for(*store_, a_, [&](storage::unit_of_work& uow) { return uow.deliveries().find(id); });
    };
    EXPECT_EQ(find(ids[0]).error(), errc::not_found);
    auto replayed = find(ids[1]);
    ASSERT_TRUE(replayed) << "a delivery replayed after its archive was written was deleted";
    EXPECT_EQ(replayed->status(), webhooks::delivery_status::pending);
    EXPECT_EQ(swept.deliveries_archived, 2u);  // both were written to the file
}

// Rows a batch kept can be the first and last of a later one, whose archive then had the first
// one's name: written over, it lost the rows the first batch deleted.
TEST_F(retention_worker_test, an_archive_is_never_written_over_by_a_later_batch_of_the_same_name) {
    webhooks::publisher pub(*store_, *blobs_, clock_);
    subscribe(a_, "order.*");
    std::vector<std::string> ids;
    for (int i = 0; i < 3; ++i) ids.push_back(must(pub.publish(a_, "order.paid", boost::json::value{{"n", i}})).delivery_ids.at(0));
    std::sort(ids.begin(), ids.end());  // a batch's order (ids made within a millisecond are not in it)
    auto update = [&](std::string const& id, auto change) {
        must(store_->transact(a_, [&](storage::unit_of_work& uow) -> result<void> {
            auto d = must(uow.deliveries().find(id));
            change(d);
            return uow.deliveries().save(d);
        }));
    };
    auto deliver = [&](webhooks::webhook_delivery& d) { must(d.record_success({0, 200, 4, {}, {}, clock_.now()})); };
    for (auto const& id : ids) update(id, deliver);
    clock_.advance(91 * 24h);
    hooked_blobs hooked(*blobs_, "archive/");
    hooked.after_put = [&] {  // the first and the last are replayed after the file is written
        for (auto const& id : {ids[0], ids[2]}) update(id, [&](webhooks::webhook_delivery& d) { must(d.replay(3, clock_.now())); });
    };
    retention::retention_worker worker(*store_, hooked, *vault_, clock_);
    EXPECT_EQ(must(worker.sweep()).deliveries_archived, 3u);
    for (auto const& id : {ids[0], ids[2]}) update(id, deliver);
    clock_.advance(91 * 24h);
    EXPECT_EQ(must(worker.sweep()).deliveries_archived, 2u);
    auto archived_ids = [&](std::string const& key) {
        auto lines = must(blobs_->get("tenant-a", blobs::reference("tenant-a", key)));
        std::vector<std::string> out;
        for (std::size_t start = 0, end; (end = lines.find('\n', start)) != std::string::npos; start = end + 1)
            out.push_back(std::string(boost::json::parse(lines.substr(start, end - start)).at("deliveryId").as_string()));
        return out;
    };
    auto keys = archive_keys("tenant-a", "deliveries", ids[0], ids[2]);
    ASSERT_EQ(keys.size(), 2u);
    std::vector<std::vector<std::string>> files{archived_ids(keys[0]), archived_ids(keys[1])};
    std::sort(files.begin(), files.end(), [](auto const& a, auto const& b) { return a.size() > b.size(); });
    EXPECT_EQ(files[0], ids) << "the first batch's file keeps the row it alone holds";
    EXPECT_EQ(files[1], (std::vector<std::string>{ids[0], ids[2]}));
    EXPECT_EQ(storage::read_for(*store_, a_, [&](storage::unit_of_work& uow) { return uow.deliveries().find(ids[1]); }).error(),
              errc::not_found);
}

// A sweep cut short between an archive and the delete writes the same file again, not a copy.
TEST_F(retention_worker_test, archiving_the_same_rows_again_leaves_one_file) {
    auto id = finished_run(a_, false);
    clock_.advance(181 * 24h);
    exec_sql(dir_.file("i.db"), "CREATE TRIGGER refuse_deletes BEFORE DELETE ON runs BEGIN SELECT RAISE(ABORT, 'refused'); END;");
    retention::retention_worker worker(*store_, *blobs_, *vault_, clock_);
    EXPECT_FALSE(worker.sweep());  // the file is written, the delete refused
    ASSERT_EQ(archive_keys("tenant-a", "runs", id, id).size(), 1u);
    exec_sql(dir_.file("i.db"), "DROP TRIGGER refuse_deletes;");
    EXPECT_EQ(must(worker.sweep()).runs_archived, 1u);
    EXPECT_EQ(archive_keys("tenant-a", "runs", id, id).size(), 1u);
    EXPECT_EQ(count_runs(a_), 0u);
}

// "Keep for ever" spelt as a huge age overflowed the cut-off into the future, and the sweep
// then archived and deleted every run: an age past 100 years (or none) is refused, and nothing goes.
TEST_F(retention_worker_test, an_age_past_a_century_or_of_nothing_is_refused_and_deletes_nothing) {
    finished_run(a_, false);
    clock_.advance(24h);
    retention::retention_worker worker(*store_, *blobs_, *vault_, clock_, {.runs = 200'000 * 24h, .bodies = 200'000 * 24h});
    auto swept = worker.sweep();
    ASSERT_FALSE(swept);
    EXPECT_NE(swept.error().message().find("retention_options.runs"), std::string::npos) << swept.error().message();
    EXPECT_EQ(count_runs(a_), 1u);
    EXPECT_TRUE(retention::validate({.runs = 36'525 * 24h}));
    EXPECT_FALSE(retention::validate({.outbox = 0h}));
    EXPECT_FALSE(retention::validate({.payloads = -24h}));
}

// The outbox is not a store of record: a published row goes 7 days after its publication, every
// tenant's in one pass in commit order and in bounded batches. A pending or dead row stays (the
// relay or an operator still needs it), and so does the newest row, whose rowid a new row would
// otherwise reuse.
TEST_F(retention_worker_test, published_outbox_rows_go_after_7_days_but_pending_dead_and_newest_rows_stay) {
    auto const path = dir_.file("i.db");
    auto rows_of = [&](std::string const& tenant) {
        return query_rows(path, "SELECT aggregate_id FROM outbox WHERE tenant_id = ? ORDER BY sequence", {tenant});
    };
    auto provider = [&](request_context const& ctx) { return registered_provider(ctx); };
    // Marks the pending rows published now, but those of `keep_pending`.
    auto publish = [&](std::string const& keep_pending = "") {
        std::vector<std::int64_t> sequences;
        for (auto const& r : must(store_->pending_events(500)))
            if (r.envelope.aggregate_id != keep_pending) sequences.push_back(r.sequence);
        must(store_->mark_published(sequences, clock_.now()));
    };
    finished_run(a_, false);
    finished_run(b_, false);
    publish();
    auto const a_old = rows_of("tenant-a"), b_old = rows_of("tenant-b");
    ASSERT_GT(b_old.size(), 2u);  // more than one batch
    auto dead = provider(a_);
    must(store_->park_dead(must(store_->pending_events(500)).at(0).sequence, clock_.now()));
    auto waiting = provider(a_);
    clock_.advance(6 * 24h);
    auto recent = provider(b_);
    publish(waiting);
    clock_.advance(25h);  // the first rows were published 7 days and 1 hour ago, `recent` 25 hours ago

    // One call deletes at most its limit, and says where the next starts.
    auto first = must(store_->remove_published(clock_.now() - 7 * 24h, 1));
    EXPECT_EQ(first.removed, 1u);
    EXPECT_FALSE(first.done);
    EXPECT_EQ(rows_of("tenant-a").size() + rows_of("tenant-b").size(), a_old.size() + b_old.size() + 2);

    retention::retention_worker worker(*store_, *blobs_, *vault_, clock_, {.batch = 2});
    EXPECT_EQ(must(worker.sweep()).outbox_removed, a_old.size() + b_old.size() - 1);
    EXPECT_EQ(rows_of("tenant-a"), (std::vector<std::string>{dead, waiting}));
    EXPECT_EQ(rows_of("tenant-b"), std::vector<std::string>{recent});

    // `recent` is old enough now, but it is the newest row: it stays until a newer one exists,
    // which sorts after it and is published after the rows pending before it.
    clock_.advance(7 * 24h);
    EXPECT_EQ(must(worker.sweep()).outbox_removed, 0u);
    EXPECT_EQ(rows_of("tenant-b"), std::vector<std::string>{recent});
    auto next = provider(a_);
    EXPECT_EQ(must(worker.sweep()).outbox_removed, 1u);
    EXPECT_TRUE(rows_of("tenant-b").empty());
    EXPECT_EQ(rows_of("tenant-a"), (std::vector<std::string>{dead, waiting, next}));
    std::vector<std::string> order;
    for (auto const& r : must(store_->pending_events(500))) order.push_back(r.envelope.aggregate_id);
    EXPECT_EQ(order, (std::vector<std::string>{waiting, next}));
}

// A global provider's events belong to no tenant (tenant_id ''), which no tenant's sweep
// reaches: their published rows go after 7 days like every tenant's.
TEST_F(retention_worker_test, published_outbox_rows_of_global_providers_go_after_7_days) {
    auto admin = a_;
    admin.admin = true;
    auto global_rows = [&] { return query_rows(dir_.file("i.db"), "SELECT aggregate_id FROM outbox WHERE tenant_id = ''", {}); };
    auto spec = provider_spec("shared");
    spec.scope = providers::provider_scope::global;
    must(store_->transact(admin, [&](storage::unit_of_work& uow) -> result<void> {
        auto p = must(providers::integration_provider::register_new(admin, clock_.now(), spec));
        must(p.activate(1));
        return uow.providers().save(p);
    }));
    auto const rows = global_rows();
    ASSERT_FALSE(rows.empty());
    std::vector<std::int64_t> sequences;
    for (auto const& r : must(store_->pending_events(500))) sequences.push_back(r.sequence);
    must(store_->mark_published(sequences, clock_.now()));
    finished_run(b_, false);  // newer rows: the newest row of the outbox always stays
    retention::retention_worker worker(*store_, *blobs_, *vault_, clock_, {.batch = 2});
    clock_.advance(6 * 24h);
    must(worker.sweep());
    EXPECT_EQ(global_rows(), rows) << "published 6 days ago: kept";
    clock_.advance(2 * 24h);
    EXPECT_EQ(must(worker.sweep()).outbox_removed, rows.size());
    EXPECT_TRUE(global_rows().empty());
}

// An Idempotency-Key outlives nothing it names: it goes with the runs of its age, oldest first
// (every key stayed for good).
TEST_F(retention_worker_test, idempotency_keys_go_with_the_runs_of_their_age) {
    finished_run(a_, false);  // the tenant has data to sweep
    auto claim = [&](std::string const& key, std::string const& hash) {
        return store_->transact(a_, [&](storage::unit_of_work& uow) { return uow.idempotency().claim(key, hash); });
    };
    must(claim("order-1", "first"));
    clock_.advance(100 * 24h);
    must(claim("order-2", "first"));
    clock_.advance(81 * 24h);  // order-1 is 181 days old, order-2 81
    retention::retention_worker worker(*store_, *blobs_, *vault_, clock_);
    EXPECT_EQ(must(worker.sweep()).keys_removed, 1u);
    EXPECT_TRUE(claim("order-1", "another")) << "forgotten, the key is free for a new request";
    EXPECT_EQ(claim("order-2", "another").error(), errc::idempotency_key_reused);
}

// A dead event released long after it was parked (dropped or replayed, so published now) sits
// among rows published long ago: the sweep passes over it rather than stopping there, which kept
// every later row for another week.
TEST_F(retention_worker_test, an_old_event_published_late_does_not_hold_back_the_outbox_sweep) {
    auto const path = dir_.file("i.db");
    auto provider = [&](request_context const& ctx) { return registered_provider(ctx); };
    auto first = provider(a_);
    auto dead = provider(a_);
    auto rows = must(store_->pending_events(500));
    ASSERT_EQ(rows.size(), 2u);
    must(store_->park_dead(rows[1].sequence, clock_.now()));
    std::vector<std::string> later;
    for (int i = 0; i < 5; ++i) later.push_back(provider(b_));
    std::vector<std::int64_t> sequences;
    for (auto const& r : must(store_->pending_events(500))) sequences.push_back(r.sequence);
    must(store_->mark_published(sequences, clock_.now()));
    clock_.advance(8 * 24h);
    must(store_->transact(a_, [&](storage::unit_of_work& uow) { return uow.release_dead_event(rows[1].envelope.event_id, false); }));
    auto newest = provider(b_);

    retention::retention_worker worker(*store_, *blobs_, *vault_, clock_);
    EXPECT_EQ(must(worker.sweep()).outbox_removed, 6u) << "the first row and the five after the dropped one";
    EXPECT_EQ(query_rows(path, "SELECT aggregate_id FROM outbox ORDER BY sequence"), (std::vector<std::string>{dead, newest}));
}

// An OutboxEvent failure nobody answered is archived with the other dead letters; its event goes
// with it, so the aggregate's later events, which waited behind it, go on instead of never.
TEST_F(retention_worker_test, an_unanswered_dead_events_failure_takes_its_event_and_frees_its_aggregate) {
    auto id = registered_provider(a_);
    must(store_->transact(a_, [&](storage::unit_of_work& uow) -> result<void> {
        auto p = must(uow.providers().find(id));
        must(p.deprecate("replaced"));
        return uow.providers().save(p);
    }));
    auto head = must(store_->pending_events(500)).at(0);
    ASSERT_EQ(head.envelope.aggregate_id, id);
    must(store_->park_dead(head.sequence, clock_.now(), a_, [&](storage::unit_of_work& uow) -> result<void> {
        auto f = must(failures::integration_failure::record(
            a_, clock_.now(), failures::failure_source::outbox_event, head.envelope.event_id, "",
            {failures::failure_category::poison, "publish_failed", "parked", failures::next_action::dead_letter, std::nullopt}));
        return uow.failures().save(f);
    }));
    auto of_provider = [&] {
        std::vector<std::string> types;
        for (auto const& r : must(store_->pending_events(500)))
            if (r.envelope.aggregate_id == id) types.push_back(r.envelope.event_type);
        return types;
    };
    ASSERT_TRUE(of_provider().empty());
    clock_.advance(179 * 24h);
    retention::retention_worker worker(*store_, *blobs_, *vault_, clock_);
    EXPECT_EQ(must(worker.sweep()).failures_archived, 0u);
    EXPECT_TRUE(of_provider().empty());
    clock_.advance(2 * 24h);
    EXPECT_EQ(must(worker.sweep()).failures_archived, 1u);
    EXPECT_EQ(of_provider(), std::vector<std::string>{"IntegrationProviderDeprecated"});
}

TEST_F(retention_worker_test, unresolved_failures_and_running_runs_are_kept) {
    std::string dead_letter;
    must(store_->transact(a_, [&](storage::unit_of_work& uow) -> result<void> {
        auto f = must(failures::integration_failure::record(
            a_, clock_.now(), failures::failure_source::run, "run-x", "prov-1",
            {failures::failure_category::transient, "http_503", "busy", failures::next_action::retry, clock_.now() + 1h}));
        // A run that failed for good leaves its failure open for a person to escalate; once
        // escalated it is theirs to resolve.
        auto escalated = must(failures::integration_failure::record(
            a_, clock_.now(), failures::failure_source::run, "run-y", "prov-1",
            {failures::failure_category::validation, "http_422", "bad", failures::next_action::dead_letter, std::nullopt}));
        must(escalated.escalate({"ops", "look at it", clock_.now(), std::nullopt}));
        auto dead = must(failures::integration_failure::record(
            a_, clock_.now(), failures::failure_source::run, "run-z", "prov-1",
            {failures::failure_category::validation, "http_422", "bad", failures::next_action::dead_letter, std::nullopt}));
        dead_letter = dead.id();
        if (auto r = uow.failures().save(escalated); !r) return r;
        if (auto r = uow.failures().save(dead); !r) return r;
        return uow.failures().save(f);
    }));
    finished_run(a_, false);
    clock_.advance(400 * 24h);
    retention::retention_worker worker(*store_, *blobs_, *vault_, clock_, {.runs = 10'000h});
    auto swept = must(worker.sweep());
    EXPECT_EQ(swept.failures_archived, 1u) << "the dead letter nobody escalated: nothing else would ever end it";
    EXPECT_EQ(swept.runs_archived, 0u);  // runs are kept 10,000 hours here
    auto left = must(storage::read_for(*store_, a_, [](storage::unit_of_work& uow) { return uow.failures().list({}, {}); })).items;
    EXPECT_EQ(left.size(), 2u);
    for (auto const& f : left) EXPECT_NE(f.id(), dead_letter);
}

// An OAuth2 flow a user never finished keeps the client secret and the PKCE verifier in the vault;
// without the sweep only the tenant's next flow would remove it, and a tenant may never start one.
TEST_F(retention_worker_test, expired_authorization_flows_go_with_their_secrets) {
    auto start = [&](std::string const& state, std::string const& secret, time_point expires) {
        auto ref = must(vault_->put("tenant-a", secret, secret_bytes("{\"clientSecret\":\"cs\"}")));
        must(store_->transact(a_, [&](storage::unit_of_work& uow) {
            return uow.authorizations().add({state, "prov-1", std::nullopt, "alice", "{}", ref.uri(), expires});
        }));
    };
    start(std::string(64, 'a'), "flow-old", clock_.now() + 10min);
    start(std::string(64, 'b'), "flow-live", clock_.now() + 2h);
    clock_.advance(1h);
    retention::retention_worker worker(*store_, *blobs_, *vault_, clock_);
    auto swept = must(worker.sweep());
    EXPECT_EQ(swept.authorizations_purged, 1u);
    EXPECT_EQ(vault_->get("tenant-a", {"local", "tenant-a", "flow-old", 0}).error(), errc::not_found) << "soft-deleted";
    EXPECT_TRUE(vault_->get("tenant-a", {"local", "tenant-a", "flow-live", 0})) << "a flow still in time keeps its secret";
    auto live = must(storage::transact_for(*store_, a_, [&](storage::unit_of_work& uow) {
        return uow.authorizations().take(std::string(64, 'b'), clock_.now());
    }));
    EXPECT_EQ(live.secret_ref, (credentials::secret_ref{"local", "tenant-a", "flow-live", 1}.uri()));
}

TEST_F(retention_worker_test, webhook_payloads_are_purged_after_30_days_and_finished_deliveries_archived_after_90) {
    webhooks::publisher pub(*store_, *blobs_, clock_);
    // Subscriptions only: no connection makes these tenants known to the sweep.
    for (auto const* ctx : {&a_, &b_}) subscribe(*ctx, "order.*");
    auto delivered_early = must(pub.publish(a_, "order.paid", boost::json::value{{"n", 1}})).delivery_ids.at(0);
    auto delivered_late = must(pub.publish(a_, "order.paid", boost::json::value{{"n", 2}})).delivery_ids.at(0);
    auto unheard = must(pub.publish(a_, "invoice.paid", boost::json::value{{"n", 3}}));  // no subscriber
    EXPECT_TRUE(unheard.delivery_ids.empty());
    auto in_b = must(pub.publish(b_, "order.paid", boost::json::value{{"n", 4}})).delivery_ids.at(0);
    auto deliver = [&](request_context const& ctx, std::string const& id) {
        must(store_->transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
            auto d = must(uow.deliveries().find(id));
            must(d.record_success({0, 200, 4, {}, {}, clock_.now()}));
            return uow.deliveries().save(d);
        }));
    };
    auto find = [&](request_context const& ctx, std::string const& id) {
        return storage::read_for(*store_, ctx, [&](storage::unit_of_work& uow) { return uow.deliveries().find(id); });
    };
    deliver(a_, delivered_early);
    deliver(b_, in_b);
    auto payload = *must(find(a_, delivered_early)).data().payload_ref;
    retention::retention_worker worker(*store_, *blobs_, *vault_, clock_);

    clock_.advance(29 * 24h);
    auto young = must(worker.sweep());
    EXPECT_EQ(young.payloads_purged, 0u);
    EXPECT_EQ(young.blobs_purged, 0u);
    EXPECT_TRUE(blobs_->get("tenant-a", payload));

    clock_.advance(2 * 24h);  // day 31: every payload is past 30 days, whatever its delivery's status
    auto day31 = must(worker.sweep());
    EXPECT_EQ(day31.payloads_purged, 3u);  // two in tenant a, one in tenant b
    EXPECT_EQ(day31.blobs_purged, 1u);     // the payload no delivery referenced
    EXPECT_EQ(day31.deliveries_archived, 0u);
    EXPECT_EQ(blobs_->get("tenant-a", payload).error(), errc::not_found);
    EXPECT_FALSE(must(find(a_, delivered_late)).data().payload_ref);
    EXPECT_FALSE(must(find(b_, in_b)).data().payload_ref);
    EXPECT_EQ(pub.replay(a_, delivered_early).error(), errc::invalid_state);  // nothing left to send again

    clock_.advance(29 * 24h);  // day 60: the second delivery finishes late
    deliver(a_, delivered_late);
    clock_.advance(31 * 24h);  // day 91
    auto day91 = must(worker.sweep());
    EXPECT_EQ(day91.deliveries_archived, 2u);  // tenant a's early one and tenant b's
    EXPECT_EQ(day91.events_removed, 4u);
    EXPECT_EQ(day91.payloads_purged, 0u);
    EXPECT_EQ(find(a_, delivered_early).error(), errc::not_found);
    EXPECT_EQ(find(b_, in_b).error(), errc::not_found);
    EXPECT_TRUE(find(a_, delivered_late)) << "finished 31 days ago: kept";
    auto lines = must(blobs_->get("tenant-a", archive_ref("tenant-a", "deliveries", delivered_early, delivered_early)));
    auto archived = boost::json::parse(lines.substr(0, lines.find('\n')));
    EXPECT_EQ(archived.at("deliveryId").as_string(), delivered_early);
    EXPECT_EQ(archived.at("status").as_string(), "Delivered");
    EXPECT_EQ(archived.at("deliveryAttempts").as_array().size(), 1u);
    EXPECT_TRUE(blobs_->get("tenant-b", archive_ref("tenant-b", "deliveries", in_b, in_b)));

    clock_.advance(60 * 24h);
    EXPECT_EQ(must(worker.sweep()).deliveries_archived, 1u);
    EXPECT_EQ(must(worker.sweep()).deliveries_archived, 0u);
}

// Purging a payload saves its delivery, which gave up a worker's lease on it: the next claim sent
// the delivery again beside the attempt in flight. One being sent keeps its payload this sweep.
TEST_F(retention_worker_test, the_payload_of_a_delivery_being_sent_is_left_to_a_later_sweep) {
    webhooks::publisher pub(*store_, *blobs_, clock_);
    subscribe(a_, "order.*");
    auto id = must(pub.publish(a_, "order.paid", boost::json::value{{"n", 1}})).delivery_ids.at(0);
    clock_.advance(31 * 24h);
    auto claimed = must(store_->claim_deliveries(clock_.now(), "worker-1", clock_.now() + 60s, 10));
    ASSERT_EQ(claimed.deliveries.size(), 1u);
    retention::retention_worker worker(*store_, *blobs_, *vault_, clock_);
    EXPECT_EQ(must(worker.sweep()).payloads_purged, 0u);
    EXPECT_TRUE(must(storage::read_for(*store_, a_, [&](storage::unit_of_work& uow) { return uow.deliveries().find(id); }))
                    .data()
                    .payload_ref);
    EXPECT_TRUE(must(store_->claim_deliveries(clock_.now(), "worker-2", clock_.now() + 60s, 10)).deliveries.empty())
        << "still worker-1's";
    clock_.advance(61s);  // worker-1 stopped: its lease ran out
    EXPECT_EQ(must(worker.sweep()).payloads_purged, 1u);
}

// A worker may claim a delivery while the purge works through the batch it read: the purge
// forgets references in one transaction that leaves claimed deliveries alone, and deletes blobs
// only after it (before, it deleted the blobs, then saved the claimed delivery, which ended the
// lease: the next claim sent it beside the attempt in flight).
TEST_F(retention_worker_test, a_delivery_claimed_while_its_payload_is_purged_keeps_its_lease) {
    webhooks::publisher pub(*store_, *blobs_, clock_);
    subscribe(a_, "order.*");
    must(pub.publish(a_, "order.paid", boost::json::value{{"n", 1}}));
    must(pub.publish(a_, "order.paid", boost::json::value{{"n", 2}}));
    clock_.advance(31 * 24h);
    hooked_blobs blobs(*blobs_);
    std::string claimed;
    blobs.before_remove = [&] {
        // Another worker's claim, after the purge read its batch: both deliveries are due.
        auto got = must(store_->claim_deliveries(clock_.now(), "worker-1", clock_.now() + 60s, 1)).deliveries;
        if (!got.empty()) claimed = got[0].delivery.id();
    };
    retention::retention_worker worker(*store_, blobs, *vault_, clock_);
    must(worker.sweep());
    ASSERT_FALSE(claimed.empty());
    auto held = [&](std::string const& id) {
        return must(storage::read_for(*store_, a_, [&](storage::unit_of_work& uow) { return uow.deliveries().leased(id, clock_.now()); }));
    };
    std::size_t leased = 0;
    for (auto const& d : must(storage::read_for(*store_, a_, [&](storage::unit_of_work& uow) {
             return uow.deliveries().list({}, {.limit = 10});
         })).items)
        if (held(d.id())) ++leased;
    EXPECT_EQ(leased, 1u) << "worker-1's claim survived the purge";
    EXPECT_TRUE(held(claimed));
    for (auto const& c : must(store_->claim_deliveries(clock_.now(), "worker-2", clock_.now() + 60s, 10)).deliveries)
        EXPECT_NE(c.delivery.id(), claimed) << "worker-1's delivery is handed out a second time";
}

TEST_F(retention_worker_test, webhook_retention_follows_its_options) {
    webhooks::publisher pub(*store_, *blobs_, clock_);
    subscribe(a_, "*");
    must(pub.publish(a_, "order.paid", boost::json::value{{"n", 1}}));
    clock_.advance(2h);
    retention::retention_worker worker(*store_, *blobs_, *vault_, clock_, {.deliveries = 1h, .payloads = 1h});
    auto swept = must(worker.sweep());
    EXPECT_EQ(swept.payloads_purged, 1u);
    EXPECT_EQ(swept.events_removed, 1u);
    EXPECT_EQ(swept.deliveries_archived, 0u);  // still Pending
}

// storage.md: connections are kept for their lifetime and 90 days. A Retired one goes 90 days
// after its retirement, archived first, with its inbound webhook; that webhook's secrets are
// soft-deleted before the rows go, and destroyed when the vault's recovery window ends.
TEST_F(retention_worker_test, retired_connections_go_90_days_after_retirement_and_their_inbound_secrets_with_them) {
    auto live = connection(a_, false, {"inbound-live"});
    auto old = connection(a_, true, {"inbound-old", "inbound-old-replaced"});
    auto other_tenant = connection(b_, true);
    clock_.advance(50 * 24h);
    auto recent = connection(a_, true);
    clock_.advance(41 * 24h);  // the first are 91 days retired, `recent` 41

    retention::retention_worker worker(*store_, *blobs_, *vault_, clock_);
    auto swept = must(worker.sweep());
    EXPECT_EQ(swept.connections_archived, 2u);
    EXPECT_EQ(swept.secrets_purged, 0u);
    must(store_->read(a_, [&](storage::unit_of_work& uow) -> result<void> {
        EXPECT_EQ(uow.connections().find(old).error(), errc::not_found);
        EXPECT_EQ(uow.inbound_webhooks().find(old).error(), errc::not_found);
        EXPECT_TRUE(uow.connections().find(live).has_value());
        EXPECT_TRUE(uow.inbound_webhooks().find(live).has_value());
        EXPECT_TRUE(uow.connections().find(recent).has_value());
        return {};
    }));
    must(store_->read(b_, [&](storage::unit_of_work& uow) -> result<void> {
        EXPECT_EQ(uow.connections().find(other_tenant).error(), errc::not_found);
        return {};
    }));
    auto archived = must(blobs_->get("tenant-a", archive_ref("tenant-a", "connections", old, old)));
    EXPECT_EQ(boost::json::parse(archived).at("connectionId").as_string(), old);
    EXPECT_EQ(archived.find("whsec-"), std::string::npos);
    // Unreadable now, recoverable until the window ends; the live connection's is untouched.
    EXPECT_EQ(vault_->get("tenant-a", {vault_->name(), "tenant-a", "inbound-old", 0}).error(), errc::not_found);
    EXPECT_TRUE(in_vault("tenant-a", "inbound-old-replaced"));
    EXPECT_EQ(must(vault_->get("tenant-a", {vault_->name(), "tenant-a", "inbound-live", 0})).view(), "whsec-inbound-live");

    clock_.advance(90 * 24h);
    swept = must(worker.sweep());
    EXPECT_EQ(swept.connections_archived, 1u);  // `recent`
    EXPECT_EQ(swept.secrets_purged, 2u);
    EXPECT_FALSE(in_vault("tenant-a", "inbound-old"));
    EXPECT_FALSE(in_vault("tenant-a", "inbound-old-replaced"));
    EXPECT_TRUE(in_vault("tenant-a", "inbound-live"));
}

// storage.md: credential metadata is kept for its lifetime and an audit window (180 days here,
// as long as the failures that name it). One a live connection still names stays.
TEST_F(retention_worker_test, revoked_credentials_go_after_the_audit_window_unless_a_live_connection_names_them) {
    auto active = credential(a_, "key-active", false);
    auto revoked = credential(a_, "key-revoked", true);
    auto named = credential(a_, "key-named", true);
    must(store_->transact(a_, [&](storage::unit_of_work& uow) -> result<void> {
        auto p = active_provider(a_, clock_.now(), "named-by");
        must(uow.providers().save(p));
        auto spec = connection_spec();
        spec.credential_id = named;
        auto naming = must(connections::integration_connection::create(a_, clock_.now(), p, spec));
        return uow.connections().save(naming);
    }));
    clock_.advance(179 * 24h);
    retention::retention_worker worker(*store_, *blobs_, *vault_, clock_);
    EXPECT_EQ(must(worker.sweep()).credentials_archived, 0u);
    clock_.advance(2 * 24h);
    auto swept = must(worker.sweep());
    EXPECT_EQ(swept.credentials_archived, 1u);
    must(store_->read(a_, [&](storage::unit_of_work& uow) -> result<void> {
        EXPECT_EQ(uow.credentials().find(revoked).error(), errc::not_found);
        EXPECT_TRUE(uow.credentials().find(named).has_value());
        EXPECT_TRUE(uow.credentials().find(active).has_value());
        return {};
    }));
    auto archived = must(blobs_->get("tenant-a", archive_ref("tenant-a", "credentials", revoked, revoked)));
    EXPECT_EQ(boost::json::parse(archived).at("credentialId").as_string(), revoked);
    EXPECT_EQ(archived.find("sk-key"), std::string::npos);
    // Revoking here did not go through the service, which deletes the secret itself: the sweep
    // does it before the row goes, and the vault destroys it 90 days later.
    EXPECT_EQ(vault_->get("tenant-a", {vault_->name(), "tenant-a", "key-revoked", 0}).error(), errc::not_found);
    EXPECT_EQ(must(vault_->get("tenant-a", {vault_->name(), "tenant-a", "key-active", 0})).view(), "sk-key-active");
    clock_.advance(90 * 24h);
    EXPECT_EQ(must(worker.sweep()).secrets_purged, 1u);
    EXPECT_FALSE(in_vault("tenant-a", "key-revoked"));
    EXPECT_TRUE(in_vault("tenant-a", "key-named"));
}

}  // namespace
}  // namespace integration::testing
