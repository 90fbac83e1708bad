#include <integration/services/rotation_worker.hpp>

#include "storage/fixtures.hpp"
#include "support/credential_doubles.hpp"
#include "support/sqlite_file.hpp"

#include <integration/backends/local_vault/local_secret_store.hpp>
#include <integration/backends/sqlite/sqlite_store.hpp>

#include <algorithm>
#include <thread>

#include <future>

namespace integration::testing {
namespace {

using namespace std::chrono_literals;

class rotation_worker_test : public ::testing::Test {
protected:
    std::string provider(request_context const& ctx) {
        std::string id;
        must(store_->transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
            auto p = active_provider(ctx, clock_.now());
            id = p.id();
            return uow.providers().save(p);
        }));
        return id;
    }
    credentials::integration_credential find(request_context const& ctx, std::string const& id) {
        std::optional<credentials::integration_credential> c;
        must(store_->read(ctx, [&](storage::unit_of_work& uow) -> result<void> {
            c = must(uow.credentials().find(id));
            return {};
        }));
        return *c;
    }
    std::size_t open_failures(request_context const& ctx) {
        std::size_t n = 0;
        must(store_->read(ctx, [&](storage::unit_of_work& uow) -> result<void> {
            n = must(uow.failures().list({.unresolved_only = true}, {})).items.size();
            return {};
        }));
        return n;
    }

    /** A worker whose every new secret (counted in `minted`) the vendor refuses. */
    static credentials::rotation_worker_options refused_by_the_vendor(int& minted) {
        return {.mint = [&minted](auto const&) {
                    ++minted;
                    return std::optional(credentials::minted_secret{secret_bytes("bad"), {}});
                },
                .verifier_for = [](auto const&, auto const&) -> credentials::verifier {
                    return [](auto const&) -> result<void> { return error{errc::forbidden, "probe got 401"}; };
                }};
    }

    temp_dir dir_;
    manual_clock clock_;
    std::unique_ptr<storage::store> store_ = must(storage::open_sqlite_store({.path = dir_.file("i.db"), .clock = &clock_}));
    std::unique_ptr<credentials::local_secret_store> real_vault_ = must(credentials::open_local_secret_store(
        {.path = dir_.file("s.db"), .key_file = dir_.file("k"), .key_env = "", .clock = &clock_}));
    switchable_vault vault_{*real_vault_};
    credentials::fingerprinter fp_ = must(credentials::fingerprinter::load_or_create(dir_.file("fp")));
    no_network net_;
    net::static_resolver dns_;
    credentials::credential_service service_{*store_, vault_, fp_, clock_, net_, {}, dns_};
    request_context a_ = request_context::for_tenant("tenant-a");
    request_context b_ = request_context::for_tenant("tenant-b");
};

TEST_F(rotation_worker_test, credentials_are_rotated_ahead_of_expiry_in_every_tenant) {
    auto soon = must(service_.create(a_, {.provider_id = provider(a_), .secret = secret_bytes("a-1"),
                                          .rotation_policy = credentials::rotation_policy{0, 5},
                                          .expires_at = clock_.now() + 24h * 3}));
    auto later = must(service_.create(b_, {.provider_id = provider(b_), .secret = secret_bytes("b-1"),
                                           .rotation_policy = credentials::rotation_policy{0, 5},
                                           .expires_at = clock_.now() + 24h * 30}));
    int minted = 0;
    credentials::rotation_worker worker(*store_, service_, clock_, {
        .mint = [&](auto const& c) -> std::optional<credentials::minted_secret> {
            ++minted;
            return credentials::minted_secret{secret_bytes("minted-" + c.id()), clock_.now() + 24h * 90};
        }});
    auto sweep = must(worker.sweep());
    EXPECT_EQ(sweep.rotated, 1u);
    EXPECT_EQ(minted, 1);
    auto rotated = find(a_, soon.id());
    EXPECT_EQ(rotated.data().current_version, 2);
    EXPECT_EQ(rotated.data().expires_at, clock_.now() + 24h * 90);
    EXPECT_EQ(find(b_, later.id()).data().current_version, 1);
    EXPECT_EQ(std::string(must(service_.resolve(a_, soon.id())).headers.at(0).second.view()), "minted-" + soon.id());
    // Nothing is due any more.
    EXPECT_EQ(must(worker.sweep()).rotated, 0u);
    // 26 days later the other tenant's credential enters its notice window.
    clock_.advance(24h * 26);
    EXPECT_EQ(must(worker.sweep()).rotated, 1u);
    EXPECT_EQ(find(b_, later.id()).data().current_version, 2);
}

