// The storage conformance cases of outbound webhooks: delivery leases across tenants, ordered
// subscriptions, idempotent fan-out, published events and the retention queries.

#include "store_conformance.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>

namespace integration::testing {
namespace {

using namespace std::chrono_literals;
using storage::unit_of_work;
using webhooks::delivery_status;
using webhooks::webhook_delivery;
using webhooks::webhook_subscription;

webhooks::subscription_spec sub_spec(bool ordered = false) {
    webhooks::subscription_spec s;
    s.project_id = "proj-1";
    s.event_type = "order.*";
    s.endpoint_url = "https://hooks.example.com/in";
    s.signing_secret_ref = "vault://local/t/whsec?version=1";
    s.ordered = ordered;
    return s;
}

struct published {
    std::string subscription_id;
    std::vector<std::string> delivery_ids;
};

/** Saves a subscription of `ctx` and one outbound delivery per event id, in that order. */
published subscribe_and_publish(storage::store& s, request_context const& ctx, time_point now,
                                std::vector<std::string> const& events, bool ordered = false) {
    published out;
    must(s.transact(ctx, [&](unit_of_work& uow) -> result<void> {
        auto sub = must(webhook_subscription::create(ctx, now, sub_spec(ordered)));
        must(uow.subscriptions().save(sub));
        out.subscription_id = sub.id();
        for (auto const& e : events) {
            auto d = must(webhook_delivery::outbound(ctx, now, sub, "order.paid", e, std::string("blob://p")));
            must(uow.deliveries().save(d));
            out.delivery_ids.push_back(d.id());
        }
        return {};
    }));
    return out;
}

std::vector<std::string> ids_of(std::vector<storage::claimed_delivery> const& claimed) {
    std::vector<std::string> out;
    for (auto const& c : claimed) out.push_back(c.delivery.id());
    return out;
}

std::vector<std::string> ids_of_deliveries(std::vector<webhook_delivery> const& deliveries) {
    std::vector<std::string> out;
    for (auto const& d : deliveries) out.push_back(d.id());
    return out;
}

std::vector<std::string> claim(storage::store& s, std::string const& owner, time_point at, std::size_t limit = 100) {
    return ids_of(must(s.claim_deliveries(at, owner, at + 30s, limit)).deliveries);
}

/** Loads, changes and saves one delivery of `ctx`. */
void update(storage::store& s, request_context const& ctx, std::string const& id,
            std::function<void(webhook_delivery&)> const& change) {
    must(s.transact(ctx, [&](unit_of_work& uow) -> result<void> {
        auto d = must(uow.deliveries().find(id));
        change(d);
        return uow.deliveries().save(d);
    }));
}

webhooks::delivery_attempt attempt(time_point at, std::int64_t status) { return {0, status, 5, {}, {}, at}; }

std::set<std::string> as_set(std::vector<std::string> const& v) { return {v.begin(), v.end()}; }

TEST_P(store_conformance, delivery_leases_give_each_due_delivery_of_every_tenant_to_one_owner_until_they_expire) {
    auto now = clock_.now();
    auto a = subscribe_and_publish(*store_, a_, now, {"evt-1", "evt-2", "evt-3"});
    auto b = subscribe_and_publish(*store_, b_, now, {"evt-1"});
    // One delivery of tenant a was deferred to earlier: it is due first.
    update(*store_, a_, a.delivery_ids[2], [&](webhook_delivery& d) { must(d.defer(now - 1s)); });
    // And one is not due yet.
    auto later = subscribe_and_publish(*store_, a_, now, {"evt-9"});
    update(*store_, a_, later.delivery_ids[0], [&](webhook_delivery& d) { must(d.defer(now + 1h)); });

    auto first = must(store_->claim_deliveries(now, "worker-1", now + 30s, 2)).deliveries;
    ASSERT_EQ(first.size(), 2u);
    EXPECT_EQ(first[0].delivery.id(), a.delivery_ids[2]);  // earliest due first
    EXPECT_EQ(first[0].tenant_id, "tenant-a");
    auto second = claim(*store_, "worker-2", now);
    EXPECT_EQ(second.size(), 2u);
    std::set<std::string> all = as_set(ids_of(first));
    for (auto const& id : second) EXPECT_TRUE(all.insert(id).second) << id << " was leased twice";
    EXPECT_EQ(all, (std::set<std::string>{a.delivery_ids[0], a.delivery_ids[1], a.delivery_ids[2], b.delivery_ids[0]}));
    // Every lease holds until it expires, also against its own owner (it may still be sending).
    EXPECT_TRUE(claim(*store_, "worker-3", now + 29s).empty());
    EXPECT_TRUE(claim(*store_, "worker-1", now + 29s).empty());
    ASSERT_TRUE(must(store_->oldest_due_delivery()).has_value());
    EXPECT_EQ(*must(store_->oldest_due_delivery()), now - 1s);
    // Both workers die: at now + 30 s their leases have expired.
    EXPECT_EQ(as_set(claim(*store_, "worker-4", now + 30s)), all);
    EXPECT_EQ(claim(*store_, "worker-5", now + 1h).size(), 5u);  // with the deferred one, due by then
}

TEST_P(store_conformance, a_worker_whose_lease_was_taken_over_cannot_save_and_a_save_ends_the_lease) {
    auto now = clock_.now();
    auto a = subscribe_and_publish(*store_, a_, now, {"evt-1"});
    auto slow = must(store_->claim_deliveries(now, "worker-1", now + 30s, 10)).deliveries;
    ASSERT_EQ(slow.size(), 1u);
    auto fast = must(store_->claim_deliveries(now + 31s, "worker-2", now + 61s, 10)).deliveries;
    ASSERT_EQ(fast.size(), 1u);
    EXPECT_GT(fast[0].delivery.meta().version, slow[0].delivery.meta().version);

    must(slow[0].delivery.record_success(attempt(now, 200)));
    auto stale = store_->transact(a_, [&](unit_of_work& uow) { return uow.deliveries().save(slow[0].delivery); });
    ASSERT_FALSE(stale);
    EXPECT_EQ(stale.error(), errc::conflict);

    must(fast[0].delivery.record_failure(attempt(now + 31s, 503), now + 31s));
    must(store_->transact(a_, [&](unit_of_work& uow) { return uow.deliveries().save(fast[0].delivery); }));
    // The save gave up worker-2's lease: the retry, due now, is claimable at once.
    EXPECT_EQ(claim(*store_, "worker-3", now + 31s), a.delivery_ids);
}

// record_attempt writes only what an attempt changes; what it stores is what save would store.
TEST_P(store_conformance, record_attempt_stores_the_attempt_the_state_and_the_events_and_ends_the_lease) {
    auto now = clock_.now();
    auto a = subscribe_and_publish(*store_, a_, now, {"evt-1"});
    auto first = must(store_->claim_deliveries(now, "worker-1", now + 30s, 10)).deliveries;
    ASSERT_EQ(first.size(), 1u);
    auto& d = first[0].delivery;
    auto leased = d.meta().version;
    must(d.record_failure(attempt(now, 503), now + 5s));
    must(store_->transact(a_, [&](unit_of_work& uow) { return uow.deliveries().record_attempt(d); }));
    EXPECT_EQ(d.meta().version, leased + 1);
    auto stored = must(storage::read_for(*store_, a_, [&](unit_of_work& uow) { return uow.deliveries().find(a.delivery_ids[0]); }));
    EXPECT_EQ(stored.status(), delivery_status::failed);
    EXPECT_EQ(stored.data().attempts, 1);
    EXPECT_EQ(stored.data().next_attempt_at, now + 5s);
    EXPECT_EQ(stored.data().payload_ref, std::optional<std::string>("blob://p"));
    ASSERT_EQ(stored.data().delivery_attempts.size(), 1u);
    EXPECT_EQ(stored.data().delivery_attempts[0].http_status, 503);
    EXPECT_EQ(stored.meta().version, d.meta().version);

    // The save ended worker-1's lease: the retry is claimable once due, with its attempt.
    EXPECT_TRUE(claim(*store_, "worker-2", now + 4s).empty());
    auto second = must(store_->claim_deliveries(now + 5s, "worker-2", now + 35s, 10)).deliveries;
    ASSERT_EQ(second.size(), 1u);
    auto& again = second[0].delivery;
    ASSERT_EQ(again.data().delivery_attempts.size(), 1u);
    must(again.record_success(attempt(now + 5s, 204)));
    must(store_->transact(a_, [&](unit_of_work& uow) { return uow.deliveries().record_attempt(again); }));
    stored = must(storage::read_for(*store_, a_, [&](unit_of_work& uow) { return uow.deliveries().find(a.delivery_ids[0]); }));
    EXPECT_EQ(stored.status(), delivery_status::delivered);
    EXPECT_EQ(stored.data().attempts, 2);
    EXPECT_FALSE(stored.data().next_attempt_at.has_value());
    ASSERT_EQ(stored.data().delivery_attempts.size(), 2u);
    EXPECT_EQ(stored.data().delivery_attempts[0].http_status, 503);
    EXPECT_EQ(stored.data().delivery_attempts[1].http_status, 204);
    auto events = must(store_->pending_events(100));
    EXPECT_TRUE(std::any_of(events.begin(), events.end(), [&](storage::outbox_record const& e) {
        return e.envelope.event_type == "WebhookDelivered" && e.envelope.aggregate_id == a.delivery_ids[0];
    }));

    // A worker whose copy is stale (its lease was taken over) records nothing: a conflict.
    must(d.record_success(attempt(now + 6s, 200)));
    auto stale = store_->transact(a_, [&](unit_of_work& uow) { return uow.deliveries().record_attempt(d); });
    ASSERT_FALSE(stale);
    EXPECT_EQ(stale.error(), errc::conflict);
    // Another tenant's unit does not see the delivery.
    auto& latest = again;
    auto foreign = store_->transact(b_, [&](unit_of_work& uow) { return uow.deliveries().record_attempt(latest); });
    EXPECT_FALSE(foreign);
}

// Why a delivery was put off stays with it until its next attempt, whichever way that attempt is
// written (record_attempt's update of the state columns, here).
TEST_P(store_conformance, a_deferral_reason_is_kept_until_the_next_attempt) {
    auto now = clock_.now();
    auto a = subscribe_and_publish(*store_, a_, now, {"evt-1"});
    update(*store_, a_, a.delivery_ids[0], [&](webhook_delivery& d) {
        must(d.defer(now + 1s, std::string("its signing secret could not be read from the secret store")));
    });
    auto find = [&] {
        return must(storage::read_for(*store_, a_, [&](unit_of_work& uow) { return uow.deliveries().find(a.delivery_ids[0]); }));
    };
    auto const reason = std::optional<std::string>("its signing secret could not be read from the secret store");
    EXPECT_EQ(find().data().deferred_reason, reason);
    auto second = must(store_->claim_deliveries(now + 1s, "worker-2", now + 31s, 10)).deliveries;
    ASSERT_EQ(second.size(), 1u);
    auto& again = second[0].delivery;
    EXPECT_EQ(again.data().deferred_reason, reason);
    must(again.defer(now + 2s));  // a rate limit says nothing of its own
    EXPECT_EQ(again.data().deferred_reason, reason);
    must(again.record_failure(attempt(now + 1s, 503), now + 5s));
    must(store_->transact(a_, [&](unit_of_work& uow) { return uow.deliveries().record_attempt(again); }));
    EXPECT_FALSE(find().data().deferred_reason);
}

// The delivery worker builds an attempt's events off the store's writer (prepare_attempt): the
// store writes those rows as they are, as record_attempt would have written them.
TEST_P(store_conformance, record_prepared_attempt_writes_the_events_built_before_the_unit) {
    auto now = clock_.now();
    auto a = subscribe_and_publish(*store_, a_, now, {"evt-1"});
    auto leased = must(store_->claim_deliveries(now, "worker-1", now + 30s, 10)).deliveries;
    ASSERT_EQ(leased.size(), 1u);
    auto version = leased[0].delivery.meta().version;
    must(leased[0].delivery.record_success(attempt(now, 204)));
    auto p = storage::prepare_attempt(leased[0].delivery, a_, now, store_->event_source());
    EXPECT_TRUE(p.delivery.pending_events().empty());
    ASSERT_EQ(p.events.size(), 1u);
    EXPECT_EQ(p.events[0].envelope.event_type, "WebhookDelivered");
    EXPECT_EQ(p.events[0].envelope.aggregate_version, version + 1);

    // Events that are not the delivery's, in this tenant, at its next version are refused.
    auto wrong = p;
    wrong.events[0].envelope.aggregate_version = version;
    auto refused = store_->transact(a_, [&](unit_of_work& uow) { return uow.deliveries().record_prepared_attempt(wrong); });
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error(), errc::invalid_argument);
    auto foreign = p;
    refused = store_->transact(b_, [&](unit_of_work& uow) { return uow.deliveries().record_prepared_attempt(foreign); });
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error(), errc::invalid_argument);

