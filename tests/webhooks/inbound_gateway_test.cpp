#include <integration/services/inbound_gateway.hpp>

#include <integration/backends/local_vault/local_secret_store.hpp>
#include <integration/backends/sqlite/sqlite_blob_store.hpp>
#include <integration/backends/sqlite/sqlite_store.hpp>
#include <integration/platform.hpp>
#include <integration/services/outbox_relay.hpp>
#include <integration/services/retention_worker.hpp>
#include <integration/services/webhook_signature.hpp>

#include "backends/sqlite/wal_sync.hpp"
#include "detail/sqlite/connection.hpp"
#include "storage/fixtures.hpp"
#include "support/credential_doubles.hpp"
#include "support/hmac.hpp"
#include "support/sqlite_file.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

// The inbound gateway over a real SQLite store, blob store and local vault with a manual clock:
// what an accepted, duplicate or refused request writes (and what an unknown connection does
// not), dedupe under concurrency, the canonical event and its fan-out through the platform,
// secret rotation, tenant isolation and retention.

namespace {

using namespace integration;
using namespace integration::webhooks;
using namespace std::chrono_literals;
using integration::testing::must;
using integration::testing::temp_dir;

using integration::testing::hmac_sha256_hex;

/** A request as a vendor sends it; the header views point into this object. */
struct vendor_request {
    std::vector<std::pair<std::string, std::string>> fields;
    std::vector<header_field> headers;
    std::string body;
    std::string url = "https://hooks.example/webhooks/inbound/con";
    std::string content_type = "application/json";

    vendor_request() = default;
    vendor_request(vendor_request const&) = delete;

    inbound_request view() {
        headers.clear();
        for (auto const& [n, v] : fields) headers.push_back({n, v});
        return {headers, body, url, content_type};
    }
};

/** A GitHub delivery signed with `secret`. */
std::unique_ptr<vendor_request> github(std::string const& secret, std::string delivery_id, std::string body,
                                       std::string event = "pull_request") {
    auto r = std::make_unique<vendor_request>();
    r->fields = {{"X-GitHub-Delivery", std::move(delivery_id)},
                 {"X-GitHub-Event", std::move(event)},
                 {"X-Hub-Signature-256", "sha256=" + hmac_sha256_hex(secret, body)},
                 {"Content-Type", "application/json"}};
    r->body = std::move(body);
    return r;
}

std::string pr_opened(int number) {
    return R"({"action":"opened","number":)" + std::to_string(number) + R"(,"pull_request":{"title":"Fix"}})";
}

/** Rows of `table` across every tenant, read straight from the database file. */
std::int64_t rows_in(std::string const& db_path, std::string const& table) {
    auto const rows = integration::testing::query_rows(db_path, "SELECT COUNT(*) FROM " + table);
    return rows.empty() ? -1 : std::stoll(rows.front());
}

/** For `rows_in`: the deliveries whose payload the store keeps (a column of their row). */
constexpr char const* kept_payloads = "deliveries WHERE payload IS NOT NULL";

/** Saves a provider and a Pending connection in `ctx`'s tenant; returns the connection id. */
std::string seed_connection(storage::store& store, request_context const& ctx, time_point now) {
    std::string id;
    must(store.transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
        auto p = integration::testing::active_provider(ctx, now, "github");
        auto c = must(connections::integration_connection::create(ctx, now, p, integration::testing::connection_spec()));
        id = c.id();
        if (auto r = uow.providers().save(p); !r) return r;
        return uow.connections().save(c);
    }));
    return id;
}

class inbound_gateway_test : public ::testing::Test {
protected:
    inbound_gateway_test() {
        clock_.set(from_unix_ms(1'767'225'600'000));
        conn_a_ = seed_connection(*store_, a_, clock_.now());
        conn_b_ = seed_connection(*store_, b_, clock_.now());
        must(gateway_.register_endpoint(a_, conn_a_, inbound_scheme::github, secret_bytes(std::string_view(secret_))));
    }

    std::vector<webhook_delivery> inbound_of(request_context const& ctx) {
        return must(storage::read_for(*store_, ctx, [&](storage::unit_of_work& uow) {
                        return uow.deliveries().list({.direction = delivery_direction::inbound}, {.limit = 500});
                    })).items;
    }
    std::vector<failures::integration_failure> failures_of(request_context const& ctx, std::string const& delivery_id) {
        return must(storage::read_for(*store_, ctx, [&](storage::unit_of_work& uow) {
                        return uow.failures().list({.delivery_id = delivery_id}, {.limit = 500});
                    })).items;
    }
    webhook_delivery find(request_context const& ctx, std::string const& id) {
        return must(storage::read_for(*store_, ctx, [&](storage::unit_of_work& uow) { return uow.deliveries().find(id); }));
    }
    std::vector<events::event_envelope> events_of(std::string const& delivery_id) {
        std::vector<events::event_envelope> out;
        for (auto& r : must(store_->pending_events(500)))
            if (r.envelope.aggregate_id == delivery_id) out.push_back(std::move(r.envelope));
        return out;
    }
    inbound_outcome receive(vendor_request& r, std::string const& connection_id = {}) {
        return must(gateway_.receive(connection_id.empty() ? conn_a_ : connection_id, r.view()));
    }
    /** Each outbox row of `delivery_id` as stored, in order: its envelope's text, then "|" and
     *  the format of the body it left out to its payload (nothing when it left none out). */
    std::vector<std::string> stored_events(std::string const& delivery_id) {
        return integration::testing::query_rows(
            dir_.file("i.db"), "SELECT envelope, body_from_payload FROM outbox WHERE aggregate_id = ? ORDER BY sequence",
            {delivery_id});
    }
    /** Publishes every pending event and returns those of deliveries (not the fixture's). */
    std::vector<events::event_envelope> publish_all() {
        std::vector<events::event_envelope> out;
        events::in_process_dispatcher bus;
        bus.subscribe("*", [&](events::event_envelope const& e) -> result<void> {
            if (e.aggregate_type == "WebhookDelivery") out.push_back(e);
            return {};
        });
        events::outbox_relay relay(*store_, bus, {.batch = 500, .clock = &clock_});
        while (must(relay.run_once()) > 0) {
        }
        return out;
    }
    /** Every row that names a tenant's data, across tenants. */
    std::int64_t written() {
        std::int64_t n = 0;
        for (auto t : {"deliveries", "failures", "outbox"}) n += rows_in(dir_.file("i.db"), t);
        return n;
    }

    temp_dir dir_;
    manual_clock clock_;
    std::atomic<bool> fail_syncs_ = false;  // the WAL's fdatasync fails (EIO); read on the store's sync thread
    std::unique_ptr<storage::store> store_ = must(storage::sqlite::open_store(
        {.path = dir_.file("i.db"), .clock = &clock_}, [this](std::string const& path) -> result<void> {
            if (fail_syncs_) return error{errc::storage_failure, "fdatasync: Input/output error"};
            return storage::sqlite::sync_wal(path);
        }));
    std::unique_ptr<blobs::blob_store> blobs_ =
        must(blobs::open_sqlite_blob_store({.path = dir_.file("b.db"), .clock = &clock_}));
    std::unique_ptr<credentials::secret_store> vault_ = must(credentials::open_local_secret_store(
        {.path = dir_.file("s.db"), .key_file = dir_.file("master.key"), .key_env = "", .clock = &clock_}));
    inbound_gateway_options options_{.inline_payload_bytes = 1024, .secret_overlap = 1h};
    inbound_gateway gateway_{*store_, *vault_, *blobs_, clock_, options_};
    request_context a_ = request_context::for_tenant("tenant-a", "alice");
    request_context b_ = request_context::for_tenant("tenant-b", "bob");
    std::string secret_ = "It's a Secret to Everybody";
    std::string conn_a_, conn_b_;
};