TEST_F(rotation_worker_test, a_rotation_schedule_without_expiry_is_honoured) {
    auto c = must(service_.create(a_, {.provider_id = provider(a_), .secret = secret_bytes("k"),
                                       .rotation_policy = credentials::rotation_policy{30, 7}}));
    credentials::rotation_worker worker(*store_, service_, clock_, {
        .mint = [&](auto const&) { return std::optional(credentials::minted_secret{secret_bytes("k2"), {}}); }});
    EXPECT_EQ(must(worker.sweep()).rotated, 0u);
    clock_.advance(24h * 30);
    EXPECT_EQ(must(worker.sweep()).rotated, 1u);
    EXPECT_EQ(find(a_, c.id()).data().current_version, 2);
    clock_.advance(24h);
    EXPECT_EQ(must(worker.sweep()).rotated, 0u);  // the clock restarts at lastRotatedAt
}

TEST_F(rotation_worker_test, without_a_minter_one_failure_is_raised_and_not_repeated) {
    auto c = must(service_.create(a_, {.provider_id = provider(a_), .secret = secret_bytes("k"),
                                       .expires_at = clock_.now() + 24h}));
    credentials::rotation_worker worker(*store_, service_, clock_, {});
    EXPECT_EQ(must(worker.sweep()).escalated, 1u);
    EXPECT_EQ(must(worker.sweep()).escalated, 1u);
    EXPECT_EQ(open_failures(a_), 1u);
    must(store_->read(a_, [&](storage::unit_of_work& uow) -> result<void> {
        auto f = must(uow.failures().list({}, {})).items.at(0);
        EXPECT_EQ(f.data().category, failures::failure_category::auth);
        EXPECT_EQ(f.data().next_action, failures::next_action::escalate);
        EXPECT_EQ(f.data().credential_id, c.id());
        return {};
    }));
}

// Every due credential of a tenant is found, past the first page and past credentials that stay
// due because nothing can rotate them; and each raises its one failure however many other
// failures the tenant has open.
TEST_F(rotation_worker_test, every_due_credential_is_escalated_once_past_the_first_page_and_other_open_failures) {
    must(store_->transact(a_, [&](storage::unit_of_work& uow) -> result<void> {
        for (int i = 0; i < 501; ++i) {
            auto f = must(failures::integration_failure::record(
                a_, clock_.now(), failures::failure_source::run, "run-" + std::to_string(i), "prov-1",
                {failures::failure_category::validation, "http_422", "bad", failures::next_action::escalate, {}}));
            if (auto r = uow.failures().save(f); !r) return r;
        }
        return {};
    }));
    auto p = provider(a_);
    std::vector<std::string> ids;
    for (int i = 0; i < 5; ++i)
        ids.push_back(must(service_.create(a_, {.provider_id = p, .secret = secret_bytes("k" + std::to_string(i)),
                                                .expires_at = clock_.now() + 24h * (i + 1)}))
                          .id());
    credentials::rotation_worker worker(*store_, service_, clock_, {.batch = 2});
    EXPECT_EQ(must(worker.sweep()).escalated, 5u);
    EXPECT_EQ(must(worker.sweep()).escalated, 5u);
    must(store_->read(a_, [&](storage::unit_of_work& uow) -> result<void> {
        std::size_t open = 0;
        storage::page_request page{.limit = 500};
        do {
            auto batch = must(uow.failures().list({.unresolved_only = true}, page));
            open += batch.items.size();
            page.cursor = batch.next_cursor;
        } while (!page.cursor.empty());
        EXPECT_EQ(open, 501u + 5u) << "a credential's failure was raised twice";
        for (auto const& id : ids)
            EXPECT_EQ(must(uow.failures().list({.credential_id = id}, {})).items.size(), 1u) << id;
        return {};
    }));
}

