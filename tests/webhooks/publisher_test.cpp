#include <integration/services/publisher.hpp>

#include <integration/backends/sqlite/sqlite_blob_store.hpp>
#include <integration/backends/sqlite/sqlite_store.hpp>
#include <integration/core/id.hpp>
#include <integration/core/json.hpp>
#include <integration/ports/event_publisher.hpp>
#include <integration/services/outbox_relay.hpp>

#include "storage/fixtures.hpp"
#include "support/hooked_blobs.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <set>

// The publisher over a real SQLite store and blob store, with a manual clock: fan-out to the
// matching subscriptions of the tenant, payload filters, idempotency, replay and the fan-out of
// the library's own domain events.

namespace {

using namespace integration;
using namespace integration::webhooks;
using namespace std::chrono_literals;
using integration::testing::hooked_blobs;
using integration::testing::must;

class publisher_test : public ::testing::Test {
protected:
    /** Saves a subscription of `ctx` directly (the subscription service is tested elsewhere). */
    std::string subscribe(request_context const& ctx, std::string event_type,
                          std::optional<boost::json::value> filter = std::nullopt, bool active = true,
                          storage::store* via = nullptr) {
        subscription_spec spec{.project_id = "shop",
                               .event_type = std::move(event_type),
                               .endpoint_url = "https://hooks.customer.example/in",
                               .signing_secret_ref = "vault://local/" + ctx.tenant_id + "/whsec?version=1",
                               .filter = std::move(filter)};
        std::string id;
        must((via ? via : store_.get())->transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
            auto s = must(webhook_subscription::create(ctx, clock_.now(), spec));
            if (!active) must(s.deactivate("paused"));
            id = s.id();
            return uow.subscriptions().save(s);
        }));
        return id;
    }

    std::set<std::string> subscriptions_of(request_context const& ctx, std::vector<std::string> const& delivery_ids) {
        std::set<std::string> out;
        for (auto const& id : delivery_ids) out.insert(must(pub_.find(ctx, id)).data().subscription_id.value_or(""));
        return out;
    }

    std::size_t deliveries_of(request_context const& ctx, std::string const& subscription_id) {
        return must(pub_.list(ctx, {.subscription_id = subscription_id}, {.limit = 500})).items.size();
    }

    integration::testing::temp_dir dir_;
    manual_clock clock_;
    std::unique_ptr<storage::store> store_ =
        must(storage::open_sqlite_store({.path = dir_.file("i.db"), .clock = &clock_}));
    std::unique_ptr<blobs::blob_store> blobs_ =
        must(blobs::open_sqlite_blob_store({.path = dir_.file("b.db"), .clock = &clock_}));
    publisher pub_{*store_, *blobs_, clock_};
    request_context a_ = request_context::for_tenant("tenant-a", "alice");
    request_context b_ = request_context::for_tenant("tenant-b", "bob");
};

TEST_F(publisher_test, an_event_fans_out_to_each_matching_active_subscription_of_its_tenant_with_one_payload) {
    auto exact = subscribe(a_, "order.paid");
    auto prefix = subscribe(a_, "order.*");
    auto all = subscribe(a_, "*");
    auto other_type = subscribe(a_, "invoice.*");
    auto inactive = subscribe(a_, "order.paid", std::nullopt, false);
    auto other_tenant = subscribe(b_, "order.paid");

    boost::json::value payload{{"orderId", "o-1"}, {"amount", 42}};
    auto pub = must(pub_.publish(a_, "order.paid", payload));
    EXPECT_FALSE(pub.repeated);
    EXPECT_TRUE(is_valid_id(pub.event_id, id_prefix::event));
    ASSERT_EQ(pub.delivery_ids.size(), 3u);
    EXPECT_EQ(subscriptions_of(a_, pub.delivery_ids), (std::set<std::string>{exact, prefix, all}));
    EXPECT_EQ(deliveries_of(a_, other_type), 0u);
    EXPECT_EQ(deliveries_of(a_, inactive), 0u);
    EXPECT_EQ(deliveries_of(b_, other_tenant), 0u);

    std::set<std::string> refs;
    for (auto const& id : pub.delivery_ids) {
        auto d = must(pub_.find(a_, id));
        EXPECT_EQ(d.status(), delivery_status::pending);
        EXPECT_EQ(d.data().event_type, "order.paid");
        EXPECT_EQ(d.data().event_id, pub.event_id);
        EXPECT_EQ(d.data().next_attempt_at, clock_.now());
        refs.insert(d.data().payload_ref.value_or(""));
    }
    ASSERT_EQ(refs.size(), 1u) << "the payload is written once for every delivery";
    auto stored = must(blobs_->get("tenant-a", *refs.begin()));
    EXPECT_EQ(boost::json::parse(stored), payload);
    EXPECT_EQ(blobs_->get("tenant-b", *refs.begin()).error(), errc::not_found);
    EXPECT_EQ(must(pub_.list(a_, {.event_id = pub.event_id}, {})).items.size(), 3u);
}