    must(store_->transact(a_, [&](unit_of_work& uow) { return uow.deliveries().record_prepared_attempt(p); }));
    EXPECT_EQ(p.delivery.meta().version, version + 1);
    auto stored = must(storage::read_for(*store_, a_, [&](unit_of_work& uow) { return uow.deliveries().find(a.delivery_ids[0]); }));
    EXPECT_EQ(stored.status(), delivery_status::delivered);
    ASSERT_EQ(stored.data().delivery_attempts.size(), 1u);
    EXPECT_EQ(stored.data().delivery_attempts[0].http_status, 204);
    auto events = must(store_->pending_events(100));
    auto it = std::find_if(events.begin(), events.end(), [&](storage::outbox_record const& e) {
        return e.envelope.event_id == p.events[0].envelope.event_id;
    });
    ASSERT_NE(it, events.end());
    EXPECT_EQ(it->envelope.event_type, "WebhookDelivered");
    EXPECT_EQ(it->envelope.tenant_id, a_.tenant_id);
    EXPECT_EQ(it->envelope.aggregate_id, a.delivery_ids[0]);
    EXPECT_EQ(it->envelope.aggregate_version, version + 1);
    EXPECT_EQ(it->envelope.source, store_->event_source());
    EXPECT_EQ(std::count_if(events.begin(), events.end(), [&](storage::outbox_record const& e) {
                  return e.envelope.event_type == "WebhookDelivered";
              }),
              1);

