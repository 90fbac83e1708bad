// A dead outbox event is not the end of its aggregate: a person replays it (published again, before
// the aggregate's later events) or drops it (its later events go on); a listener that throws is
// one failed publication, not a stalled relay; a clock stepped back does not hold an event for
// the length of the step. All against a real SQLite file.

#include <integration/backends/sqlite/sqlite_store.hpp>
#include <integration/services/failure_service.hpp>
#include <integration/services/outbox_relay.hpp>

#include "storage/fixtures.hpp"
#include "support/sqlite_file.hpp"

#include <stdexcept>

namespace integration::testing {
namespace {

using namespace std::chrono_literals;

/** Refuses (or throws on) the events of one aggregate while `down`; records what it took. */
class gate_publisher final : public events::event_publisher {
public:
    explicit gate_publisher(std::string aggregate_id) : aggregate_(std::move(aggregate_id)) {}
    bool down = true;
    bool throws = false;
    int refused = 0;
    std::vector<events::event_envelope> seen;
    result<void> publish(events::event_envelope const& e) override {
        if (down && e.aggregate_id == aggregate_) {
            ++refused;
            if (throws) throw std::runtime_error("listener bug: no member 'amount'");
            return error{errc::unavailable, "the consumer is down"};
        }
        seen.push_back(e);
        return {};
    }
    std::vector<std::string> of(std::string const& aggregate_id) const {
        std::vector<std::string> types;
        for (auto const& e : seen)
            if (e.aggregate_id == aggregate_id) types.push_back(e.event_type);
        return types;
    }

private:
    std::string aggregate_;
};

class outbox_redrive_test : public ::testing::Test {
protected:
    /** A provider registered, then deprecated: two events of one aggregate, in that order. */
    std::string provider_with_two_events(request_context const& ctx, std::string const& key) {
        std::string id;
        must(store_->transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
            auto p = must(providers::integration_provider::register_new(ctx, clock_.now(), provider_spec(key)));
            id = p.id();
            return uow.providers().save(p);
        }));
        must(store_->transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
            auto p = must(uow.providers().find(id));
            must(p.deprecate("replaced"));
            return uow.providers().save(p);
        }));
        return id;
    }
    /** The tenant's open OutboxEvent failures. */
    std::vector<failures::integration_failure> dead_letters(request_context const& ctx) {
        std::vector<failures::integration_failure> out;
        for (auto& f : must(failures_.list(ctx, {.unresolved_only = true}, {})).items)
            if (f.data().source == failures::failure_source::outbox_event) out.push_back(std::move(f));
        return out;
    }

    temp_dir dir_;
    manual_clock clock_;
    std::unique_ptr<storage::store> store_ = must(storage::open_sqlite_store({.path = dir_.file("i.db"), .clock = &clock_}));
    failures::failure_service failures_{*store_, clock_};
    request_context a_ = request_context::for_tenant("tenant-a", "alice");
    request_context b_ = request_context::for_tenant("tenant-b", "bob");
};

std::vector<std::string> const registered_then_deprecated{"IntegrationProviderRegistered", "IntegrationProviderDeprecated"};