// A tenant's prefixes that do not match an event, however many, never crowd out the ones that
// do: a fan-out once read a bounded page of every prefix subscription and matched after.
TEST_F(publisher_test, an_event_reaches_its_subscriptions_past_thousands_of_other_prefixes) {
    must(store_->transact(a_, [&](storage::unit_of_work& uow) -> result<void> {
        for (int i = 0; i < 10'050; ++i) {
            auto s = must(webhook_subscription::create(a_, clock_.now(), {.project_id = "shop",
                                                                          .event_type = "customer-" + std::to_string(i) + ".*",
                                                                          .endpoint_url = "https://hooks.customer.example/in",
                                                                          .signing_secret_ref = "vault://local/tenant-a/whsec?version=1"}));
            if (auto r = uow.subscriptions().save(s); !r) return r;
        }
        return {};
    }));
    clock_.advance(std::chrono::milliseconds(1));  // the matching subscriptions sort after the others
    auto exact = subscribe(a_, "order.created");
    auto deep = subscribe(a_, "order.*");
    subscribe(a_, "order.created.*");  // a prefix of more than the name: no match
    subscribe(a_, "orders.*");
    auto pub = must(pub_.publish(a_, "order.created", boost::json::value{{"orderId", "o-1"}}));
    EXPECT_EQ(subscriptions_of(a_, pub.delivery_ids), (std::set<std::string>{exact, deep}));
    auto nested = must(pub_.publish(a_, "customer-10049.profile.updated", boost::json::value{{"id", 1}}));
    EXPECT_EQ(nested.delivery_ids.size(), 1u);
}

// Matching subscriptions are read a page at a time: more than a page of them all get a delivery.
TEST_F(publisher_test, an_event_reaches_more_matching_subscriptions_than_one_page_holds) {
    std::set<std::string> ids;
    must(store_->transact(a_, [&](storage::unit_of_work& uow) -> result<void> {
        for (int i = 0; i < 2'345; ++i) {
            auto s = must(webhook_subscription::create(a_, clock_.now(), {.project_id = "shop",
                                                                          .event_type = i % 2 ? "order.*" : "order.created",
                                                                          .endpoint_url = "https://hooks.customer.example/in",
                                                                          .signing_secret_ref = "vault://local/tenant-a/whsec?version=1"}));
            ids.insert(s.id());
            if (auto r = uow.subscriptions().save(s); !r) return r;
        }
        return {};
    }));
    auto pub = must(pub_.publish(a_, "order.created", boost::json::value{{"orderId", "o-1"}}));
    EXPECT_EQ(subscriptions_of(a_, pub.delivery_ids), ids);
}

TEST_F(publisher_test, a_subscription_receives_only_payloads_its_filter_matches) {
    auto paid_in_eu = subscribe(
        a_, "order.*",
        boost::json::parse(R"({"and": [{"equals": {"path": "$.status", "value": "paid"}},
                                       {"in": {"path": "$.region", "values": ["eu", "uk"]}}]})"));
    auto with_email = subscribe(a_, "order.*", boost::json::parse(R"({"exists": {"path": "$.customer.email"}})"));
    auto unfiltered = subscribe(a_, "order.*");

    auto p1 = must(pub_.publish(a_, "order.updated", boost::json::parse(R"({"status": "paid", "region": "eu"})")));
    EXPECT_EQ(subscriptions_of(a_, p1.delivery_ids), (std::set<std::string>{paid_in_eu, unfiltered}));
    auto p2 = must(pub_.publish(a_, "order.updated",
                                boost::json::parse(R"({"status": "paid", "region": "us", "customer": {"email": "x"}})")));
    EXPECT_EQ(subscriptions_of(a_, p2.delivery_ids), (std::set<std::string>{with_email, unfiltered}));
    auto p3 = must(pub_.publish(a_, "order.updated", boost::json::value(nullptr)));
    EXPECT_EQ(subscriptions_of(a_, p3.delivery_ids), (std::set<std::string>{unfiltered}));
}