    // A stale copy (already recorded) conflicts and writes no second event.
    auto stale = storage::prepare_attempt(leased[0].delivery, a_, now, store_->event_source());
    auto again = store_->transact(a_, [&](unit_of_work& uow) { return uow.deliveries().record_prepared_attempt(stale); });
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error(), errc::conflict);
}

// The worker records a whole batch of attempts in one call: each delivery gets its state, its
// attempt and its events as record_prepared_attempt would write them, across the store's chunks
// (70 deliveries: 64 + 4 + 2); a stale copy is skipped as a conflict without failing the others.
TEST_P(store_conformance, record_prepared_attempts_records_a_batch_and_skips_the_stale_copies) {
    auto now = clock_.now();
    std::vector<std::string> events;
    for (int i = 0; i < 71; ++i) events.push_back("evt-" + std::to_string(i));
    auto a = subscribe_and_publish(*store_, a_, now, events);
    auto leased = must(store_->claim_deliveries(now, "worker-1", now + 30s, 100)).deliveries;
    ASSERT_EQ(leased.size(), 71u);
    std::vector<storage::prepared_attempt> batch;
    for (std::size_t i = 0; i < leased.size(); ++i) {
        auto d = leased[i].delivery;
        if (i % 2 == 0)
            must(d.record_success(attempt(now, 204)));
        else
            must(d.record_failure(attempt(now, 503), now + 5s));
        batch.push_back(storage::prepare_attempt(std::move(d), a_, now, store_->event_source()));
    }
    // The last one is recorded alone first: the batch's copy of it is stale.
    auto first = batch.back();
    must(store_->transact(a_, [&](unit_of_work& uow) { return uow.deliveries().record_prepared_attempt(first); }));
    auto versions = [&] {
        std::vector<std::int64_t> out;
        for (auto const& p : batch) out.push_back(p.delivery.meta().version);
        return out;
    }();

    // Events that are not a delivery's fail the whole call, and nothing of it is written.
    auto wrong = batch;
    wrong[2].events.at(0).envelope.aggregate_id = leased[4].delivery.id();
    auto refused = store_->transact(a_, [&](unit_of_work& uow) { return uow.deliveries().record_prepared_attempts(wrong); });
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error(), errc::invalid_argument);

    must(store_->transact(a_, [&](unit_of_work& uow) { return uow.deliveries().record_prepared_attempts(batch); }));
    for (std::size_t i = 0; i < batch.size(); ++i) {
        auto const& p = batch[i];
        auto stored = must(storage::read_for(*store_, a_, [&](unit_of_work& uow) { return uow.deliveries().find(p.delivery.id()); }));
        ASSERT_EQ(stored.data().delivery_attempts.size(), 1u) << i;
        if (i + 1 == batch.size()) {
            EXPECT_FALSE(p.recorded);
            EXPECT_EQ(p.delivery.meta().version, versions[i]);
            EXPECT_EQ(stored.meta().version, first.delivery.meta().version);
            continue;
        }
        EXPECT_TRUE(p.recorded) << i;
        EXPECT_EQ(p.delivery.meta().version, versions[i] + 1) << i;
        EXPECT_EQ(stored.meta().version, versions[i] + 1) << i;
        EXPECT_EQ(stored.status(), i % 2 == 0 ? delivery_status::delivered : delivery_status::failed) << i;
        EXPECT_EQ(stored.data().attempts, 1) << i;
        EXPECT_EQ(stored.data().delivery_attempts[0].http_status, i % 2 == 0 ? 204 : 503) << i;
        EXPECT_EQ(stored.data().last_attempt_at, now) << i;
        if (i % 2 == 0)
            EXPECT_FALSE(stored.data().next_attempt_at.has_value()) << i;
        else
            EXPECT_EQ(stored.data().next_attempt_at, now + 5s) << i;
    }
    // The lease ended with each recording: the failed ones are claimable again once due.
    auto again = must(store_->claim_deliveries(now + 5s, "worker-2", now + 35s, 100)).deliveries;
    EXPECT_EQ(again.size(), 35u);
    // One WebhookDelivered per delivered delivery, the stale copy's not twice.
    auto pending = must(store_->pending_events(500));
    std::set<std::string> delivered;
    std::size_t count = 0;
    for (auto const& e : pending)
        if (e.envelope.event_type == "WebhookDelivered") {
            ++count;
            delivered.insert(e.envelope.aggregate_id);
        }
    EXPECT_EQ(count, 36u);
    EXPECT_EQ(delivered.size(), 36u);
}

