#include <integration/services/delivery_worker.hpp>

#include <integration/backends/curl/curl_transport.hpp>
#include <integration/backends/local_vault/local_secret_store.hpp>
#include <integration/backends/sqlite/sqlite_blob_store.hpp>
#include <integration/backends/sqlite/sqlite_store.hpp>
#include <integration/outbound/egress_policy.hpp>
#include <integration/outbound/token_bucket.hpp>
#include <integration/services/retention_worker.hpp>
#include <integration/services/webhook_signature.hpp>

#include "storage/fixtures.hpp"
#include "support/base64.hpp"
#include "support/credential_doubles.hpp"
#include "support/keep_alive_server.hpp"
#include "support/loopback_server.hpp"
#include "webhooks/delivery_world.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace integration::testing {
namespace {

using namespace std::chrono_literals;
using webhooks::delivery_status;

std::string answer(int status, std::string const& extra = "") {
    return http_answer_bytes(status, "{\"ok\":true}", extra);
}

class delivery_worker_test : public ::testing::Test {
protected:
    webhooks::delivery_worker make_worker(webhooks::delivery_worker_options o = {}) {
        return webhooks::delivery_worker(*w_.store, *w_.vault, *w_.blobs, *w_.transport, w_.hop_check(), w_.limits,
                                         w_.clock, std::move(o));
    }
    /** A worker whose egress check resolves names with `dns`. */
    webhooks::delivery_worker make_worker(net::resolver& dns, webhooks::delivery_worker_options o = {}) {
        return webhooks::delivery_worker(*w_.store, *w_.vault, *w_.blobs, *w_.transport, http::egress_hop_check(w_.policy, dns),
                                         w_.limits, w_.clock, std::move(o));
    }
    /** A delivery to `host` on `port` for a subscription with the longest timeout (120 s), whose
     *  send leaves the least of its lease to spare. */
    std::string deliver_with_longest_timeout(std::uint16_t port, std::string const& host) {
        return w_.deliver(w_.subscribe(w_.url(port, host), [](webhooks::subscription_spec& s) {
            s.attempt_policy = webhooks::subscription_attempt_policy{.timeout_ms = 120'000};
        }));
    }

    /** Delivery `id` was put off once for the worker's own failure, which its `deferredReason`
     *  names (`why`): no attempt and no failure recorded, its subscription still active, nothing
     *  sent to `receiver`. */
    void expect_put_off_once(webhooks::delivery_worker& worker, std::string const& id, std::string const& subscription_id,
                             keep_alive_server& receiver, std::string const& why) {
        auto d = w_.delivery(id);
        EXPECT_EQ(d.status(), delivery_status::pending);
        EXPECT_NE(d.data().deferred_reason.value_or("").find(why), std::string::npos) << d.data().deferred_reason.value_or("(none)");
        EXPECT_EQ(d.data().attempts, 0);
        EXPECT_TRUE(w_.failures_of(id).empty());
        EXPECT_TRUE(w_.subscription(subscription_id).active());
        EXPECT_EQ(worker.stats().local_failures_total.load(), 1u);
        EXPECT_TRUE(receiver.requests().empty());
    }

    /** Sends what is due now and records every outcome. */
    void pump(webhooks::delivery_worker& worker) {
        must(worker.sweep());
        must(worker.drain());
    }

    temp_dir dir_;
    delivery_world w_{dir_};
};

TEST_F(delivery_worker_test, a_due_delivery_is_signed_sent_and_recorded_as_delivered) {
    keep_alive_server receiver([](received_request const&) { return http_answer_bytes(200, "thanks"); });
    auto sub = w_.subscribe(w_.url(receiver.port()));
    auto id = w_.deliver(sub, R"({"orderId":"o-1"})");
    auto worker = make_worker();
    pump(worker);

    auto seen = receiver.requests();
    ASSERT_EQ(seen.size(), 1u);
    auto const& r = seen[0];
    EXPECT_EQ(r.method, "POST");
    EXPECT_EQ(r.body, R"({"orderId":"o-1"})");
    EXPECT_EQ(r.header("webhook-id"), id);
    auto now_s = std::chrono::duration_cast<std::chrono::seconds>(w_.clock.now().time_since_epoch()).count();
    EXPECT_EQ(r.header("webhook-timestamp"), std::to_string(now_s));
    EXPECT_EQ(r.header("Content-Type"), "application/json");
    EXPECT_TRUE(r.header("User-Agent"));
    EXPECT_TRUE(webhooks::verify(secret_bytes(w_.secret), id, *r.header("webhook-timestamp"), r.body,
                                 r.header("webhook-signature").value_or(""), now_s));
    EXPECT_FALSE(webhooks::verify(secret_bytes(w_.secret), id, *r.header("webhook-timestamp"), r.body + " ",
                                  r.header("webhook-signature").value_or(""), now_s));

    auto d = w_.delivery(id);
    EXPECT_EQ(d.status(), delivery_status::delivered);
    ASSERT_EQ(d.data().delivery_attempts.size(), 1u);
    EXPECT_EQ(d.data().delivery_attempts[0].http_status, 200);
    EXPECT_EQ(d.data().delivery_attempts[0].response_excerpt, "thanks");
    EXPECT_EQ(worker.stats().delivered_total.load(), 1u);
    EXPECT_EQ(worker.stats().in_flight.load(), 0u);
    pump(worker);  // nothing more is due
    EXPECT_EQ(receiver.requests().size(), 1u);
}

// Only an excerpt of the receiver's answer is kept, so only that much is read: a 200 with a body
// past the transport's cap (16 MiB) is a delivered webhook, not a failed attempt.
TEST_F(delivery_worker_test, a_receiver_answering_200_with_a_huge_body_has_the_delivery_delivered) {
    keep_alive_server receiver([](received_request const&) { return http_answer_bytes(200, std::string(17 << 20, 'k')); });
    auto sub = w_.subscribe(w_.url(receiver.port()));
    auto id = w_.deliver(sub, R"({"orderId":"o-big"})");
    auto worker = make_worker({.response_excerpt = 64});
    pump(worker);
    auto d = w_.delivery(id);
    EXPECT_EQ(d.status(), delivery_status::delivered);
    ASSERT_EQ(d.data().delivery_attempts.size(), 1u);
    EXPECT_EQ(d.data().delivery_attempts[0].http_status, 200);
    EXPECT_EQ(d.data().delivery_attempts[0].response_excerpt, std::string(64, 'k'));
    EXPECT_EQ(receiver.requests().size(), 1u);
}

TEST_F(delivery_worker_test, failures_follow_the_default_schedule_with_jitter_then_dead_letter_with_a_failure) {
    keep_alive_server receiver(
        [](received_request const&) { return http_answer_bytes(500, std::string(10'000, 'e')); });
    auto sub = w_.subscribe(w_.url(receiver.port()));
    auto id = w_.deliver(sub);
    auto worker = make_worker();
    std::vector<std::chrono::milliseconds> const schedule{5s, 5min, 30min, 2h, 5h, 10h, 10h};
    for (std::size_t attempt = 1; attempt <= 8; ++attempt) {
        pump(worker);
        ASSERT_EQ(receiver.requests().size(), attempt);
        auto d = w_.delivery(id);
        ASSERT_EQ(d.data().attempts, static_cast<std::int64_t>(attempt));
        auto const& last = d.data().delivery_attempts.back();
        EXPECT_EQ(last.http_status, 500);
        EXPECT_EQ(last.response_excerpt->size(), 4096u);  // the excerpt is capped
        if (attempt == 8) {
            EXPECT_EQ(d.status(), delivery_status::dead_lettered);
            break;
        }
        ASSERT_EQ(d.status(), delivery_status::failed);
        auto wait = *d.data().next_attempt_at - w_.clock.now();
        auto base = schedule[attempt - 1];
        EXPECT_GE(wait, base * 8 / 10) << attempt;
        EXPECT_LE(wait, base * 12 / 10) << attempt;
        w_.clock.advance(wait - 1ms);
        pump(worker);  // not due yet
        ASSERT_EQ(receiver.requests().size(), attempt);
        w_.clock.advance(1ms);
    }
    for (auto const& r : receiver.requests()) EXPECT_EQ(r.header("webhook-id"), id);
    auto failures = w_.failures_of(id);
    ASSERT_EQ(failures.size(), 1u);
    EXPECT_EQ(failures[0].data().error_code, "http_500");
    // Resolved as it is recorded, as a dead-lettered run's failure is: retention removes it with
    // its delivery (left open, it would stay forever).
    EXPECT_TRUE(failures[0].resolved());
    EXPECT_EQ(worker.stats().dead_lettered_total.load(), 1u);
    EXPECT_EQ(worker.stats().failed_attempts_total.load(), 8u);
}

TEST_F(delivery_worker_test, the_receivers_retry_after_wins_in_seconds_or_as_a_date_capped_at_the_policy_maximum) {
    std::atomic<int> n{0};
    std::string date;
    keep_alive_server receiver([&](received_request const&) {
        switch (n++) {
            case 0:
                return answer(503, "Retry-After: 120\r\n");
            case 1:
                return answer(429, "Retry-After: " + date + "\r\n");
            default:
                return answer(503, "Retry-After: 86400\r\n");
        }
    });
    auto sub = w_.subscribe(w_.url(receiver.port()), [](webhooks::subscription_spec& s) {
        s.attempt_policy = webhooks::subscription_attempt_policy{.max_attempts = 5, .max_delay_ms = 3'600'000};
    });
    auto id = w_.deliver(sub);
    auto worker = make_worker();
    pump(worker);
    EXPECT_EQ(*w_.delivery(id).data().next_attempt_at, w_.clock.now() + 120s);

    w_.clock.advance(120s);
    date = http_date(w_.clock.now() + 900s);
    pump(worker);
    EXPECT_EQ(*w_.delivery(id).data().next_attempt_at, w_.clock.now() + 900s);

    w_.clock.advance(900s);
    pump(worker);
    EXPECT_EQ(*w_.delivery(id).data().next_attempt_at, w_.clock.now() + 1h);  // 86400 s capped at maxDelayMs
    EXPECT_EQ(receiver.requests().size(), 3u);
}

// A rate-limit reset of 0 (API gateways put one on every answer) or a Retry-After shorter than
// the schedule does not bring the next attempt forward: the receiver may only put it off.
TEST_F(delivery_worker_test, a_retry_after_shorter_than_the_schedule_does_not_bring_the_next_attempt_forward) {
    std::atomic<int> n{0};
    keep_alive_server receiver([&](received_request const&) {
        return n++ == 0 ? answer(500, "RateLimit-Reset: 0\r\n") : answer(503, "Retry-After: 1\r\n");
    });
    auto sub = w_.subscribe(w_.url(receiver.port()), [](webhooks::subscription_spec& s) {
        s.attempt_policy = webhooks::subscription_attempt_policy{.max_attempts = 3, .schedule_ms = std::vector<std::int64_t>{60'000, 600'000}};
    });
    auto id = w_.deliver(sub);
    auto worker = make_worker({.jitter = 0});
    pump(worker);
    EXPECT_EQ(*w_.delivery(id).data().next_attempt_at, w_.clock.now() + 60s);
    w_.clock.advance(60s);
    pump(worker);
    EXPECT_EQ(*w_.delivery(id).data().next_attempt_at, w_.clock.now() + 600s);
    EXPECT_EQ(receiver.requests().size(), 2u);
}

// A replay gives the delivery the subscription's whole schedule again: after it, the first failure
// waits the schedule's first delay, not its last.
TEST_F(delivery_worker_test, a_replayed_delivery_starts_its_schedule_over) {
    keep_alive_server receiver([](received_request const&) { return answer(500); });
    auto sub = w_.subscribe(w_.url(receiver.port()), [](webhooks::subscription_spec& s) {
        s.attempt_policy = webhooks::subscription_attempt_policy{.max_attempts = 3, .schedule_ms = std::vector<std::int64_t>{1'000, 3'600'000}};
    });
    auto id = w_.deliver(sub);
    auto worker = make_worker({.jitter = 0});
    pump(worker);
    w_.clock.advance(1s);
    pump(worker);
    w_.clock.advance(1h);
    pump(worker);
    ASSERT_EQ(w_.delivery(id).status(), delivery_status::dead_lettered);
    w_.replay(id, 3);  // what the publisher's replay gives: the policy's maxAttempts
    pump(worker);
    auto d = w_.delivery(id);
    ASSERT_EQ(d.data().attempts, 4);
    EXPECT_EQ(*d.data().next_attempt_at, w_.clock.now() + 1s);
    w_.clock.advance(1s);
    pump(worker);
    EXPECT_EQ(*w_.delivery(id).data().next_attempt_at, w_.clock.now() + 1h);
    EXPECT_EQ(receiver.requests().size(), 5u);
}

// A batch reads each subscription's signing secret once, and never keeps it past the batch: a
// new version of the secret (the subscription names its latest version) and a rotation of the
// subscription to another secret both sign the very next batch.
TEST_F(delivery_worker_test, a_rotated_signing_secret_signs_the_next_batch) {
    keep_alive_server receiver([](received_request const&) { return answer(204); });
    std::string latest;
    auto sub = w_.subscribe(w_.url(receiver.port()), [&](webhooks::subscription_spec& s) {
        auto ref = must(credentials::secret_ref::parse(s.signing_secret_ref));
        ref.version = 0;
        latest = s.signing_secret_ref = ref.uri();
    });
    auto worker = make_worker();
    auto signed_with = [&](std::size_t from, std::string const& secret) {
        auto seen = receiver.requests();
        std::size_t ok = 0;
        for (std::size_t i = from; i < seen.size(); ++i) {
            auto const& r = seen[i];
            auto now_s = std::stoll(r.header("webhook-timestamp").value_or("0"));
            if (webhooks::verify(secret_bytes(secret), *r.header("webhook-id"), *r.header("webhook-timestamp"), r.body,
                                 r.header("webhook-signature").value_or(""), now_s))
                ++ok;
        }
        return ok;
    };
    w_.deliver_many(sub, 3);
    pump(worker);
    ASSERT_EQ(receiver.requests().size(), 3u);
    EXPECT_EQ(signed_with(0, w_.secret), 3u);

    // The vault's next version of the same secret.
    std::string second = "whsec_" + base64(std::string(32, 'b'));
    auto name = must(credentials::secret_ref::parse(latest)).name;
    must(w_.vault->put(w_.ctx.tenant_id, name, secret_bytes(second)));
    w_.deliver_many(sub, 3);
    pump(worker);
    ASSERT_EQ(receiver.requests().size(), 6u);
    EXPECT_EQ(signed_with(3, second), 3u);
    EXPECT_EQ(signed_with(3, w_.secret), 0u);

    // The subscription rotated to another secret: both sign during the overlap.
    std::string third = "whsec_" + base64(std::string(32, 'c'));
    auto next = must(w_.vault->put(w_.ctx.tenant_id, "whsec-next", secret_bytes(third)));
    w_.rotate(sub.id(), next.uri(), 24h);
    w_.deliver_many(sub, 3);
    pump(worker);
    ASSERT_EQ(receiver.requests().size(), 9u);
    EXPECT_EQ(signed_with(6, third), 3u);
    EXPECT_EQ(signed_with(6, second), 3u);

    // A second rotation within the overlap: the three secrets sign, one signature each.
    std::string fourth = "whsec_" + base64(std::string(32, 'd'));
    auto last = must(w_.vault->put(w_.ctx.tenant_id, "whsec-last", secret_bytes(fourth)));
    w_.rotate(sub.id(), last.uri(), 24h);
    w_.deliver_many(sub, 2);
    pump(worker);
    ASSERT_EQ(receiver.requests().size(), 11u);
    for (auto const* secret : {&fourth, &third, &second}) EXPECT_EQ(signed_with(9, *secret), 2u);
    auto const requests = receiver.requests();
    std::string const header(requests.back().header("webhook-signature").value_or(""));
    EXPECT_EQ(std::count(header.begin(), header.end(), ' '), 2) << header;

    // A replaced secret deleted from the vault (its overlap ended, a rotation elsewhere deleted
    // it) signs nothing; the others still sign.
    must(w_.vault->soft_delete(w_.ctx.tenant_id, "whsec-next"));
    w_.deliver(sub);
    pump(worker);
    ASSERT_EQ(receiver.requests().size(), 12u);
    EXPECT_EQ(signed_with(11, fourth), 1u);
    EXPECT_EQ(signed_with(11, second), 1u);
    EXPECT_EQ(signed_with(11, third), 0u);
}

TEST_F(delivery_worker_test, a_410_dead_letters_the_delivery_and_deactivates_the_subscription) {
    keep_alive_server receiver([](received_request const&) { return answer(410); });
    auto sub = w_.subscribe(w_.url(receiver.port()));
    auto first = w_.deliver(sub);
    auto worker = make_worker();
    pump(worker);
    EXPECT_EQ(w_.delivery(first).status(), delivery_status::dead_lettered);
    auto s = w_.subscription(sub.id());
    EXPECT_FALSE(s.active());
    EXPECT_EQ(s.data().deactivation_reason, "endpoint answered 410 Gone");
    EXPECT_EQ(w_.failures_of(first).size(), 1u);

    w_.deliver(sub);  // an inactive subscription's deliveries are not sent
    pump(worker);
    EXPECT_EQ(receiver.requests().size(), 1u);
}

// With the default rule (20 failures in a row, the first a day old), the failures of a receiver
// that is down for a moment, with many deliveries in flight, disable nothing.
TEST_F(delivery_worker_test, a_burst_of_failures_does_not_disable_the_subscription_by_default) {
    keep_alive_server receiver([](received_request const&) { return answer(503); });
    auto sub = w_.subscribe(w_.url(receiver.port()));
    w_.deliver_many(sub, 30);
    auto worker = make_worker();
    pump(worker);
    EXPECT_EQ(receiver.requests().size(), 30u);
    auto s = w_.subscription(sub.id());
    EXPECT_TRUE(s.active());
    EXPECT_EQ(s.data().consecutive_failures, 30);
    EXPECT_EQ(worker.stats().subscriptions_disabled_total.load(), 0u);
}

TEST_F(delivery_worker_test, a_run_of_failures_disables_the_subscription) {
    keep_alive_server receiver([](received_request const&) { return answer(500); });
    auto sub = w_.subscribe(w_.url(receiver.port()));
    for (int i = 0; i < 3; ++i) w_.deliver(sub);
    auto worker = make_worker({.disable_after = 3, .disable_after_failing_for = 0ms});
    pump(worker);
    EXPECT_EQ(receiver.requests().size(), 3u);
    auto s = w_.subscription(sub.id());
    EXPECT_FALSE(s.active());
    EXPECT_EQ(s.data().consecutive_failures, 3);
    EXPECT_NE(s.data().deactivation_reason.value_or("").find("3 consecutive failures"), std::string::npos);
    EXPECT_EQ(worker.stats().subscriptions_disabled_total.load(), 1u);

    w_.clock.advance(1h);  // their retries come due, but the subscription is off
    pump(worker);
    EXPECT_EQ(receiver.requests().size(), 3u);
}

TEST_F(delivery_worker_test, a_replay_sends_the_same_webhook_id_again) {
    keep_alive_server receiver([](received_request const&) { return answer(200); });
    auto sub = w_.subscribe(w_.url(receiver.port()));
    auto id = w_.deliver(sub);
    auto worker = make_worker();
    pump(worker);
    w_.clock.advance(1min);
    w_.replay(id);
    pump(worker);
    auto seen = receiver.requests();
    ASSERT_EQ(seen.size(), 2u);
    EXPECT_EQ(seen[0].header("webhook-id"), id);
    EXPECT_EQ(seen[1].header("webhook-id"), id);
    EXPECT_NE(seen[0].header("webhook-timestamp"), seen[1].header("webhook-timestamp"));
    EXPECT_EQ(w_.delivery(id).status(), delivery_status::delivered);
}

// "A failure is resolved only when its source run/delivery reaches a terminal success or
// dead-letter state": a dead-lettered delivery's failure is resolved in the commit that
// dead-letters it, with its event; replayed and then delivered, it stays the one failure.
TEST_F(delivery_worker_test, a_dead_letter_resolves_its_failure_and_a_replay_keeps_it) {
    std::atomic<int> n{0};
    keep_alive_server receiver([&](received_request const&) { return answer(n++ == 0 ? 500 : 200); });
    auto sub = w_.subscribe(w_.url(receiver.port()), [](webhooks::subscription_spec& s) {
        s.attempt_policy = webhooks::subscription_attempt_policy{.max_attempts = 1};
    });
    auto id = w_.deliver(sub);
    auto worker = make_worker();
    pump(worker);
    ASSERT_EQ(w_.delivery(id).status(), delivery_status::dead_lettered);
    auto ended = w_.failures_of(id);
    ASSERT_EQ(ended.size(), 1u);
    EXPECT_TRUE(ended[0].resolved());
    bool resolved_event = false;
    for (auto const& e : must(w_.store->pending_events(1000)))
        resolved_event |= e.envelope.event_type == "IntegrationFailureResolved" && e.envelope.aggregate_id == ended[0].id();
    EXPECT_TRUE(resolved_event);
    w_.clock.advance(1min);
    w_.replay(id);
    pump(worker);
    EXPECT_EQ(w_.delivery(id).status(), delivery_status::delivered);
    auto after = w_.failures_of(id);
    ASSERT_EQ(after.size(), 1u);
    EXPECT_TRUE(after[0].resolved());
}

TEST_F(delivery_worker_test, an_ordered_subscription_sends_its_next_delivery_only_after_the_previous_one_ends) {
    std::atomic<int> n{0};
    keep_alive_server receiver([&](received_request const&) { return answer(n++ == 0 ? 500 : 200); });
    auto sub = w_.subscribe(w_.url(receiver.port()), [](webhooks::subscription_spec& s) { s.ordered = true; });
    auto first = w_.deliver(sub, R"({"n":1})");
    w_.clock.advance(1ms);
    auto second = w_.deliver(sub, R"({"n":2})");
    auto worker = make_worker();
    pump(worker);  // the first fails; the second waits behind it
    ASSERT_EQ(receiver.requests().size(), 1u);
    EXPECT_EQ(w_.delivery(second).data().attempts, 0);
    w_.clock.advance(10s);
    pump(worker);  // the first is retried and delivered
    pump(worker);  // now the second goes
    auto seen = receiver.requests();
    ASSERT_EQ(seen.size(), 3u);
    EXPECT_EQ(seen[0].header("webhook-id"), first);
    EXPECT_EQ(seen[1].header("webhook-id"), first);
    EXPECT_EQ(seen[2].header("webhook-id"), second);
    EXPECT_EQ(w_.delivery(second).status(), delivery_status::delivered);
}

TEST_F(delivery_worker_test, the_per_subscription_rate_limit_defers_without_counting_an_attempt) {
    keep_alive_server receiver([](received_request const&) { return answer(200); });
    auto sub = w_.subscribe(w_.url(receiver.port()), [](webhooks::subscription_spec& s) { s.max_per_second = 2; });
    std::vector<std::string> ids;
    for (int i = 0; i < 5; ++i) ids.push_back(w_.deliver(sub));
    auto worker = make_worker();
    pump(worker);
    EXPECT_EQ(receiver.requests().size(), 2u);
    int deferred = 0;
    for (auto const& id : ids) {
        auto d = w_.delivery(id);
        if (d.status() == delivery_status::delivered) continue;
        ++deferred;
        EXPECT_EQ(d.data().attempts, 0);
        EXPECT_GT(*d.data().next_attempt_at, w_.clock.now());
    }
    EXPECT_EQ(deferred, 3);
    pump(worker);  // still within the same second: nothing more
    EXPECT_EQ(receiver.requests().size(), 2u);
    w_.clock.advance(1s);
    pump(worker);
    EXPECT_EQ(receiver.requests().size(), 4u);
    w_.clock.advance(1s);
    pump(worker);
    EXPECT_EQ(receiver.requests().size(), 5u);
}

// A backlog larger than one claim: each claim's refused deliveries take the slots after the
// previous claim's, so they come due at the subscription's rate, one a second here, instead of
// every claim's starting again at the next second (and being claimed and deferred again).
TEST_F(delivery_worker_test, a_rate_limited_backlog_larger_than_a_claim_is_spread_at_the_subscriptions_rate) {
    keep_alive_server receiver([](received_request const&) { return answer(200); });
    auto sub = w_.subscribe(w_.url(receiver.port()), [](webhooks::subscription_spec& s) { s.max_per_second = 1; });
    std::vector<std::string> ids;
    for (int i = 0; i < 20; ++i) ids.push_back(w_.deliver(sub));
    auto worker = make_worker({.batch = 8});
    for (int claim = 0; claim < 3; ++claim) pump(worker);
    EXPECT_EQ(receiver.requests().size(), 1u);
    std::map<std::int64_t, int> due_per_second;
    for (auto const& id : ids) {
        auto d = w_.delivery(id);
        if (d.status() == delivery_status::delivered) continue;
        EXPECT_EQ(d.data().attempts, 0);
        ++due_per_second[std::chrono::duration_cast<std::chrono::seconds>(*d.data().next_attempt_at - w_.clock.now()).count()];
    }
    EXPECT_EQ(due_per_second.size(), 19u) << "deferred deliveries share a second";
    for (auto const& [second, n] : due_per_second) EXPECT_EQ(n, 1) << "second " << second;
    // They go out one a second.
    for (int s = 0; s < 19; ++s) {
        w_.clock.advance(1s);
        pump(worker);
    }
    EXPECT_EQ(receiver.requests().size(), 20u);
}

TEST_F(delivery_worker_test, the_egress_guard_is_asked_again_at_every_send) {
    keep_alive_server receiver([](received_request const&) { return answer(200); });
    auto url = w_.url(receiver.port(), "rebind.hooks.test");
    auto sub = w_.subscribe(url);  // subscribed while the name pointed at the (allowed) receiver
    auto worker = make_worker();
    for (auto const* address : {"10.0.0.1", "169.254.169.254"}) {
        w_.dns.set("rebind.hooks.test", address);
        auto id = w_.deliver(sub);
        pump(worker);
        auto d = w_.delivery(id);
        EXPECT_EQ(d.status(), delivery_status::failed) << address;
        ASSERT_EQ(d.data().delivery_attempts.size(), 1u);
        EXPECT_EQ(d.data().delivery_attempts[0].error.value_or("").rfind("egress denied", 0), 0u)
            << d.data().delivery_attempts[0].error.value_or("");
        EXPECT_FALSE(d.data().delivery_attempts[0].http_status);
    }
    EXPECT_EQ(receiver.accepted(), 0);
    w_.dns.set("rebind.hooks.test", "127.0.0.1");
    w_.deliver(sub);
    pump(worker);
    EXPECT_EQ(receiver.requests().size(), 1u);
}

TEST_F(delivery_worker_test, a_hanging_endpoint_delays_no_other_subscription) {
    std::atomic<bool> release{false};
    loopback_server hanging([&](int, loopback_server& self) {
        while (!release && !self.stopping()) std::this_thread::sleep_for(10ms);
    });
    keep_alive_server healthy([](received_request const&) { return answer(200); });
    auto stuck = w_.subscribe(w_.url(hanging.port(), "stuck.hooks.test"), [](webhooks::subscription_spec& s) {
        s.attempt_policy = webhooks::subscription_attempt_policy{.timeout_ms = 120'000};
    });
    auto fine = w_.subscribe(w_.url(healthy.port()));
    auto stuck_id = w_.deliver(stuck);
    w_.clock.advance(1ms);  // the hanging one is the oldest: it is leased and started first
    w_.deliver_many(fine, 1000);
    auto worker = make_worker({.max_in_flight = 64});
    for (int i = 0; i < 30'000 && worker.stats().delivered_total.load() < 1000; ++i) {
        must(worker.sweep());
        std::this_thread::sleep_for(1ms);
    }
    EXPECT_EQ(worker.stats().delivered_total.load(), 1000u);
    EXPECT_EQ(healthy.requests().size(), 1000u);
    EXPECT_EQ(w_.delivery(stuck_id).data().attempts, 0);  // still in flight
    EXPECT_EQ(worker.stats().in_flight.load(), 1u);
    release = true;  // the hanging endpoint now closes without an answer
    must(worker.drain());
    auto d = w_.delivery(stuck_id);
    EXPECT_EQ(d.status(), delivery_status::failed);
    EXPECT_TRUE(d.data().delivery_attempts.at(0).error);
}

/** Names under `.slow.test` answer only once released, as a tenant's DNS that takes its time. */
class slow_resolver final : public net::resolver {
public:
    explicit slow_resolver(net::resolver& inner) : inner_(inner) {}
    result<std::vector<net::ip_address>> resolve(std::string const& host) override {
        if (host.ends_with(".slow.test")) {
            std::unique_lock lock(mutex_);
            most_ = std::max(most_, ++waiting_);
            cv_.wait(lock, [&] { return released_; });
            --waiting_;
        }
        return inner_.resolve(host);
    }
    void release() {
        {
            std::lock_guard lock(mutex_);
            released_ = true;
        }
        cv_.notify_all();
    }
    int most() {
        std::lock_guard lock(mutex_);
        return most_;
    }
    bool released() {
        std::lock_guard lock(mutex_);
        return released_;
    }
    /** Waits (up to 5 s) until a lookup is held. */
    void wait_for_lookup() {
        for (int i = 0; i < 1000 && most() < 1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }

private:
    net::resolver& inner_;
    std::mutex mutex_;
    std::condition_variable cv_;
    bool released_ = false;
    int waiting_ = 0, most_ = 0;
};

// The egress check resolves each endpoint's name at every send. One tenant's names that take
// long to resolve hold at most half of the lookup threads, and never the thread that starts
// every tenant's deliveries: another tenant's delivery goes out meanwhile.
TEST_F(delivery_worker_test, a_tenants_slow_dns_delays_no_other_tenants_delivery) {
    keep_alive_server receiver([](received_request const&) { return answer(200); });
    slow_resolver dns(w_.dns);
    std::thread watchdog;  // without the lookup threads the sweep itself would wait: end the wait, fail
    std::atomic<bool> done{false};
    watchdog = std::thread([&] {
        for (int i = 0; i < 1000 && !done; ++i) std::this_thread::sleep_for(10ms);
        dns.release();
    });
    auto slow = w_.subscribe(w_.url(receiver.port(), "a.slow.test"));
    auto slow_ids = w_.deliver_many(slow, 6);
    w_.clock.advance(1ms);
    w_.ctx = request_context::for_tenant("tenant-b");
    auto fast = w_.subscribe(w_.url(receiver.port(), "b.hooks.test"));
    auto fast_id = w_.deliver(fast);
    auto worker = make_worker(dns, {.lookup_threads = 4});
    auto start = std::chrono::steady_clock::now();
    while (worker.stats().delivered_total.load() < 1 && std::chrono::steady_clock::now() - start < 20s) {
        must(worker.sweep());
        std::this_thread::sleep_for(1ms);
    }
    EXPECT_FALSE(dns.released()) << "tenant-b's delivery waited for tenant-a's lookups";
    EXPECT_EQ(receiver.requests().size(), 1u);
    EXPECT_EQ(w_.delivery(fast_id).status(), delivery_status::delivered);
    for (int i = 0; i < 500 && dns.most() < 2; ++i) std::this_thread::sleep_for(10ms);
    std::this_thread::sleep_for(50ms);
    EXPECT_EQ(dns.most(), 2) << "tenant-a's lookups hold half of the 4 lookup threads, no more";
    done = true;
    watchdog.join();
    must(worker.drain());
    w_.ctx = request_context::for_tenant("tenant-a");
    for (auto const& id : slow_ids) EXPECT_EQ(w_.delivery(id).status(), delivery_status::delivered);
    EXPECT_EQ(receiver.requests().size(), 7u);
}

// A send that waited for its name's lookup past its lease is not made: a worker claims the
// delivery again, and it is sent once.
TEST_F(delivery_worker_test, a_send_whose_lookup_outlasted_its_lease_is_not_made) {
    keep_alive_server receiver([](received_request const&) { return answer(200); });
    slow_resolver dns(w_.dns);
    auto id = w_.deliver(w_.subscribe(w_.url(receiver.port(), "late.slow.test")));
    auto worker = make_worker(dns);
    must(worker.sweep());
    dns.wait_for_lookup();
    w_.clock.advance(10min);  // the lease lapses while the lookup is still under way
    dns.release();
    must(worker.drain());
    EXPECT_TRUE(receiver.requests().empty());
    EXPECT_EQ(w_.delivery(id).data().attempts, 0);
    EXPECT_EQ(worker.stats().in_flight.load(), 0u);
    pump(worker);
    EXPECT_EQ(receiver.requests().size(), 1u);
    EXPECT_EQ(w_.delivery(id).status(), delivery_status::delivered);
}

// A send after a slow lookup gets what is left of its lease for its timeout: in full it could
// end after the lease does, with its outcome still to be recorded while another worker claims the
// delivery again. With less than a second left it is not made: a name that took that long to
// resolve is the endpoint's failed attempt (claimed again, it would be looked up as slowly again),
// a delivery that only waited that long for a lookup thread is put off without an attempt.
TEST_F(delivery_worker_test, a_send_after_a_slow_lookup_gets_what_is_left_of_its_lease) {
    std::atomic<bool> slow_answer{true};
    keep_alive_server receiver([&](received_request const&) {
        if (slow_answer) std::this_thread::sleep_for(4s);
        return answer(200);
    });
    slow_resolver dns(w_.dns);
    auto worker = make_worker(dns, {.lookup_threads = 1, .local_retry = 45s});
    // Leased for the longest timeout (120 s) plus the margin (30 s), half of which is kept for
    // recording: 2 s of the send's 120 s are left after the lookup.
    auto clipped = deliver_with_longest_timeout(receiver.port(), "clip.slow.test");
    must(worker.sweep());
    dns.wait_for_lookup();
    w_.clock.advance(133s);
    dns.release();
    must(worker.drain());
    ASSERT_EQ(receiver.requests().size(), 1u);
    auto timed_out = w_.delivery(clipped);
    EXPECT_EQ(timed_out.data().attempts, 1) << "the send took its full 120 s, past the lease";
    EXPECT_NE(timed_out.status(), delivery_status::delivered);

    // Less than a second left: not sent.
    slow_answer = false;
    slow_resolver later(w_.dns);
    auto again = make_worker(later, {.lookup_threads = 1, .local_retry = 45s});
    auto id = deliver_with_longest_timeout(receiver.port(), "edge.slow.test");
    must(again.sweep());
    later.wait_for_lookup();
    // Claimed while the one lookup thread waits for the slow name: it waits for the thread.
    auto queued = deliver_with_longest_timeout(receiver.port(), "queued.hooks.test");
    must(again.sweep());
    w_.clock.advance(134'500ms);
    later.release();
    must(again.drain());
    EXPECT_EQ(receiver.requests().size(), 1u);
    auto slow = w_.delivery(id);
    EXPECT_EQ(slow.data().attempts, 1);
    ASSERT_EQ(slow.data().delivery_attempts.size(), 1u);
    auto const said = slow.data().delivery_attempts[0].error.value_or("");
    EXPECT_NE(said.find("took 134 s to resolve"), std::string::npos) << said;
    auto waited = w_.delivery(queued);
    EXPECT_EQ(waited.data().attempts, 0);
    EXPECT_TRUE(waited.data().deferred_reason) << "put off without saying why";
    EXPECT_EQ(*waited.data().next_attempt_at, w_.clock.now() + 45s);
    w_.clock.advance(121s);  // past the retry and the deferral: claimed again, and sent
    pump(again);
    EXPECT_EQ(w_.delivery(id).status(), delivery_status::delivered);
    EXPECT_EQ(w_.delivery(queued).status(), delivery_status::delivered);
}

// A send cut short by this side's wait for a lookup thread that then times out is put off, not
// counted against the endpoint: with its own timeout it might well have been answered.
TEST_F(delivery_worker_test, a_send_cut_short_by_the_wait_for_a_lookup_thread_is_not_the_endpoints_failure) {
    keep_alive_server receiver([](received_request const& r) {
        if (r.header("Host").value_or("").starts_with("queued.")) std::this_thread::sleep_for(4s);
        return answer(200);
    });
    slow_resolver dns(w_.dns);
    auto worker = make_worker(dns, {.lookup_threads = 1, .local_retry = 45s});
    auto slow = deliver_with_longest_timeout(receiver.port(), "first.slow.test");
    must(worker.sweep());
    dns.wait_for_lookup();
    auto queued = deliver_with_longest_timeout(receiver.port(), "queued.hooks.test");
    must(worker.sweep());
    w_.clock.advance(133s);  // both have 2 s of their leases left for the send
    dns.release();
    must(worker.drain());
    EXPECT_EQ(w_.delivery(slow).status(), delivery_status::delivered);
    auto waited = w_.delivery(queued);
    EXPECT_EQ(waited.data().attempts, 0) << "the endpoint was blamed for this side's wait";
    EXPECT_TRUE(waited.data().deferred_reason);
    EXPECT_EQ(*waited.data().next_attempt_at, w_.clock.now() + 45s);
    EXPECT_EQ(w_.subscription(waited.data().subscription_id.value()).data().consecutive_failures, 0);
}

// The worker's own stores failing is not the endpoint failing: a vault outage costs no attempt
// and counts nothing toward the subscription's auto-disable; the deliveries go once it is back.
TEST_F(delivery_worker_test, a_vault_outage_costs_no_attempt_and_disables_no_subscription) {
    keep_alive_server receiver([](received_request const&) { return answer(200); });
    switchable_vault vault(*w_.vault);
    auto sub = w_.subscribe(w_.url(receiver.port()));
    auto ids = w_.deliver_many(sub, 3);
    webhooks::delivery_worker worker(*w_.store, vault, *w_.blobs, *w_.transport, w_.hop_check(), w_.limits, w_.clock,
                                     {.local_retry = 45s, .disable_after = 3, .disable_after_failing_for = 0ms});
    vault.down = true;
    pump(worker);
    for (auto const& id : ids) {
        auto d = w_.delivery(id);
        EXPECT_EQ(d.status(), delivery_status::pending);
        EXPECT_EQ(d.data().attempts, 0);
        EXPECT_EQ(*d.data().next_attempt_at, w_.clock.now() + 45s);
    }
    EXPECT_TRUE(w_.subscription(sub.id()).active());
    EXPECT_EQ(w_.subscription(sub.id()).data().consecutive_failures, 0);
    EXPECT_EQ(worker.stats().local_failures_total.load(), 3u);
    EXPECT_EQ(worker.stats().failed_attempts_total.load(), 0u);
    EXPECT_TRUE(receiver.requests().empty());

    vault.down = false;
    w_.clock.advance(45s);
    pump(worker);
    for (auto const& id : ids) EXPECT_EQ(w_.delivery(id).status(), delivery_status::delivered);
    EXPECT_EQ(receiver.requests().size(), 3u);
}

/** What a worker tells the operator's log. */
struct log_lines {
    std::mutex mutex;
    std::vector<std::string> lines;
    std::function<void(std::string_view, std::string_view)> sink() {
        return [this](std::string_view level, std::string_view message) {
            std::lock_guard lock(mutex);
            lines.push_back(std::string(level) + " " + std::string(message));
        };
    }
    std::vector<std::string> taken() {
        std::lock_guard lock(mutex);
        return std::exchange(lines, {});
    }
};

// The tenant reads only the cause (`deferredReason`); the operator's log gets what the store
// said, once per tenant and cause per `local_retry`, then how many more it deferred meanwhile.
TEST_F(delivery_worker_test, the_operator_is_told_what_a_local_failure_was_once_per_cause_and_tenant) {
    keep_alive_server receiver([](received_request const&) { return answer(200); });
    switchable_vault vault(*w_.vault);
    auto sub = w_.subscribe(w_.url(receiver.port()));
    auto ids = w_.deliver_many(sub, 3);
    log_lines log;
    webhooks::delivery_worker worker(*w_.store, vault, *w_.blobs, *w_.transport, w_.hop_check(), w_.limits, w_.clock,
                                     {.local_retry = 45s, .log = log.sink()});
    vault.down = true;
    pump(worker);
    auto first = log.taken();
    ASSERT_EQ(first.size(), 1u);
    EXPECT_EQ(first[0].rfind("warning delivery-worker: delivery ", 0), 0u) << first[0];
    EXPECT_NE(first[0].find("of tenant " + w_.ctx.tenant_id + " waits 45 s: its signing secret could not be read from "
                            "the secret store: vault unreachable"),
              std::string::npos)
        << first[0];
    for (auto const& id : ids) {
        auto reason = w_.delivery(id).data().deferred_reason.value_or("");
        EXPECT_EQ(reason.find("vault unreachable"), std::string::npos) << "the tenant reads the host's detail: " << reason;
    }

    w_.clock.advance(44s);
    must(worker.sweep());  // nothing due yet
    must(worker.drain());
    EXPECT_TRUE(log.taken().empty());
    w_.clock.advance(1s);  // due again, the vault still down: local_retry has passed on the worker's clock
    pump(worker);
    auto second = log.taken();
    ASSERT_EQ(second.size(), 1u) << "one message per cause and tenant, whatever the number of deliveries";
    EXPECT_NE(second[0].find("(and 2 more deferrals of this tenant's deliveries for the same cause since the last message)"),
              std::string::npos)
        << second[0];
    EXPECT_EQ(worker.stats().local_failures_total.load(), 6u);

    // A log that throws is the operator's problem, not the deliveries'.
    webhooks::delivery_worker careless(*w_.store, vault, *w_.blobs, *w_.transport, w_.hop_check(), w_.limits, w_.clock,
                                       {.local_retry = 45s, .log = [](std::string_view, std::string_view) {
                                            throw std::runtime_error("log full");
                                        }});
    w_.clock.advance(45s);
    pump(careless);
    EXPECT_EQ(careless.stats().local_failures_total.load(), 3u);
    vault.down = false;
    w_.clock.advance(45s);
    pump(careless);
    for (auto const& id : ids) EXPECT_EQ(w_.delivery(id).status(), delivery_status::delivered);
}

// A payload retention purged (its blob, or the reference to it) never comes back: the delivery
// is dead-lettered unsent with a `payload_expired` failure, and the endpoint, which never saw
// it, keeps its record (a subscription reactivated after 30 days is not disabled again by it).
TEST_F(delivery_worker_test, a_purged_payload_dead_letters_its_delivery_unsent_without_counting_against_the_endpoint) {
    keep_alive_server receiver([](received_request const&) { return answer(200); });
    auto sub = w_.subscribe(w_.url(receiver.port()));
    auto blob_gone = w_.deliver_many(sub, 3);
    must(w_.blobs->remove(w_.ctx.tenant_id, *w_.delivery(blob_gone[0]).data().payload_ref));
    auto ref_gone = w_.deliver(sub);
    must(w_.store->transact(w_.ctx, [&](storage::unit_of_work& uow) -> result<void> {
        auto d = must(uow.deliveries().find(ref_gone));
        d.forget_payload();  // what the payload purge does
        return uow.deliveries().save(d);
    }));
    auto worker = make_worker({.disable_after = 3, .disable_after_failing_for = 0ms});
    pump(worker);
    auto ended = blob_gone;
    ended.push_back(ref_gone);
    for (auto const& id : ended) {
        auto d = w_.delivery(id);
        EXPECT_EQ(d.status(), delivery_status::dead_lettered);
        EXPECT_EQ(d.data().attempts, 0);
        auto f = w_.failures_of(id);
        ASSERT_EQ(f.size(), 1u);
        EXPECT_EQ(f[0].data().error_code, "payload_expired");
        EXPECT_EQ(f[0].data().category, failures::failure_category::validation);
    }
    EXPECT_TRUE(w_.subscription(sub.id()).active());
    EXPECT_EQ(w_.subscription(sub.id()).data().consecutive_failures, 0);
    EXPECT_EQ(worker.stats().dead_lettered_total.load(), 4u);
    EXPECT_TRUE(receiver.requests().empty());
    // A new event to the same endpoint goes out as usual.
    auto fresh = w_.deliver(sub);
    pump(worker);
    EXPECT_EQ(w_.delivery(fresh).status(), delivery_status::delivered);
    // Ended, they are archived with the rest after 90 days (retention goes by the end's time).
    w_.clock.advance(91 * 24h);
    EXPECT_EQ(must(retention::retention_worker(*w_.store, *w_.blobs, *w_.vault, w_.clock).sweep()).deliveries_archived, 5u);
    auto archived = storage::read_for(*w_.store, w_.ctx, [&](storage::unit_of_work& uow) { return uow.deliveries().find(ref_gone); });
    ASSERT_FALSE(archived);
    EXPECT_EQ(archived.error(), errc::not_found);
}

// A signing secret the vault cannot give (deleted, a master key not restored yet, a store
// renamed) is the worker's problem, never the endpoint's: the delivery waits, no attempt counted,
// and goes once the subscription signs with a secret the vault has.
TEST_F(delivery_worker_test, a_signing_secret_the_vault_cannot_give_is_waited_for_not_blamed_on_the_endpoint) {
    keep_alive_server receiver([](received_request const&) { return answer(200); });
    auto sub = w_.subscribe(w_.url(receiver.port()));
    auto id = w_.deliver(sub);
    must(w_.vault->soft_delete(w_.ctx.tenant_id, must(credentials::secret_ref::parse(sub.data().signing_secret_ref)).name));
    auto worker = make_worker({.disable_after = 1, .disable_after_failing_for = 0ms});
    pump(worker);
    expect_put_off_once(worker, id, sub.id(), receiver, "its signing secret could not be read from the secret store");

    auto fresh = must(w_.vault->put(w_.ctx.tenant_id, "whsec-fresh", secret_bytes("whsec_" + base64(std::string(32, 'f')))));
    w_.rotate(sub.id(), fresh.uri(), 24h);  // the deleted one: skipped while it overlaps
    w_.clock.advance(30s);
    pump(worker);
    EXPECT_EQ(w_.delivery(id).status(), delivery_status::delivered);
    EXPECT_EQ(receiver.requests().size(), 1u);
}

/** Throws for names under `.throws.test` until fixed, as an embedder's resolver with a bug may. */
class throwing_resolver final : public net::resolver {
public:
    explicit throwing_resolver(net::resolver& inner) : inner_(inner) {}
    std::atomic<bool> fixed{false};
    result<std::vector<net::ip_address>> resolve(std::string const& host) override {
        if (host.ends_with(".throws.test") && !fixed) throw std::runtime_error("the embedder's resolver failed");
        return inner_.resolve(host);
    }

private:
    net::resolver& inner_;
};

// What the embedder's resolver throws is the worker's own failure, like an unreadable secret: the
// delivery is put off with no attempt and nothing toward the subscription's auto-disable, then
// sent once the resolver works.
TEST_F(delivery_worker_test, a_resolver_that_throws_is_waited_out_not_blamed_on_the_endpoint) {
    keep_alive_server receiver([](received_request const&) { return answer(200); });
    throwing_resolver dns(w_.dns);
    auto sub = w_.subscribe(w_.url(receiver.port(), "x.throws.test"));
    auto id = w_.deliver(sub);
    auto worker = make_worker(dns, {.disable_after = 1, .disable_after_failing_for = 0ms});
    pump(worker);
    expect_put_off_once(worker, id, sub.id(), receiver, "the host's name resolver failed");
    dns.fixed = true;
    w_.clock.advance(30s);
    pump(worker);
    EXPECT_EQ(w_.delivery(id).status(), delivery_status::delivered);
    EXPECT_FALSE(w_.delivery(id).data().deferred_reason) << "sent: nothing puts it off any more";
    EXPECT_EQ(receiver.requests().size(), 1u);
}

// A name that does not resolve fails the delivery's attempt; a resolver outage on this side
// (EAI_AGAIN for every name) looks the same, so it disables a subscription only as any run of
// failures does, once it has lasted `disable_after_failing_for`: an outage of minutes disables
// nothing, a domain gone for good disables its subscription.
TEST_F(delivery_worker_test, a_name_that_does_not_resolve_disables_only_once_it_has_failed_for_the_window) {
    keep_alive_server receiver([](received_request const&) { return answer(200); });
    auto sub = w_.subscribe(w_.url(receiver.port(), "down.hooks.test"));
    auto ids = w_.deliver_many(sub, 3);
    mutable_resolver outage;  // answers nothing
    auto worker = make_worker(outage, {.disable_after = 3, .disable_after_failing_for = 1h});
    pump(worker);
    for (auto const& id : ids) {
        auto d = w_.delivery(id);
        EXPECT_EQ(d.status(), delivery_status::failed);
        EXPECT_EQ(d.data().attempts, 1);
    }
    EXPECT_TRUE(w_.subscription(sub.id()).active());
    EXPECT_EQ(w_.subscription(sub.id()).data().consecutive_failures, 3);
    w_.clock.advance(1h);
    w_.deliver(sub);
    pump(worker);
    auto s = w_.subscription(sub.id());
    EXPECT_FALSE(s.active());
    EXPECT_EQ(worker.stats().subscriptions_disabled_total.load(), 1u);
    EXPECT_TRUE(receiver.requests().empty());
}

// A signing secret the vault gives but that signs nothing (not a webhook secret: stored by hand,
// or damaged) is the worker's own failure too: nothing is sent unsigned, and the endpoint is not
// blamed.
TEST_F(delivery_worker_test, a_signing_secret_that_signs_nothing_is_not_blamed_on_the_endpoint) {
    keep_alive_server receiver([](received_request const&) { return answer(200); });
    auto sub = w_.subscribe(w_.url(receiver.port()));
    auto id = w_.deliver(sub);
    auto bad = must(w_.vault->put(w_.ctx.tenant_id, "whsec-bad", secret_bytes("not-a-webhook-secret")));
    w_.rotate(sub.id(), bad.uri(), 24h);
    auto worker = make_worker({.disable_after = 1, .disable_after_failing_for = 0ms});
    pump(worker);
    expect_put_off_once(worker, id, sub.id(), receiver, "its signing secret signs nothing");
}

// A tenant's endpoints that hang until their timeout fill at most its share of the slots: the
// claim leaves its other due deliveries where they are (no lease, no attempt), and another
// tenant's later delivery is sent meanwhile.
TEST_F(delivery_worker_test, a_tenants_hanging_endpoints_fill_only_its_share_of_the_slots) {
    std::atomic<bool> release{false};
    loopback_server hanging([&](int, loopback_server& self) {
        while (!release && !self.stopping()) std::this_thread::sleep_for(10ms);
    });
    keep_alive_server healthy([](received_request const&) { return answer(200); });
    auto slow = [](webhooks::subscription_spec& s) {
        s.attempt_policy = webhooks::subscription_attempt_policy{.timeout_ms = 120'000};
    };
    auto stuck = w_.subscribe(w_.url(hanging.port(), "stuck.hooks.test"), slow);
    auto stuck_ids = w_.deliver_many(stuck, 6);
    w_.clock.advance(1ms);  // tenant-a's are due first
    w_.ctx = request_context::for_tenant("tenant-b");
    auto fine = w_.deliver(w_.subscribe(w_.url(healthy.port())));
    auto worker = make_worker({.max_in_flight = 4, .max_in_flight_per_tenant = 2, .batch = 4});
    for (int i = 0; i < 3'000 && worker.stats().delivered_total.load() < 1; ++i) {
        must(worker.sweep());
        std::this_thread::sleep_for(1ms);
    }
    EXPECT_EQ(w_.delivery(fine).status(), delivery_status::delivered);
    EXPECT_EQ(worker.stats().in_flight.load(), 2u) << "tenant-a's hanging sends hold its share, no more";
    release = true;
    must(worker.drain());
    w_.ctx = request_context::for_tenant("tenant-a");
    std::size_t attempted = 0;
    for (auto const& id : stuck_ids) {
        auto d = w_.delivery(id);
        EXPECT_LE(d.data().attempts, 1);
        attempted += static_cast<std::size_t>(d.data().attempts);
    }
    EXPECT_EQ(attempted, 2u) << "only the deliveries its share let go out were attempted";
}

// A claimed delivery that holds no slot (deferred by its subscription's rate limit) does not count
// towards its tenant's share: the next sweep claims another tenant's delivery at once instead of
// waiting as if the only due deliveries left were those of a tenant holding its share.
TEST_F(delivery_worker_test, a_delivery_deferred_by_its_rate_limit_holds_no_share_of_the_slots) {
    keep_alive_server receiver([](received_request const&) { return answer(200); });
    auto limited = w_.subscribe(w_.url(receiver.port()), [](webhooks::subscription_spec& s) { s.max_per_second = 1; });
    (void)w_.limits.try_acquire("webhook/" + w_.ctx.tenant_id + "/" + limited.id(), {1.0, 1});  // its one token
    auto deferred = w_.deliver(limited);
    auto worker = make_worker({.max_in_flight = 4, .max_in_flight_per_tenant = 1, .idle_poll = 1min});
    EXPECT_EQ(must(worker.sweep()), 1u);  // claimed and deferred: nothing sent
    EXPECT_EQ(worker.stats().in_flight.load(), 0u);
    w_.ctx = request_context::for_tenant("tenant-b");
    auto other = w_.deliver(w_.subscribe(w_.url(receiver.port())));  // written without a publish's notify
    EXPECT_EQ(must(worker.sweep()), 1u) << "tenant-b's delivery waited for a slot of tenant-a's share";
    must(worker.drain());
    EXPECT_EQ(w_.delivery(other).status(), delivery_status::delivered);
    EXPECT_EQ(receiver.requests().size(), 1u);
    w_.ctx = request_context::for_tenant("tenant-a");
    EXPECT_EQ(w_.delivery(deferred).data().attempts, 0);
}

TEST_F(delivery_worker_test, a_stale_lease_is_dropped_silently) {
    std::atomic<bool> release{false};
    std::atomic<int> arrived{0};
    keep_alive_server receiver([&](received_request const&) {
        ++arrived;
        while (!release) std::this_thread::sleep_for(5ms);
        return answer(200);
    });
    auto sub = w_.subscribe(w_.url(receiver.port()));
    auto id = w_.deliver(sub);
    auto slow = make_worker({.owner = "slow"});
    must(slow.sweep());  // leased, and sent once its name is resolved
    for (int i = 0; i < 1000 && arrived.load() < 1; ++i) std::this_thread::sleep_for(5ms);
    ASSERT_EQ(arrived.load(), 1);
    // The slow worker's lease expires and another worker takes the delivery over and records it.
    w_.clock.advance(10min);
    release = true;
    auto other = make_worker({.owner = "other"});
    pump(other);
    EXPECT_EQ(w_.delivery(id).status(), delivery_status::delivered);
    EXPECT_EQ(w_.delivery(id).data().attempts, 1);
    auto recorded = must(slow.drain());  // its save conflicts: dropped without an error
    EXPECT_EQ(recorded, 1u);
    EXPECT_EQ(w_.delivery(id).data().attempts, 1);
}

TEST_F(delivery_worker_test, answered_deliveries_are_recorded_when_the_worker_stops_without_draining) {
    keep_alive_server receiver([](received_request const&) { return answer(200); });
    auto sub = w_.subscribe(w_.url(receiver.port()));
    auto ids = w_.deliver_many(sub, 40);
    {
        auto worker = make_worker({.max_in_flight = 20, .max_in_flight_per_tenant = 20, .batch = 20});
        must(worker.sweep());
        for (int i = 0; i < 2'000 && worker.stats().in_flight.load() > 0; ++i) std::this_thread::sleep_for(5ms);
        // The first 20 go to the store's writer with the next sweep, which does not wait for their
        // commit and starts the other 20; those are answered and never handed over by a sweep.
        must(worker.sweep());
        for (int i = 0; i < 2'000 && receiver.requests().size() < 40; ++i) std::this_thread::sleep_for(5ms);
        for (int i = 0; i < 2'000 && worker.stats().in_flight.load() > 0; ++i) std::this_thread::sleep_for(5ms);
    }  // destroyed: it records what was answered and waits for every commit it started
    EXPECT_EQ(receiver.requests().size(), 40u);
    for (auto const& id : ids) {
        auto d = w_.delivery(id);
        EXPECT_EQ(d.status(), delivery_status::delivered) << id;
        EXPECT_EQ(d.data().attempts, 1) << id;
    }
}

// A store that fails every claim stops every delivery: the operator's log hears of it, once per
// `local_retry` however many sweeps fail meanwhile.
TEST_F(delivery_worker_test, a_failing_sweep_is_told_to_the_operator_once_per_local_retry) {
    log_lines log;
    auto worker = make_worker({.idle_poll = 5ms, .local_retry = 1h, .log = log.sink()});
    std::filesystem::remove(dir_.file("i.db"));  // the store now refuses every read and write
    std::atomic<bool> stop{false};
    std::thread runner([&] { worker.run(stop); });
    std::vector<std::string> told;
    for (int i = 0; i < 1000 && told.empty(); ++i) {
        std::this_thread::sleep_for(10ms);
        told = log.taken();
    }
    std::this_thread::sleep_for(200ms);  // dozens more sweeps fail
    auto again = log.taken();
    stop = true;
    runner.join();
    ASSERT_EQ(told.size(), 1u);
    EXPECT_EQ(told[0].rfind("error webhook delivery worker: a sweep failed", 0), 0u) << told[0];
    EXPECT_TRUE(again.empty()) << "told " << again.size() << " more times within local_retry";
}

TEST_F(delivery_worker_test, run_sends_what_is_published_until_stopped) {
    keep_alive_server receiver([](received_request const&) { return answer(200); });
    auto sub = w_.subscribe(w_.url(receiver.port()));
    auto worker = make_worker({.idle_poll = 20ms});
    std::atomic<bool> stop{false};
    std::thread runner([&] { worker.run(stop); });
    auto id = w_.deliver(sub);
    worker.notify();
    for (int i = 0; i < 1000 && worker.stats().delivered_total.load() < 1; ++i) std::this_thread::sleep_for(10ms);
    stop = true;
    runner.join();
    EXPECT_EQ(w_.delivery(id).status(), delivery_status::delivered);
}

}  // namespace
}  // namespace integration::testing