TEST_F(publisher_test, a_repeated_idempotency_key_answers_the_first_publication_or_a_conflict) {
    auto sub = subscribe(a_, "order.*");
    boost::json::value payload{{"orderId", "o-1"}};
    auto first = must(pub_.publish(a_, "order.paid", payload, "order-o-1-paid"));
    clock_.advance(1min);
    auto again = must(pub_.publish(a_, "order.paid", payload, "order-o-1-paid"));
    EXPECT_TRUE(again.repeated);
    EXPECT_EQ(again.event_id, first.event_id);
    EXPECT_EQ(again.delivery_ids, first.delivery_ids);
    EXPECT_EQ(deliveries_of(a_, sub), 1u);

    auto other = pub_.publish(a_, "order.paid", boost::json::value{{"orderId", "o-2"}}, "order-o-1-paid");
    ASSERT_FALSE(other);
    EXPECT_EQ(other.error(), errc::idempotency_key_reused);
    EXPECT_EQ(deliveries_of(a_, sub), 1u);
    // The same payload as another event under the key is another event, not a repeat: answering
    // the first would drop the cancellation without a word.
    auto cancelled = pub_.publish(a_, "order.cancelled", payload, "order-o-1-paid");
    ASSERT_FALSE(cancelled);
    EXPECT_EQ(cancelled.error(), errc::idempotency_key_reused);
    EXPECT_NE(cancelled.error().detail().find("order.paid"), std::string::npos) << cancelled.error().detail();
    EXPECT_EQ(deliveries_of(a_, sub), 1u);

    // Keys are per tenant: tenant b's first use of the same key is a new event.
    subscribe(b_, "order.*");
    auto in_b = must(pub_.publish(b_, "order.paid", boost::json::value{{"orderId", "o-2"}}, "order-o-1-paid"));
    EXPECT_FALSE(in_b.repeated);
    EXPECT_NE(in_b.event_id, first.event_id);
}

TEST_F(publisher_test, bad_input_is_refused_with_a_clear_error) {
    EXPECT_EQ(pub_.publish(a_, "", boost::json::value{}).error(), errc::invalid_argument);
    EXPECT_EQ(pub_.publish(a_, "order.*", boost::json::value{}).error(), errc::invalid_argument);
    EXPECT_EQ(pub_.publish(a_, std::string(201, 'x'), boost::json::value{}).error(), errc::invalid_argument);
    EXPECT_EQ(pub_.publish(a_, "order.paid", boost::json::value{}, std::string()).error(), errc::invalid_argument);
    EXPECT_EQ(pub_.publish(a_, "order.paid", boost::json::value{}, std::string(256, 'k')).error(), errc::invalid_argument);
}

TEST_F(publisher_test, replay_sends_a_delivery_again_with_the_same_id_and_stays_in_its_tenant) {
    subscribe(a_, "order.*");
    auto pub = must(pub_.publish(a_, "order.paid", boost::json::value{{"orderId", "o-1"}}));
    auto id = pub.delivery_ids.at(0);
    EXPECT_EQ(pub_.replay(a_, id).error(), errc::invalid_state) << "a Pending delivery is sent anyway";
    must(store_->transact(a_, [&](storage::unit_of_work& uow) -> result<void> {
        auto d = must(uow.deliveries().find(id));
        must(d.record_gone({0, 410, 3, {}, {}, clock_.now()}));
        return uow.deliveries().save(d);
    }));
    clock_.advance(1h);
    auto replayed = must(pub_.replay(a_, id));
    EXPECT_EQ(replayed.id(), id) << "the webhook-id stays the same";
    EXPECT_EQ(replayed.status(), delivery_status::pending);
    EXPECT_EQ(replayed.data().next_attempt_at, clock_.now());
    EXPECT_EQ(replayed.data().max_attempts, 1 + subscription_attempt_policy{}.max_attempts);
    EXPECT_EQ(must(pub_.find(a_, id)).status(), delivery_status::pending);

    EXPECT_EQ(pub_.find(b_, id).error(), errc::not_found);
    EXPECT_EQ(pub_.replay(b_, id).error(), errc::not_found);
    EXPECT_TRUE(must(pub_.list(b_, {}, {})).items.empty());
    EXPECT_EQ(pub_.find(a_, "del-missing").error(), errc::not_found);
}