TEST_P(store_conformance, an_ordered_subscription_releases_one_delivery_at_a_time_in_publication_order) {
    auto now = clock_.now();
    auto fifo = subscribe_and_publish(*store_, a_, now, {"evt-1", "evt-2", "evt-3"}, true);
    auto free = subscribe_and_publish(*store_, a_, now, {"evt-1", "evt-2"});

    auto got = claim(*store_, "worker-1", now);
    EXPECT_EQ(as_set(got), (std::set<std::string>{fifo.delivery_ids[0], free.delivery_ids[0], free.delivery_ids[1]}));
    EXPECT_TRUE(claim(*store_, "worker-2", now).empty());  // evt-2 waits behind the leased evt-1

    // evt-1 fails and retries in 5 s: the later ones still wait for it.
    update(*store_, a_, fifo.delivery_ids[0], [&](webhook_delivery& d) { must(d.record_failure(attempt(now, 500), now + 5s)); });
    EXPECT_TRUE(claim(*store_, "worker-2", now + 1s).empty());
    EXPECT_EQ(claim(*store_, "worker-2", now + 5s), std::vector<std::string>{fifo.delivery_ids[0]});
    update(*store_, a_, fifo.delivery_ids[0], [&](webhook_delivery& d) { must(d.record_success(attempt(now + 5s, 200))); });
    EXPECT_EQ(claim(*store_, "worker-3", now + 5s), std::vector<std::string>{fifo.delivery_ids[1]});
    // A dead-lettered delivery releases the next one too.
    update(*store_, a_, fifo.delivery_ids[1], [&](webhook_delivery& d) { must(d.record_gone(attempt(now + 5s, 410))); });
    EXPECT_EQ(claim(*store_, "worker-4", now + 5s), std::vector<std::string>{fifo.delivery_ids[2]});
}

