#include <integration/domain/delivery.hpp>

#include <integration/domain/event.hpp>

#include "domain/fixtures.hpp"

#include <gtest/gtest.h>

#include <string>

namespace {

using namespace integration;
using namespace integration::webhooks;
using fixtures::snap;
using fixtures::tenant_ctx;

constexpr std::string_view delivered_event = events::event_type::webhook_delivered;
constexpr std::string_view failed_event = events::event_type::integration_failed;

inbound_verification const verified{.signature_valid = true, .tenant_resolved = true};

class delivery_test : public testing::Test {
protected:
    manual_clock clock;
    std::string connection_id = new_id(id_prefix::connection, clock.now());
    std::string provider_id = new_id(id_prefix::provider, clock.now());

    webhook_subscription subscription(std::int64_t max_attempts = 3) {
        subscription_spec s{.project_id = "proj-1",
                            .event_type = "order.*",
                            .endpoint_url = "https://hooks.customer.example/integration",
                            .signing_secret_ref = "vault://local/t1/whsec?version=1",
                            .attempt_policy = subscription_attempt_policy{.max_attempts = max_attempts}};
        return webhook_subscription::create(tenant_ctx(), clock.now(), s).value();
    }
    webhook_delivery outbound(std::int64_t max_attempts = 3) {
        return webhook_delivery::outbound(tenant_ctx(), clock.now(), subscription(max_attempts), "order.created",
                                          "evt-1", "blob://payloads/1")
            .value();
    }
    webhook_delivery inbound(std::string provider_delivery_id = "wh_001") {
        return webhook_delivery::inbound(tenant_ctx(), clock.now(), connection_id, provider_id,
                                         std::move(provider_delivery_id), "charge.succeeded", "blob://inbound/1",
                                         "sha256:" + std::string(64, 'c'))
            .value();
    }
    delivery_attempt ok() { return {.http_status = 204, .latency_ms = 80, .attempted_at = clock.now()}; }
    delivery_attempt refused() {
        return {.http_status = 503, .latency_ms = 30, .response_excerpt = "busy", .attempted_at = clock.now()};
    }
    webhook_delivery failed_once() {
        auto d = outbound();
        d.record_failure(refused(), clock.now() + std::chrono::seconds{5}).value();
        return d;
    }
    webhook_delivery delivered() {
        auto d = outbound();
        d.record_success(ok()).value();
        return d;
    }
    webhook_delivery dead_lettered() {
        auto d = outbound(1);
        d.record_failure(refused(), clock.now()).value();
        return d;
    }
    webhook_delivery accepted() {
        auto d = inbound();
        d.accept(verified, clock.now()).value();
        return d;
    }
    webhook_delivery rejected() {
        auto d = inbound();
        d.reject("bad signature", clock.now()).value();
        return d;
    }
};

// ---- outbound creation ----------------------------------------------------------------------

TEST_F(delivery_test, outbound_is_pending_signed_and_due_now) {
    auto sub = subscription(5);
    auto d = webhook_delivery::outbound(tenant_ctx(), clock.now(), sub, "order.created", "evt-1", "blob://payloads/1")
                 .value();
    EXPECT_TRUE(is_valid_id(d.id(), id_prefix::delivery)) << d.id();
    EXPECT_EQ(d.status(), delivery_status::pending);
    EXPECT_EQ(d.data().direction, delivery_direction::outbound);
    EXPECT_EQ(d.data().subscription_id, sub.id());
    EXPECT_EQ(d.data().event_id, "evt-1");
    EXPECT_EQ(d.data().payload_ref, "blob://payloads/1");
    EXPECT_EQ(d.data().signature_status, signature_status::signed_outbound);
    EXPECT_EQ(d.data().max_attempts, 5) << "the subscription's attempt policy resolves the maximum";
    EXPECT_EQ(d.data().attempts, 0);
    EXPECT_EQ(d.data().next_attempt_at, clock.now());
    EXPECT_FALSE(d.terminal());
    EXPECT_TRUE(d.pending_events().empty());
}

TEST_F(delivery_test, inactive_subscriptions_are_skipped) {
    auto sub = subscription();
    sub.deactivate("paused").value();
    auto r = webhook_delivery::outbound(tenant_ctx(), clock.now(), sub, "order.created", "evt-1", std::nullopt);
    EXPECT_ERRC(r, errc::invalid_state);
    EXPECT_NE(r.error().detail().find("inactive"), std::string::npos) << r.error().detail();
}

TEST_F(delivery_test, outbound_needs_an_event_type_the_subscription_takes) {
    EXPECT_ERRC(webhook_delivery::outbound(tenant_ctx(), clock.now(), subscription(), "invoice.paid", "evt-1",
                                           std::nullopt),
                errc::invalid_state);
}

// ---- outbound transitions -------------------------------------------------------------------

TEST_F(delivery_test, pending_to_delivered_on_success_raises_delivered) {
    auto d = outbound();
    clock.advance(std::chrono::milliseconds{10});
    auto a = ok();
    a.attempt = 99;  // numbered by the delivery, not the caller
    ASSERT_TRUE(d.record_success(a));
    EXPECT_EQ(d.status(), delivery_status::delivered);
    EXPECT_TRUE(d.terminal());
    EXPECT_EQ(d.data().attempts, 1);
    ASSERT_EQ(d.data().delivery_attempts.size(), 1u);
    EXPECT_EQ(d.data().delivery_attempts[0].attempt, 1);
    EXPECT_EQ(d.data().delivery_attempts[0].http_status, 204);
    EXPECT_EQ(d.data().last_attempt_at, clock.now());
    EXPECT_FALSE(d.data().next_attempt_at);

    ASSERT_EQ(d.pending_events().size(), 1u);
    auto const& e = d.pending_events()[0];
    EXPECT_EQ(e.event_type, delivered_event);
    EXPECT_EQ(e.data.at("deliveryId").as_string(), d.id());
    EXPECT_EQ(e.data.at("direction").as_string(), "Outbound");
    EXPECT_EQ(e.data.at("eventType").as_string(), "order.created");
    EXPECT_EQ(e.data.at("subscriptionId").as_string(), *d.data().subscription_id);
    EXPECT_EQ(e.data.at("attempts").as_int64(), 1);
}

TEST_F(delivery_test, pending_to_failed_schedules_a_retry_without_an_event) {
    auto d = outbound();
    auto next = clock.now() + std::chrono::seconds{5};
    ASSERT_TRUE(d.record_failure(refused(), next));
    EXPECT_EQ(d.status(), delivery_status::failed);
    EXPECT_FALSE(d.terminal());
    EXPECT_EQ(d.data().attempts, 1);
    EXPECT_EQ(d.data().next_attempt_at, next);
    EXPECT_EQ(d.data().delivery_attempts[0].response_excerpt, "busy");
    EXPECT_TRUE(d.pending_events().empty());
}

TEST_F(delivery_test, failed_to_failed_then_delivered) {
    auto d = failed_once();
    ASSERT_TRUE(d.record_failure(refused(), clock.now() + std::chrono::seconds{25}));
    EXPECT_EQ(d.status(), delivery_status::failed);
    EXPECT_EQ(d.data().attempts, 2);
    ASSERT_TRUE(d.record_success(ok()));
    EXPECT_EQ(d.status(), delivery_status::delivered);
    EXPECT_EQ(d.data().attempts, 3);
    EXPECT_EQ(fixtures::event_types(d), std::vector<std::string>{std::string(delivered_event)});
}

TEST_F(delivery_test, the_last_allowed_failure_dead_letters_and_raises_integration_failed) {
    auto d = failed_once();
    d.record_failure(refused(), clock.now() + std::chrono::seconds{25}).value();
    ASSERT_TRUE(d.record_failure(refused(), clock.now() + std::chrono::seconds{125}));
    EXPECT_EQ(d.status(), delivery_status::dead_lettered);
    EXPECT_TRUE(d.terminal());
    EXPECT_EQ(d.data().attempts, 3);
    EXPECT_FALSE(d.data().next_attempt_at) << "nothing is due after dead-lettering";

    ASSERT_EQ(d.pending_events().size(), 1u);
    auto const& e = d.pending_events()[0];
    EXPECT_EQ(e.event_type, failed_event);
    EXPECT_EQ(e.data.at("source").as_string(), "Delivery");
    EXPECT_EQ(e.data.at("deliveryId").as_string(), d.id());
    EXPECT_EQ(e.data.at("direction").as_string(), "Outbound");
    EXPECT_NE(std::string(e.data.at("message").as_string()).find("3 attempts"), std::string::npos);
}

TEST_F(delivery_test, with_one_attempt_allowed_pending_dead_letters_directly) {
    auto d = outbound(1);
    ASSERT_TRUE(d.record_failure(refused(), clock.now()));
    EXPECT_EQ(d.status(), delivery_status::dead_lettered);
    EXPECT_EQ(d.pending_events().back().event_type, failed_event);
}

TEST_F(delivery_test, attempts_never_exceed_the_resolved_maximum) {
    auto d = dead_lettered();
    auto before = snap(d);
    EXPECT_ERRC(d.record_failure(refused(), clock.now()), errc::invalid_state);
    EXPECT_ERRC(d.record_success(ok()), errc::invalid_state);
    EXPECT_EQ(d.data().attempts, d.data().max_attempts);
    EXPECT_UNCHANGED(d, before);

    // A stored delivery that is still Failed but has used every attempt takes no more.
    auto f = failed_once();
    auto data = f.data();
    data.max_attempts = data.attempts;
    auto exhausted = webhook_delivery::restore(f.meta(), data).value();
    auto exhausted_before = snap(exhausted);
    EXPECT_ERRC(exhausted.record_failure(refused(), clock.now()), errc::invariant_violation);
    EXPECT_ERRC(exhausted.record_success(ok()), errc::invariant_violation);
    EXPECT_UNCHANGED(exhausted, exhausted_before);
}

TEST_F(delivery_test, delivered_takes_no_further_attempts) {
    auto d = delivered();
    auto before = snap(d);
    EXPECT_ERRC(d.record_success(ok()), errc::invalid_state);
    EXPECT_ERRC(d.record_failure(refused(), clock.now()), errc::invalid_state);
    EXPECT_UNCHANGED(d, before);
}

TEST_F(delivery_test, replay_returns_a_finished_or_failed_delivery_to_pending_with_more_attempts) {
    for (auto d : {dead_lettered(), delivered(), failed_once()}) {
        clock.advance(std::chrono::minutes{1});
        auto events_before = d.pending_events().size();
        auto attempts = d.data().attempts;
        ASSERT_TRUE(d.replay(2, clock.now()));
        EXPECT_EQ(d.status(), delivery_status::pending);
        EXPECT_EQ(d.data().max_attempts, attempts + 2);
        EXPECT_EQ(d.data().attempts, attempts) << "history is kept";
        EXPECT_EQ(d.data().next_attempt_at, clock.now());
        EXPECT_EQ(d.pending_events().size(), events_before);
        ASSERT_TRUE(d.record_success(ok()));
        EXPECT_EQ(d.data().attempts, attempts + 1);
    }
}

TEST_F(delivery_test, replay_refuses_a_pending_delivery_and_a_zero_budget) {
    auto pending = outbound();
    auto before = snap(pending);
    EXPECT_ERRC(pending.replay(1, clock.now()), errc::invalid_state);
    EXPECT_UNCHANGED(pending, before);

    auto dead = dead_lettered();
    auto dead_before = snap(dead);
    EXPECT_ERRC(dead.replay(0, clock.now()), errc::invalid_argument);
    EXPECT_UNCHANGED(dead, dead_before);
}

// ---- inbound --------------------------------------------------------------------------------

TEST_F(delivery_test, inbound_is_pending_and_unverified) {
    auto d = inbound();
    EXPECT_EQ(d.status(), delivery_status::pending);
    EXPECT_EQ(d.data().direction, delivery_direction::inbound);
    EXPECT_EQ(d.data().signature_status, signature_status::unverified);
    EXPECT_EQ(d.data().provider_delivery_id, "wh_001");
    EXPECT_EQ(d.data().connection_id, connection_id);
    EXPECT_EQ(d.data().provider_id, provider_id);
    EXPECT_FALSE(d.data().subscription_id);
    EXPECT_FALSE(d.terminal());
    EXPECT_TRUE(d.pending_events().empty());
}

TEST_F(delivery_test, inbound_needs_the_vendors_delivery_id_and_an_event_type) {
    EXPECT_ERRC(webhook_delivery::inbound(tenant_ctx(), clock.now(), connection_id, provider_id, "", "charge.succeeded",
                                          std::nullopt, std::nullopt),
                errc::invalid_argument);
    EXPECT_ERRC(webhook_delivery::inbound(tenant_ctx(), clock.now(), connection_id, provider_id, "wh_1", "",
                                          std::nullopt, std::nullopt),
                errc::invalid_argument);
}

TEST_F(delivery_test, pending_to_accepted_after_signature_and_tenant_raises_delivered_and_the_canonical_event) {
    auto d = inbound();
    ASSERT_TRUE(d.accept(verified, clock.now(), boost::json::value{{"id", "ch_1"}, {"amount", 100}}));
    EXPECT_EQ(d.status(), delivery_status::accepted);
    EXPECT_EQ(d.data().signature_status, signature_status::verified);
    EXPECT_EQ(d.data().last_attempt_at, clock.now());
    EXPECT_TRUE(d.terminal());
    ASSERT_EQ(d.pending_events().size(), 2u);
    auto const& e = d.pending_events()[0];
    EXPECT_EQ(e.event_type, delivered_event);
    EXPECT_EQ(e.data.at("direction").as_string(), "Inbound");
    EXPECT_EQ(e.data.at("providerDeliveryId").as_string(), "wh_001");
    EXPECT_EQ(e.data.at("connectionId").as_string(), connection_id);
    auto const& canonical = d.pending_events()[1];
    EXPECT_EQ(canonical.event_type, "charge.succeeded");
    EXPECT_EQ(canonical.data.at("deliveryId").as_string(), d.id());
    EXPECT_EQ(canonical.data.at("providerDeliveryId").as_string(), "wh_001");
    EXPECT_EQ(canonical.data.at("providerId").as_string(), provider_id);
    EXPECT_EQ(canonical.data.at("body").at("amount").as_int64(), 100);
}

TEST_F(delivery_test, a_refused_inbound_request_is_failed_at_once_without_a_vendor_delivery_id) {
    auto d = webhook_delivery::refused_inbound(tenant_ctx(), clock.now(), connection_id, provider_id,
                                               "github.unverified", "signature-mismatch")
                 .value();
    EXPECT_EQ(d.status(), delivery_status::failed);
    EXPECT_EQ(d.data().direction, delivery_direction::inbound);
    EXPECT_EQ(d.data().signature_status, signature_status::invalid);
    EXPECT_EQ(d.data().rejection_reason, "signature-mismatch");
    EXPECT_FALSE(d.data().provider_delivery_id);
    EXPECT_TRUE(d.terminal());
    ASSERT_EQ(d.pending_events().size(), 1u);
    EXPECT_EQ(d.pending_events()[0].event_type, failed_event);
}

TEST_F(delivery_test, an_inbound_delivery_is_not_accepted_without_signature_verification) {
    auto d = inbound();
    auto before = snap(d);
    auto r = d.accept({.signature_valid = false, .tenant_resolved = true}, clock.now());
    EXPECT_ERRC(r, errc::invariant_violation);
    EXPECT_NE(r.error().detail().find("signature"), std::string::npos) << r.error().detail();
    EXPECT_EQ(d.status(), delivery_status::pending);
    EXPECT_UNCHANGED(d, before);
}

TEST_F(delivery_test, an_inbound_delivery_is_not_accepted_without_tenant_resolution) {
    auto d = inbound();
    auto before = snap(d);
    auto r = d.accept({.signature_valid = true, .tenant_resolved = false}, clock.now());
    EXPECT_ERRC(r, errc::invariant_violation);
    EXPECT_NE(r.error().detail().find("tenant"), std::string::npos) << r.error().detail();
    EXPECT_UNCHANGED(d, before);
}

TEST_F(delivery_test, pending_to_failed_on_rejection_marks_the_signature_invalid_and_raises_failed) {
    auto d = inbound();
    ASSERT_TRUE(d.reject("signature mismatch", clock.now()));
    EXPECT_EQ(d.status(), delivery_status::failed);
    EXPECT_EQ(d.data().signature_status, signature_status::invalid);
    EXPECT_TRUE(d.terminal()) << "an inbound rejection is final";
    ASSERT_EQ(d.pending_events().size(), 1u);
    auto const& e = d.pending_events()[0];
    EXPECT_EQ(e.event_type, failed_event);
    EXPECT_EQ(e.data.at("source").as_string(), "Delivery");
    EXPECT_EQ(e.data.at("direction").as_string(), "Inbound");
    EXPECT_EQ(e.data.at("category").as_string(), "Validation");
    EXPECT_EQ(e.data.at("message").as_string(), "signature mismatch");
}

TEST_F(delivery_test, accepted_and_rejected_inbound_deliveries_are_final) {
    for (auto d : {accepted(), rejected()}) {
        auto before = snap(d);
        EXPECT_ERRC(d.accept(verified, clock.now()), errc::invalid_state);
        EXPECT_ERRC(d.reject("again", clock.now()), errc::invalid_state);
        EXPECT_ERRC(d.replay(1, clock.now()), errc::invalid_state);
        EXPECT_UNCHANGED(d, before);
    }
}

TEST_F(delivery_test, operations_of_the_other_direction_are_refused) {
    auto out = outbound();
    auto out_before = snap(out);
    EXPECT_ERRC(out.accept(verified, clock.now()), errc::invalid_state);
    EXPECT_ERRC(out.reject("x", clock.now()), errc::invalid_state);
    EXPECT_UNCHANGED(out, out_before);

    auto in = inbound();
    auto in_before = snap(in);
    EXPECT_ERRC(in.record_success(ok()), errc::invalid_state);
    EXPECT_ERRC(in.record_failure(refused(), clock.now()), errc::invalid_state);
    EXPECT_ERRC(in.replay(1, clock.now()), errc::invalid_state);
    EXPECT_UNCHANGED(in, in_before);
}

TEST_F(delivery_test, restore_refuses_an_id_without_the_delivery_prefix) {
    auto d = inbound();
    auto data = d.data();
    data.delivery_id = new_id(id_prefix::subscription, clock.now());
    EXPECT_ERRC(webhook_delivery::restore(d.meta(), data), errc::invalid_argument);
}

// ---- "A delivery is idempotent on providerDeliveryId (inbound) or deliveryId (outbound)" -----

class delivery_idempotency_test : public delivery_test {
protected:
    fixtures::temp_store store{clock};