// A rotation whose end was never recorded (its process stopped, or its last commit failed) left
// the credential Rotating for ever: neither rotated again nor refreshed. The sweep ends it.
TEST_F(rotation_worker_test, a_rotation_left_unfinished_is_ended_on_the_prior_version) {
    auto c = must(service_.create(a_, {.provider_id = provider(a_), .secret = secret_bytes("old")}));
    auto refused = service_.rotate(a_, c.id(), secret_bytes("new"), [&](credentials::resolved_credential const&) -> result<void> {
        exec_sql(dir_.file("i.db"), "CREATE TRIGGER refuse_credentials BEFORE UPDATE ON credentials BEGIN SELECT RAISE(ABORT, 'refused'); END;");
        return {};
    });
    ASSERT_FALSE(refused);  // verified, but the commit that activates it failed
    exec_sql(dir_.file("i.db"), "DROP TRIGGER refuse_credentials;");
    auto stuck = find(a_, c.id());
    ASSERT_EQ(stuck.status(), credentials::credential_status::rotating);
    auto staged_ref = must(credentials::secret_ref::parse(stuck.staged_version()->key_vault_ref));
    credentials::rotation_worker worker(*store_, service_, clock_, {});
    EXPECT_EQ(must(worker.sweep()).abandoned, 0u);  // it may still be under way
    clock_.advance(std::chrono::minutes(11));
    EXPECT_EQ(must(worker.sweep()).abandoned, 1u);
    auto ended = find(a_, c.id());
    EXPECT_EQ(ended.status(), credentials::credential_status::active);
    EXPECT_EQ(ended.data().current_version, 1);
    EXPECT_EQ(std::string(must(service_.resolve(a_, c.id())).headers.at(0).second.view()), "old");
    EXPECT_FALSE(real_vault_->get("tenant-a", staged_ref)) << "the staged secret is disabled";
    auto again = must(service_.rotate(a_, c.id(), secret_bytes("newer"), [](auto const&) -> result<void> { return {}; }));
    EXPECT_EQ(again.status(), credentials::credential_status::active);
    EXPECT_EQ(std::string(must(service_.resolve(a_, c.id())).headers.at(0).second.view()), "newer");
}

// A rotation that ran past `abandoned_after` was ended by the worker, and another was staged
// meanwhile: the slow one's end must not activate the other's version, which nothing verified.
TEST_F(rotation_worker_test, a_rotation_ended_by_the_worker_does_not_end_the_next_one) {
    auto c = must(service_.create(a_, {.provider_id = provider(a_), .secret = secret_bytes("old")}));
    credentials::rotation_worker worker(*store_, service_, clock_, {});
    std::promise<void> staged, release;
    std::thread other;
    auto slow = service_.rotate(a_, c.id(), secret_bytes("slow"), [&](credentials::resolved_credential const&) -> result<void> {
        clock_.advance(std::chrono::minutes(11));
        EXPECT_EQ(must(worker.sweep()).abandoned, 1u);
        other = std::thread([&] {
            auto r = service_.rotate(a_, c.id(), secret_bytes("unverified"), [&](credentials::resolved_credential const&) -> result<void> {
                staged.set_value();
                release.get_future().wait();
                return error{errc::forbidden, "the vendor refused it"};
            });
            EXPECT_FALSE(r);
        });
        staged.get_future().wait();  // the other rotation is staged and being verified
        return {};
    });
    EXPECT_FALSE(slow);
    if (!slow) {
        EXPECT_EQ(slow.error(), errc::conflict);
    }
    EXPECT_EQ(find(a_, c.id()).status(), credentials::credential_status::rotating) << "the other rotation is still under way";
    release.set_value();
    other.join();
    auto ended = find(a_, c.id());
    EXPECT_EQ(ended.status(), credentials::credential_status::active);
    EXPECT_EQ(ended.data().current_version, 1);
    EXPECT_EQ(std::string(must(service_.resolve(a_, c.id())).headers.at(0).second.view()), "old");
}