TEST_P(store_conformance, a_claim_leases_no_tenant_more_than_its_share_allows) {
    auto now = clock_.now();
    auto a = subscribe_and_publish(*store_, a_, now, {"evt-1", "evt-2", "evt-3", "evt-4", "evt-5"});
    auto b = subscribe_and_publish(*store_, b_, now + 1ms, {"evt-1", "evt-2", "evt-3"});
    // tenant-a's are the earliest due; it holds one delivery of its share of two already.
    auto got = must(store_->claim_deliveries(now + 1s, "worker-1", now + 30s, 10, {.per_tenant = 2, .held = {{"tenant-a", 1}}})).deliveries;
    EXPECT_EQ(as_set(ids_of(got)), (std::set<std::string>{a.delivery_ids[0], b.delivery_ids[0], b.delivery_ids[1]}));
    // Both hold their whole share: nothing is leased, however much is due.
    EXPECT_TRUE(must(store_->claim_deliveries(now + 1s, "worker-1", now + 30s, 10,
                                              {.per_tenant = 2, .held = {{"tenant-a", 2}, {"tenant-b", 2}}})).deliveries
                    .empty());
    EXPECT_EQ(claim(*store_, "worker-2", now + 1s).size(), 5u) << "what is not leased stays due";
}

// The first rows due are one tenant's, more than its share: the claim takes its share, then steps
// past the rest of its backlog to another tenant's later rows.
TEST_P(store_conformance, a_claim_that_fills_a_tenants_share_goes_on_with_the_other_tenants) {
    auto now = clock_.now();
    auto a = subscribe_and_publish(*store_, a_, now, {"evt-1", "evt-2", "evt-3", "evt-4", "evt-5"});
    auto b = subscribe_and_publish(*store_, b_, now + 1ms, {"evt-1"});
    auto got = must(store_->claim_deliveries(now + 1s, "worker-1", now + 30s, 3, {.per_tenant = 2, .held = {}})).deliveries;
    ASSERT_EQ(got.size(), 3u);
    std::map<std::string, int> per_tenant;
    for (auto const& c : got) ++per_tenant[c.tenant_id];
    EXPECT_EQ(per_tenant, (std::map<std::string, int>{{"tenant-a", 2}, {"tenant-b", 1}}));
    EXPECT_EQ(got.back().delivery.id(), b.delivery_ids[0]);
}

// While tenant-a holds its whole share, its backlog (the earliest due) is stepped over, and each
// claim starts after the tenant the previous one ended with, so that the others take turns.
TEST_P(store_conformance, while_a_tenant_holds_its_share_the_other_tenants_take_turns) {
    auto now = clock_.now();
    std::vector<std::string> events;
    for (int i = 0; i < 50; ++i) events.push_back("evt-" + std::to_string(i));
    auto a = subscribe_and_publish(*store_, a_, now, events);
    auto c_ = request_context::for_tenant("tenant-c", "carol");
    auto d_ = request_context::for_tenant("tenant-d", "dave");
    auto b = subscribe_and_publish(*store_, b_, now + 1ms, {"evt-1", "evt-2"});
    auto c = subscribe_and_publish(*store_, c_, now + 1ms, {"evt-1", "evt-2"}, true);  // ordered: one at a time
    auto d = subscribe_and_publish(*store_, d_, now + 1ms, {"evt-1", "evt-2"});
    auto paused = subscribe_and_publish(*store_, d_, now, {"evt-3"});
    write(d_, [&](unit_of_work& uow) -> result<void> {
        auto s = must(uow.subscriptions().find(paused.subscription_id));
        must(s.deactivate("paused by the operator"));
        return uow.subscriptions().save(s);
    });
    storage::delivery_share share{.per_tenant = 4, .held = {{"tenant-a", 4}}};
    std::vector<std::string> order;
    for (int i = 0; i < 6; ++i) {
        auto got = must(store_->claim_deliveries(now + 1s, "worker-" + std::to_string(i), now + 30s, 1, share)).deliveries;
        ASSERT_LE(got.size(), 1u);
        if (got.empty()) break;
        order.push_back(got[0].tenant_id + " " + got[0].delivery.id());
    }
    EXPECT_EQ(order, (std::vector<std::string>{"tenant-b " + b.delivery_ids[0], "tenant-c " + c.delivery_ids[0],
                                               "tenant-d " + d.delivery_ids[0], "tenant-b " + b.delivery_ids[1],
                                               "tenant-d " + d.delivery_ids[1]}));
    // Nothing of tenant-a's was leased: all of it is still claimable once it has room again.
    EXPECT_EQ(as_set(ids_of(must(store_->claim_deliveries(now + 1s, "worker-9", now + 30s, 100,
                                                          {.per_tenant = 100, .held = {}})).deliveries)),
              as_set(a.delivery_ids));
}