TEST_F(inbound_gateway_test, an_accepted_delivery_commits_its_record_payload_and_canonical_event_in_one_unit) {
    auto units_before = storage::sqlite_store_stats(*store_)->units;
    auto req = github(secret_, "72d3162e-cc78-11e3-81ab-4c9367dc0958", pr_opened(7));
    auto out = receive(*req);
    ASSERT_EQ(out.outcome, inbound_outcome::kind::accepted) << (out.refusal ? out.refusal->detail : "");
    EXPECT_EQ(out.tenant_id, "tenant-a");
    ASSERT_TRUE(out.identity);
    EXPECT_EQ(out.identity->event_type, "github.pull_request.opened");
    EXPECT_EQ(storage::sqlite_store_stats(*store_)->units - units_before, 1u)
        << "the delivery, its payload and its events are one unit of work (one durable commit)";

    auto d = find(a_, out.delivery_id);
    EXPECT_EQ(d.data().direction, delivery_direction::inbound);
    EXPECT_EQ(d.status(), delivery_status::accepted);
    EXPECT_EQ(d.data().signature_status, signature_status::verified);
    EXPECT_EQ(d.data().connection_id, conn_a_);
    EXPECT_EQ(d.data().provider_delivery_id, "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    EXPECT_EQ(d.data().event_type, "github.pull_request.opened");
    ASSERT_TRUE(d.data().payload_ref);
    EXPECT_EQ(*d.data().payload_ref, storage::stored_payload_ref("tenant-a", d.id()));
    EXPECT_EQ(must(gateway_.payload(a_, d.id())), req->body) << "the raw bytes, as received";
    EXPECT_EQ(rows_in(dir_.file("b.db"), "blobs"), 0) << "a small payload writes no blob";

    auto events = events_of(d.id());
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events[0].event_type, events::event_type::webhook_delivered);
    auto const& canonical = events[1];
    EXPECT_EQ(canonical.event_type, "github.pull_request.opened");
    EXPECT_EQ(canonical.tenant_id, "tenant-a");
    EXPECT_EQ(canonical.data.at("deliveryId").as_string(), d.id());
    EXPECT_EQ(canonical.data.at("providerDeliveryId").as_string(), "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    EXPECT_EQ(canonical.data.at("body").at("number").as_int64(), 7);
    EXPECT_EQ(canonical.data.at("body").at("pull_request").at("title").as_string(), "Fix");
}

// The WAL's sync fails after the delivery committed: the receive fails (the delivery is not
// known durable), but the row may survive and name its payload blob, so the blob stays. Removed,
// the vendor's retry was answered `duplicate` of a delivery whose payload was gone.
TEST_F(inbound_gateway_test, a_payload_blob_stays_when_its_delivery_committed_but_its_sync_failed) {
    std::string big = R"({"action":"opened","filler":")" + std::string(4000, 'x') + "\"}";
    auto req = github(secret_, "eio-1", big);
    fail_syncs_ = true;
    auto out = gateway_.receive(conn_a_, req->view());
    ASSERT_FALSE(out);
    EXPECT_EQ(out.error(), errc::storage_failure);
    auto ref = integration::testing::query_rows(dir_.file("i.db"), "SELECT payload_ref FROM deliveries WHERE provider_delivery_id = 'eio-1'");
    ASSERT_EQ(ref.size(), 1u) << "the delivery committed before the sync failed";
    EXPECT_EQ(must(blobs_->get("tenant-a", ref[0])), big);
}

TEST_F(inbound_gateway_test, a_large_payload_goes_to_the_blob_store_under_the_tenant) {
    std::string big = R"({"action":"opened","filler":")" + std::string(4000, 'x') + "\"}";
    auto req = github(secret_, "big-1", big);
    auto out = receive(*req);
    ASSERT_EQ(out.outcome, inbound_outcome::kind::accepted);
    auto d = find(a_, out.delivery_id);
    ASSERT_TRUE(d.data().payload_ref);
    EXPECT_TRUE(d.data().payload_ref->starts_with("blob://tenant-a/webhooks/inbound/")) << *d.data().payload_ref;
    EXPECT_EQ(must(blobs_->get("tenant-a", *d.data().payload_ref)), big);
    EXPECT_EQ(must(gateway_.payload(a_, d.id())), big);
    EXPECT_EQ(rows_in(dir_.file("i.db"), kept_payloads), 0);
}

TEST_F(inbound_gateway_test, an_accepted_body_is_stored_once_as_its_payload_and_published_as_received) {
    auto req = github(secret_, "once-1", R"({"action":"opened","number":9,"pull_request":{"title":"Only once"}})");
    auto out = receive(*req);
    ASSERT_EQ(out.outcome, inbound_outcome::kind::accepted);
    EXPECT_EQ(must(gateway_.payload(a_, out.delivery_id)), req->body);
    auto stored = stored_events(out.delivery_id);
    ASSERT_EQ(stored.size(), 2u);
    EXPECT_TRUE(stored[0].ends_with("|")) << "WebhookDelivered carries no body";
    EXPECT_TRUE(stored[1].ends_with("|json")) << stored[1];
    EXPECT_EQ(stored[1].find("Only once"), std::string::npos) << "the body is not in the stored envelope: " << stored[1];
    EXPECT_EQ(stored[1].find("\"body\""), std::string::npos);

    auto pending = events_of(out.delivery_id);
    ASSERT_EQ(pending.size(), 2u);
    EXPECT_EQ(boost::json::value(pending[1].data.at("body")), boost::json::parse(req->body));
    EXPECT_EQ(std::prev(pending[1].data.end())->key(), "body") << "in its place, after providerDeliveryId";
    auto published = publish_all();
    ASSERT_EQ(published.size(), 2u);
    EXPECT_EQ(events::serialize_envelope(published[1]), events::serialize_envelope(pending[1]));
    EXPECT_EQ(boost::json::serialize(published[1].data.at("body")), boost::json::serialize(boost::json::parse(req->body)));
}

TEST_F(inbound_gateway_test, a_body_nested_as_deep_as_is_accepted_is_published_whether_kept_once_or_in_the_envelope) {
    auto deep = [](std::string const& leaf) {
        std::string body;
        for (std::size_t i = 1; i < max_body_depth; ++i) body += R"({"a":)";
        body += leaf;
        body += std::string(max_body_depth - 1, '}');
        return body;
    };
    // Integers only: kept once. With a double: the body stays in the envelope, 66 levels deep.
    auto once = github(secret_, "deep-1", deep(R"({"n":1})"));
    auto inside = github(secret_, "deep-2", deep(R"({"x":0.5})"));
    for (auto* req : {once.get(), inside.get()}) {
        auto out = receive(*req);
        ASSERT_EQ(out.outcome, inbound_outcome::kind::accepted) << (out.refusal ? out.refusal->detail : "");
        auto events = events_of(out.delivery_id);
        ASSERT_EQ(events.size(), 2u);
        EXPECT_EQ(boost::json::value(events[1].data.at("body")), boost::json::parse(req->body, {}, {.max_depth = 64}));
    }
    EXPECT_EQ(publish_all().size(), 4u);
}

TEST_F(inbound_gateway_test, a_payload_that_is_still_an_unpublished_events_body_outlives_retention) {
    auto req = github(secret_, "unpublished-1", pr_opened(11));
    auto out = receive(*req);
    ASSERT_EQ(out.outcome, inbound_outcome::kind::accepted);
    retention::retention_worker retention{*store_, *blobs_, *vault_, clock_};
    clock_.advance(31 * 24h);
    auto swept = must(retention.sweep());
    EXPECT_EQ(swept.payloads_purged, 0u) << "the canonical event's body is this payload";
    clock_.advance(60 * 24h);
    swept = must(retention.sweep());
    EXPECT_EQ(swept.payloads_purged, 0u);
    EXPECT_EQ(swept.deliveries_archived, 0u) << "archiving the delivery would delete its payload";
    EXPECT_EQ(must(gateway_.payload(a_, out.delivery_id)), req->body);

    auto published = publish_all();
    ASSERT_EQ(published.size(), 2u);
    EXPECT_EQ(published[1].data.at("body").at("number").as_int64(), 11);
    swept = must(retention.sweep());
    EXPECT_EQ(swept.deliveries_archived, 1u) << "published: the delivery and its payload go";
    EXPECT_EQ(rows_in(dir_.file("i.db"), kept_payloads), 0);
}

// The relay parked the canonical event as dead (it will never be published): its body no longer
// holds the payload back, which is purged after 30 days and its delivery archived after 90.
TEST_F(inbound_gateway_test, a_payload_whose_event_was_parked_as_dead_goes_by_age) {
    auto req = github(secret_, "dead-1", pr_opened(12));
    auto out = receive(*req);
    ASSERT_EQ(out.outcome, inbound_outcome::kind::accepted);
    integration::testing::exec_sql(dir_.file("i.db"), "UPDATE outbox SET dead_at = 1, attempts = 20 WHERE aggregate_id = '" + out.delivery_id + "'");
    retention::retention_worker retention{*store_, *blobs_, *vault_, clock_};
    clock_.advance(31 * 24h);
    EXPECT_EQ(must(retention.sweep()).payloads_purged, 1u) << "a dead event kept its body's payload past 30 days";
    clock_.advance(60 * 24h);
    EXPECT_EQ(must(retention.sweep()).deliveries_archived, 1u);
    EXPECT_EQ(rows_in(dir_.file("i.db"), kept_payloads), 0);
}

TEST_F(inbound_gateway_test, the_same_delivery_id_and_body_again_is_a_duplicate_that_writes_nothing) {
    auto req = github(secret_, "dup-1", pr_opened(1));
    auto first = receive(*req);
    ASSERT_EQ(first.outcome, inbound_outcome::kind::accepted);
    auto before = written();
    auto again = github(secret_, "dup-1", pr_opened(1));
    auto second = receive(*again);
    EXPECT_EQ(second.outcome, inbound_outcome::kind::duplicate);
    EXPECT_EQ(second.delivery_id, first.delivery_id);
    EXPECT_EQ(written(), before);
    EXPECT_EQ(inbound_of(a_).size(), 1u);
}

TEST_F(inbound_gateway_test, the_same_delivery_id_with_another_body_is_refused_and_recorded) {
    auto req = github(secret_, "dup-2", pr_opened(1));
    auto first = receive(*req);
    ASSERT_EQ(first.outcome, inbound_outcome::kind::accepted);
    auto other = github(secret_, "dup-2", pr_opened(2));
    auto out = receive(*other);
    ASSERT_EQ(out.outcome, inbound_outcome::kind::rejected);
    ASSERT_TRUE(out.refusal);
    EXPECT_EQ(out.refusal->reason, inbound_rejection::delivery_id_conflict);
    ASSERT_FALSE(out.delivery_id.empty());
    EXPECT_NE(out.delivery_id, first.delivery_id);

    auto d = find(a_, out.delivery_id);
    EXPECT_EQ(d.status(), delivery_status::failed);
    EXPECT_EQ(d.data().rejection_reason, "delivery-id-conflict");
    EXPECT_FALSE(d.data().provider_delivery_id);
    auto f = failures_of(a_, d.id());
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].data().category, failures::failure_category::validation);
    EXPECT_EQ(f[0].data().error_code, "delivery-id-conflict");
    EXPECT_EQ(find(a_, first.delivery_id).status(), delivery_status::accepted) << "the first delivery stands";
}