// A replay while the subscription is inactive (a 410 deactivated it) waits for its reactivation
// off the claims' order, as the subscription's other deliveries do.
TEST_F(publisher_test, a_replay_of_an_inactive_subscriptions_delivery_waits_for_its_reactivation) {
    auto sub = subscribe(a_, "order.*");
    auto id = must(pub_.publish(a_, "order.paid", boost::json::value{{"orderId", "o-1"}})).delivery_ids.at(0);
    must(store_->transact(a_, [&](storage::unit_of_work& uow) -> result<void> {
        auto d = must(uow.deliveries().find(id));
        must(d.record_gone({0, 410, 3, {}, {}, clock_.now()}));
        must(uow.deliveries().save(d));
        auto s = must(uow.subscriptions().find(sub));
        must(s.deactivate("endpoint answered 410 Gone"));
        return uow.subscriptions().save(s);
    }));
    auto replayed = must(pub_.replay(a_, id));
    EXPECT_EQ(replayed.status(), delivery_status::pending);
    EXPECT_FALSE(replayed.data().next_attempt_at);
    EXPECT_FALSE(must(pub_.find(a_, id)).data().next_attempt_at);
}

// A Failed delivery due again is leased to the worker that sends it: a replay then took the lease
// away (saving gives it up), and the next claim sent it a second time beside the first.
TEST_F(publisher_test, a_delivery_a_worker_is_sending_is_not_replayed_until_its_attempt_is_recorded) {
    subscribe(a_, "order.*");
    auto id = must(pub_.publish(a_, "order.paid", boost::json::value{{"orderId", "o-1"}})).delivery_ids.at(0);
    must(store_->transact(a_, [&](storage::unit_of_work& uow) -> result<void> {
        auto d = must(uow.deliveries().find(id));
        must(d.record_failure({.http_status = 500, .attempted_at = clock_.now()}, clock_.now() + 5s));
        return uow.deliveries().save(d);
    }));
    clock_.advance(6s);
    auto claimed = must(store_->claim_deliveries(clock_.now(), "worker-1", clock_.now() + 60s, 10));
    ASSERT_EQ(claimed.deliveries.size(), 1u);
    auto replay = pub_.replay(a_, id);
    ASSERT_FALSE(replay);
    EXPECT_EQ(replay.error(), errc::conflict);
    EXPECT_NE(replay.error().message().find("being sent now"), std::string::npos) << replay.error().message();
    EXPECT_TRUE(must(store_->claim_deliveries(clock_.now(), "worker-2", clock_.now() + 60s, 10)).deliveries.empty())
        << "still worker-1's: nobody else sends it";
    clock_.advance(61s);  // the lease ran out (its worker stopped): a replay is allowed again
    EXPECT_EQ(must(pub_.replay(a_, id)).status(), delivery_status::pending);
}

events::event_envelope run_completed(std::string tenant, std::string aggregate_type = "IntegrationRun") {
    events::event_envelope e;
    e.event_id = new_id(id_prefix::event, time_point{});
    e.event_type = std::string(events::event_type::run_completed);
    e.tenant_id = std::move(tenant);
    e.aggregate_type = std::move(aggregate_type);
    e.aggregate_id = "run-1";
    e.aggregate_version = 3;
    e.source = "integration";
    e.data = {{"runId", "run-1"}, {"status", "Completed"}};
    return e;
}