// A claim in turns steps through at most 256 tenants (each one search of the tenant index), so
// that thousands of tenants with retries due later cost no claim more than that; the next claim
// goes on from the last tenant the previous one looked at.
/** Tenants tenant-m000... with one delivery each, a retry due in an hour. */
void waiting_tenants(storage::store& s, time_point now, int count) {
    for (int i = 0; i < count; ++i) {
        char name[32];
        std::snprintf(name, sizeof name, "tenant-m%03d", i);
        auto ctx = request_context::for_tenant(name, "m");
        must(s.transact(ctx, [&](unit_of_work& uow) -> result<void> {
            auto sub = must(webhook_subscription::create(ctx, now, sub_spec()));
            must(uow.subscriptions().save(sub));
            auto d = must(webhook_delivery::outbound(ctx, now, sub, "order.paid", "evt-1", std::string("blob://p")));
            must(d.defer(now + 1h));
            return uow.deliveries().save(d);
        }));
    }
}

// Claims in due order between two claims in turns: the second turns begin a round of their own,
// so a tenant the earlier round had passed is looked at again.
TEST_P(store_conformance, claims_in_turns_after_claims_in_due_order_begin_a_new_round) {
    auto now = clock_.now();
    subscribe_and_publish(*store_, a_, now, {"evt-1", "evt-2", "evt-3"});
    waiting_tenants(*store_, now, 260);
    storage::delivery_share full{.per_tenant = 2, .held = {{"tenant-a", 2}}};
    auto first = must(store_->claim_deliveries(now + 1s, "worker-1", now + 30s, 10, full));
    EXPECT_TRUE(first.deliveries.empty());
    ASSERT_TRUE(first.more);  // the round stopped at tenant-m254
    // tenant-a has room again: a claim in due order takes one of its deliveries.
    EXPECT_EQ(must(store_->claim_deliveries(now + 1s, "worker-1", now + 30s, 1, {.per_tenant = 2, .held = {}})).deliveries.size(), 1u);
    // Meanwhile tenant-m003, which the round had passed, has a delivery due now.
    auto m3 = subscribe_and_publish(*store_, request_context::for_tenant("tenant-m003", "m"), now, {"evt-9"});
    auto again = must(store_->claim_deliveries(now + 1s, "worker-1", now + 30s, 10, full));
    EXPECT_EQ(ids_of(again.deliveries), m3.delivery_ids);
}

TEST_P(store_conformance, a_claim_in_turns_looks_at_a_bounded_number_of_tenants_and_the_next_goes_on) {
    auto now = clock_.now();
    subscribe_and_publish(*store_, a_, now, {"evt-1", "evt-2"});
    waiting_tenants(*store_, now, 260);
    auto z = subscribe_and_publish(*store_, request_context::for_tenant("tenant-z", "zed"), now, {"evt-1"});
    storage::delivery_share share{.per_tenant = 2, .held = {{"tenant-a", 2}}};
    auto first = must(store_->claim_deliveries(now + 1s, "worker-1", now + 30s, 10, share));
    EXPECT_TRUE(first.deliveries.empty());
    EXPECT_TRUE(first.more) << "it stopped before looking at every tenant";
    std::vector<std::string> got;
    int claims = 1;
    for (bool more = true; more && claims < 10; ++claims) {
        auto next = must(store_->claim_deliveries(now + 1s, "worker-1", now + 30s, 10, share));
        for (auto const& id : ids_of(next.deliveries)) got.push_back(id);
        more = next.more;
    }
    EXPECT_EQ(got, z.delivery_ids);
    // The second took tenant-z's and began a new round; the third ended it, having taken nothing.
    EXPECT_EQ(claims, 3) << "a round of every tenant that takes nothing says nothing more is due";
}