TEST_F(inbound_gateway_test, a_hundred_concurrent_identical_receives_accept_exactly_one) {
    constexpr int callers = 100;
    std::vector<std::unique_ptr<vendor_request>> reqs;
    for (int i = 0; i < callers; ++i) reqs.push_back(github(secret_, "race-1", pr_opened(9)));
    std::atomic<int> accepted{0}, duplicates{0}, other{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (int i = 0; i < callers; ++i)
        threads.emplace_back([&, i] {
            while (!go.load()) std::this_thread::yield();
            auto out = gateway_.receive(conn_a_, reqs[static_cast<std::size_t>(i)]->view());
            if (!out) ++other;
            else if (out->outcome == inbound_outcome::kind::accepted) ++accepted;
            else if (out->outcome == inbound_outcome::kind::duplicate) ++duplicates;
            else ++other;
        });
    go = true;
    for (auto& t : threads) t.join();
    EXPECT_EQ(accepted.load(), 1);
    EXPECT_EQ(duplicates.load(), callers - 1);
    EXPECT_EQ(other.load(), 0);
    EXPECT_EQ(inbound_of(a_).size(), 1u);
    EXPECT_EQ(rows_in(dir_.file("i.db"), kept_payloads), 1);
}

/** Collects the outcomes of asynchronous receives, and on which thread each was told. */
struct outcomes {
    std::mutex mutex;
    std::condition_variable changed;
    std::vector<result<inbound_outcome>> told;
    std::vector<std::thread::id> threads;

    inbound_gateway::outcome_handler handler() {
        return [this](result<inbound_outcome> r) {
            std::lock_guard lock(mutex);
            told.push_back(std::move(r));
            threads.push_back(std::this_thread::get_id());
            changed.notify_all();
        };
    }
    /** Waits (bounded) until `n` outcomes were told. */
    bool wait_for(std::size_t n) {
        std::unique_lock lock(mutex);
        return changed.wait_for(lock, 30s, [&] { return told.size() >= n; });
    }
};

TEST_F(inbound_gateway_test, the_async_receive_answers_from_the_writer_once_committed_and_dedupes_what_is_still_queued) {
    // Hold the store's writer, so that every receive below is still queued when the next arrives.
    std::promise<void> writer_held, release;
    auto released = release.get_future().share();
    store_->transact_async(
        a_,
        [&, released](storage::unit_of_work&) -> result<void> {
            writer_held.set_value();
            released.wait();
            return {};
        },
        durability::deferred, [](result<void>) {});
    writer_held.get_future().wait();

    constexpr int repeats = 100;
    std::vector<std::unique_ptr<vendor_request>> reqs;
    for (int i = 0; i < repeats; ++i) reqs.push_back(github(secret_, "queued-1", pr_opened(9)));
    auto conflicting = github(secret_, "queued-1", pr_opened(10));
    outcomes seen;
    std::thread::id caller;
    auto issued = std::async(std::launch::async, [&] {
        caller = std::this_thread::get_id();
        for (auto& r : reqs) gateway_.receive(conn_a_, r->view(), seen.handler());
        gateway_.receive(conn_a_, conflicting->view(), seen.handler());
    });
    bool returned = issued.wait_for(30s) == std::future_status::ready;
    {
        std::lock_guard lock(seen.mutex);
        EXPECT_TRUE(seen.told.empty()) << "nothing is answered before its commit";
    }
    release.set_value();
    issued.wait();
    EXPECT_TRUE(returned) << "a receive waited for the commit instead of returning";
    ASSERT_TRUE(seen.wait_for(repeats + 1));

    int accepted = 0, duplicates = 0;
    std::string accepted_id;
    std::optional<inbound_outcome> conflict;
    for (std::size_t i = 0; i < seen.told.size(); ++i) {
        ASSERT_TRUE(seen.told[i]) << seen.told[i].error().detail();
        EXPECT_NE(seen.threads[i], caller) << "the answer comes from the store's writer, not the caller";
        auto const& out = *seen.told[i];
        if (out.outcome == inbound_outcome::kind::accepted) {
            ++accepted;
            accepted_id = out.delivery_id;
        } else if (out.outcome == inbound_outcome::kind::duplicate) {
            ++duplicates;
        } else {
            conflict = out;
        }
    }
    EXPECT_EQ(accepted, 1);
    EXPECT_EQ(duplicates, repeats - 1);
    for (auto const& r : seen.told)
        if (r->outcome == inbound_outcome::kind::duplicate) {
            EXPECT_EQ(r->delivery_id, accepted_id);
        }
    ASSERT_TRUE(conflict);
    ASSERT_TRUE(conflict->refusal);
    EXPECT_EQ(conflict->refusal->reason, inbound_rejection::delivery_id_conflict);
    EXPECT_EQ(failures_of(a_, conflict->delivery_id).size(), 1u) << "the conflict is recorded";
    EXPECT_EQ(find(a_, conflict->delivery_id).data().rejection_reason, "delivery-id-conflict");
    EXPECT_EQ(rows_in(dir_.file("i.db"), kept_payloads), 1);
    EXPECT_EQ(find(a_, accepted_id).status(), delivery_status::accepted);
}

TEST_F(inbound_gateway_test, the_async_receive_records_a_refusal_and_answers_an_unknown_connection_at_once) {
    outcomes seen;
    auto forged = github("not-the-secret", "async-bad-1", pr_opened(1));
    gateway_.receive(conn_a_, forged->view(), seen.handler());
    auto unknown = github(secret_, "async-unknown-1", pr_opened(1));
    gateway_.receive("con-01HZZZZZZZZZZZZZZZZZZZZZZZ", unknown->view(), seen.handler());
    ASSERT_TRUE(seen.wait_for(2));
    std::lock_guard lock(seen.mutex);
    for (auto const& r : seen.told) {
        ASSERT_TRUE(r);
        ASSERT_EQ(r->outcome, inbound_outcome::kind::rejected);
        if (r->refusal->reason == inbound_rejection::unknown_connection) {
            EXPECT_TRUE(r->delivery_id.empty());
            continue;
        }
        EXPECT_EQ(r->refusal->reason, inbound_rejection::signature_mismatch);
        EXPECT_EQ(find(a_, r->delivery_id).data().rejection_reason, "signature-mismatch");
    }
}

TEST_F(inbound_gateway_test, registering_a_new_secret_takes_effect_at_once_although_endpoints_are_cached) {
    auto first = github(secret_, "cache-1", pr_opened(1));
    ASSERT_EQ(receive(*first).outcome, inbound_outcome::kind::accepted);  // the endpoint and its secret are now cached
    std::string replaced = "a-replacing-secret";
    must(gateway_.register_endpoint(a_, conn_a_, inbound_scheme::github, secret_bytes(std::string_view(replaced))));
    auto with_old = github(secret_, "cache-2", pr_opened(2));
    auto out = receive(*with_old);
    ASSERT_EQ(out.outcome, inbound_outcome::kind::rejected);
    EXPECT_EQ(out.refusal->reason, inbound_rejection::signature_mismatch);
    EXPECT_EQ(out.refusal->detail.find(secret_), std::string::npos);
    EXPECT_EQ(out.refusal->detail.find(replaced), std::string::npos);
    auto with_new = github(replaced, "cache-3", pr_opened(3));
    EXPECT_EQ(receive(*with_new).outcome, inbound_outcome::kind::accepted);
}

// A server asks this on its event-loop thread: true only when `receive` cannot block there (no
// store or vault read for the registration, no blob write for the payload).
TEST_F(inbound_gateway_test, a_receive_is_said_not_to_block_only_while_its_registration_is_cached_and_its_payload_inline) {
    std::size_t small = 200, large = options_.inline_payload_bytes + 1;
    EXPECT_FALSE(gateway_.receives_without_blocking(conn_a_, small)) << "nothing is cached yet";
    auto first = github(secret_, "nb-1", pr_opened(1));
    ASSERT_EQ(receive(*first).outcome, inbound_outcome::kind::accepted);
    EXPECT_TRUE(gateway_.receives_without_blocking(conn_a_, small));
    EXPECT_FALSE(gateway_.receives_without_blocking(conn_a_, large)) << "a large payload is written to the blob store";
    EXPECT_FALSE(gateway_.receives_without_blocking(conn_b_, small)) << "another connection is not cached";
    EXPECT_FALSE(gateway_.receives_without_blocking("conn-unknown", small));
    // Within the margin before the entry expires, the receive that follows could be the one that
    // reads the store again.
    clock_.advance(options_.endpoint_cache_ttl - 50ms);
    EXPECT_FALSE(gateway_.receives_without_blocking(conn_a_, small));
    clock_.advance(100ms);
    EXPECT_FALSE(gateway_.receives_without_blocking(conn_a_, small));
    auto again = github(secret_, "nb-2", pr_opened(2));
    ASSERT_EQ(receive(*again).outcome, inbound_outcome::kind::accepted);
    EXPECT_TRUE(gateway_.receives_without_blocking(conn_a_, small));
    // A new registration drops the cached one.
    must(gateway_.register_endpoint(a_, conn_a_, inbound_scheme::github, secret_bytes(std::string_view(secret_))));
    EXPECT_FALSE(gateway_.receives_without_blocking(conn_a_, small));
}

// A retirement made elsewhere (another process, or committed while a receive was on its way to
// the writer) is seen by the unit that would write the delivery, cached endpoint or not.
TEST_F(inbound_gateway_test, a_retirement_made_elsewhere_is_seen_by_the_next_receive) {
    auto first = github(secret_, "ret-cache-1", pr_opened(1));
    ASSERT_EQ(receive(*first).outcome, inbound_outcome::kind::accepted);
    must(store_->transact(a_, [&](storage::unit_of_work& uow) -> result<void> {
        auto c = must(uow.connections().find(conn_a_));
        must(c.retire("customer left"));
        return uow.connections().save(c);
    }));
    ASSERT_TRUE(gateway_.receives_without_blocking(conn_a_, 100)) << "the endpoint is still cached";
    auto before = written();
    auto after = github(secret_, "ret-cache-2", pr_opened(2));
    auto out = receive(*after);
    ASSERT_EQ(out.outcome, inbound_outcome::kind::rejected);
    EXPECT_EQ(out.refusal->reason, inbound_rejection::unknown_connection);
    EXPECT_EQ(written(), before);
}

TEST_F(inbound_gateway_test, a_bad_signature_is_recorded_with_a_capped_excerpt_and_never_blocks_the_real_delivery) {
    std::string body = R"({"action":"opened","note":")" + std::string(10'000, 'z') + "\"}";
    auto forged = github("not-the-secret", "gh-7", body);
    auto out = receive(*forged);
    ASSERT_EQ(out.outcome, inbound_outcome::kind::rejected);
    EXPECT_EQ(out.refusal->reason, inbound_rejection::signature_mismatch);
    EXPECT_EQ(out.tenant_id, "tenant-a");
    auto d = find(a_, out.delivery_id);
    EXPECT_EQ(d.status(), delivery_status::failed);
    EXPECT_EQ(d.data().signature_status, signature_status::invalid);
    EXPECT_EQ(d.data().rejection_reason, "signature-mismatch");
    EXPECT_EQ(d.data().event_type, "github.unverified");
    EXPECT_FALSE(d.data().payload_ref) << "an unverified body is not kept";
    auto f = failures_of(a_, d.id());
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].data().category, failures::failure_category::validation);
    EXPECT_EQ(f[0].data().next_action, failures::next_action::dead_letter);
    auto const& message = f[0].data().message;
    EXPECT_NE(message.find(R"({"action":"opened")"), std::string::npos) << message;
    EXPECT_LT(message.size(), 1024u) << "at most a capped excerpt of the body";
    EXPECT_EQ(message.find(secret_), std::string::npos);

    auto real = github(secret_, "gh-7", body);
    EXPECT_EQ(receive(*real).outcome, inbound_outcome::kind::accepted);
}