TEST_F(outbox_redrive_test, a_replayed_dead_event_is_published_before_its_aggregates_later_events) {
    auto id = provider_with_two_events(a_, "acme");
    gate_publisher pub(id);
    events::outbox_relay relay(*store_, pub, {.batch = 10, .clock = &clock_, .max_attempts = 1});
    must(relay.run_once());  // the registration fails once and is parked; the deprecation waits behind it
    ASSERT_EQ(relay.stats().dead, 1u);
    auto dead = dead_letters(a_);
    ASSERT_EQ(dead.size(), 1u);

    // Replayed while the consumer is still down: parked again, with a failure of its own.
    EXPECT_EQ(failures_.replay(b_, dead[0].id()).error(), errc::not_found) << "another tenant's failure";
    auto replayed = must(failures_.replay(a_, dead[0].id()));
    EXPECT_TRUE(replayed.resolved());
    EXPECT_EQ(failures_.replay(a_, dead[0].id()).error(), errc::invalid_state) << "resolved by its replay";
    clock_.advance(1h);
    must(relay.run_once());
    EXPECT_EQ(relay.stats().dead, 2u);
    auto again = dead_letters(a_);
    ASSERT_EQ(again.size(), 1u);
    EXPECT_NE(again[0].id(), dead[0].id());
    EXPECT_EQ(again[0].data().event_id, dead[0].data().event_id);

    // Back up: nothing of the aggregate goes until the replay, then both, in order.
    pub.down = false;
    clock_.advance(1h);
    for (int i = 0; i < 3; ++i) must(relay.run_once());
    EXPECT_TRUE(pub.of(id).empty()) << "the deprecation overtook the dead registration";
    must(failures_.replay(a_, again[0].id()));
    clock_.advance(1s);
    must(relay.run_once());
    EXPECT_EQ(pub.of(id), registered_then_deprecated);
    EXPECT_TRUE(dead_letters(a_).empty());
    EXPECT_EQ(failures_.replay(a_, again[0].id()).error(), errc::invalid_state);
}

TEST_F(outbox_redrive_test, resolving_a_dead_events_failure_drops_it_and_lets_its_aggregate_go_on) {
    auto id = provider_with_two_events(a_, "acme");
    gate_publisher pub(id);
    events::outbox_relay relay(*store_, pub, {.batch = 10, .clock = &clock_, .max_attempts = 1});
    must(relay.run_once());
    auto dead = dead_letters(a_);
    ASSERT_EQ(dead.size(), 1u);
    pub.down = false;
    EXPECT_EQ(failures_.resolve(b_, dead[0].id(), failures::source_outcome::dead_lettered).error(), errc::not_found);
    must(failures_.resolve(a_, dead[0].id(), failures::source_outcome::dead_lettered));
    EXPECT_EQ(failures_.replay(a_, dead[0].id()).error(), errc::invalid_state) << "resolved: its event is gone";
    clock_.advance(1s);
    must(relay.run_once());
    EXPECT_EQ(pub.of(id), std::vector<std::string>{"IntegrationProviderDeprecated"}) << "the dropped event was published";
    must(relay.run_once());
    EXPECT_EQ(pub.of(id).size(), 1u);
}

TEST_F(outbox_redrive_test, only_a_dead_outbox_events_failure_is_replayed) {
    auto run_failure = must(failures::integration_failure::record(
        a_, clock_.now(), failures::failure_source::run, "run-1", "prov-1",
        {failures::failure_category::transient, "http_503", "busy", failures::next_action::dead_letter, std::nullopt}));
    must(store_->transact(a_, [&](storage::unit_of_work& uow) { return uow.failures().save(run_failure); }));
    auto refused = failures_.replay(a_, run_failure.id());
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error(), errc::invalid_state);
    EXPECT_FALSE(must(failures_.find(a_, run_failure.id())).resolved());
    EXPECT_EQ(failures_.replay(a_, "fail-01JD3Q8V6X4T2M9R5B7N1K0FZC").error(), errc::not_found);
}