TEST_F(rotation_worker_test, a_vault_outage_keeps_the_old_version_and_the_next_sweep_retries) {
    auto c = must(service_.create(a_, {.provider_id = provider(a_), .secret = secret_bytes("old"),
                                       .expires_at = clock_.now() + 24h}));
    credentials::rotation_worker worker(*store_, service_, clock_, {
        .mint = [&](auto const&) { return std::optional(credentials::minted_secret{secret_bytes("new"), clock_.now() + 24h * 60}); }});
    vault_.down = true;
    auto first = must(worker.sweep());
    EXPECT_EQ(first.failed, 1u);
    EXPECT_EQ(find(a_, c.id()).data().current_version, 1);
    vault_.down = false;
    EXPECT_EQ(std::string(must(service_.resolve(a_, c.id())).headers.at(0).second.view()), "old");
    EXPECT_EQ(must(worker.sweep()).rotated, 1u);
    EXPECT_EQ(std::string(must(service_.resolve(a_, c.id())).headers.at(0).second.view()), "new");
}

TEST_F(rotation_worker_test, a_failed_verification_keeps_the_prior_version_and_raises_a_failure_event) {
    auto c = must(service_.create(a_, {.provider_id = provider(a_), .secret = secret_bytes("old"),
                                       .expires_at = clock_.now() + 24h}));
    credentials::rotation_worker worker(*store_, service_, clock_, {
        .mint = [&](auto const&) { return std::optional(credentials::minted_secret{secret_bytes("bad"), {}}); },
        .verifier_for = [](auto const&, auto const&) -> credentials::verifier {
            return [](auto const&) -> result<void> { return error{errc::forbidden, "probe got 401"}; };
        }});
    EXPECT_EQ(must(worker.sweep()).failed, 1u);
    auto stored = find(a_, c.id());
    EXPECT_EQ(stored.data().current_version, 1);
    EXPECT_EQ(stored.status(), credentials::credential_status::active);
    auto events = must(store_->pending_events(100));
    EXPECT_TRUE(std::any_of(events.begin(), events.end(), [](auto const& e) { return e.envelope.event_type == "IntegrationFailed"; }));
}

// Material the vendor refused is escalated once, for a person: it was minted again at every sweep
// (a new key at the vendor each minute) until the credential expired, and nobody was told.
TEST_F(rotation_worker_test, a_rotation_that_fails_verification_is_escalated_once_and_not_minted_again) {
    auto c = must(service_.create(a_, {.provider_id = provider(a_), .secret = secret_bytes("old"),
                                       .expires_at = clock_.now() + 24h}));
    int minted = 0;
    credentials::rotation_worker worker(*store_, service_, clock_, refused_by_the_vendor(minted));
    EXPECT_EQ(must(worker.sweep()).failed, 1u);
    for (int i = 0; i < 3; ++i) {
        clock_.advance(60s);
        auto again = must(worker.sweep());
        EXPECT_EQ(again.failed, 0u);
        EXPECT_EQ(again.escalated, 1u);
    }
    EXPECT_EQ(minted, 1);
    EXPECT_EQ(find(a_, c.id()).data().current_version, 1);
    must(store_->read(a_, [&](storage::unit_of_work& uow) -> result<void> {
        auto open = must(uow.failures().list({.unresolved_only = true}, {})).items;
        EXPECT_EQ(open.size(), 1u);
        if (open.empty()) return {};
        EXPECT_EQ(open[0].data().credential_id, c.id());
        EXPECT_EQ(open[0].data().next_action, failures::next_action::escalate);
        EXPECT_NE(open[0].data().message.find("probe got 401"), std::string::npos) << open[0].data().message;
        return {};
    }));
}