// Anyone who knows a connection's URL can send forged requests; each recorded refusal is kept
// for months. Past `refusal_record_burst` per connection they are answered the same but written
// nowhere, and genuine deliveries are still accepted meanwhile.
TEST_F(inbound_gateway_test, forged_requests_past_the_burst_are_refused_without_being_recorded) {
    auto failed_deliveries = [&] { return rows_in(dir_.file("i.db"), "deliveries WHERE status = 'Failed'"); };
    auto recorded = 0;
    for (int i = 0; i < 1000; ++i) {
        auto forged = github("not-the-secret", "forged-" + std::to_string(i), pr_opened(i));
        auto out = receive(*forged);
        ASSERT_EQ(out.outcome, inbound_outcome::kind::rejected);
        ASSERT_EQ(out.refusal->reason, inbound_rejection::signature_mismatch);
        EXPECT_EQ(out.tenant_id, "tenant-a");
        if (!out.delivery_id.empty()) ++recorded;
        if (i % 100 == 99) {
            auto real = github(secret_, "real-" + std::to_string(i), pr_opened(i));
            EXPECT_EQ(receive(*real).outcome, inbound_outcome::kind::accepted);
        }
    }
    EXPECT_EQ(recorded, 20);  // the default burst; the clock stood still
    EXPECT_EQ(failed_deliveries(), 20);
    EXPECT_EQ(rows_in(dir_.file("i.db"), "failures"), 20);
    EXPECT_EQ(rows_in(dir_.file("i.db"), "deliveries WHERE status = 'Accepted'"), 10);

    // Another connection's budget is its own, and so is that of refusals whose signature verified.
    must(gateway_.register_endpoint(b_, conn_b_, inbound_scheme::github, secret_bytes(std::string_view(secret_))));
    auto other = github("not-the-secret", "forged-b", pr_opened(1));
    EXPECT_FALSE(receive(*other, conn_b_).delivery_id.empty());
    auto poison = github(secret_, "poison-1", "not json");
    auto poisoned = receive(*poison);
    EXPECT_EQ(poisoned.refusal->reason, inbound_rejection::malformed_body);
    EXPECT_FALSE(poisoned.delivery_id.empty());

    // Refilled at one per refusal_record_interval (6 s): the next recorded one says how many were not.
    clock_.advance(6s);
    auto later = github("not-the-secret", "forged-later", pr_opened(1));
    auto out = receive(*later);
    ASSERT_FALSE(out.delivery_id.empty());
    auto f = failures_of(a_, out.delivery_id);
    ASSERT_EQ(f.size(), 1u);
    EXPECT_NE(f[0].data().message.find("980 refusals on this connection before this one were not recorded"),
              std::string::npos)
        << f[0].data().message;
    auto next = github("not-the-secret", "forged-next", pr_opened(1));
    EXPECT_TRUE(receive(*next).delivery_id.empty());
}

// The budget holds under concurrency, and a refusal past it is answered on the caller's thread
// without a unit on the store's writer.
TEST_F(inbound_gateway_test, refusals_past_the_burst_from_many_threads_write_nothing) {
    inbound_gateway tight{*store_, *vault_, *blobs_, clock_, {.refusal_record_burst = 5}};
    must(tight.register_endpoint(a_, conn_a_, inbound_scheme::github, secret_bytes(std::string_view(secret_))));
    auto units_before = storage::sqlite_store_stats(*store_)->units;
    std::atomic<int> recorded{0}, on_caller{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < 125; ++i) {
                auto forged = github("not-the-secret", "f-" + std::to_string(t) + "-" + std::to_string(i), pr_opened(i));
                auto const caller = std::this_thread::get_id();
                std::promise<void> told;
                tight.receive(conn_a_, forged->view(), [&](result<inbound_outcome> r) {
                    EXPECT_TRUE(r && r->outcome == inbound_outcome::kind::rejected);
                    if (r && !r->delivery_id.empty()) ++recorded;
                    else if (std::this_thread::get_id() == caller) ++on_caller;
                    told.set_value();
                });
                told.get_future().wait();
            }
        });
    for (auto& th : threads) th.join();
    EXPECT_EQ(recorded.load(), 5);
    EXPECT_EQ(on_caller.load(), 995);
    EXPECT_LE(storage::sqlite_store_stats(*store_)->units - units_before, 5u);
    EXPECT_EQ(rows_in(dir_.file("i.db"), "failures"), 5);
}

