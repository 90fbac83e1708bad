#include <integration/services/failure_service.hpp>
#include <integration/domain/run.hpp>

#include "storage/fixtures.hpp"

#include <integration/backends/sqlite/sqlite_store.hpp>

namespace integration::testing {
namespace {

using failures::failure_service;
using failures::source_outcome;

class failure_service_test : public ::testing::Test {
protected:
    std::string record(request_context const& ctx, std::string run_id) {
        auto now = clock_.now();
        auto f = must(failures::integration_failure::record(
            ctx, now, failures::failure_source::run, std::move(run_id), "prov-1",
            {failures::failure_category::transient, "http_503", "busy", failures::next_action::retry, now}));
        must(store_->transact(ctx, [&](storage::unit_of_work& uow) { return uow.failures().save(f); }));
        return f.id();
    }

    temp_dir dir_;
    manual_clock clock_;
    std::unique_ptr<storage::store> store_ = must(storage::open_sqlite_store({.path = dir_.file("i.db"), .clock = &clock_}));
    failure_service failures_{*store_, clock_};
    request_context a_ = request_context::for_tenant("tenant-a", "alice");
    request_context b_ = request_context::for_tenant("tenant-b", "bob");
};

TEST_F(failure_service_test, escalates_with_an_audit_record_in_the_callers_tenant_only) {
    auto id = record(a_, "run-1");
    EXPECT_EQ(failures_.escalate(b_, id, "not yours").error(), errc::not_found);
    EXPECT_EQ(failures_.escalate(a_, "fail-unknown", "why").error(), errc::not_found);
    EXPECT_EQ(failures_.escalate(a_, id, "").error(), errc::invalid_argument);
    auto f = must(failures_.escalate(a_, id, "vendor down for a day", "OPS-42"));
    EXPECT_EQ(f.data().next_action, failures::next_action::escalate);
    ASSERT_EQ(f.data().escalations.size(), 1u);
    EXPECT_EQ(f.data().escalations[0].escalated_by, "alice");
    EXPECT_EQ(f.data().escalations[0].reason, "vendor down for a day");
    EXPECT_EQ(f.data().escalations[0].ticket_ref, std::optional<std::string>("OPS-42"));
    EXPECT_EQ(f.data().escalations[0].escalated_at, truncate_ms(clock_.now()));
    EXPECT_EQ(must(failures_.find(a_, id)).data().escalations.size(), 1u);  // stored
    auto events = must(store_->pending_events(100));
    EXPECT_EQ(events.back().envelope.event_type, "IntegrationFailureEscalated");
}

TEST_F(failure_service_test, resolves_only_a_failure_whose_source_succeeded_or_was_dead_lettered) {
    auto id = record(a_, "run-1");
    EXPECT_EQ(failures_.resolve(a_, id, source_outcome::in_progress).error(), errc::invariant_violation);
    EXPECT_EQ(failures_.resolve(b_, id, source_outcome::succeeded).error(), errc::not_found);
    auto f = must(failures_.resolve(a_, id, source_outcome::succeeded));
    EXPECT_TRUE(f.resolved());
    EXPECT_EQ(failures_.resolve(a_, id, source_outcome::succeeded).error(), errc::invalid_state);
    EXPECT_EQ(failures_.escalate(a_, id, "too late").error(), errc::invalid_state);
}

// A run still Running (waiting for the retry worker) keeps its failure open: resolving it would
// close the record of a run that may yet fail for good.
TEST_F(failure_service_test, a_failure_of_a_run_still_under_way_stays_open) {
    auto provider = active_provider(a_, clock_.now(), "acme");
    auto conn = must(connections::integration_connection::create(a_, clock_.now(), provider, connection_spec()));
    auto run = must(runs::integration_run::create(a_, clock_.now(), conn, "sms.send"));
    must(store_->transact(a_, [&](storage::unit_of_work& uow) -> result<void> {
        must(uow.providers().save(provider));
        must(uow.connections().save(conn));
        return uow.runs().save(run);
    }));
    auto id = record(a_, run.id());
    auto refused = failures_.resolve(a_, id, source_outcome::succeeded);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error(), errc::invalid_state);
    EXPECT_NE(refused.error().detail().find("still"), std::string::npos) << refused.error().detail();
    EXPECT_FALSE(must(failures_.find(a_, id)).resolved());
}

TEST_F(failure_service_test, lists_by_run_and_unresolved_in_the_callers_tenant) {
    auto first = record(a_, "run-1");
    auto second = record(a_, "run-2");
    record(b_, "run-1");
    must(failures_.resolve(a_, first, source_outcome::succeeded));
    EXPECT_EQ(must(failures_.list(a_, {}, {})).items.size(), 2u);
    auto by_run = must(failures_.list(a_, {.run_id = "run-1"}, {}));
    ASSERT_EQ(by_run.items.size(), 1u);
    EXPECT_EQ(by_run.items[0].id(), first);
    auto open = must(failures_.list(a_, {.unresolved_only = true}, {}));
    ASSERT_EQ(open.items.size(), 1u);
    EXPECT_EQ(open.items[0].id(), second);
    auto paged = must(failures_.list(a_, {}, {.limit = 1}));
    EXPECT_EQ(paged.items.size(), 1u);
    EXPECT_FALSE(paged.next_cursor.empty());
}

}  // namespace
}  // namespace integration::testing
