#include "backends/sqlite/wal_sync.hpp"

// The SQLite store's sync thread: commits are made durable by a WAL sync after the commit, off
// the writer, and nothing is reported or published before the sync that covers it.

#include "fixtures.hpp"

#include "detail/sqlite/connection.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <mutex>
#include <vector>

namespace integration::testing {
namespace {

using storage::unit_of_work;
using namespace std::chrono_literals;

request_context tenant(std::string t) { return request_context::for_tenant(std::move(t), "tester"); }

storage::store::work save_provider(request_context ctx, std::string key) {
    return [ctx, key](unit_of_work& uow) -> result<void> {
        auto p = must(providers::integration_provider::register_new(ctx, system_clock::instance().now(), provider_spec(key)));
        return uow.providers().save(p);
    };
}

std::size_t count_providers(storage::store& s, request_context const& ctx) {
    std::size_t n = 0;
    must(s.read(ctx, [&](unit_of_work& uow) -> result<void> {
        n = must(uow.providers().list({.limit = 500})).items.size();
        return {};
    }));
    return n;
}

/** A WAL sync a test can hold closed and count; it syncs for real once let through. */
struct gated_sync {
    std::mutex m;
    std::condition_variable cv;
    bool open = true;
    int entered = 0;
    int done = 0;