TEST_F(inbound_gateway_test, a_verified_body_that_is_not_json_or_nests_too_deep_is_poison) {
    for (auto const& body : {std::string("not json"), std::string(100'000, '[') + std::string(100'000, ']'),
                             std::string(""), std::string("{\"a\":\"\xff\xfe\"}")}) {
        auto req = github(secret_, "bad-" + std::to_string(body.size()) + std::to_string(body.empty() ? 0 : body[0]), body);
        auto out = receive(*req);
        ASSERT_EQ(out.outcome, inbound_outcome::kind::rejected) << body.substr(0, 20);
        EXPECT_EQ(out.refusal->reason, inbound_rejection::malformed_body);
        auto f = failures_of(a_, out.delivery_id);
        ASSERT_EQ(f.size(), 1u);
        EXPECT_EQ(f[0].data().category, failures::failure_category::poison);
        EXPECT_EQ(f[0].data().error_code, "malformed-body");
    }
}

TEST_F(inbound_gateway_test, an_oversized_body_is_refused_and_recorded) {
    inbound_gateway small{*store_, *vault_, *blobs_, clock_, {.max_body_bytes = 64}};
    auto req = github(secret_, "large-1", pr_opened(1) + std::string(100, ' '));
    auto out = must(small.receive(conn_a_, req->view()));
    ASSERT_EQ(out.outcome, inbound_outcome::kind::rejected);
    EXPECT_EQ(out.refusal->reason, inbound_rejection::body_too_large);
    EXPECT_EQ(find(a_, out.delivery_id).data().rejection_reason, "body-too-large");
}

TEST_F(inbound_gateway_test, an_unknown_or_retired_connection_is_refused_without_writing_anything) {
    auto req = github(secret_, "u-1", pr_opened(1));
    auto before = written();
    for (auto const& id : {std::string("con-01HZZZZZZZZZZZZZZZZZZZZZZZ"), conn_b_ /* no registration */}) {
        auto out = receive(*req, id);
        EXPECT_EQ(out.outcome, inbound_outcome::kind::rejected);
        EXPECT_EQ(out.refusal->reason, inbound_rejection::unknown_connection);
        EXPECT_TRUE(out.tenant_id.empty());
        EXPECT_TRUE(out.delivery_id.empty());
    }
    EXPECT_EQ(written(), before);

    must(store_->transact(a_, [&](storage::unit_of_work& uow) -> result<void> {
        auto c = must(uow.connections().find(conn_a_));
        must(c.retire("customer left"));
        return uow.connections().save(c);
    }));
    before = written();
    auto out = receive(*req);
    EXPECT_EQ(out.refusal->reason, inbound_rejection::unknown_connection);
    EXPECT_EQ(written(), before);
    EXPECT_EQ(gateway_.register_endpoint(a_, conn_a_, inbound_scheme::github, secret_bytes(std::string_view("x"))).error(),
              errc::invalid_state);
}

TEST_F(inbound_gateway_test, a_connection_of_one_tenant_never_reaches_another_tenants_data) {
    auto req = github(secret_, "iso-1", pr_opened(1));
    auto out = receive(*req);
    ASSERT_EQ(out.outcome, inbound_outcome::kind::accepted);
    EXPECT_EQ(out.tenant_id, "tenant-a");
    EXPECT_TRUE(inbound_of(b_).empty());
    EXPECT_EQ(storage::read_for(*store_, b_, [&](storage::unit_of_work& uow) { return uow.deliveries().find(out.delivery_id); })
                  .error(),
              errc::not_found);
    EXPECT_EQ(gateway_.payload(b_, out.delivery_id).error(), errc::not_found);
    // Tenant B cannot register (or rotate) an endpoint on A's connection.
    EXPECT_EQ(gateway_.register_endpoint(b_, conn_a_, inbound_scheme::github, secret_bytes(std::string_view("b"))).error(),
              errc::not_found);
    EXPECT_EQ(gateway_.rotate_secret(b_, conn_a_, secret_bytes(std::string_view("b"))).error(), errc::not_found);
    // B's own registration with the same secret answers for B only.
    must(gateway_.register_endpoint(b_, conn_b_, inbound_scheme::github, secret_bytes(std::string_view(secret_))));
    auto same = github(secret_, "iso-1", pr_opened(1));
    auto for_b = receive(*same, conn_b_);
    EXPECT_EQ(for_b.outcome, inbound_outcome::kind::accepted) << "another tenant's id space";
    EXPECT_EQ(for_b.tenant_id, "tenant-b");
    EXPECT_EQ(inbound_of(a_).size(), 1u);
    EXPECT_EQ(inbound_of(b_).size(), 1u);
}

TEST_F(inbound_gateway_test, after_a_rotation_the_old_secret_verifies_during_the_overlap_only) {
    auto before = must(storage::read_for(*store_, a_, [&](storage::unit_of_work& uow) {
        return uow.inbound_webhooks().find(conn_a_);
    }));
    std::string next = "the-next-secret";
    must(gateway_.rotate_secret(a_, conn_a_, secret_bytes(std::string_view(next))));
    auto old1 = github(secret_, "rot-1", pr_opened(1));
    EXPECT_EQ(receive(*old1).outcome, inbound_outcome::kind::accepted) << "the old secret during the overlap";
    auto new1 = github(next, "rot-2", pr_opened(2));
    EXPECT_EQ(receive(*new1).outcome, inbound_outcome::kind::accepted);

    clock_.advance(1h + 1s);
    auto old2 = github(secret_, "rot-3", pr_opened(3));
    auto out = receive(*old2);
    ASSERT_EQ(out.outcome, inbound_outcome::kind::rejected);
    EXPECT_EQ(out.refusal->reason, inbound_rejection::signature_mismatch);
    auto new2 = github(next, "rot-4", pr_opened(4));
    EXPECT_EQ(receive(*new2).outcome, inbound_outcome::kind::accepted);

    auto reg = must(storage::read_for(*store_, a_, [&](storage::unit_of_work& uow) {
        return uow.inbound_webhooks().find(conn_a_);
    }));
    ASSERT_EQ(reg.previous.size(), 1u);
    EXPECT_EQ(reg.previous[0].name, before.secret_name);
    EXPECT_NE(reg.secret_name, before.secret_name);
}

// A vendor may still sign with the first secret when a second rotation follows within the
// overlap (the new secret was mistyped, or leaked): each replaced secret keeps its own overlap.
TEST_F(inbound_gateway_test, a_second_rotation_within_the_overlap_keeps_the_first_secret_verifying_until_its_own_end) {
    auto signed_with = [&](std::string const& secret, std::string const& id, int n) { return receive(*github(secret, id, pr_opened(n))).outcome; };
    auto const first = secret_;
    std::string const second = "the-second-secret", third = "the-third-secret";
    must(gateway_.rotate_secret(a_, conn_a_, secret_bytes(std::string_view(second))));
    clock_.advance(30min);
    must(gateway_.rotate_secret(a_, conn_a_, secret_bytes(std::string_view(third))));
    clock_.advance(15min);
    EXPECT_EQ(signed_with(first, "two-1", 1), inbound_outcome::kind::accepted) << "45 min after its rotation";
    EXPECT_EQ(signed_with(second, "two-2", 2), inbound_outcome::kind::accepted);
    EXPECT_EQ(signed_with(third, "two-3", 3), inbound_outcome::kind::accepted);
    clock_.advance(15min + 1s);  // the first rotation's overlap (1 h) has ended, the second's not
    EXPECT_EQ(signed_with(first, "two-4", 4), inbound_outcome::kind::rejected);
    EXPECT_EQ(signed_with(second, "two-5", 5), inbound_outcome::kind::accepted);
    EXPECT_EQ(signed_with(third, "two-6", 6), inbound_outcome::kind::accepted);
    clock_.advance(30min);
    EXPECT_EQ(signed_with(second, "two-7", 7), inbound_outcome::kind::rejected);
    EXPECT_EQ(signed_with(third, "two-8", 8), inbound_outcome::kind::accepted);
}

// Every failing verification tries each secret still verifying: their number is bounded, and a
// rotation past it is refused whole rather than cutting the oldest's overlap short.
TEST_F(inbound_gateway_test, rotations_past_the_bound_of_replaced_secrets_are_refused_until_the_oldest_ends) {
    std::vector<std::string> secrets{secret_};
    for (std::size_t i = 0; i < max_replaced_secrets; ++i) {
        secrets.push_back("rotated-secret-" + std::to_string(i));
        must(gateway_.rotate_secret(a_, conn_a_, secret_bytes(std::string_view(secrets.back()))));
        clock_.advance(1min);
    }
    auto refused = gateway_.rotate_secret(a_, conn_a_, secret_bytes(std::string_view("one-too-many")));
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error(), errc::conflict);
    EXPECT_NE(refused.error().detail().find("register"), std::string::npos) << refused.error().detail();
    for (std::size_t i = 0; i < secrets.size(); ++i)  // nothing changed: every secret still verifies
        EXPECT_EQ(receive(*github(secrets[i], "bound-" + std::to_string(i), pr_opened(static_cast<int>(i)))).outcome,
                  inbound_outcome::kind::accepted) << i;
    EXPECT_EQ(receive(*github("one-too-many", "bound-x", pr_opened(99))).outcome, inbound_outcome::kind::rejected);
    clock_.advance(1h - std::chrono::minutes(max_replaced_secrets) + 1s);  // the first overlap has ended
    must(gateway_.rotate_secret(a_, conn_a_, secret_bytes(std::string_view("one-more"))));
    EXPECT_EQ(receive(*github(secret_, "bound-y", pr_opened(100))).outcome, inbound_outcome::kind::rejected);
    EXPECT_EQ(receive(*github(secrets[1], "bound-z", pr_opened(101))).outcome, inbound_outcome::kind::accepted);
}

// Registering again stores the new secret before the commit that names it: until that commit the
// secret in use is the one before, and a registration whose commit fails (the connection retired
// meanwhile) leaves it in use. With one secret name per connection, the put alone switched it.
TEST_F(inbound_gateway_test, registering_again_switches_the_secret_only_with_its_commit) {
    integration::testing::switchable_vault vault(*vault_);
    inbound_gateway gateway{*store_, vault, *blobs_, clock_, options_};
    must(gateway.register_endpoint(a_, conn_a_, inbound_scheme::github, secret_bytes(std::string_view(secret_))));
    auto before = must(storage::read_for(*store_, a_, [&](storage::unit_of_work& uow) {
        return uow.inbound_webhooks().find(conn_a_);
    }));
    std::optional<inbound_outcome::kind> during;
    vault.after_put = [&] {
        clock_.advance(options_.endpoint_cache_ttl + 1ms);  // nothing cached: the registration is read
        auto old = github(secret_, "rereg-1", pr_opened(1));
        during = must(gateway.receive(conn_a_, old->view())).outcome;
        must(store_->transact(a_, [&](storage::unit_of_work& uow) -> result<void> {
            auto c = must(uow.connections().find(conn_a_));
            must(c.retire("customer left"));
            return uow.connections().save(c);
        }));
    };
    auto r = gateway.register_endpoint(a_, conn_a_, inbound_scheme::github, secret_bytes(std::string_view("replacement")));
    ASSERT_EQ(during, inbound_outcome::kind::accepted) << "the secret before stays in use until the commit";
    EXPECT_FALSE(r) << "the connection was retired before the commit";
    auto after = must(storage::read_for(*store_, a_, [&](storage::unit_of_work& uow) {
        return uow.inbound_webhooks().find(conn_a_);
    }));
    EXPECT_EQ(after.secret_name, before.secret_name);
    EXPECT_TRUE(must(vault_->get("tenant-a", credentials::secret_ref{vault_->name(), "tenant-a", after.secret_name, 0})) ==
                secret_bytes(std::string_view(secret_)));
}