// An inactive subscription's waiting deliveries are held: out of the claims' due order (no
// nextAttemptAt), where every claim walked past them for as long as the subscription stayed off.
// Reactivated, they are due at once; one a worker holds keeps its time.
TEST_P(store_conformance, deliveries_of_an_inactive_subscription_are_held_and_due_again_when_it_is_reactivated) {
    auto now = clock_.now();
    auto a = subscribe_and_publish(*store_, a_, now, {"evt-1", "evt-2", "evt-3"});
    auto in_flight = claim(*store_, "worker-0", now, 1);
    ASSERT_EQ(in_flight.size(), 1u);
    write(a_, [&](unit_of_work& uow) -> result<void> {  // a retry due in a day
        auto d = must(uow.deliveries().find(a.delivery_ids[1] == in_flight[0] ? a.delivery_ids[2] : a.delivery_ids[1]));
        must(d.defer(now + 24h));
        return uow.deliveries().save(d);
    });
    auto active = [&](bool on) {
        write(a_, [&](unit_of_work& uow) -> result<void> {
            auto s = must(uow.subscriptions().find(a.subscription_id));
            must(on ? s.reactivate() : s.deactivate("paused by the operator"));
            return uow.subscriptions().save(s);
        });
    };
    auto due = [&](std::string const& id) {
        std::optional<time_point> at;
        read(a_, [&](unit_of_work& uow) -> result<void> {
            auto d = must(uow.deliveries().find(id));
            EXPECT_EQ(d.status(), delivery_status::pending);
            at = d.data().next_attempt_at;
            return {};
        });
        return at;
    };
    active(false);
    EXPECT_TRUE(claim(*store_, "worker-1", now + 48h).empty());
    EXPECT_FALSE(must(store_->oldest_due_delivery()).has_value());
    for (auto const& id : a.delivery_ids)
        EXPECT_EQ(due(id).has_value(), id == in_flight[0]) << id;

    clock_.advance(1h);
    active(true);
    for (auto const& id : a.delivery_ids) {
        if (id != in_flight[0]) {
            EXPECT_EQ(due(id), truncate_ms(clock_.now())) << id;
        }
    }
    // All three: the one held in flight (its lease lapsed) and the retry that was due in a day.
    EXPECT_EQ(claim(*store_, "worker-1", clock_.now()).size(), 3u);
}

TEST_P(store_conformance, fan_out_is_idempotent_per_tenant_subscription_and_event) {
    auto now = clock_.now();
    auto a = subscribe_and_publish(*store_, a_, now, {"evt-1"});
    auto again = store_->transact(a_, [&](unit_of_work& uow) -> result<void> {
        auto s = must(uow.subscriptions().find(a.subscription_id));
        auto other = must(webhook_delivery::outbound(a_, now, s, "order.paid", "evt-2", {}));
        must(uow.deliveries().save(other));  // another event of the subscription is fine
        auto d = must(webhook_delivery::outbound(a_, now, s, "order.paid", "evt-1", {}));
        return uow.deliveries().save(d);
    });
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error(), errc::already_exists);
    read(a_, [&](unit_of_work& uow) -> result<void> {
        // The failed unit wrote nothing, not even the other event's delivery.
        EXPECT_EQ(must(uow.deliveries().list({.subscription_id = a.subscription_id}, {})).items.size(), 1u);
        EXPECT_EQ(must(uow.deliveries().list({.event_id = "evt-1"}, {})).items.size(), 1u);
        EXPECT_TRUE(must(uow.deliveries().list({.event_id = "evt-2"}, {})).items.empty());
        return {};
    });
    // The same event to another subscription, and in another tenant, is a new delivery.
    subscribe_and_publish(*store_, a_, now, {"evt-1"});
    subscribe_and_publish(*store_, b_, now, {"evt-1"});
    read(a_, [&](unit_of_work& uow) -> result<void> {
        EXPECT_EQ(must(uow.deliveries().list({.event_id = "evt-1"}, {})).items.size(), 2u);
        return {};
    });
}

