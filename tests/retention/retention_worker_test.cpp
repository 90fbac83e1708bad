#include <integration/backends/sqlite/sqlite_blob_store.hpp>
#include <integration/services/retention_worker.hpp>

#include "storage/fixtures.hpp"

#include <integration/core/id.hpp>
#include <integration/backends/sqlite/sqlite_store.hpp>

#include <boost/json/parse.hpp>

#include <filesystem>

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

    std::size_t count_runs(request_context const& ctx) {
        return must(storage::read_for(*store_, ctx, [](storage::unit_of_work& uow) { return uow.runs().list({}, {.limit = 500}); }))
            .items.size();
    }

    temp_dir dir_;
    manual_clock clock_;
    std::unique_ptr<storage::store> store_ = must(storage::open_sqlite_store({.path = dir_.file("i.db"), .clock = &clock_}));
    std::unique_ptr<blobs::blob_store> blobs_ = must(blobs::open_sqlite_blob_store({.path = dir_.file("b.db"), .clock = &clock_}));
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

    retention::retention_worker worker(*store_, *blobs_, clock_);
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
    auto lines = must(blobs_->get("tenant-a", "blob://tenant-a/archive/runs/" + first + "_" + last + ".jsonl"));
    std::vector<std::string> ids;
    for (std::size_t start = 0, end; (end = lines.find('\n', start)) != std::string::npos; start = end + 1)
        ids.push_back(std::string(boost::json::parse(lines.substr(start, end - start)).at("runId").as_string()));
    EXPECT_EQ(ids, (std::vector<std::string>{first, last}));
    EXPECT_TRUE(blobs_->get("tenant-b", "blob://tenant-b/archive/runs/" + other_tenant + "_" + other_tenant + ".jsonl"));
    EXPECT_EQ(blobs_->get("tenant-b", "blob://tenant-a/archive/runs/" + first + "_" + last + ".jsonl").error(), errc::not_found);

    // A second sweep finds nothing more, and the archives outlive the body purge.
    clock_.advance(100 * 24h);
    auto again = must(worker.sweep());
    EXPECT_EQ(again.runs_archived, 1u);  // the recent run has now passed 180 days too
    EXPECT_TRUE(blobs_->get("tenant-a", "blob://tenant-a/archive/runs/" + first + "_" + last + ".jsonl"));
}

TEST_F(retention_worker_test, unresolved_failures_and_running_runs_are_kept) {
    must(store_->transact(a_, [&](storage::unit_of_work& uow) -> result<void> {
        auto f = must(failures::integration_failure::record(
            a_, clock_.now(), failures::failure_source::run, "run-x", "prov-1",
            {failures::failure_category::transient, "http_503", "busy", failures::next_action::retry, clock_.now() + 1h}));
        return uow.failures().save(f);
    }));
    finished_run(a_, false);
    clock_.advance(400 * 24h);
    retention::retention_worker worker(*store_, *blobs_, clock_, {.runs = 10'000h});
    auto swept = must(worker.sweep());
    EXPECT_EQ(swept.failures_archived, 0u);
    EXPECT_EQ(swept.runs_archived, 0u);  // runs are kept 10,000 hours here
    EXPECT_EQ(must(storage::read_for(*store_, a_, [](storage::unit_of_work& uow) { return uow.failures().list({}, {}); })).items.size(), 1u);
}

}  // namespace
}  // namespace integration::testing