// A listener that throws on one event failed that event: the events published before it in the
// batch are marked (not sent again at every pass), the events after it go, and the one it threw
// on is counted, waits its backoff and is parked like any failed event.
TEST_F(outbox_redrive_test, a_listener_that_throws_fails_only_its_event) {
    auto before = provider_with_two_events(a_, "first");
    auto bad = provider_with_two_events(a_, "bad");
    auto after = provider_with_two_events(b_, "after");
    gate_publisher pub(bad);
    pub.throws = true;
    events::outbox_relay relay(*store_, pub, {.batch = 10, .clock = &clock_, .max_attempts = 2});
    std::size_t published = 0;
    EXPECT_NO_THROW(published = must(relay.run_once()));
    EXPECT_EQ(published, 4u);
    EXPECT_EQ(relay.stats().failed_attempts, 1u);
    clock_.advance(1h);
    EXPECT_NO_THROW(must(relay.run_once()));
    EXPECT_EQ(pub.refused, 2);
    EXPECT_EQ(relay.stats().dead, 1u);
    EXPECT_EQ(pub.of(before), registered_then_deprecated) << "published once each";
    EXPECT_EQ(pub.of(after), registered_then_deprecated);
    auto dead = dead_letters(a_);
    ASSERT_EQ(dead.size(), 1u);
    EXPECT_NE(dead[0].data().message.find("a listener threw: listener bug"), std::string::npos) << dead[0].data().message;
}

// The relay holds a failed event for at most a week; a clock stepped back further (a host that
// ran days fast, corrected) held it, and its aggregate, for the whole step.
TEST_F(outbox_redrive_test, a_held_event_is_due_after_its_wait_even_when_the_clock_stepped_back) {
    auto id = provider_with_two_events(a_, "acme");
    auto offered = [&] {
        std::vector<std::string> types;
        for (auto const& r : must(store_->pending_event_rows(10)))
            if (r.envelope.aggregate_id == id) types.push_back(r.envelope.event_type);
        return types;
    };
    auto head = must(store_->pending_event_rows(10)).at(0);
    ASSERT_EQ(head.envelope.aggregate_id, id);
    EXPECT_EQ(must(store_->count_failed_publication(head.sequence, 10s)), 1);
    EXPECT_TRUE(offered().empty()) << "offered before its wait";
    clock_.advance(-8 * 24h);
    EXPECT_EQ(offered(), std::vector<std::string>{"IntegrationProviderRegistered"});
}

// Two relays on one store (they claim no rows) may both give up on the same event: it is parked
// once, with one failure, and a replay of that failure frees it.
TEST_F(outbox_redrive_test, an_event_is_parked_once_with_one_failure) {
    provider_with_two_events(a_, "acme");
    auto head = must(store_->pending_event_rows(10)).at(0);
    auto tell = [&](storage::unit_of_work& uow) -> result<void> {
        auto f = must(failures::integration_failure::record(
            a_, clock_.now(), failures::failure_source::outbox_event, head.envelope.event_id, "",
            {failures::failure_category::poison, "publish_failed", "parked", failures::next_action::dead_letter, std::nullopt}));
        return uow.failures().save(f);
    };
    must(store_->park_dead(head.sequence, clock_.now(), a_, tell));
    EXPECT_EQ(store_->park_dead(head.sequence, clock_.now(), a_, tell).error(), errc::not_found);
    auto dead = dead_letters(a_);
    ASSERT_EQ(dead.size(), 1u) << "one failure per parking";
    must(failures_.replay(a_, dead[0].id()));
    EXPECT_EQ(must(store_->pending_event_rows(10)).at(0).envelope.event_id, head.envelope.event_id);
}

// Two processes share a store: one parks an event while the other marks it published. Published,
// it holds back nothing of its aggregate.
TEST_F(outbox_redrive_test, a_dead_row_marked_published_holds_nothing_back) {
    auto id = provider_with_two_events(a_, "acme");
    auto head = must(store_->pending_event_rows(10)).at(0);
    must(store_->park_dead(head.sequence, clock_.now()));
    EXPECT_TRUE(must(store_->pending_event_rows(10)).empty());
    std::vector<std::int64_t> marked{head.sequence};
    must(store_->mark_published(marked, clock_.now()));
    auto left = must(store_->pending_event_rows(10));
    ASSERT_EQ(left.size(), 1u);
    EXPECT_EQ(left[0].envelope.aggregate_id, id);
    EXPECT_EQ(left[0].envelope.event_type, "IntegrationProviderDeprecated");
}

}  // namespace
}  // namespace integration::testing