TEST_P(store_conformance, published_events_are_unique_by_id_and_key_within_their_tenant) {
    auto now = clock_.now();
    storage::published_event e{"evt-1", "order.paid", std::string("key-1"), "blob://tenant-a/p", "ab12",
                               {"del-1", "del-2"}, now};
    write(a_, [&](unit_of_work& uow) { return uow.published_events().add(e); });
    read(a_, [&](unit_of_work& uow) -> result<void> {
        auto found = must(uow.published_events().find("evt-1"));
        EXPECT_EQ(found.event_type, "order.paid");
        EXPECT_EQ(found.idempotency_key, std::optional<std::string>("key-1"));
        EXPECT_EQ(found.payload_ref, "blob://tenant-a/p");
        EXPECT_EQ(found.payload_hash, "ab12");
        EXPECT_EQ(found.delivery_ids, (std::vector<std::string>{"del-1", "del-2"}));
        EXPECT_EQ(found.published_at, now);
        EXPECT_EQ(must(uow.published_events().find_by_idempotency_key("key-1")).event_id, "evt-1");
        EXPECT_EQ(uow.published_events().find("evt-2").error(), errc::not_found);
        return {};
    });
    auto same_key = e;
    same_key.event_id = "evt-2";
    auto r = store_->transact(a_, [&](unit_of_work& uow) { return uow.published_events().add(same_key); });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::already_exists);
    auto same_id = e;
    same_id.idempotency_key.reset();
    r = store_->transact(a_, [&](unit_of_work& uow) { return uow.published_events().add(same_id); });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::already_exists);
    // Tenant b neither sees tenant a's event nor shares its keys.
    read(b_, [&](unit_of_work& uow) -> result<void> {
        EXPECT_EQ(uow.published_events().find("evt-1").error(), errc::not_found);
        EXPECT_EQ(uow.published_events().find_by_idempotency_key("key-1").error(), errc::not_found);
        return {};
    });
    write(b_, [&](unit_of_work& uow) { return uow.published_events().add(same_key); });
    // Retention removes old events of its own tenant only.
    write(a_, [&](unit_of_work& uow) -> result<void> {
        EXPECT_EQ(must(uow.published_events().remove_before(now, 10)), 0u);
        EXPECT_EQ(must(uow.published_events().remove_before(now + 1ms, 10)), 1u);
        return {};
    });
    read(b_, [&](unit_of_work& uow) -> result<void> {
        EXPECT_EQ(must(uow.published_events().find("evt-2")).idempotency_key, std::optional<std::string>("key-1"));
        return {};
    });
}

TEST_P(store_conformance, retention_finds_ended_deliveries_and_old_payloads_and_removes_deliveries) {
    auto t0 = clock_.now();
    auto a = subscribe_and_publish(*store_, a_, t0, {"evt-1", "evt-2", "evt-3"});
    clock_.advance(1h);
    auto t1 = clock_.now();
    auto young = subscribe_and_publish(*store_, a_, t1, {"evt-4"});
    update(*store_, a_, a.delivery_ids[0], [&](webhook_delivery& d) { must(d.record_success(attempt(t1, 200))); });
    update(*store_, a_, a.delivery_ids[1], [&](webhook_delivery& d) { must(d.record_gone(attempt(t1, 410))); });
    clock_.advance(1h);
    auto t2 = clock_.now();
    update(*store_, a_, young.delivery_ids[0], [&](webhook_delivery& d) { must(d.record_success(attempt(t2, 200))); });
    read(a_, [&](unit_of_work& uow) -> result<void> {
        EXPECT_TRUE(must(uow.deliveries().ended_before(t1, 10)).empty());
        // Ended (last attempt) at t1; the Pending one never ends; the one ended at t2 is too young.
        EXPECT_EQ(as_set(ids_of_deliveries(must(uow.deliveries().ended_before(t1 + 1ms, 10)))),
                  (std::set<std::string>{a.delivery_ids[0], a.delivery_ids[1]}));
        EXPECT_EQ(must(uow.deliveries().ended_before(t1 + 1ms, 1)).size(), 1u);
        // Payloads go by creation time, whatever the status.
        EXPECT_EQ(as_set(ids_of_deliveries(must(uow.deliveries().with_payload_before(t0 + 1ms, 10)))),
                  as_set(a.delivery_ids));
        EXPECT_EQ(must(uow.deliveries().list({.since = t1}, {})).items.size(), 1u);
        EXPECT_EQ(must(uow.deliveries().list({.since = t0}, {})).items.size(), 4u);
        return {};
    });
    read(b_, [&](unit_of_work& uow) -> result<void> {
        EXPECT_TRUE(must(uow.deliveries().ended_before(t2, 10)).empty());
        EXPECT_TRUE(must(uow.deliveries().with_payload_before(t2, 10)).empty());
        return {};
    });
    write(b_, [&](unit_of_work& uow) { return uow.deliveries().remove(a.delivery_ids[0]); });  // not b's: no-op
    write(a_, [&](unit_of_work& uow) -> result<void> {
        must(uow.deliveries().remove(a.delivery_ids[0]));
        return uow.deliveries().remove("del-missing");
    });
    read(a_, [&](unit_of_work& uow) -> result<void> {
        EXPECT_EQ(uow.deliveries().find(a.delivery_ids[0]).error(), errc::not_found);
        EXPECT_EQ(must(uow.deliveries().find(a.delivery_ids[1])).data().delivery_attempts.size(), 1u);
        return {};
    });
}

TEST_P(store_conformance, tenants_include_a_tenant_with_webhook_subscriptions_only) {
    subscribe_and_publish(*store_, b_, clock_.now(), {});
    EXPECT_EQ(must(store_->tenants()), (std::vector<std::string>{"tenant-b"}));
}

}  // namespace
}  // namespace integration::testing