// A verifier that gets no answer (the vendor down, a timeout) says nothing of the new material:
// not escalated, tried again next sweep.
TEST_F(rotation_worker_test, a_rotation_whose_verification_gets_no_answer_is_tried_again_not_escalated) {
    must(service_.create(a_, {.provider_id = provider(a_), .secret = secret_bytes("old"), .expires_at = clock_.now() + 24h}));
    int minted = 0;
    credentials::rotation_worker worker(*store_, service_, clock_, {
        .mint = [&](auto const&) {
            ++minted;
            return std::optional(credentials::minted_secret{secret_bytes("new-" + std::to_string(minted)), {}});
        },
        .verifier_for = [](auto const&, auto const&) -> credentials::verifier {
            return [](auto const&) -> result<void> { return error{errc::unavailable, "the health check answered HTTP 503"}; };
        }});
    EXPECT_EQ(must(worker.sweep()).failed, 1u);
    clock_.advance(60s);
    EXPECT_EQ(must(worker.sweep()).failed, 1u);
    EXPECT_EQ(minted, 2);
    EXPECT_EQ(open_failures(a_), 0u);
}

// A failure about a version rotated away since (by hand, as its message asks) holds the worker
// back no more: the next time the credential is due, it is minted again.
TEST_F(rotation_worker_test, an_escalation_about_a_version_rotated_away_does_not_hold_later_rotations) {
    auto c = must(service_.create(a_, {.provider_id = provider(a_), .secret = secret_bytes("old"), .expires_at = clock_.now() + 24h}));
    int minted = 0;
    credentials::rotation_worker worker(*store_, service_, clock_, refused_by_the_vendor(minted));
    EXPECT_EQ(must(worker.sweep()).failed, 1u);
    EXPECT_EQ(minted, 1);
    clock_.advance(60s);
    must(service_.rotate(a_, c.id(), secret_bytes("by-hand"), [](auto const&) -> result<void> { return {}; },
                         clock_.now() + 24h));
    clock_.advance(60s);  // due again: it expires within the notice
    EXPECT_EQ(must(worker.sweep()).failed, 1u);
    EXPECT_EQ(minted, 2);
}

// A row of one tenant that cannot be read stops no other tenant's rotations; the sweep still
// reports the error.
TEST_F(rotation_worker_test, one_tenants_unreadable_credential_does_not_stop_the_others_rotations) {
    must(service_.create(a_, {.provider_id = provider(a_), .secret = secret_bytes("a"), .expires_at = clock_.now() + 24h}));
    auto b = must(service_.create(b_, {.provider_id = provider(b_), .secret = secret_bytes("b"), .expires_at = clock_.now() + 24h}));
    exec_sql(dir_.file("i.db"), "PRAGMA busy_timeout = 10000; UPDATE credentials SET status = 'Bogus' WHERE tenant_id = 'tenant-a';");
    credentials::rotation_worker worker(*store_, service_, clock_, {
        .mint = [&](auto const&) { return std::optional(credentials::minted_secret{secret_bytes("new"), clock_.now() + 24h * 60}); }});
    auto sweep = worker.sweep();
    EXPECT_FALSE(sweep) << "the unreadable row was not reported";
    EXPECT_EQ(find(b_, b.id()).data().current_version, 2) << "tenant-b's due credential was not rotated";
}

}  // namespace
}  // namespace integration::testing
