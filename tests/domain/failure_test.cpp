#include <integration/domain/failure.hpp>

#include <integration/domain/event.hpp>

#include "domain/fixtures.hpp"

#include <gtest/gtest.h>

#include <string>

namespace {

using namespace integration;
using namespace integration::failures;
using fixtures::snap;
using fixtures::tenant_ctx;

constexpr std::string_view failed_event = events::event_type::integration_failed;
constexpr std::string_view escalated_event = events::event_type::failure_escalated;
constexpr std::string_view resolved_event = events::event_type::failure_resolved;

class failure_test : public testing::Test {
protected:
    manual_clock clock;
    std::string run_id = new_id(id_prefix::run, clock.now());
    std::string provider_id = new_id(id_prefix::provider, clock.now());

    classification retry_in(std::chrono::seconds delay, failure_category cat = failure_category::transient) {
        return {.category = cat,
                .error_code = "http_503",
                .message = "Service Unavailable",
                .next_action = next_action::retry,
                .next_attempt_at = clock.now() + delay};
    }
    classification poison(next_action action) {
        return {.category = failure_category::poison,
                .error_code = "unparseable_payload",
                .message = "the vendor rejects this body every time",
                .next_action = action};
    }
    integration_failure open() {
        return integration_failure::record(tenant_ctx(), clock.now(), failure_source::run, run_id, provider_id,
                                           retry_in(std::chrono::seconds{30}))
            .value();
    }
    escalation_record escalation(std::string by = "alice", std::string reason = "vendor ticket needed") {
        return {.escalated_by = std::move(by), .reason = std::move(reason), .escalated_at = clock.now(),
                .ticket_ref = "INC-42"};
    }
};

// ---- recording: "Every failure is classified" -----------------------------------------------

TEST_F(failure_test, record_classifies_the_failure_and_raises_integration_failed) {
    auto f = open();
    EXPECT_TRUE(is_valid_id(f.id(), id_prefix::failure)) << f.id();
    EXPECT_FALSE(f.resolved());
    EXPECT_EQ(f.data().source, failure_source::run);
    EXPECT_EQ(f.data().run_id, run_id);
    EXPECT_EQ(f.source_id(), run_id);
    EXPECT_EQ(f.data().category, failure_category::transient);
    EXPECT_EQ(f.data().error_code, "http_503");
    EXPECT_EQ(f.data().attempt, 1);
    EXPECT_EQ(f.data().next_action, next_action::retry);
    EXPECT_EQ(f.data().next_attempt_at, clock.now() + std::chrono::seconds{30});
    ASSERT_EQ(f.data().failure_attempts.size(), 1u);
    EXPECT_EQ(f.data().failure_attempts[0].occurred_at, clock.now());

    ASSERT_EQ(f.pending_events().size(), 1u);
    auto const& e = f.pending_events()[0];
    EXPECT_EQ(e.event_type, failed_event);
    EXPECT_EQ(e.data.at("failureId").as_string(), f.id());
    EXPECT_EQ(e.data.at("source").as_string(), "Run");
    EXPECT_EQ(e.data.at("sourceId").as_string(), run_id);
    EXPECT_EQ(e.data.at("category").as_string(), "Transient");
    EXPECT_EQ(e.data.at("errorCode").as_string(), "http_503");
    EXPECT_EQ(e.data.at("nextAction").as_string(), "Retry");
}

TEST_F(failure_test, each_source_kind_is_recorded_under_its_own_id_field) {
    struct source_case {
        failure_source source;
        std::optional<std::string> failure_data::*member;
    };
    for (auto [source, member] : {source_case{failure_source::run, &failure_data::run_id},
                                  source_case{failure_source::delivery, &failure_data::delivery_id},
                                  source_case{failure_source::health_probe, &failure_data::connection_id},
                                  source_case{failure_source::credential_rotation, &failure_data::credential_id},
                                  source_case{failure_source::outbox_event, &failure_data::event_id}}) {
        auto f = integration_failure::record(tenant_ctx(), clock.now(), source, "src-1", provider_id,
                                             poison(next_action::dead_letter))
                     .value();
        EXPECT_EQ(f.data().*member, "src-1") << to_string(source);
        EXPECT_EQ(f.source_id(), "src-1");
        int named = f.data().run_id.has_value() + f.data().delivery_id.has_value() +
                    f.data().connection_id.has_value() + f.data().credential_id.has_value() +
                    f.data().event_id.has_value();
        EXPECT_EQ(named, 1) << "exactly one source id field";
    }
}

TEST_F(failure_test, a_failure_needs_an_error_code_and_a_source) {
    auto c = retry_in(std::chrono::seconds{5});
    c.error_code = "";
    EXPECT_ERRC(integration_failure::record(tenant_ctx(), clock.now(), failure_source::run, run_id, provider_id, c),
                errc::invalid_argument);
    EXPECT_ERRC(integration_failure::record(tenant_ctx(), clock.now(), failure_source::run, "", provider_id,
                                            retry_in(std::chrono::seconds{5})),
                errc::invalid_argument);
}

TEST_F(failure_test, poison_failures_are_never_auto_retried) {
    auto r = integration_failure::record(tenant_ctx(), clock.now(), failure_source::run, run_id, provider_id,
                                         poison(next_action::retry));
    EXPECT_ERRC(r, errc::invariant_violation);
    EXPECT_NE(r.error().detail().find("Poison"), std::string::npos) << r.error().detail();

    auto with_time = poison(next_action::retry);
    with_time.next_attempt_at = clock.now() + std::chrono::seconds{10};
    EXPECT_ERRC(integration_failure::record(tenant_ctx(), clock.now(), failure_source::run, run_id, provider_id,
                                            with_time),
                errc::invariant_violation);

    for (auto action : {next_action::dead_letter, next_action::escalate}) {
        auto f = integration_failure::record(tenant_ctx(), clock.now(), failure_source::run, run_id, provider_id,
                                             poison(action));
        ASSERT_TRUE(f) << f.error().message();
        EXPECT_FALSE(f->data().next_attempt_at) << "nothing schedules a retry of a Poison failure";
    }
}

TEST_F(failure_test, a_retry_needs_a_next_attempt_time) {
    auto c = retry_in(std::chrono::seconds{5});
    c.next_attempt_at.reset();
    EXPECT_ERRC(integration_failure::record(tenant_ctx(), clock.now(), failure_source::run, run_id, provider_id, c),
                errc::invalid_argument);
}

// ---- further attempts -----------------------------------------------------------------------

TEST_F(failure_test, record_attempt_appends_history_and_reclassifies) {
    auto f = open();
    clock.advance(std::chrono::seconds{30});
    ASSERT_TRUE(f.record_attempt(retry_in(std::chrono::seconds{60}, failure_category::rate_limited), clock.now()));
    EXPECT_EQ(f.data().attempt, 2);
    EXPECT_EQ(f.data().category, failure_category::rate_limited);
    EXPECT_EQ(f.data().next_attempt_at, clock.now() + std::chrono::seconds{60});
    ASSERT_EQ(f.data().failure_attempts.size(), 2u);
    EXPECT_EQ(f.data().failure_attempts[1].attempt, 2);
    EXPECT_EQ(f.data().failure_attempts[1].category, failure_category::rate_limited);

    ASSERT_TRUE(f.record_attempt(poison(next_action::dead_letter), clock.now()));
    EXPECT_EQ(f.data().attempt, 3);
    EXPECT_FALSE(f.data().next_attempt_at) << "a DeadLetter decision clears the retry time";
}

// A source that keeps failing (a connection down for weeks, probed every 5 minutes) keeps its
// count, but its history keeps the first attempt and the latest ones.
TEST_F(failure_test, the_attempt_history_keeps_the_first_and_the_latest_attempts) {
    auto f = open();
    for (int i = 0; i < 150; ++i) {
        clock.advance(std::chrono::seconds{300});
        ASSERT_TRUE(f.record_attempt(retry_in(std::chrono::seconds{300}), clock.now()));
    }
    EXPECT_EQ(f.data().attempt, 151);
    auto const& h = f.data().failure_attempts;
    ASSERT_EQ(h.size(), integration_failure::max_attempt_history);
    EXPECT_EQ(h.front().attempt, 1);
    EXPECT_EQ(h[1].attempt, 53);
    EXPECT_EQ(h.back().attempt, 151);
    EXPECT_EQ(h.back().occurred_at, clock.now());
}

TEST_F(failure_test, record_attempt_refuses_a_poison_retry) {
    auto f = open();
    auto before = snap(f);
    auto c = poison(next_action::retry);
    c.next_attempt_at = clock.now() + std::chrono::seconds{1};
    EXPECT_ERRC(f.record_attempt(c, clock.now()), errc::invariant_violation);
    EXPECT_UNCHANGED(f, before);
}

// ---- open → resolved ------------------------------------------------------------------------

TEST_F(failure_test, resolves_when_the_source_succeeded_or_was_dead_lettered) {
    for (auto [outcome, text] : {std::pair{source_outcome::succeeded, "Succeeded"},
                                 std::pair{source_outcome::dead_lettered, "DeadLettered"}}) {
        auto f = open();
        clock.advance(std::chrono::minutes{1});
        ASSERT_TRUE(f.resolve(outcome, clock.now()));
        EXPECT_TRUE(f.resolved());
        EXPECT_EQ(f.data().resolved_at, clock.now());
        EXPECT_FALSE(f.data().next_attempt_at) << "a resolved failure is not due for retry";
        ASSERT_EQ(f.pending_events().size(), 2u);
        auto const& e = f.pending_events().back();
        EXPECT_EQ(e.event_type, resolved_event);
        EXPECT_EQ(e.data.at("failureId").as_string(), f.id());
        EXPECT_EQ(e.data.at("source").as_string(), "Run");  // what the publisher leaves a delivery's out by
        EXPECT_EQ(e.data.at("sourceId").as_string(), run_id);
        EXPECT_EQ(e.data.at("outcome").as_string(), text);
    }
}

TEST_F(failure_test, does_not_resolve_while_the_source_is_in_progress_or_failed) {
    for (auto outcome : {source_outcome::in_progress, source_outcome::failed}) {
        auto f = open();
        auto before = snap(f);
        EXPECT_ERRC(f.resolve(outcome, clock.now()), errc::invariant_violation);
        EXPECT_FALSE(f.resolved());
        EXPECT_UNCHANGED(f, before);
    }
}

TEST_F(failure_test, a_resolved_failure_is_closed) {
    auto f = open();
    f.resolve(source_outcome::succeeded, clock.now()).value();
    auto before = snap(f);
    EXPECT_ERRC(f.resolve(source_outcome::succeeded, clock.now()), errc::invalid_state);
    EXPECT_ERRC(f.record_attempt(retry_in(std::chrono::seconds{5}), clock.now()), errc::invalid_state);
    EXPECT_ERRC(f.escalate(escalation()), errc::invalid_state);
    EXPECT_UNCHANGED(f, before);
}

// ---- open → escalated -----------------------------------------------------------------------

TEST_F(failure_test, escalation_records_who_and_why_and_raises_escalated) {
    auto f = open();
    clock.advance(std::chrono::milliseconds{1234});
    ASSERT_TRUE(f.escalate(escalation()));
    EXPECT_EQ(f.data().next_action, next_action::escalate);
    EXPECT_FALSE(f.data().next_attempt_at) << "an escalated failure is not retried automatically";
    ASSERT_EQ(f.data().escalations.size(), 1u);
    auto const& rec = f.data().escalations[0];
    EXPECT_EQ(rec.escalated_by, "alice");
    EXPECT_EQ(rec.reason, "vendor ticket needed");
    EXPECT_EQ(rec.escalated_at, clock.now());
    EXPECT_EQ(rec.ticket_ref, "INC-42");

    auto const& e = f.pending_events().back();
    EXPECT_EQ(e.event_type, escalated_event);
    EXPECT_EQ(e.data.at("failureId").as_string(), f.id());
    EXPECT_EQ(e.data.at("escalatedBy").as_string(), "alice");
    EXPECT_EQ(e.data.at("reason").as_string(), "vendor ticket needed");
}

// A failure recorded to Escalate (Auth, an interrupted run) goes to a human at once: it carries
// its audit record (who hit it, and why) and raises IntegrationFailureEscalated, which is what
// an operator is paged on.
TEST_F(failure_test, a_failure_recorded_to_escalate_is_escalated_with_its_audit_record) {
    auto f = integration_failure::record(tenant_ctx(), clock.now(), failure_source::run, run_id, provider_id,
                                         poison(next_action::escalate))
                 .value();
    EXPECT_EQ(f.data().next_action, next_action::escalate);
    ASSERT_EQ(f.data().escalations.size(), 1u);
    EXPECT_EQ(f.data().escalations[0].escalated_by, "alice");
    EXPECT_EQ(f.data().escalations[0].reason, "the vendor rejects this body every time");
    EXPECT_EQ(f.data().escalations[0].escalated_at, clock.now());
    EXPECT_EQ(fixtures::event_types(f), (std::vector<std::string>{std::string(failed_event), std::string(escalated_event)}));
    auto dead = integration_failure::record(tenant_ctx(), clock.now(), failure_source::run, run_id, provider_id,
                                            poison(next_action::dead_letter))
                    .value();
    EXPECT_TRUE(dead.data().escalations.empty());
}

TEST_F(failure_test, escalation_without_an_audit_record_is_refused) {
    auto f = open();
    auto before = snap(f);
    EXPECT_ERRC(f.escalate(escalation("", "vendor ticket needed")), errc::invalid_argument);
    EXPECT_ERRC(f.escalate(escalation("alice", "")), errc::invalid_argument);
    EXPECT_TRUE(f.data().escalations.empty());
    EXPECT_UNCHANGED(f, before);
}

TEST_F(failure_test, an_escalated_failure_may_escalate_again_and_later_resolve) {
    auto f = open();
    ASSERT_TRUE(f.escalate(escalation("alice", "first line")));
    ASSERT_TRUE(f.escalate(escalation("bob", "second line")));
    EXPECT_EQ(f.data().escalations.size(), 2u);
    ASSERT_TRUE(f.resolve(source_outcome::dead_lettered, clock.now()));
    EXPECT_EQ(fixtures::event_types(f),
              (std::vector<std::string>{std::string(failed_event), std::string(escalated_event),
                                        std::string(escalated_event), std::string(resolved_event)}));
}

// A ticket reference is text like a reason; and escalations stop at `max_escalations`: each is
// kept, saved and rendered with the failure, which a loop of escalations would grow without end.
TEST_F(failure_test, a_ticket_reference_is_checked_and_escalations_are_bounded) {
    auto f = open();
    auto before = snap(f);
    auto bad_ticket = escalation();
    bad_ticket.ticket_ref = "INC-1\r\nX: y";
    EXPECT_ERRC(f.escalate(bad_ticket), errc::invalid_argument);
    bad_ticket.ticket_ref = std::string(257, 't');
    EXPECT_ERRC(f.escalate(bad_ticket), errc::invalid_argument);
    EXPECT_UNCHANGED(f, before);
    for (std::size_t i = 0; i < integration_failure::max_escalations; ++i) ASSERT_TRUE(f.escalate(escalation())) << i;
    auto full = snap(f);
    EXPECT_ERRC(f.escalate(escalation()), errc::invalid_state);
    EXPECT_UNCHANGED(f, full);
    EXPECT_EQ(f.data().escalations.size(), integration_failure::max_escalations);
}

TEST_F(failure_test, restore_refuses_an_id_without_the_failure_prefix) {
    auto f = open();
    auto d = f.data();
    d.failure_id = "fail-";
    EXPECT_ERRC(integration_failure::restore(f.meta(), d), errc::invalid_argument);
}

}  // namespace