    storage::sqlite::wal_sync fn() {
        return [this](std::string const& path) {
            std::unique_lock lock(m);
            ++entered;
            cv.notify_all();
            cv.wait(lock, [&] { return open; });
            lock.unlock();
            auto r = storage::sqlite::sync_wal(path);
            lock.lock();
            ++done;
            cv.notify_all();
            return r;
        };
    }
    void set_open(bool o) {
        std::lock_guard lock(m);
        open = o;
        cv.notify_all();
    }
    bool wait_entered(int n) {
        std::unique_lock lock(m);
        return cv.wait_for(lock, 60s, [&] { return entered >= n; });
    }
    int synced() {
        std::lock_guard lock(m);
        return done;
    }
};

/** A WAL sync that counts itself in `n`. */
storage::sqlite::wal_sync counting(std::atomic<int>& n) {
    return [&n](std::string const& p) {
        ++n;
        return storage::sqlite::sync_wal(p);
    };
}

// A test that fails by hanging would hang the whole binary (the store's destructor waits for its
// threads): end the process instead, with the reason.
void or_exit(bool ready, char const* what) {
    if (ready) return;
    std::fprintf(stderr, "FAILED: %s did not happen within 60 s (a deadlock)\n", what);
    std::fflush(stderr);
    std::_Exit(1);
}

TEST(sqlite_sync, an_immediate_unit_is_visible_at_commit_and_reported_only_after_the_wal_sync) {
    temp_dir dir;
    gated_sync sync;
    sync.set_open(false);
    auto s = must(storage::sqlite::open_store({.path = dir.file("integration.db")}, sync.fn()));
    auto ctx = tenant("t1");
    std::promise<result<void>> reported;
    auto answer = reported.get_future();
    s->transact_async(ctx, save_provider(ctx, "a"), durability::immediate,
                      [&](result<void> r) { reported.set_value(std::move(r)); });
    or_exit(sync.wait_entered(1), "the first WAL sync");  // a failed ASSERT would leave the sync held: a hang
    // Committed (readers see it) but not yet synced: the caller has not been told.
    EXPECT_EQ(count_providers(*s, ctx), 1u);
    EXPECT_EQ(answer.wait_for(0s), std::future_status::timeout);
    sync.set_open(true);
    ASSERT_EQ(answer.wait_for(60s), std::future_status::ready);
    EXPECT_TRUE(answer.get());
    EXPECT_GE(sync.synced(), 1);
}

TEST(sqlite_sync, the_writer_commits_the_next_batch_while_a_sync_is_running) {
    temp_dir dir;
    gated_sync sync;
    sync.set_open(false);
    auto s = must(storage::sqlite::open_store({.path = dir.file("integration.db")}, sync.fn()));
    auto ctx = tenant("t1");
    std::atomic<int> reported{0};
    s->transact_async(ctx, save_provider(ctx, "first"), durability::immediate, [&](result<void>) { ++reported; });
    or_exit(sync.wait_entered(1), "the first WAL sync");  // a failed ASSERT would leave the sync held: a hang
    // The first sync is held; a second unit still commits (visible) without waiting for it.
    std::promise<void> second_ran;
    s->transact_async(
        ctx,
        [&, unit = save_provider(ctx, "second")](unit_of_work& uow) {
            auto r = unit(uow);
            second_ran.set_value();
            return r;
        },
        durability::immediate, [&](result<void>) { ++reported; });
    or_exit(second_ran.get_future().wait_for(60s) == std::future_status::ready, "the second unit's commit");
    EXPECT_EQ(reported.load(), 0);
    sync.set_open(true);
    s.reset();
    EXPECT_EQ(reported.load(), 2);
}

TEST(sqlite_sync, immediate_units_are_reported_in_commit_order_and_all_of_them_at_destruction) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    std::atomic<int> syncs{0};
    constexpr int units = 300;
    std::mutex m;
    std::vector<int> order;
    std::vector<int> syncs_seen;
    auto ctx = tenant("t1");
    {
        auto s = must(storage::sqlite::open_store({.path = path}, [&](std::string const& p) {
            auto r = storage::sqlite::sync_wal(p);
            ++syncs;
            return r;
        }));
        for (int i = 0; i < units; ++i)
            s->transact_async(ctx, save_provider(ctx, "o" + std::to_string(i)), durability::immediate,
                              [&, i](result<void> r) {
                                  EXPECT_TRUE(r);
                                  std::lock_guard lock(m);
                                  order.push_back(i);
                                  syncs_seen.push_back(syncs.load());
                              });
        // Destroyed with most units still queued: each is committed, synced and reported first.
    }
    ASSERT_EQ(order.size(), static_cast<std::size_t>(units));
    for (int i = 0; i < units; ++i) {
        EXPECT_EQ(order[static_cast<std::size_t>(i)], i);
        EXPECT_GE(syncs_seen[static_cast<std::size_t>(i)], 1);  // no unit is reported before a sync
    }
    EXPECT_LT(syncs.load(), units);  // units committed during one sync share the next
    auto s = must(storage::open_sqlite_store({.path = path}));
    EXPECT_EQ(count_providers(*s, ctx), static_cast<std::size_t>(units));
}

TEST(sqlite_sync, a_failed_sync_reports_the_committed_units_as_not_durable) {
    temp_dir dir;
    std::atomic<bool> fail = true;  // read on the store's sync thread
    auto s = must(storage::sqlite::open_store({.path = dir.file("integration.db")}, [&](std::string const&) -> result<void> {
        if (fail) return error{errc::storage_failure, "fdatasync: Input/output error"};
        return {};
    }));
    auto ctx = tenant("t1");
    auto r = s->transact(ctx, save_provider(ctx, "a"));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::storage_failure);
    EXPECT_NE(r.error().detail().find("not made durable"), std::string::npos) << r.error().detail();
    // The kernel may have dropped the pages it could not write and marked them clean: a later
    // sync that succeeds would not cover them, and a commit after them is lost with them at a
    // power loss. Nothing more is written, read or reported durable until the store is reopened.
    fail = false;
    auto after = s->transact(ctx, save_provider(ctx, "b"));
    ASSERT_FALSE(after) << "reported durable after a failed sync";
    EXPECT_EQ(after.error(), errc::storage_failure);
    EXPECT_NE(after.error().detail().find("reopen the store"), std::string::npos) << after.error().detail();
    EXPECT_FALSE(s->pending_events(10)) << "a read after a failed sync";
    std::promise<result<void>> async;
    s->transact_async(ctx, save_provider(ctx, "c"), durability::immediate, [&](result<void> r) { async.set_value(r); });
    EXPECT_FALSE(async.get_future().get());
    s.reset();
    auto reopened = must(storage::open_sqlite_store({.path = dir.file("integration.db")}));
    EXPECT_EQ(count_providers(*reopened, ctx), 1u) << "the unit reported as not durable stays committed, nothing after it";
}

// The relay publishes what `pending_events` returns: a row read there must already be durable,
// so that no webhook announces a write a power loss then takes back. The store syncs the WAL
// after opening the read's snapshot; a write committed by another store on the same file (as
// another process's would be) is covered the same way.
TEST(sqlite_sync, pending_events_syncs_the_wal_before_returning_rows_written_by_any_store_on_the_file) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    std::atomic<int> writer_syncs{0}, reader_syncs{0};
    // Deferred commits, with a flush interval no test waits for: only the read can sync them.
    auto writer = must(storage::sqlite::open_store({.path = path, .flush_interval = std::chrono::hours(1)},
                                                   counting(writer_syncs)));
    auto reader = must(storage::sqlite::open_store({.path = path, .flush_interval = std::chrono::hours(1)},
                                                   counting(reader_syncs)));
    EXPECT_TRUE(must(reader->pending_events(10)).empty());
    EXPECT_EQ(reader_syncs.load(), 0);  // nothing to publish: no sync
    auto ctx = tenant("t1");
    must(writer->transact(ctx, save_provider(ctx, "a"), durability::deferred));
    EXPECT_EQ(writer_syncs.load(), 0);
    auto rows = must(reader->pending_events(10));
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(reader_syncs.load(), 1);
    EXPECT_EQ(storage::sqlite::wal_syncs(*reader), 1u);
}