// Two relays (two processes) fan one outbox event out at once: the one that lost the race wrote
// the same payload key and then removed it, and every delivery the winner made lost its payload.
TEST_F(publisher_test, a_fan_out_that_loses_the_race_for_its_event_keeps_the_winners_payload) {
    subscribe(a_, std::string(events::event_type::run_completed));
    auto event = run_completed("tenant-a");
    hooked_blobs racing(*blobs_);
    publisher loser{*store_, racing, clock_};
    racing.after_put = [&] { EXPECT_FALSE(must(pub_.fan_out(event)).repeated); };  // the winner commits first
    auto lost = must(loser.fan_out(event));
    EXPECT_TRUE(lost.repeated);
    ASSERT_EQ(lost.delivery_ids.size(), 1u);
    auto d = must(pub_.find(a_, lost.delivery_ids[0]));
    auto body = blobs_->get("tenant-a", d.data().payload_ref.value_or(""));
    ASSERT_TRUE(body) << "the delivery's payload was removed: " << body.error().message();
    EXPECT_EQ(boost::json::parse(*body).at("eventId").as_string(), event.event_id);
}

TEST_F(publisher_test, a_domain_event_fans_out_once_with_its_envelope_as_payload) {
    auto sub = subscribe(a_, std::string(events::event_type::run_completed));
    auto filtered = subscribe(a_, std::string(events::event_type::run_completed),
                              boost::json::parse(R"({"equals": {"path": "$.data.status", "value": "Failed"}})"));
    subscribe(b_, std::string(events::event_type::run_completed));
    auto e = run_completed("tenant-a");

    auto first = must(pub_.fan_out(e));
    EXPECT_FALSE(first.repeated);
    EXPECT_EQ(first.event_id, e.event_id);
    ASSERT_EQ(first.delivery_ids.size(), 1u);
    auto d = must(pub_.find(a_, first.delivery_ids[0]));
    EXPECT_EQ(d.data().subscription_id, sub);
    EXPECT_EQ(d.data().event_id, e.event_id);
    EXPECT_EQ(boost::json::parse(must(blobs_->get("tenant-a", d.data().payload_ref.value()))), to_json(e));
    EXPECT_EQ(deliveries_of(a_, filtered), 0u);

    // The relay may hand the same event over again (a crash before it marked it): nothing new.
    auto again = must(pub_.fan_out(e));
    EXPECT_TRUE(again.repeated);
    EXPECT_EQ(again.delivery_ids, first.delivery_ids);
    EXPECT_EQ(deliveries_of(a_, sub), 1u);
    EXPECT_TRUE(must(pub_.list(b_, {}, {})).items.empty()) << "tenant b's subscription got tenant a's event";
}

TEST_F(publisher_test, events_without_a_subscriber_a_tenant_or_of_a_delivery_itself_create_nothing) {
    auto all = subscribe(a_, "*");
    auto unheard = run_completed("tenant-b");
    auto none = must(pub_.fan_out(unheard));
    EXPECT_TRUE(none.delivery_ids.empty());
    EXPECT_FALSE(none.repeated);
    // A delivery's own events would feed a `*` subscription deliveries about its deliveries.
    auto delivered = run_completed("tenant-a", "WebhookDelivery");
    delivered.event_type = std::string(events::event_type::webhook_delivered);
    EXPECT_TRUE(must(pub_.fan_out(delivered)).delivery_ids.empty());
    EXPECT_TRUE(must(pub_.fan_out(run_completed(""))).delivery_ids.empty());  // a global provider's event
    // Nor the failure a dead-lettered delivery records: a `*` subscription whose endpoint
    // refused it would get a delivery about it, fail that one too, and so on without end.
    auto failed_delivery = run_completed("tenant-a", "IntegrationFailure");
    failed_delivery.event_type = std::string(events::event_type::integration_failed);
    failed_delivery.data = {{"failureId", "fail-1"}, {"source", "Delivery"}, {"sourceId", "del-1"}};
    EXPECT_TRUE(must(pub_.fan_out(failed_delivery)).delivery_ids.empty());
    // Nor its resolution: every refused inbound request records a failure resolved at once, and
    // a forged request would otherwise cost an outbound delivery to every `*` subscription.
    auto resolved_delivery = failed_delivery;
    resolved_delivery.event_type = std::string(events::event_type::failure_resolved);
    resolved_delivery.data = {{"failureId", "fail-1"}, {"source", "Delivery"}, {"sourceId", "del-1"}, {"outcome", "DeadLettered"}};
    EXPECT_TRUE(must(pub_.fan_out(resolved_delivery)).delivery_ids.empty());
    EXPECT_EQ(deliveries_of(a_, all), 0u);
    EXPECT_EQ(must(blobs_->purge_older_than(clock_.now() + 1h)), 0u) << "no payload was written";
    // A run's failure is fanned out like any event.
    auto failed_run = run_completed("tenant-a", "IntegrationFailure");
    failed_run.event_type = std::string(events::event_type::integration_failed);
    failed_run.data = {{"failureId", "fail-2"}, {"source", "Run"}, {"sourceId", "run-1"}};
    EXPECT_EQ(must(pub_.fan_out(failed_run)).delivery_ids.size(), 1u);
    auto resolved_run = failed_run;
    resolved_run.event_id = new_id(id_prefix::event, time_point{});
    resolved_run.event_type = std::string(events::event_type::failure_resolved);
    EXPECT_EQ(must(pub_.fan_out(resolved_run)).delivery_ids.size(), 1u);
}