TEST_F(inbound_gateway_test, slacks_verification_token_never_reaches_the_event_or_a_failure_record) {
    std::string const slack_secret = "8f742231b10e8888abcd99yyyzzz85a5";
    std::string const token = "gIkuvaNzQIHg97ATvDxqgjtO";
    must(gateway_.register_endpoint(b_, conn_b_, inbound_scheme::slack, secret_bytes(std::string_view(slack_secret))));
    auto slack = [&](std::string body, std::string content_type, std::int64_t ts = 1'767'225'600) {
        auto r = std::make_unique<vendor_request>();
        auto const t = std::to_string(ts);
        r->fields = {{"X-Slack-Request-Timestamp", t},
                     {"X-Slack-Signature", "v0=" + hmac_sha256_hex(slack_secret, "v0:" + t + ":" + body)},
                     {"Content-Type", content_type}};
        r->content_type = std::move(content_type);
        r->body = std::move(body);
        return r;
    };
    auto no_token_anywhere = [&](std::string const& delivery_id) {
        for (auto const& row : stored_events(delivery_id)) EXPECT_EQ(row.find(token), std::string::npos) << row;
        for (auto const& e : events_of(delivery_id))
            EXPECT_EQ(boost::json::serialize(e.data).find(token), std::string::npos);
    };

    // An Events API event: the token is a member of the JSON body.
    auto event = slack(R"({"token":")" + token + R"(","team_id":"T1","type":"event_callback","event_id":"Ev1",)"
                                                 R"("event":{"type":"app_mention","text":"hi"}})",
                       "application/json");
    auto out = receive(*event, conn_b_);
    ASSERT_EQ(out.outcome, inbound_outcome::kind::accepted) << (out.refusal ? out.refusal->detail : "");
    auto events = events_of(out.delivery_id);
    ASSERT_EQ(events.size(), 2u);
    auto const& body = events[1].data.at("body").as_object();
    EXPECT_FALSE(body.contains("token"));
    EXPECT_EQ(body.at("event").at("text").as_string(), "hi") << "the rest of the body is the event's";
    no_token_anywhere(out.delivery_id);
    EXPECT_EQ(must(gateway_.payload(b_, out.delivery_id)), event->body) << "the payload stays as received";

    // A slash command: a form field.
    auto command = slack("token=" + token + "&team_id=T1&command=%2Fdeploy&text=now", "application/x-www-form-urlencoded");
    out = receive(*command, conn_b_);
    ASSERT_EQ(out.outcome, inbound_outcome::kind::accepted) << (out.refusal ? out.refusal->detail : "");
    events = events_of(out.delivery_id);
    ASSERT_EQ(events.size(), 2u);
    EXPECT_FALSE(events[1].data.at("body").as_object().contains("token"));
    EXPECT_EQ(events[1].data.at("body").at("command").as_string(), "/deploy");
    no_token_anywhere(out.delivery_id);

    // An interaction: a member of the JSON in the form's `payload` field.
    auto interaction = slack("payload=%7B%22type%22%3A%22block_actions%22%2C%22token%22%3A%22" + token +
                                 "%22%2C%22actions%22%3A%5B%5D%7D",
                             "application/x-www-form-urlencoded");
    out = receive(*interaction, conn_b_);
    ASSERT_EQ(out.outcome, inbound_outcome::kind::accepted) << (out.refusal ? out.refusal->detail : "");
    events = events_of(out.delivery_id);
    ASSERT_EQ(events.size(), 2u);
    auto inner = boost::json::parse(events[1].data.at("body").at("payload").as_string());
    EXPECT_FALSE(inner.as_object().contains("token"));
    EXPECT_EQ(inner.at("type").as_string(), "block_actions");
    no_token_anywhere(out.delivery_id);

    // Published as subscribers receive it.
    for (auto const& e : publish_all()) EXPECT_EQ(boost::json::serialize(e.data).find(token), std::string::npos);

    // Refused (a stale timestamp): the failure record keeps no excerpt of the body.
    auto stale = slack("token=" + token + "&team_id=T1&command=%2Fdeploy&text=later", "application/x-www-form-urlencoded",
                       1'767'225'600 - 3600);
    out = receive(*stale, conn_b_);
    ASSERT_EQ(out.outcome, inbound_outcome::kind::rejected);
    auto failures = failures_of(b_, out.delivery_id);
    ASSERT_EQ(failures.size(), 1u);
    EXPECT_EQ(failures[0].data().message.find(token), std::string::npos) << failures[0].data().message;
}

TEST_F(inbound_gateway_test, a_twilio_form_body_becomes_the_events_fields) {
    must(gateway_.register_endpoint(b_, conn_b_, inbound_scheme::twilio, secret_bytes(std::string_view("12345"))));
    vendor_request req;
    req.url = "https://mycompany.com/myapp.php?foo=1&bar=2";
    req.content_type = "application/x-www-form-urlencoded";
    req.body = "To=%2B18005551212&From=%2B12349013030&Digits=1234&Caller=%2B12349013030&CallSid=CA1234567890ABCDE";
    req.fields = {{"X-Twilio-Signature", "0/KCTR6DLpKmkAf8muzZqo1nDgQ="},
                  {"Content-Type", "application/x-www-form-urlencoded"}};
    auto out = receive(req, conn_b_);
    ASSERT_EQ(out.outcome, inbound_outcome::kind::accepted) << (out.refusal ? out.refusal->detail : "");
    auto events = events_of(out.delivery_id);
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events[1].event_type, out.identity->event_type);
    EXPECT_EQ(events[1].data.at("body").at("From").as_string(), "+12349013030");
    EXPECT_EQ(events[1].data.at("body").at("CallSid").as_string(), "CA1234567890ABCDE");
    EXPECT_TRUE(stored_events(out.delivery_id).back().ends_with("|form")) << "the body is kept once, as the payload";

    // A caller that leaves `content_type` to the header: verification read the header, and so
    // does parsing (it was read as JSON and refused after the signature passed). The same body
    // is then the same delivery.
    req.content_type = "";
    auto again = receive(req, conn_b_);
    EXPECT_EQ(again.outcome, inbound_outcome::kind::duplicate) << (again.refusal ? again.refusal->detail : "");

    // Twilio signs the sorted decoded parameters: the same form spelled otherwise (another order,
    // an empty pair, an escaped letter) carries the same signature and is the same delivery, not
    // a conflict recorded each time it is sent.
    auto const before = written();
    for (auto spelling : {"CallSid=CA1234567890ABCDE&To=%2B18005551212&From=%2B12349013030&Digits=1234&Caller=%2B12349013030",
                          "To=%2B18005551212&&From=%2B12349013030&Digits=1234&Caller=%2B12349013030&CallSid=CA1234567890ABCDE",
                          "To=%2B18005551212&From=%2B12349013030&Digits=1234&Caller=%2B12349013030&CallSid=%43A1234567890ABCDE"}) {
        req.body = spelling;
        auto respelled = receive(req, conn_b_);
        EXPECT_EQ(respelled.outcome, inbound_outcome::kind::duplicate)
            << spelling << ": " << (respelled.refusal ? respelled.refusal->detail : "");
        EXPECT_EQ(respelled.delivery_id, out.delivery_id) << spelling;
    }
    EXPECT_EQ(written(), before);
}

// Whoever holds one signed request can send it again with another Content-Type (a JSON body
// read as a form: malformed, yet its signature verifies) or put an unsigned delivery id (GitHub's
// header) on it that an earlier delivery has (a conflict): those refusals are recorded within
// a budget of their own, not without bound, and forged ones keep theirs.
TEST_F(inbound_gateway_test, signed_requests_replayed_as_poison_or_conflicts_are_recorded_within_a_budget) {
    ASSERT_EQ(receive(*github(secret_, "c-1", pr_opened(1))).outcome, inbound_outcome::kind::accepted);
    int recorded = 0;
    for (int i = 0; i < 100; ++i) {
        auto conflict = receive(*github(secret_, "c-1", pr_opened(2)));
        ASSERT_EQ(conflict.outcome, inbound_outcome::kind::rejected);
        ASSERT_EQ(conflict.refusal->reason, inbound_rejection::delivery_id_conflict);
        if (!conflict.delivery_id.empty()) ++recorded;
        auto relabelled = github(secret_, "p-" + std::to_string(i), pr_opened(3));
        relabelled->fields.back().second = relabelled->content_type = "application/x-www-form-urlencoded";
        auto poison = receive(*relabelled);
        ASSERT_EQ(poison.outcome, inbound_outcome::kind::rejected);
        ASSERT_EQ(poison.refusal->reason, inbound_rejection::malformed_body) << poison.refusal->detail;
        if (!poison.delivery_id.empty()) ++recorded;
    }
    EXPECT_EQ(recorded, 20);  // the default burst; the clock stood still
    EXPECT_EQ(rows_in(dir_.file("i.db"), "failures"), 20);
    EXPECT_FALSE(receive(*github("not-the-secret", "forged", pr_opened(4))).delivery_id.empty())
        << "forged requests have a budget of their own";

    clock_.advance(6s);  // one more each refusal_record_interval, saying how many were not recorded
    auto later = receive(*github(secret_, "c-1", pr_opened(5)));
    ASSERT_FALSE(later.delivery_id.empty());
    auto f = failures_of(a_, later.delivery_id);
    ASSERT_EQ(f.size(), 1u);
    EXPECT_NE(f[0].data().message.find("180 refusals on this connection before this one were not recorded"),
              std::string::npos)
        << f[0].data().message;
}