// The delivery worker sends what a claim leases: a delivery leased there must already be
// durable too, or a power loss could take back the event a receiver was sent (and its caller,
// never answered, would publish it again under another id).
TEST(sqlite_sync, a_claim_syncs_the_wal_before_returning_deliveries_written_by_any_store_on_the_file) {
    temp_dir dir;
    auto path = dir.file("integration.db");
    std::atomic<int> writer_syncs{0}, claimer_syncs{0};
    auto writer = must(storage::sqlite::open_store({.path = path, .flush_interval = std::chrono::hours(1)},
                                                   counting(writer_syncs)));
    auto claimer = must(storage::sqlite::open_store({.path = path, .flush_interval = std::chrono::hours(1)},
                                                    counting(claimer_syncs)));
    auto const now = system_clock::instance().now();
    EXPECT_TRUE(must(claimer->claim_deliveries(now, "worker-1", now + 30s, 10)).deliveries.empty());
    EXPECT_EQ(claimer_syncs.load(), 0);  // nothing to send: no sync
    auto ctx = tenant("t1");
    must(writer->transact(ctx, [&](unit_of_work& uow) -> result<void> {
        webhooks::subscription_spec spec;
        spec.project_id = "proj-1";
        spec.event_type = "order.*";
        spec.endpoint_url = "https://hooks.example.com/in";
        spec.signing_secret_ref = "vault://local/t1/whsec?version=1";
        auto sub = must(webhooks::webhook_subscription::create(ctx, now, spec));
        must(uow.subscriptions().save(sub));
        auto d = must(webhooks::webhook_delivery::outbound(ctx, now, sub, "order.paid", "evt-1", std::string("blob://p")));
        return uow.deliveries().save(d);
    }, durability::deferred));
    EXPECT_EQ(writer_syncs.load(), 0);
    auto claimed = must(claimer->claim_deliveries(now + 1s, "worker-1", now + 31s, 10)).deliveries;
    ASSERT_EQ(claimed.size(), 1u);
    EXPECT_EQ(claimer_syncs.load(), 1) << "leased before the commit that made it was durable";
}

// Reads that must return durable rows do not each sync the WAL: they wait for the sync thread's
// next sync, which the commits waiting at the same time share.
TEST(sqlite_sync, concurrent_reads_of_pending_events_share_the_sync_threads_next_sync) {
    temp_dir dir;
    gated_sync sync;
    auto s = must(storage::sqlite::open_store({.path = dir.file("integration.db"), .flush_interval = std::chrono::hours(1)},
                                              sync.fn()));
    auto ctx = tenant("t1");
    must(s->transact(ctx, save_provider(ctx, "a"), durability::deferred));
    sync.set_open(false);
    constexpr int readers = 8;
    std::vector<std::future<std::size_t>> reads;
    reads.push_back(std::async(std::launch::async, [&] { return must(s->pending_events(10)).size(); }));
    or_exit(sync.wait_entered(1), "the sync the first read asked for");
    std::atomic<int> started{0};
    for (int i = 1; i < readers; ++i)
        reads.push_back(std::async(std::launch::async, [&] {
            ++started;
            return must(s->pending_events(10)).size();
        }));
    // Each later read has its row and waits for a sync begun after it: the one after the held one.
    while (started.load() < readers - 1) std::this_thread::sleep_for(1ms);
    std::this_thread::sleep_for(200ms);
    EXPECT_EQ(reads.back().wait_for(0s), std::future_status::timeout) << "a read returned before its row was synced";
    sync.set_open(true);
    for (auto& r : reads) {
        ASSERT_EQ(r.wait_for(60s), std::future_status::ready);
        EXPECT_EQ(r.get(), 1u);
    }
    EXPECT_EQ(sync.synced(), 2) << readers << " reads, one sync held and the one after it";
}

