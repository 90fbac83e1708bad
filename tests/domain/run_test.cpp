#include <integration/domain/run.hpp>

#include <integration/domain/event.hpp>

#include "domain/fixtures.hpp"

#include <gtest/gtest.h>

#include <string>

namespace {

using namespace integration;
using namespace integration::runs;
using connections::integration_connection;
using fixtures::snap;
using fixtures::tenant_ctx;

constexpr std::string_view completed_event = events::event_type::run_completed;
constexpr std::string_view failed_event = events::event_type::integration_failed;

failures::classification const vendor_down{.category = failures::failure_category::transient,
                                           .error_code = "http_503",
                                           .message = "Service Unavailable",
                                           .next_action = failures::next_action::dead_letter};

class run_test : public testing::Test {
protected:
    manual_clock clock;
    integration_connection connection = fixtures::active_connection(clock.now());

    run_attempt attempt(std::int64_t n, attempt_status s = attempt_status::succeeded) {
        return {.attempt = n, .status = s, .http_status = 200, .latency_ms = 120, .started_at = clock.now()};
    }
    integration_run pending() {
        return integration_run::create(tenant_ctx(), clock.now(), connection, "sms.send", "idem-1").value();
    }
    integration_run running() {
        auto r = pending();
        r.start(connection, false, clock.now()).value();
        return r;
    }
    integration_run completed() {
        auto r = running();
        r.record_attempt(attempt(1)).value();
        r.complete(clock.now(), "SM123", "blob://responses/1").value();
        return r;
    }
    integration_run failed() {
        auto r = running();
        r.record_attempt(attempt(1, attempt_status::failed)).value();
        r.fail(clock.now(), vendor_down, std::nullopt).value();
        return r;
    }
};

// ---- creation -------------------------------------------------------------------------------

TEST_F(run_test, create_makes_a_pending_run_bound_to_the_connection) {
    auto r = pending();
    EXPECT_TRUE(is_valid_id(r.id(), id_prefix::run)) << r.id();
    EXPECT_EQ(r.status(), run_status::pending);
    EXPECT_EQ(r.data().attempts, 0);
    EXPECT_EQ(r.data().connection_id, connection.id());
    EXPECT_EQ(r.data().provider_id, connection.data().provider_id);
    EXPECT_EQ(r.data().project_id, "proj-1");
    EXPECT_EQ(r.data().operation, "sms.send");
    EXPECT_EQ(r.data().idempotency_key, "idem-1");
    EXPECT_FALSE(r.data().started_at);
    EXPECT_TRUE(r.pending_events().empty());
}

TEST_F(run_test, create_refuses_a_retired_connection) {
    connection.retire("customer left").value();
    auto r = integration_run::create(tenant_ctx(), clock.now(), connection, "sms.send");
    EXPECT_ERRC(r, errc::invalid_state);
    EXPECT_NE(r.error().detail().find("Retired"), std::string::npos) << r.error().detail();
}

TEST_F(run_test, create_refuses_an_empty_operation_or_idempotency_key) {
    EXPECT_ERRC(integration_run::create(tenant_ctx(), clock.now(), connection, ""), errc::invalid_argument);
    EXPECT_ERRC(integration_run::create(tenant_ctx(), clock.now(), connection, "sms.send", ""),
                errc::invalid_argument);
}

// ---- Pending → Running ----------------------------------------------------------------------

TEST_F(run_test, pending_to_running_on_an_active_healthy_connection) {
    auto r = pending();
    clock.advance(std::chrono::milliseconds{40});
    ASSERT_TRUE(r.start(connection, false, clock.now()));
    EXPECT_EQ(r.status(), run_status::running);
    EXPECT_EQ(r.data().started_at, clock.now());
    EXPECT_TRUE(r.pending_events().empty());
}

TEST_F(run_test, a_degraded_connection_runs_only_when_permitted) {
    auto r = pending();
    connection.record_health({health_status::degraded, "slow"}, clock.now()).value();
    auto before = snap(r);
    EXPECT_ERRC(r.start(connection, false, clock.now()), errc::invalid_state);
    EXPECT_UNCHANGED(r, before);
    ASSERT_TRUE(r.start(connection, true, clock.now()));
    EXPECT_EQ(r.status(), run_status::running);
}

TEST_F(run_test, a_run_does_not_start_on_a_retired_connection) {
    auto r = pending();
    connection.retire("customer left").value();
    auto before = snap(r);
    EXPECT_ERRC(r.start(connection, true, clock.now()), errc::invalid_state);
    EXPECT_EQ(r.status(), run_status::pending);
    EXPECT_UNCHANGED(r, before);
}

TEST_F(run_test, a_run_does_not_start_on_a_pending_connection) {
    auto conn = fixtures::pending_connection(clock.now());
    auto r = integration_run::create(tenant_ctx(), clock.now(), conn, "sms.send").value();
    auto before = snap(r);
    EXPECT_ERRC(r.start(conn, true, clock.now()), errc::invalid_state);
    EXPECT_UNCHANGED(r, before);
}

TEST_F(run_test, a_run_starts_only_on_its_own_connection) {
    auto r = pending();
    auto other = fixtures::active_connection(clock.now());
    auto before = snap(r);
    EXPECT_ERRC(r.start(other, false, clock.now()), errc::invalid_argument);
    EXPECT_UNCHANGED(r, before);
}

// ---- attempts -------------------------------------------------------------------------------

TEST_F(run_test, attempts_are_recorded_in_order_and_never_decrease) {
    auto r = running();
    ASSERT_TRUE(r.record_attempt(attempt(1, attempt_status::failed)));
    ASSERT_TRUE(r.record_attempt(attempt(2)));
    EXPECT_EQ(r.data().attempts, 2);
    ASSERT_EQ(r.data().run_attempts.size(), 2u);
    EXPECT_EQ(r.data().run_attempts[0].status, attempt_status::failed);
    EXPECT_EQ(r.data().run_attempts[1].attempt, 2);

    auto before = snap(r);
    for (std::int64_t n : {0, 1, 2, 4, -1}) {
        auto res = r.record_attempt(attempt(n));
        EXPECT_ERRC(res, errc::invariant_violation);
    }
    EXPECT_EQ(r.data().attempts, 2);
    EXPECT_UNCHANGED(r, before);
}

TEST_F(run_test, an_attempt_with_negative_latency_is_refused) {
    auto r = running();
    auto a = attempt(1);
    a.latency_ms = -5;
    auto before = snap(r);
    EXPECT_ERRC(r.record_attempt(a), errc::invalid_argument);
    EXPECT_UNCHANGED(r, before);
}

TEST_F(run_test, attempts_are_recorded_only_while_running) {
    for (auto r : {pending(), completed(), failed()}) {
        auto before = snap(r);
        EXPECT_ERRC(r.record_attempt(attempt(r.data().attempts + 1)), errc::invalid_state);
        EXPECT_UNCHANGED(r, before);
    }
}

// ---- Running → Completed | Failed -----------------------------------------------------------

TEST_F(run_test, running_to_completed_raises_run_completed_with_latency) {
    auto r = running();
    ASSERT_TRUE(r.record_attempt(attempt(1)));
    clock.advance(std::chrono::milliseconds{750});
    ASSERT_TRUE(r.complete(clock.now(), "SM123", "blob://responses/1"));

    EXPECT_EQ(r.status(), run_status::completed);
    EXPECT_EQ(r.data().completed_at, clock.now());
    EXPECT_EQ(r.data().latency_ms, 750);
    EXPECT_EQ(r.data().external_ref, "SM123");
    EXPECT_EQ(r.data().response_ref, "blob://responses/1");

    ASSERT_EQ(r.pending_events().size(), 1u);
    auto const& e = r.pending_events()[0];
    EXPECT_EQ(e.event_type, completed_event);
    EXPECT_EQ(e.data.at("runId").as_string(), r.id());
    EXPECT_EQ(e.data.at("connectionId").as_string(), connection.id());
    EXPECT_EQ(e.data.at("operation").as_string(), "sms.send");
    EXPECT_EQ(e.data.at("attempts").as_int64(), 1);
    EXPECT_EQ(e.data.at("latencyMs").as_int64(), 750);
    EXPECT_EQ(e.data.at("externalRef").as_string(), "SM123");
}

TEST_F(run_test, a_run_completes_only_after_a_recorded_attempt) {
    auto r = running();
    auto before = snap(r);
    EXPECT_ERRC(r.complete(clock.now(), "SM123", std::nullopt), errc::invariant_violation);
    EXPECT_EQ(r.status(), run_status::running);
    EXPECT_UNCHANGED(r, before);
}

TEST_F(run_test, running_to_failed_raises_integration_failed_with_the_classification) {
    auto r = running();
    ASSERT_TRUE(r.record_attempt(attempt(1, attempt_status::failed)));
    clock.advance(std::chrono::seconds{2});
    ASSERT_TRUE(r.fail(clock.now(), vendor_down, "blob://responses/err"));

    EXPECT_EQ(r.status(), run_status::failed);
    EXPECT_EQ(r.data().latency_ms, 2000);
    EXPECT_EQ(r.data().response_ref, "blob://responses/err");
    ASSERT_EQ(r.pending_events().size(), 1u);
    auto const& e = r.pending_events()[0];
    EXPECT_EQ(e.event_type, failed_event);
    EXPECT_EQ(e.data.at("source").as_string(), "Run");
    EXPECT_EQ(e.data.at("runId").as_string(), r.id());
    EXPECT_EQ(e.data.at("category").as_string(), "Transient");
    EXPECT_EQ(e.data.at("errorCode").as_string(), "http_503");
    EXPECT_EQ(e.data.at("attempts").as_int64(), 1);
}

// ---- "status transitions are monotonic" -----------------------------------------------------

TEST_F(run_test, running_completed_and_failed_cannot_start_again) {
    for (auto r : {running(), completed(), failed()}) {
        auto before = snap(r);
        auto status = r.status();
        EXPECT_ERRC(r.start(connection, true, clock.now()), errc::invalid_state);
        EXPECT_EQ(r.status(), status);
        EXPECT_UNCHANGED(r, before);
    }
}

TEST_F(run_test, pending_completed_and_failed_cannot_complete) {
    for (auto r : {pending(), completed(), failed()}) {
        auto before = snap(r);
        EXPECT_ERRC(r.complete(clock.now(), "X", std::nullopt), errc::invalid_state);
        EXPECT_UNCHANGED(r, before);
    }
}

TEST_F(run_test, pending_completed_and_failed_cannot_fail) {
    for (auto r : {pending(), completed(), failed()}) {
        auto before = snap(r);
        EXPECT_ERRC(r.fail(clock.now(), vendor_down, std::nullopt), errc::invalid_state);
        EXPECT_UNCHANGED(r, before);
    }
}

TEST_F(run_test, the_request_ref_is_fixed_once_the_run_has_finished) {
    auto r = running();
    ASSERT_TRUE(r.set_request_ref("blob://requests/1"));
    EXPECT_EQ(r.data().request_ref, "blob://requests/1");
    for (auto done : {completed(), failed()}) {
        auto before = snap(done);
        EXPECT_ERRC(done.set_request_ref("blob://requests/2"), errc::invalid_state);
        EXPECT_UNCHANGED(done, before);
    }
}

TEST_F(run_test, restore_refuses_an_id_without_the_run_prefix) {
    auto r = pending();
    auto d = r.data();
    d.run_id = new_id(id_prefix::failure, clock.now());
    EXPECT_ERRC(integration_run::restore(r.meta(), d), errc::invalid_argument);
}

}  // namespace