TEST_F(inbound_gateway_test, retention_purges_payloads_after_30_days_and_archives_deliveries_after_90) {
    auto small_req = github(secret_, "ret-1", pr_opened(1));
    auto small_out = receive(*small_req);
    auto big_req = github(secret_, "ret-2", R"({"action":"opened","x":")" + std::string(3000, 'y') + "\"}");
    auto big_out = receive(*big_req);
    auto forged = github("wrong", "ret-3", pr_opened(3));
    auto refused = receive(*forged);
    ASSERT_EQ(small_out.outcome, inbound_outcome::kind::accepted);
    ASSERT_EQ(big_out.outcome, inbound_outcome::kind::accepted);
    ASSERT_EQ(refused.outcome, inbound_outcome::kind::rejected);
    auto big_ref = *find(a_, big_out.delivery_id).data().payload_ref;
    publish_all();
    retention::retention_worker retention{*store_, *blobs_, *vault_, clock_};

    clock_.advance(29 * 24h);
    auto early = must(retention.sweep());
    EXPECT_EQ(early.payloads_purged, 0u);
    EXPECT_EQ(must(gateway_.payload(a_, small_out.delivery_id)), small_req->body);

    clock_.advance(2 * 24h);
    auto purged = must(retention.sweep());
    EXPECT_EQ(purged.payloads_purged, 2u);
    EXPECT_EQ(purged.deliveries_archived, 0u);
    for (auto const& id : {small_out.delivery_id, big_out.delivery_id}) {
        EXPECT_FALSE(find(a_, id).data().payload_ref);
        EXPECT_EQ(gateway_.payload(a_, id).error(), errc::not_found);
    }
    EXPECT_EQ(rows_in(dir_.file("i.db"), kept_payloads), 0);
    EXPECT_EQ(blobs_->get("tenant-a", big_ref).error(), errc::not_found);

    clock_.advance(60 * 24h);
    auto archived = must(retention.sweep());
    EXPECT_EQ(archived.deliveries_archived, 3u) << "accepted and refused inbound deliveries";
    EXPECT_TRUE(inbound_of(a_).empty());
}

TEST_F(inbound_gateway_test, a_refused_requests_failure_is_resolved_with_it_and_archived_after_180_days) {
    // Anyone who knows the URL can be refused: what that records (an unverified excerpt) must
    // not outlive the retention of failures.
    auto forged = github("wrong", "f-1", R"({"password":"canary-7f3"})");
    auto out = receive(*forged);
    ASSERT_EQ(out.outcome, inbound_outcome::kind::rejected);
    auto f = failures_of(a_, out.delivery_id);
    ASSERT_EQ(f.size(), 1u);
    EXPECT_TRUE(f[0].resolved()) << "a refused request is dead-lettered as it is recorded";
    retention::retention_worker retention{*store_, *blobs_, *vault_, clock_};
    clock_.advance(179 * 24h);
    EXPECT_EQ(must(retention.sweep()).failures_archived, 0u);
    EXPECT_EQ(failures_of(a_, out.delivery_id).size(), 1u);
    clock_.advance(2 * 24h);
    EXPECT_EQ(must(retention.sweep()).failures_archived, 1u);
    EXPECT_TRUE(failures_of(a_, out.delivery_id).empty());
    EXPECT_EQ(rows_in(dir_.file("i.db"), "failures WHERE message LIKE '%canary-7f3%'"), 0);
}

TEST_F(inbound_gateway_test, a_request_refused_after_its_signature_verified_is_recorded_verified) {
    ASSERT_EQ(receive(*github(secret_, "v-1", pr_opened(1))).outcome, inbound_outcome::kind::accepted);
    auto conflict = receive(*github(secret_, "v-1", pr_opened(2)));
    ASSERT_EQ(conflict.refusal->reason, inbound_rejection::delivery_id_conflict);
    EXPECT_EQ(find(a_, conflict.delivery_id).data().signature_status, signature_status::verified);
    auto not_json = receive(*github(secret_, "v-2", "not json"));
    ASSERT_EQ(not_json.refusal->reason, inbound_rejection::malformed_body);
    EXPECT_EQ(find(a_, not_json.delivery_id).data().signature_status, signature_status::verified);
    auto no_action = receive(*github("wrong", "v-3", "not json"));
    ASSERT_EQ(no_action.refusal->reason, inbound_rejection::signature_mismatch);
    EXPECT_EQ(find(a_, no_action.delivery_id).data().signature_status, signature_status::invalid);
    inbound_gateway small{*store_, *vault_, *blobs_, clock_, {.max_body_bytes = 64}};
    auto large = must(small.receive(conn_a_, github(secret_, "v-4", pr_opened(4) + std::string(100, ' '))->view()));
    ASSERT_EQ(large.refusal->reason, inbound_rejection::body_too_large);
    EXPECT_EQ(find(a_, large.delivery_id).data().signature_status, signature_status::unverified) << "never checked";
}

TEST_F(inbound_gateway_test, a_delivery_id_as_long_as_the_schemes_allow_is_accepted) {
    auto req = github(secret_, std::string(256, 'd'), pr_opened(1));
    auto out = receive(*req);
    ASSERT_EQ(out.outcome, inbound_outcome::kind::accepted) << (out.refusal ? out.refusal->detail : "");
    EXPECT_EQ(find(a_, out.delivery_id).data().provider_delivery_id, std::string(256, 'd'));
}