TEST(sqlite_sync, a_read_whose_sync_succeeded_returns_its_rows_though_the_next_sync_fails) {
    // Syncs 1 and 2 wait for the test and succeed; every later one fails at once.
    std::mutex m;
    std::condition_variable cv;
    int calls = 0, let_through = 0;
    auto sync = [&](std::string const& path) -> result<void> {
        std::unique_lock lock(m);
        int const n = ++calls;
        cv.notify_all();
        if (n > 2) return error{errc::storage_failure, "fdatasync: Input/output error"};
        cv.wait(lock, [&] { return let_through >= n; });
        lock.unlock();
        return storage::sqlite::sync_wal(path);
    };
    auto entered = [&](int n) {
        std::unique_lock lock(m);
        return cv.wait_for(lock, 60s, [&] { return calls >= n; });
    };
    auto let = [&](int n) {
        std::lock_guard lock(m);
        let_through = n;
        cv.notify_all();
    };
    temp_dir dir;
    auto s = must(storage::sqlite::open_store({.path = dir.file("integration.db"), .flush_interval = std::chrono::hours(1)}, sync));
    auto ctx = tenant("t1");
    must(s->transact(ctx, save_provider(ctx, "a"), durability::deferred));
    auto first = std::async(std::launch::async, [&] { return s->pending_events(10).has_value(); });
    or_exit(entered(1), "the sync the first read asked for");
    // These reads wait for sync 2, which begins after them and succeeds.
    constexpr int readers = 8;
    std::atomic<int> started{0};
    std::vector<std::future<bool>> reads;
    for (int i = 0; i < readers; ++i)
        reads.push_back(std::async(std::launch::async, [&] {
            ++started;
            auto rows = s->pending_events(10);
            return rows && rows->size() == 1;
        }));
    while (started.load() < readers) std::this_thread::sleep_for(1ms);
    std::this_thread::sleep_for(100ms);
    let(1);
    or_exit(entered(2), "the sync the later reads asked for");
    // A commit made during sync 2 is synced by sync 3, which fails just as sync 2 ends.
    auto late = std::async(std::launch::async, [&] { return s->transact(ctx, save_provider(ctx, "b")).has_value(); });
    std::this_thread::sleep_for(100ms);
    let(2);
    EXPECT_TRUE(first.get());
    for (auto& r : reads) {
        or_exit(r.wait_for(60s) == std::future_status::ready, "a read");
        EXPECT_TRUE(r.get()) << "its rows were made durable by sync 2";
    }
    EXPECT_FALSE(late.get()) << "sync 3 failed";
}

TEST(sqlite_sync, pending_events_fails_rather_than_return_rows_it_could_not_make_durable) {
    temp_dir dir;
    auto s = must(storage::sqlite::open_store({.path = dir.file("integration.db"), .flush_interval = std::chrono::hours(1)},
                                              [](std::string const&) -> result<void> {
                                                  return error{errc::storage_failure, "fdatasync: Input/output error"};
                                              }));
    auto ctx = tenant("t1");
    must(s->transact(ctx, save_provider(ctx, "a"), durability::deferred));
    auto rows = s->pending_events(10);
    ASSERT_FALSE(rows);
    EXPECT_EQ(rows.error(), errc::storage_failure);
}

// `done` runs on one of the store's own threads. A synchronous write from there would wait for
// that thread: it fails at once with a clear error instead of hanging. Reads work.
TEST(sqlite_sync, a_synchronous_write_from_a_store_callback_fails_at_once_and_a_read_works) {
    temp_dir dir;
    auto s = must(storage::open_sqlite_store({.path = dir.file("integration.db")}));
    auto ctx = tenant("t1");
    for (auto d : {durability::immediate, durability::deferred}) {
        std::promise<std::pair<result<void>, std::size_t>> inner;
        auto out = inner.get_future();
        s->transact_async(ctx, save_provider(ctx, d == durability::immediate ? "i" : "d"), d, [&](result<void> r) {
            EXPECT_TRUE(r);
            auto write = s->transact(ctx, save_provider(ctx, "nested"));
            inner.set_value({std::move(write), count_providers(*s, ctx)});
        });
        or_exit(out.wait_for(60s) == std::future_status::ready, "the callback's synchronous write");
        auto [write, seen] = out.get();
        ASSERT_FALSE(write);
        EXPECT_EQ(write.error(), errc::invalid_argument);
        EXPECT_NE(write.error().detail().find("use transact_async"), std::string::npos) << write.error().detail();
        EXPECT_GE(seen, 1u);
    }
    // From a unit of work (which runs on the writer) as well.
    auto nested = s->transact(ctx, [&](unit_of_work&) { return s->transact(ctx, save_provider(ctx, "n")); });
    ASSERT_FALSE(nested);
    EXPECT_EQ(nested.error(), errc::invalid_argument);
    // An asynchronous write from a callback is fine.
    std::promise<result<void>> chained;
    auto last = chained.get_future();
    s->transact_async(ctx, save_provider(ctx, "x"), durability::immediate, [&](result<void>) {
        s->transact_async(ctx, save_provider(ctx, "y"), durability::immediate,
                          [&](result<void> r) { chained.set_value(std::move(r)); });
    });
    or_exit(last.wait_for(60s) == std::future_status::ready, "the chained asynchronous write");
    EXPECT_TRUE(last.get());
    EXPECT_EQ(count_providers(*s, ctx), 4u);  // i, d, x, y
}

}  // namespace
}  // namespace integration::testing