    result<void> save(webhook_delivery d) {
        return store->transact(tenant_ctx(), [&](storage::unit_of_work& uow) { return uow.deliveries().save(d); });
    }
};

TEST_F(delivery_idempotency_test, an_inbound_delivery_id_is_stored_once_per_connection) {
    auto first = inbound("wh_777");
    ASSERT_TRUE(save(first));
    EXPECT_ERRC(save(inbound("wh_777")), errc::already_exists);

    auto other_connection_id = new_id(id_prefix::connection, clock.now());
    auto other_connection = webhook_delivery::inbound(tenant_ctx(), clock.now(), other_connection_id, provider_id,
                                                      "wh_777", "charge.succeeded", std::nullopt, std::nullopt)
                                .value();
    EXPECT_TRUE(save(other_connection));

    std::string found;
    ASSERT_TRUE(store->read(tenant_ctx(), [&](storage::unit_of_work& uow) -> result<void> {
        auto d = uow.deliveries().find_inbound(connection_id, "wh_777");
        if (!d) return d.error();
        found = d->id();
        return {};
    }));
    EXPECT_EQ(found, first.id());
}

TEST_F(delivery_idempotency_test, an_outbound_delivery_id_is_stored_once) {
    auto d = outbound();
    ASSERT_TRUE(save(d));
    EXPECT_ERRC(save(d), errc::already_exists);
}

}  // namespace