/** The relay over the same store, fanning every event out as the platform wires it: each
 *  subscription saved above is itself an event (WebhookSubscribed) of its tenant. */
class relayed_publisher_test : public publisher_test {
protected:
    relayed_publisher_test() {
        events_.subscribe("*", [this](events::event_envelope const& e) -> result<void> {
            if (auto r = pub_.fan_out(e); !r) return r.error();
            return {};
        });
    }

    std::size_t pending() { return must(store_->pending_events(100)).size(); }

    events::in_process_dispatcher events_;
    events::outbox_relay relay_{*store_, events_,
                                events::outbox_relay_options{.clock = &clock_,
                                                             .on_batch_begin = [this] { pub_.begin_batch(); },
                                                             .on_batch_end = [this] { pub_.end_batch(); }}};
    std::string const subscribed_ = std::string(events::event_type::webhook_subscribed);
};

TEST_F(relayed_publisher_test, an_event_nobody_subscribed_to_is_marked_published_and_fans_out_to_nothing) {
    auto orders = subscribe(a_, "order.*");
    auto more_orders = subscribe(a_, "order.*");  // a second event of the same tenant and type in the batch
    auto all_of_b = subscribe(b_, "*");           // hears its own WebhookSubscribed
    EXPECT_EQ(must(relay_.run_once()), 3u);
    EXPECT_EQ(pending(), 0u) << "every event is marked published, heard or not";
    EXPECT_EQ(deliveries_of(a_, orders), 0u);
    EXPECT_EQ(deliveries_of(a_, more_orders), 0u);
    EXPECT_EQ(deliveries_of(b_, all_of_b), 1u);
    EXPECT_EQ(must(blobs_->purge_older_than(clock_.now() + 1h)), 1u) << "only the heard event's payload was written";
}

TEST_F(relayed_publisher_test, a_subscription_made_between_two_batches_receives_the_next_event) {
    subscribe(a_, "order.*");  // unheard: the batch remembers that tenant a has no WebhookSubscribed subscriber
    EXPECT_EQ(must(relay_.run_once()), 1u);
    auto listener = subscribe(a_, subscribed_);  // its own event is the next one
    EXPECT_EQ(must(relay_.run_once()), 1u);
    EXPECT_EQ(deliveries_of(a_, listener), 1u) << "the first batch's answer outlived it";
}

TEST_F(relayed_publisher_test, a_subscription_saved_by_another_process_is_seen_by_the_next_batch) {
    auto other = must(storage::open_sqlite_store({.path = dir_.file("i.db"), .clock = &clock_}));
    subscribe(a_, "order.*");
    EXPECT_EQ(must(relay_.run_once()), 1u);
    auto listener = subscribe(a_, subscribed_, std::nullopt, true, other.get());
    EXPECT_EQ(must(relay_.run_once()), 1u);
    EXPECT_EQ(deliveries_of(a_, listener), 1u) << "the other store's subscription was not seen";
}

}  // namespace