TEST_F(inbound_gateway_test, a_standard_webhooks_secret_is_kept_in_the_form_its_verifier_takes) {
    auto standard = [&](std::string const& id) {
        auto r = std::make_unique<vendor_request>();
        r->body = R"({"type":"user.created"})";
        auto ts = to_unix_ms(clock_.now()) / 1000;
        auto sig = must(sign(secret_bytes(std::string_view("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")), id, ts, r->body));
        r->fields = {{"webhook-id", id}, {"webhook-timestamp", std::to_string(ts)}, {"webhook-signature", sig}};
        return r;
    };
    // The bare base64, as the vendors' libraries also take it.
    must(gateway_.register_endpoint(b_, conn_b_, inbound_scheme::standard,
                                    secret_bytes(std::string_view("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))));
    EXPECT_EQ(receive(*standard("msg_1"), conn_b_).outcome, inbound_outcome::kind::accepted);
    // A secret no Standard Webhooks signature could ever match is refused when it is given.
    for (std::string bad : {"not-a-valid-secret", "whsec_c2hvcnQ=", "whpk_AAAA"}) {
        auto r = gateway_.register_endpoint(b_, conn_b_, inbound_scheme::standard, secret_bytes(std::string_view(bad)));
        ASSERT_FALSE(r) << bad;
        EXPECT_EQ(r.error(), errc::invalid_argument);
        EXPECT_EQ(r.error().detail().find(bad), std::string::npos) << "the error never repeats the secret";
        auto rotated = gateway_.rotate_secret(b_, conn_b_, secret_bytes(std::string_view(bad)));
        ASSERT_FALSE(rotated) << bad;
        EXPECT_EQ(rotated.error(), errc::invalid_argument);
    }
    EXPECT_EQ(receive(*standard("msg_2"), conn_b_).outcome, inbound_outcome::kind::accepted)
        << "the registration kept its secret";
}

// ---- through the platform -------------------------------------------------------------------

template <class Predicate>
bool eventually(Predicate done, std::chrono::seconds within = 30s) {
    auto until = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < until) {
        if (done()) return true;
        std::this_thread::sleep_for(10ms);
    }
    return done();
}

TEST(inbound_gateway_platform_test, a_connection_retired_through_the_platform_receives_nothing_from_then_on) {
    temp_dir tmp;
    platform_options options{.data_dir = (tmp.path() / "data").string()};
    options.workers.start = false;
    auto p = must(open_platform(options));
    auto ctx = request_context::for_tenant("t1", "alice");
    auto conn = seed_connection(p->store(), ctx, p->clock().now());
    std::string secret = "platform-secret";
    must(p->inbound().register_endpoint(ctx, conn, inbound_scheme::github, secret_bytes(std::string_view(secret))));
    ASSERT_EQ(must(p->inbound().receive(conn, github(secret, "r-1", pr_opened(1))->view())).outcome,
              inbound_outcome::kind::accepted);  // the endpoint is cached now
    must(p->connections().retire(ctx, conn, "customer left"));
    auto out = must(p->inbound().receive(conn, github(secret, "r-2", pr_opened(2))->view()));
    ASSERT_EQ(out.outcome, inbound_outcome::kind::rejected);
    EXPECT_EQ(out.refusal->reason, inbound_rejection::unknown_connection);
}

TEST(inbound_gateway_platform_test, an_accepted_github_webhook_fans_out_to_a_github_subscription) {
    temp_dir tmp;
    platform_options options{.data_dir = (tmp.path() / "data").string()};
    options.workers.start = false;
    options.workers.outbox = 10ms;
    options.webhooks.deliver = false;  // the fan-out is what is looked at
    options.egress.allow.push_back(net::cidr::parse("127.0.0.0/8").value());
    auto p = must(open_platform(options));
    auto ctx = request_context::for_tenant("t1", "alice");
    auto other = request_context::for_tenant("t2", "bob");
    auto sub = must(p->subscriptions().subscribe(
        ctx, {.project_id = "p1", .event_type = "github.*", .endpoint_url = "http://127.0.0.1:9/gh"}));
    auto other_sub = must(p->subscriptions().subscribe(
        other, {.project_id = "p1", .event_type = "*", .endpoint_url = "http://127.0.0.1:9/all"}));
    auto conn = seed_connection(p->store(), ctx, p->clock().now());
    std::string secret = "platform-secret";
    must(p->inbound().register_endpoint(ctx, conn, inbound_scheme::github, secret_bytes(std::string_view(secret))));
    auto req = github(secret, "pf-1", pr_opened(5));
    auto out = must(p->inbound().receive(conn, req->view()));
    ASSERT_EQ(out.outcome, inbound_outcome::kind::accepted);

    p->start();
    auto deliveries = [&](request_context const& c, std::string const& s) {
        return must(p->publisher().list(c, {.subscription_id = s}, {})).items;
    };
    ASSERT_TRUE(eventually([&] { return deliveries(ctx, sub.subscription.id()).size() == 1; }))
        << "the canonical event never reached the github.* subscription";
    ASSERT_TRUE(p->stop(std::chrono::steady_clock::now() + 30s));
    auto d = deliveries(ctx, sub.subscription.id()).front();
    EXPECT_EQ(d.data().event_type, "github.pull_request.opened");
    EXPECT_EQ(d.data().direction, delivery_direction::outbound);
    auto payload = boost::json::parse(must(p->blobs().get("t1", *d.data().payload_ref)));
    EXPECT_EQ(payload.at("data").at("deliveryId").as_string(), out.delivery_id);
    EXPECT_EQ(payload.at("data").at("body").at("number").as_int64(), 5);
    EXPECT_EQ(deliveries(ctx, sub.subscription.id()).size(), 1u) << "WebhookDelivered itself is not fanned out";
    for (auto const& o : deliveries(other, other_sub.subscription.id()))
        EXPECT_FALSE(o.data().event_type.starts_with("github.")) << "another tenant's subscription";
}

// ---- the platform's teardown ----------------------------------------------------------------

/** What a platform's backends did while it went, in order. The first to close opens the gate
 *  `wait_for_close` waits at. */
class teardown_log {
public:
    void note(std::string what) {
        std::lock_guard lock(mutex_);
        seen_.push_back(std::move(what));
    }
    void close(std::string what) {
        {
            std::lock_guard lock(mutex_);
            seen_.push_back(std::move(what));
            closed_ = true;
        }
        cv_.notify_all();
    }
    void wait_for_close() {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [&] { return closed_; });
    }
    std::vector<std::string> seen() {
        std::lock_guard lock(mutex_);
        return seen_;
    }

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    std::vector<std::string> seen_;
    bool closed_ = false;
};

/** A real store that notes when it begins to close, before it finishes the units queued in it. */
class noted_store final : public storage::store {
public:
    noted_store(std::unique_ptr<storage::store> inner, teardown_log& log) : inner_(std::move(inner)), log_(log) {}
    ~noted_store() override {
        log_.close("store closes");
        inner_.reset();
    }
    result<void> transact(request_context const& ctx, work fn, durability d) override {
        return inner_->transact(ctx, std::move(fn), d);
    }
    void transact_async(request_context const& ctx, work fn, durability d, committed done) override {
        inner_->transact_async(ctx, std::move(fn), d, std::move(done));
    }
    void transact_async_checks_first(request_context const& ctx, work fn, durability d, committed done) override {
        inner_->transact_async_checks_first(ctx, std::move(fn), d, std::move(done));
    }
    result<void> read(request_context const& ctx, work fn) override { return inner_->read(ctx, std::move(fn)); }
    result<std::vector<std::string>> tenants() override { return inner_->tenants(); }
    result<std::vector<storage::outbox_record>> pending_events(std::size_t limit) override {
        return inner_->pending_events(limit);
    }
    result<std::vector<storage::outbox_record>> pending_event_rows(std::size_t limit) override {
        return inner_->pending_event_rows(limit);
    }
    result<void> mark_published(std::span<std::int64_t const> sequences, time_point at) override {
        return inner_->mark_published(sequences, at);
    }
    result<storage::outbox_trim> remove_published(time_point before, std::size_t limit, std::int64_t after) override {
        return inner_->remove_published(before, limit, after);
    }
    result<std::int64_t> count_failed_publication(std::int64_t sequence, std::chrono::milliseconds wait) override {
        return inner_->count_failed_publication(sequence, wait);
    }
    result<void> park_dead(std::int64_t sequence, time_point at, request_context const& ctx,
                           work const& also) override {
        return inner_->park_dead(sequence, at, ctx, also);
    }
    storage::api_key_repository& api_keys() override { return inner_->api_keys(); }
    result<storage::delivery_claim> claim_deliveries(time_point now, std::string const& owner, time_point until,
                                                     std::size_t limit, storage::delivery_share const& share) override {
        return inner_->claim_deliveries(now, owner, until, limit, share);
    }
    result<std::optional<time_point>> oldest_due_delivery() override { return inner_->oldest_due_delivery(); }
    result<std::optional<storage::inbound_endpoint_record>> find_inbound_endpoint(
        std::string const& connection_id) override {
        return inner_->find_inbound_endpoint(connection_id);
    }
    std::string const& event_source() const noexcept override { return inner_->event_source(); }

private:
    std::unique_ptr<storage::store> inner_;
    teardown_log& log_;
};

/** A real blob store that notes its removes and its closing. */
class noted_blobs final : public blobs::blob_store {
public:
    noted_blobs(std::unique_ptr<blobs::blob_store> inner, teardown_log& log) : inner_(std::move(inner)), log_(log) {}
    ~noted_blobs() override { log_.close("blobs close"); }
    result<std::string> put(std::string const& tenant, std::string const& key, std::string_view data,
                            durability d) override {
        return inner_->put(tenant, key, data, d);
    }
    result<std::vector<std::string>> put_many(std::vector<blobs::blob_write> const& writes, durability d) override {
        return inner_->put_many(writes, d);
    }
    result<std::string> get(std::string const& tenant, std::string const& ref) override {
        return inner_->get(tenant, ref);
    }
    result<void> remove(std::string const& tenant, std::string const& ref) override {
        log_.note("blob removed");
        return inner_->remove(tenant, ref);
    }
    result<std::size_t> purge_older_than(time_point cutoff, std::string_view prefix) override {
        return inner_->purge_older_than(cutoff, prefix);
    }

private:
    std::unique_ptr<blobs::blob_store> inner_;
    teardown_log& log_;
};

// The store's destructor still commits what is queued in it and runs the callbacks, which use the
// blob store (a duplicate's payload blob is removed): the platform closes its store first. It
// closed the blob store first, and the callback called into a destroyed object.
TEST(inbound_gateway_platform_test, a_receive_still_queued_when_the_platform_goes_finds_the_blob_store_open) {
    temp_dir tmp;
    teardown_log log;
    auto schemes = builtin_schemes();
    schemes.add_store(
        "noted", [&](backend_url const&, backend_environment const& env) -> result<std::unique_ptr<storage::store>> {
            auto inner =
                storage::open_sqlite_store({.path = tmp.file("i.db"), .clock = env.clock, .source = env.source});
            if (!inner) return inner.error();
            return std::unique_ptr<storage::store>(std::make_unique<noted_store>(std::move(*inner), log));
        });
    schemes.add_blob_store(
        "noted", [&](backend_url const&, backend_environment const& env) -> result<std::unique_ptr<blobs::blob_store>> {
            auto inner = blobs::open_sqlite_blob_store({.path = tmp.file("b.db"), .clock = env.clock});
            if (!inner) return inner.error();
            return std::unique_ptr<blobs::blob_store>(std::make_unique<noted_blobs>(std::move(*inner), log));
        });
    platform_options options{
        .data_dir = (tmp.path() / "data").string(), .store = "noted:", .blobs = "noted:", .schemes = &schemes};
    options.workers.start = false;
    options.webhooks.inbound.inline_payload_bytes = 1024;  // the body below goes to the blob store
    auto p = must(open_platform(options));
    auto ctx = request_context::for_tenant("t1", "alice");
    auto conn = seed_connection(p->store(), ctx, p->clock().now());
    std::string secret = "platform-secret";
    must(p->inbound().register_endpoint(ctx, conn, inbound_scheme::github, secret_bytes(std::string_view(secret))));
    std::string big = R"({"action":"opened","filler":")" + std::string(4000, 'x') + "\"}";
    ASSERT_EQ(must(p->inbound().receive(conn, github(secret, "td-1", big)->view())).outcome,
              inbound_outcome::kind::accepted);

    // The store's writer waits until a backend closes: the repeat's unit is still queued when the
    // platform goes, its payload blob written.
    p->store().transact_async(
        ctx,
        [&log](storage::unit_of_work&) -> result<void> {
            log.wait_for_close();
            return {};
        },
        durability::deferred, [](result<void>) {});
    p->inbound().receive(conn, github(secret, "td-1", big)->view(), [&log](result<inbound_outcome> out) {
        log.note(out && out->outcome == inbound_outcome::kind::duplicate ? "answered: duplicate"
                                                                         : "answered: not a duplicate");
    });
    p.reset();
    EXPECT_EQ(log.seen(),
              (std::vector<std::string>{"store closes", "blob removed", "answered: duplicate", "blobs close"}));
}

}  // namespace
