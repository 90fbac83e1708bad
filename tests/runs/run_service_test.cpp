#include <integration/backends/filesystem/filesystem_blob_store.hpp>
#include <integration/backends/curl/curl_transport.hpp>
#include <integration/services/run_service.hpp>
#include <integration/core/utf8.hpp>

#include "support/hooked_blobs.hpp"
#include "support/credential_world.hpp"
#include "support/credential_doubles.hpp"
#include "support/gzip.hpp"
#include "support/keep_alive_server.hpp"
#include "support/loopback_server.hpp"
#include "support/sqlite_file.hpp"
#include "support/tcp_listener.hpp"

#include <integration/services/failure_service.hpp>
#include <integration/services/retry_worker.hpp>

#include <sys/syscall.h>
#include <sys/wait.h>

#include <poll.h>
#include <sqlite3.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <csignal>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <set>

// A child forked from this multi-threaded test process may inherit the sanitizer allocator's lock
// held by another thread and hang (GCC 12's libasan takes no lock around fork). The -Werror build
// runs these; the host_recovery tests kill and restart a real host process under both builds.
#if defined(__SANITIZE_ADDRESS__)
#define SKIP_FORK_UNDER_ASAN() GTEST_SKIP() << "fork() from a multi-threaded process can hang under AddressSanitizer"
#else
#define SKIP_FORK_UNDER_ASAN() (void)0
#endif

namespace integration::testing {
namespace {

using namespace std::chrono_literals;

/** True while a thread of this process named `name` sleeps in nanosleep: SQLite's busy handler
 *  sleeps between its tries at a lock another connection holds, while an idle store thread waits
 *  on a futex. */
bool a_thread_sleeps(std::string const& name) {
    std::error_code ec;
    for (auto const& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
        std::ifstream comm(task.path() / "comm");
        std::string line;
        if (!std::getline(comm, line) || line != name) continue;
        std::ifstream call(task.path() / "syscall");
        long nr = -1;
        if (call >> nr && (nr == SYS_nanosleep || nr == SYS_clock_nanosleep)) return true;
    }
    return false;
}

/** A vendor on loopback that answers from a script, then with its last line forever. "HANG" never
 *  answers; "SLOW " followed by an answer sends it after 300 ms. */
class scripted_vendor {
public:
    explicit scripted_vendor(std::deque<std::string> script)
        : script_(std::move(script)), server_([this](int fd, loopback_server&) {
              std::string r;
              {
                  std::lock_guard lock(mutex_);
                  r = script_.size() > 1 ? script_.front() : script_.back();
                  if (script_.size() > 1) script_.pop_front();
              }
              if (r == "HANG") {  // answer nothing until the caller goes away
                  char buf[256];
                  while (::read(fd, buf, sizeof buf) > 0) {
                  }
                  return;
              }
              if (r.starts_with("SLOW ")) {
                  std::this_thread::sleep_for(300ms);
                  r.erase(0, 5);
              }
              (void)::write(fd, r.data(), r.size());
          }) {}
    std::uint16_t port() const { return server_.port(); }
    std::vector<std::string> requests() { return server_.requests(); }

private:
    std::mutex mutex_;
    std::deque<std::string> script_;
    loopback_server server_;
};

std::string reply(int status, std::string body = "", std::string extra = "") {
    return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\nConnection: close\r\n" + extra + "\r\n" + body;
}

/** A blob store whose disk is full for response bodies. */
class refusing_responses final : public blobs::blob_store {
public:
    explicit refusing_responses(std::unique_ptr<blobs::blob_store> inner) : inner_(std::move(inner)) {}
    result<std::string> put(std::string const& tenant, std::string const& key, std::string_view data, durability d) override {
        if (key.ends_with("/response")) return error{errc::storage_failure, "no space left on device"};
        return inner_->put(tenant, key, data, d);
    }
    result<std::string> get(std::string const& tenant, std::string const& ref) override { return inner_->get(tenant, ref); }
    result<void> remove(std::string const& tenant, std::string const& ref) override { return inner_->remove(tenant, ref); }
    result<std::size_t> purge_older_than(time_point cutoff, std::string_view prefix) override {
        return inner_->purge_older_than(cutoff, prefix);
    }

private:
    std::unique_ptr<blobs::blob_store> inner_;
};

/** What a test varies about the connection and the service. */
struct run_service_options_override {
    std::optional<rate_limit_budget> budget;
    resilience::breaker_options breaker{};
    int deferred_retries = 3;
    bool write_behind = false;
    durability recording = durability::immediate;  ///< The service's recording.
    std::size_t inline_body_bytes = 64 * 1024;
    resilience::rate_limit_store* rate_limits = nullptr;
    std::chrono::milliseconds idempotency_wait{5'000};
    std::optional<retry_policy> retry;           ///< The connection's retryPolicy.
    std::vector<std::string> scopes{"sms.send"};  ///< The connection's granted scopes.
    std::vector<connections::connection_endpoint> endpoints;
    std::optional<std::string> environment;       ///< The connection's provider environment.
    std::vector<providers::provider_environment> environments;  ///< The provider's.
    std::optional<rate_limit_profile> provider_profile;
    std::optional<std::string> operation_class;   ///< Of sms.send.
    std::string method = "POST";                  ///< Of sms.send.
    /** Of sms.send (a POST): with one, its retries after a timeout or a 5xx are safe. */
    std::optional<std::string> idempotency_header = "Idempotency-Key";
    std::optional<std::uint16_t> vendor_port;     ///< Another vendor than the scripted one.
    bool real_waits = false;                      ///< The service's own waits instead of the manual clock's.
    bool literal_base = false;                    ///< The provider's base URL names 127.0.0.1, not a name.
    unsigned redirect_hops = 0;                   ///< The service's redirect_options::max_hops.
    http::transport* transport = nullptr;         ///< Another transport than the world's.
};

/** Sets the clock back while each request is on its way, as an NTP step may. */
class clock_stepping_back final : public http::transport {
public:
    clock_stepping_back(http::transport& inner, manual_clock& clock) : inner_(inner), clock_(clock) {}
    result<http::response> send(http::request const& r) override {
        clock_.advance(-std::chrono::seconds(5));
        return inner_.send(r);
    }
    void start(http::request r, completion done) override {
        clock_.advance(-std::chrono::seconds(5));
        inner_.start(std::move(r), std::move(done));
    }

private:
    http::transport& inner_;
    manual_clock& clock_;
};

class run_service_test : public ::testing::Test, protected credential_world {
protected:
    /** Saves a connection of `spec` to `p` that passed its health test and is Active; its id. */
    std::string save_active(storage::unit_of_work& uow, request_context const& ctx, providers::integration_provider const& p,
                            connections::connection_spec const& spec) {
        auto c = must(connections::integration_connection::create(ctx, clock_.now(), p, spec));
        must(c.record_health({health_status::healthy, "ok"}, clock_.now()));
        must(c.activate(true, clock_.now()));
        must(uow.connections().save(c));
        return c.id();
    }

    void start(std::deque<std::string> script, net::egress_policy egress = {.allow = {net::cidr::parse("127.0.0.0/8").value()}},
               run_service_options_override o = {}) {
        vendor_ = std::make_unique<scripted_vendor>(std::move(script));
        dns_.add("api.vendor.test", {*net::ip_address::parse("127.0.0.1")});
        must(store_->transact(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
            auto spec = provider_spec("vendor");
            spec.base_url = std::string(o.literal_base ? "http://127.0.0.1:" : "http://api.vendor.test:") +
                            std::to_string(o.vendor_port.value_or(vendor_->port()));
            spec.rate_limit_profile = o.provider_profile;
            spec.environments = o.environments;
            auto p = must(providers::integration_provider::register_new(ctx_, clock_.now(), spec));
            must(p.activate(1));
            auto client = client_spec();
            client.operations.at(0).operation_class = o.operation_class;
            client.operations.at(0).idempotency_header = o.idempotency_header;
            client.operations.at(0).method = o.method;
            auto c = must(providers::external_api_client::register_new(ctx_, clock_.now(), p, client));
            must(c.activate());
            must(uow.providers().save(p));
            must(uow.api_clients().save(c));
            provider_id_ = p.id();
            return {};
        }));
        auto cred = must(credentials_.create(ctx_, {.provider_id = provider_id_, .secret = secret_bytes("vendor-key"),
                                                    .api_key = credentials::api_key_placement{.in = "header", .name = "X-Api-Key"}}));
        must(store_->transact(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
            auto p = must(uow.providers().find(provider_id_));
            auto spec = connection_spec();
            spec.endpoints = o.endpoints;
            spec.rate_limit_budget = o.budget;
            spec.retry_policy = o.retry;
            spec.scopes = o.scopes;
            spec.environment = o.environment;
            spec.credential_id = cred.id();
            connection_id_ = save_active(uow, ctx_, p, spec);
            return {};
        }));
        runs_ = std::make_unique<runs::run_service>(
            *store_, credentials_, *blobs_, o.transport ? *o.transport : *transport_, std::move(egress), dns_, clock_,
            runs::run_service_options{.retry = {.max_attempts = 4, .base_delay = 1'000ms, .max_delay = 60'000ms, .total_deadline = 600'000ms},
                                      .breaker = o.breaker,
                                      .rate_limits = o.rate_limits,
                                      .recording = o.recording,
                                      .deferred_retries = o.deferred_retries,
                                      .redirects = {.max_hops = o.redirect_hops},
                                      .write_behind = o.write_behind,
                                      .inline_body_bytes = o.inline_body_bytes,
                                      .sleep = o.real_waits ? std::function<void(std::chrono::milliseconds)>()
                                                            : [this](std::chrono::milliseconds d) { slept_.push_back(d); clock_.advance(d); },
                                      .random = [] { return 0.5; },
                                      .idempotency_wait = o.idempotency_wait});
    }

    /** An Active connection of tenant `ctx` to a vendor of its own at 127.0.0.1:`port`, with an
     *  API key, offering sms.send. */
    std::string tenant_connection(request_context const& ctx, std::uint16_t port) {
        std::string provider;
        must(store_->transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
            auto spec = provider_spec("vendor");
            spec.base_url = "http://127.0.0.1:" + std::to_string(port);
            auto p = must(providers::integration_provider::register_new(ctx, clock_.now(), spec));
            must(p.activate(1));
            auto client = client_spec();
            client.operations.at(0).idempotency_header = "Idempotency-Key";  // retried as the fixture's own
            auto c = must(providers::external_api_client::register_new(ctx, clock_.now(), p, client));
            must(c.activate());
            must(uow.providers().save(p));
            provider = p.id();
            return uow.api_clients().save(c);
        }));
        auto cred = must(credentials_.create(ctx, {.provider_id = provider, .secret = secret_bytes("other-tenants-key"),
                                                   .api_key = credentials::api_key_placement{.in = "header", .name = "X-Api-Key"}}));
        std::string id;
        must(store_->transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
            auto p = must(uow.providers().find(provider));
            auto spec = connection_spec();
            spec.endpoints = {};  // the provider's base URL
            spec.credential_id = cred.id();
            id = save_active(uow, ctx, p, spec);
            return {};
        }));
        return id;
    }

    /** Another Active connection of the provider, in `project`, using `credential_id`. */
    std::string connection_with(std::string const& credential_id, std::string const& project) {
        std::string id;
        must(store_->transact(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
            auto spec = connection_spec(project);
            spec.endpoints.clear();
            spec.rate_limit_budget.reset();
            spec.retry_policy.reset();
            spec.credential_id = credential_id;
            id = save_active(uow, ctx_, must(uow.providers().find(provider_id_)), spec);
            return {};
        }));
        return id;
    }

    runs::execute_request send_sms(std::optional<std::string> key = {}) {
        return {connection_id_, "sms.send", {.path_params = {{"account", "AC 1"}}, .query = {{"dry", "no"}}, .body = R"({"to":"+100"})"}, key};
    }

    using child_body = std::function<void(storage::store&, runs::run_service&, clock const&)>;
    /** Forks a process with a store and run service of its own on the same files, as another host
     *  would have, whose clock starts at `now`, and runs `body` there; returns its pid. */
    pid_t fork_service(time_point now, runs::run_service_options o, child_body const& body) {
        pid_t child = ::fork();
        if (child != 0) return child;
        manual_clock clk(now);
        auto store = storage::open_sqlite_store({.path = dir_.file("i.db"), .clock = &clk});
        auto vault = credentials::open_local_secret_store({.path = dir_.file("s.db"), .key_file = dir_.file("k"), .key_env = "", .clock = &clk});
        auto fp = credentials::fingerprinter::load_or_create(dir_.file("fp"));
        if (!store || !vault || !fp) ::_exit(2);
        auto transport = http::make_curl_transport();
        credentials::credential_service creds(**store, **vault, *fp, clk, *transport, loopback_, dns_);
        auto blobs = blobs::open_filesystem_blob_store(dir_.file("blobs"));
        if (!blobs) ::_exit(3);
        runs::run_service service(**store, creds, **blobs, *transport, net::egress_policy{.allow = {net::cidr::parse("127.0.0.0/8").value()}},
                                  dns_, clk, std::move(o));
        body(**store, service, clk);
        ::_exit(4);
    }

    static void kill_process(pid_t child) {
        ::kill(child, SIGKILL);
        int status = 0;
        ::waitpid(child, &status, 0);
        EXPECT_TRUE(WIFSIGNALED(status));
    }

    /** An unkeyed POST the vendor refused unread (429) at all four attempts: Running, for the retry
     *  worker, whose resume gets `then`. Returns the run's id. */
    std::string unkeyed_post_waiting_for_the_worker(std::string then) {
        auto const limited = reply(429, "", "Retry-After: 1\r\n");
        start({limited, limited, limited, limited, std::move(then)}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}},
              {.idempotency_header = std::nullopt});
        return must(runs_->execute(ctx_, send_sms())).run.id();
    }

    /** The run failed, its one failure `interrupted` and escalated for a person. */
    void expect_failed_as_interrupted(std::string const& id) {
        auto run = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.runs().find(id); }));
        EXPECT_EQ(run.status(), runs::run_status::failed);
        auto f = failures_of(id);
        ASSERT_EQ(f.size(), 1u);
        EXPECT_EQ(f[0].data().error_code, "interrupted");
        EXPECT_EQ(f[0].data().next_action, failures::next_action::escalate);
    }

    /** Makes every update of a run fail (a commit that records an outcome), or stops that. */
    void refuse_run_updates(bool refuse) {
        exec_sql(dir_.file("i.db"), refuse ? "CREATE TRIGGER refuse_run_updates BEFORE UPDATE ON runs BEGIN SELECT RAISE(ABORT, 'refused'); END;"
                                           : "DROP TRIGGER refuse_run_updates;");
    }

    /** Retires the fixture's connection, as a platform does (its bindings forgotten at once). */
    void retire_connection() {
        must(store_->transact(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
            auto c = must(uow.connections().find(connection_id_));
            must(c.retire("customer left"));
            return uow.connections().save(c);
        }));
        runs_->forget(connection_id_);
    }

    void probe_connection(integration::health_status health) {
        must(store_->transact(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
            auto c = must(uow.connections().find(connection_id_));
            must(c.record_health({.status = health, .detail = "probe"}, clock_.now()));
            return uow.connections().save(c);
        }));
        runs_->forget(connection_id_);
    }

    std::optional<runs::integration_run> run_with_key(std::string const& key) {
        auto run = storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.runs().find_by_idempotency_key(key); });
        if (!run) return std::nullopt;
        return std::move(*run);
    }

    /** A run's body by its reference: kept in the store with the run, or in the blob store. */
    std::string body_of(runs::integration_run const& run, std::optional<std::string> const& ref, storage::run_body part) {
        if (!ref) return "(no reference)";
        if (!storage::is_stored_payload_ref(*ref)) return must(blobs_->get("t1", *ref));
        return must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.runs().body(run.id(), part); }));
    }

    std::vector<failures::integration_failure> failures_of(std::string const& run_id) {
        std::vector<failures::integration_failure> out;
        must(store_->read(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
            out = must(uow.failures().list({.run_id = run_id}, {})).items;
            return {};
        }));
        return out;
    }

    std::unique_ptr<blobs::blob_store> blobs_ = must(blobs::open_filesystem_blob_store(dir_.file("blobs")));
    std::unique_ptr<scripted_vendor> vendor_;
    std::unique_ptr<runs::run_service> runs_;
    std::vector<std::chrono::milliseconds> slept_;
    request_context ctx_ = request_context::for_tenant("t1", "alice");
    std::string provider_id_, connection_id_;
};

TEST_F(run_service_test, a_run_calls_the_vendor_with_credentials_and_records_everything) {
    start({reply(201, R"({"sid":"SM1"})", "X-Resource-Id: SM1\r\n")});
    auto out = must(runs_->execute(ctx_, send_sms()));
    EXPECT_EQ(out.run.status(), runs::run_status::completed);
    EXPECT_EQ(out.run.data().attempts, 1);
    EXPECT_EQ(out.run.data().external_ref, "SM1");
    EXPECT_EQ(out.response->status, 201);
    EXPECT_EQ(out.response->body, R"({"sid":"SM1"})");
    auto seen = vendor_->requests();
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].rfind("POST /v1/accounts/AC%201/messages?dry=no HTTP/1.1", 0), 0u) << seen[0];
    EXPECT_NE(seen[0].find("X-Api-Key: vendor-key"), std::string::npos);
    EXPECT_NE(seen[0].find("traceparent: 00-" + ctx_.trace.trace_id + "-"), std::string::npos);
    EXPECT_EQ(must(blobs_->get("t1", *out.run.data().request_ref)), R"({"to":"+100"})");
    EXPECT_EQ(must(blobs_->get("t1", *out.run.data().response_ref)), R"({"sid":"SM1"})");
    must(store_->read(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
        auto stored = must(uow.runs().find(out.run.id()));
        EXPECT_EQ(stored.status(), runs::run_status::completed);
        EXPECT_EQ(stored.data().run_attempts.at(0).http_status, 201);
        return {};
    }));
    EXPECT_EQ(must(store_->pending_events(100)).back().envelope.event_type, "IntegrationRunCompleted");
}

// The wall clock may step back (NTP) while an attempt is on its way: the attempt is still
// recorded (its latency never below zero), and the run completes with it.
TEST_F(run_service_test, an_attempt_during_which_the_clock_stepped_back_is_still_recorded) {
    clock_stepping_back stepping(*transport_, clock_);
    start({reply(201, R"({"sid":"SM1"})")}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}}, {.transport = &stepping});
    auto out = must(runs_->execute(ctx_, send_sms()));
    EXPECT_EQ(out.run.status(), runs::run_status::completed);
    ASSERT_EQ(out.run.data().run_attempts.size(), 1u);
    EXPECT_EQ(out.run.data().run_attempts[0].latency_ms, 0);
    EXPECT_EQ(out.run.data().run_attempts[0].http_status, 201);
}

// A vendor's X-Resource-Id that is not UTF-8 (or is huge) becomes the run's externalRef as valid,
// bounded text: the run's answer and its IntegrationRunCompleted event stay readable.
TEST_F(run_service_test, a_vendor_resource_id_that_is_not_utf8_is_kept_as_valid_text) {
    start({reply(201, "{}", "X-Resource-Id: ab\xff" "cd" + std::string(1000, 'x') + "\r\n")});
    auto out = must(runs_->execute(ctx_, send_sms()));
    ASSERT_TRUE(out.run.data().external_ref);
    EXPECT_TRUE(is_valid_utf8(*out.run.data().external_ref));
    EXPECT_TRUE(out.run.data().external_ref->starts_with("ab\xef\xbf\xbd" "cd")) << *out.run.data().external_ref;
    EXPECT_LE(out.run.data().external_ref->size(), 256u);
    auto pending = must(store_->pending_events(100));
    EXPECT_FALSE(pending.empty());
}

// "A connection cannot be Active without a resolvable credentialId": revoking the credential
// makes its connection Unhealthy in the same commit, and runs are refused before anything is
// recorded or sent, allow_degraded or not.
TEST_F(run_service_test, a_revoked_credential_stops_its_connections_runs) {
    start({reply(200, "ok")});
    auto conn = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.connections().find(connection_id_); }));
    ASSERT_EQ(conn.status(), connections::connection_status::active);
    must(credentials_.revoke(ctx_, *conn.data().credential_id, "leaked"));
    conn = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.connections().find(connection_id_); }));
    EXPECT_EQ(conn.status(), connections::connection_status::degraded);
    EXPECT_EQ(conn.data().health, health_status::unhealthy);
    ASSERT_TRUE(conn.data().health_reason);
    EXPECT_NE(conn.data().health_reason->find("revoked"), std::string::npos) << *conn.data().health_reason;
    for (bool permitted : {false, true}) {
        auto request = send_sms();
        request.allow_degraded = permitted;
        auto refused = runs_->execute(ctx_, request);
        ASSERT_FALSE(refused);
        EXPECT_EQ(refused.error(), errc::invalid_state) << refused.error().message();
    }
    EXPECT_TRUE(vendor_->requests().empty());
    auto recorded = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.runs().list({}, {}); }));
    EXPECT_TRUE(recorded.items.empty());
}

// A connection written before connections were checked against their credential's provider (or
// changed in the store by hand) never sends another provider's secret: the binding checks it.
TEST_F(run_service_test, a_connection_holding_another_providers_credential_sends_nothing) {
    start({reply(200, "ok")});
    auto other = must(storage::transact_for(*store_, ctx_, [&](storage::unit_of_work& uow) -> result<providers::integration_provider> {
        auto spec = provider_spec("other-vendor");
        auto p = providers::integration_provider::register_new(ctx_, clock_.now(), spec);
        if (!p) return p.error();
        if (auto s = uow.providers().save(*p); !s) return s.error();
        return std::move(*p);
    }));
    auto foreign = must(credentials_.create(ctx_, {.provider_id = other.id(), .secret = secret_bytes("other-vendors-secret"),
                                                   .api_key = credentials::api_key_placement{.in = "header", .name = "X-Api-Key"}}));
    exec_sql(dir_.file("i.db"), "UPDATE connections SET credential_id = '" + foreign.id() + "' WHERE connection_id = '" + connection_id_ + "'");
    auto refused = runs_->execute(ctx_, send_sms());
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error(), errc::invalid_argument) << refused.error().message();
    EXPECT_NE(refused.error().detail().find("belongs to provider " + other.id()), std::string::npos) << refused.error().detail();
    EXPECT_TRUE(vendor_->requests().empty());
}

// Between the binding and the call (another process revoked it), the run fails at once as Auth,
// for a human to mend (escalate), and is neither retried nor left Running for the retry worker.
TEST_F(run_service_test, a_credential_revoked_after_binding_fails_the_run_at_once_for_a_human) {
    start({reply(200, "ok"), reply(200, "ok")});
    must(runs_->execute(ctx_, send_sms()));  // the binding is cached for binding_cache_ttl
    auto conn = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.connections().find(connection_id_); }));
    must(credentials_.revoke(ctx_, *conn.data().credential_id, "leaked"));
    auto out = must(runs_->execute(ctx_, send_sms()));
    EXPECT_EQ(out.run.status(), runs::run_status::failed);
    EXPECT_EQ(out.run.data().attempts, 1);
    EXPECT_EQ(vendor_->requests().size(), 1u) << "only the run before the revocation reached the vendor";
    auto f = failures_of(out.run.id());
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].data().category, failures::failure_category::auth);
    EXPECT_EQ(f[0].data().error_code, "credential_unusable");
    EXPECT_EQ(f[0].data().next_action, failures::next_action::escalate);
    EXPECT_TRUE(slept_.empty()) << "a revoked credential was retried";
}

TEST_F(run_service_test, transient_failures_are_retried_on_the_backoff_schedule) {
    start({reply(503), reply(502), reply(200, "ok")});
    auto out = must(runs_->execute(ctx_, send_sms()));
    EXPECT_EQ(out.run.status(), runs::run_status::completed);
    ASSERT_EQ(out.run.data().run_attempts.size(), 3u);
    EXPECT_EQ(out.run.data().run_attempts[0].error_class, failures::failure_category::transient);
    EXPECT_EQ(out.run.data().run_attempts[0].http_status, 503);
    EXPECT_EQ(out.run.data().run_attempts[2].status, runs::attempt_status::succeeded);
    // Full jitter at 0.5: half of 1 s, then half of 2 s.
    EXPECT_EQ(slept_, (std::vector<std::chrono::milliseconds>{500ms, 1'000ms}));
    EXPECT_EQ(vendor_->requests().size(), 3u);
}

// Sending a POST again after the vendor may have acted on it could charge twice: a person decides.
class unkeyed_post : public run_service_test, public ::testing::WithParamInterface<std::string> {};

TEST_P(unkeyed_post, the_vendor_may_have_acted_on_is_not_sent_again_and_waits_for_a_person) {
    start({GetParam(), reply(200, "ok")}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}}, {.idempotency_header = std::nullopt});
    auto out = must(runs_->execute(ctx_, send_sms()));
    EXPECT_EQ(out.run.status(), runs::run_status::failed);
    EXPECT_EQ(out.run.data().attempts, 1);
    EXPECT_EQ(vendor_->requests().size(), 1u);
    EXPECT_TRUE(slept_.empty());
    auto f = failures_of(out.run.id());
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].data().category, failures::failure_category::transient);
    EXPECT_EQ(f[0].data().error_code, GetParam().empty() ? "connection_lost" : "http_502");
    EXPECT_EQ(f[0].data().next_action, failures::next_action::escalate);
    EXPECT_NE(f[0].data().message.find("not sent again"), std::string::npos) << f[0].data().message;
}

INSTANTIATE_TEST_SUITE_P(run_service_test, unkeyed_post,
                         ::testing::Values(reply(502), std::string() /* read, closed without an answer */));

// A request the vendor dedupes, or one it provably never acted on, is retried as any other.
TEST_F(run_service_test, an_operations_idempotency_header_carries_the_runs_id_at_every_attempt) {
    start({reply(503), std::string(), reply(200, "ok")});  // sms.send names Idempotency-Key
    auto out = must(runs_->execute(ctx_, send_sms()));
    EXPECT_EQ(out.run.status(), runs::run_status::completed);
    auto requests = vendor_->requests();
    ASSERT_EQ(requests.size(), 3u);
    for (auto const& r : requests)  // one request to the vendor, however often sent
        EXPECT_NE(r.find("Idempotency-Key: " + out.run.id() + "\r\n"), std::string::npos) << r;
}

TEST_F(run_service_test, a_post_with_the_callers_idempotency_key_is_sent_again) {
    start({reply(503), reply(200, "ok")}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}}, {.idempotency_header = std::nullopt});
    auto keyed = send_sms();
    keyed.input.headers = {{"idempotency-key", "order-42"}};
    auto out = must(runs_->execute(ctx_, keyed));
    EXPECT_EQ(out.run.status(), runs::run_status::completed);
    EXPECT_EQ(vendor_->requests().size(), 2u);
}

TEST_F(run_service_test, an_unkeyed_post_the_vendor_refused_unread_is_sent_again) {
    start({reply(429, "", "Retry-After: 1\r\n"), reply(200, "ok")}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}},
          {.idempotency_header = std::nullopt});
    EXPECT_EQ(must(runs_->execute(ctx_, send_sms())).run.status(), runs::run_status::completed);
    EXPECT_EQ(vendor_->requests().size(), 2u);
}

TEST_F(run_service_test, an_unkeyed_post_that_never_reached_the_vendor_is_sent_again) {
    std::uint16_t closed;
    { loopback_server gone; closed = gone.port(); }
    start({reply(200)}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}},
          {.deferred_retries = 0, .idempotency_header = std::nullopt, .vendor_port = closed});
    auto out = must(runs_->execute(ctx_, send_sms()));
    EXPECT_EQ(out.run.data().attempts, 4);  // refused connections: nothing was sent
    auto f = failures_of(out.run.id());
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].data().next_action, failures::next_action::dead_letter);
}

// The vendor answered the POST with a redirect, so it may have acted on it, whatever the next hop
// answers: a 429 there does not send the POST again.
TEST_F(run_service_test, an_unkeyed_post_that_was_redirected_is_not_sent_again) {
    start({reply(303, "", "Location: /receipt\r\n"), reply(429, "", "Retry-After: 1\r\n"), reply(200, "ok")},
          {.allow = {net::cidr::parse("127.0.0.0/8").value()}}, {.idempotency_header = std::nullopt, .redirect_hops = 3});
    auto out = must(runs_->execute(ctx_, send_sms()));
    EXPECT_EQ(out.run.status(), runs::run_status::failed);
    auto requests = vendor_->requests();
    ASSERT_EQ(requests.size(), 2u);
    EXPECT_TRUE(requests[1].starts_with("GET /receipt ")) << requests[1];
    auto f = failures_of(out.run.id());
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].data().next_action, failures::next_action::escalate);
}

// A redirect whose next hop cannot even be checked (its name does not resolve) still came from a
// vendor that may have acted on the POST: it is not sent again.
TEST_F(run_service_test, an_unkeyed_post_redirected_to_a_name_that_does_not_resolve_is_not_sent_again) {
    start({reply(303, "", "Location: http://gone.vendor.test/receipt\r\n"), reply(200, "ok"), reply(200, "ok")},
          {.allow = {net::cidr::parse("127.0.0.0/8").value()}}, {.idempotency_header = std::nullopt, .redirect_hops = 3});
    auto out = must(runs_->execute(ctx_, send_sms()));
    EXPECT_EQ(out.run.status(), runs::run_status::failed);
    EXPECT_EQ(vendor_->requests().size(), 1u);
    auto f = failures_of(out.run.id());
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].data().next_action, failures::next_action::escalate);
}

// With its idempotency header the same POST may go twice to the origin that got it: a redirect
// whose next hop could not be checked leaves it retried there, not escalated.
TEST_F(run_service_test, a_keyed_post_redirected_to_a_name_that_does_not_resolve_is_retried_where_it_went) {
    start({reply(303, "", "Location: http://gone.vendor.test/receipt\r\n"), reply(201, "made")},
          {.allow = {net::cidr::parse("127.0.0.0/8").value()}}, {.redirect_hops = 3});
    auto out = must(runs_->execute(ctx_, send_sms()));
    EXPECT_EQ(out.run.status(), runs::run_status::completed);
    EXPECT_EQ(vendor_->requests().size(), 2u);
    EXPECT_TRUE(failures_of(out.run.id()).empty() || failures_of(out.run.id()).at(0).resolved());
}

// The call that holds no thread (write-behind, a handler) decides as the blocking one.
TEST_F(run_service_test, an_unkeyed_post_started_without_blocking_is_not_sent_again) {
    start({reply(502), reply(200, "ok")}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}},
          {.write_behind = true, .idempotency_header = std::nullopt});
    std::promise<result<runs::run_outcome>> reported;
    runs_->execute(ctx_, send_sms(), [&](result<runs::run_outcome> out) { reported.set_value(std::move(out)); });
    auto out = reported.get_future().get();
    ASSERT_TRUE(out) << out.error().message();
    EXPECT_EQ(out->run.status(), runs::run_status::failed);
    EXPECT_EQ(vendor_->requests().size(), 1u);
    ASSERT_TRUE(out->failure_id);
    EXPECT_EQ(failures_of(out->run.id()).at(0).data().next_action, failures::next_action::escalate);
}

// A run the vendor refused unread (429) waits for the retry worker; the resumed call's 502 may
// have been acted on, so the worker does not send it again either.
TEST_F(run_service_test, the_retry_worker_escalates_an_unkeyed_post_the_vendor_may_have_acted_on) {
    auto const limited = reply(429, "", "Retry-After: 1\r\n");
    start({limited, limited, limited, limited, reply(502), reply(200, "ok")}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}},
          {.idempotency_header = std::nullopt});
    auto out = must(runs_->execute(ctx_, send_sms()));
    ASSERT_EQ(out.run.status(), runs::run_status::running);  // the attempts ran out: the worker's
    runs::retry_worker worker(*store_, *runs_, clock_);
    clock_.advance(61s);
    EXPECT_EQ(must(worker.sweep()), 1u);
    auto run = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.runs().find(out.run.id()); }));
    EXPECT_EQ(run.status(), runs::run_status::failed);
    EXPECT_EQ(vendor_->requests().size(), 5u);
    auto f = failures_of(out.run.id());
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].data().next_action, failures::next_action::escalate);
    clock_.advance(3600s);
    EXPECT_EQ(must(worker.sweep()), 0u);
    EXPECT_EQ(vendor_->requests().size(), 5u);
}

// A timeout of 0 is no deadline (the transport refused every call, each then a Failed run), no
// attempt runs nothing, and an empty write-behind queue waited for ever: refused, naming the option.
TEST_F(run_service_test, options_a_run_service_cannot_work_with_refuse_every_run_before_anything_is_recorded_or_sent) {
    start({reply(200, "ok")});
    std::vector<std::pair<runs::run_service_options, std::string>> cases{
        {{.attempt_timeout = 0ms}, "run_service_options.attempt_timeout is 0 ms"},
        {{.retry = {.max_attempts = 0}}, "run_service_options.retry.max_attempts is 0"},
        {{.write_behind = true, .write_behind_queue = 0}, "run_service_options.write_behind_queue is 0"},
        {{.orphan_margin = -1ms}, "run_service_options.orphan_margin is -1 ms"},
        {{.deferred_retries = -1}, "run_service_options.deferred_retries is -1"},
    };
    for (auto& [options, says] : cases) {
        EXPECT_EQ(runs::validate(options).error().message().find(says) != std::string::npos, true) << says;
        runs::run_service service(*store_, credentials_, *blobs_, *transport_,
                                  net::egress_policy{.allow = {net::cidr::parse("127.0.0.0/8").value()}}, dns_, clock_, options);
        auto out = service.execute(ctx_, send_sms());
        ASSERT_FALSE(out) << says;
        EXPECT_EQ(out.error(), errc::invalid_argument) << says;
        EXPECT_NE(out.error().message().find(says), std::string::npos) << out.error().message();
    }
    EXPECT_TRUE(runs::validate({}));
    EXPECT_TRUE(vendor_->requests().empty());
    EXPECT_TRUE(must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.runs().list({}, {}); })).items.empty());
}

TEST_F(run_service_test, an_empty_idempotency_key_is_refused_before_anything_is_sent) {
    start({reply(200, "ok")});  // sms.send names Idempotency-Key
    for (std::string const name : {"Idempotency-Key", "idempotency-key"}) {
        auto r = send_sms();
        r.input.headers = {{name, " "}};
        auto refused = runs_->execute(ctx_, r);
        ASSERT_FALSE(refused);
        EXPECT_EQ(refused.error(), errc::invalid_argument);
        EXPECT_NE(refused.error().detail().find("empty"), std::string::npos) << refused.error().detail();
    }
    EXPECT_TRUE(vendor_->requests().empty());
}

TEST_F(run_service_test, a_body_for_a_get_is_refused_before_anything_is_recorded_or_sent) {
    start({reply(200, "ok")}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}}, {.method = "GET"});
    auto refused = runs_->execute(ctx_, send_sms());
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error(), errc::invalid_argument);
    EXPECT_NE(refused.error().detail().find("GET"), std::string::npos) << refused.error().detail();
    EXPECT_TRUE(vendor_->requests().empty());
    auto bodiless = send_sms();
    bodiless.input.body.clear();
    EXPECT_EQ(must(runs_->execute(ctx_, bodiless)).run.status(), runs::run_status::completed);
    ASSERT_EQ(vendor_->requests().size(), 1u);
    EXPECT_TRUE(vendor_->requests()[0].starts_with("GET ")) << vendor_->requests()[0];
    auto listed = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.runs().list({}, {}); }));
    EXPECT_EQ(listed.items.size(), 1u);  // the refused run left nothing behind
}

TEST_F(run_service_test, retry_after_is_honoured_for_429) {
    start({reply(429, "", "Retry-After: 7\r\n"), reply(200, "ok")});
    auto out = must(runs_->execute(ctx_, send_sms()));
    EXPECT_EQ(out.run.status(), runs::run_status::completed);
    EXPECT_EQ(slept_, (std::vector<std::chrono::milliseconds>{7'000ms}));
    EXPECT_EQ(out.run.data().run_attempts[0].error_class, failures::failure_category::rate_limited);
}

TEST_F(run_service_test, a_validation_error_fails_at_once_with_a_classified_failure) {
    start({reply(422, R"({"error":"bad number"})")});
    auto out = must(runs_->execute(ctx_, send_sms()));
    EXPECT_EQ(out.run.status(), runs::run_status::failed);
    EXPECT_EQ(out.run.data().attempts, 1);
    EXPECT_TRUE(slept_.empty());
    auto f = failures_of(out.run.id());
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].data().category, failures::failure_category::validation);
    EXPECT_EQ(f[0].data().error_code, "http_422");
    EXPECT_EQ(f[0].data().next_action, failures::next_action::dead_letter);
    EXPECT_EQ(must(blobs_->get("t1", *out.run.data().response_ref)), R"({"error":"bad number"})");
}

TEST_F(run_service_test, exhausted_retries_dead_letter_the_failure_when_no_later_retry_is_allowed) {
    start({reply(503)}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}}, {.deferred_retries = 0});
    auto out = must(runs_->execute(ctx_, send_sms()));
    EXPECT_EQ(out.run.status(), runs::run_status::failed);
    EXPECT_EQ(out.run.data().attempts, 4);
    auto f = failures_of(out.run.id());
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].data().next_action, failures::next_action::dead_letter);
}

TEST_F(run_service_test, the_same_idempotency_key_returns_the_same_run_without_a_second_call) {
    start({reply(201, "first")});
    auto first = must(runs_->execute(ctx_, send_sms("key-1")));
    auto again = must(runs_->execute(ctx_, send_sms("key-1")));
    EXPECT_TRUE(again.replayed);
    EXPECT_EQ(again.run.id(), first.run.id());
    EXPECT_EQ(again.response->status, 201);
    EXPECT_EQ(again.response->body, "first");
    EXPECT_EQ(vendor_->requests().size(), 1u);
    auto other = request_context::for_tenant("t2");
    EXPECT_EQ(runs_->execute(other, send_sms("key-1")).error(), errc::not_found);  // not t2's connection
}

// The key is claimed for its request: the same key with a different request (body, operation's
// input, connection) is refused, never handed the first one's run, through the library as
// through the host.
TEST_F(run_service_test, the_same_idempotency_key_with_another_request_is_refused) {
    start({reply(201, "first"), reply(201, "second")});
    auto first = must(runs_->execute(ctx_, send_sms("key-1")));
    auto other_body = send_sms("key-1");
    other_body.input.body = R"({"to":"+200"})";
    auto other_query = send_sms("key-1");
    other_query.input.query = {{"dry", "yes"}};
    auto other_header = send_sms("key-1");
    other_header.input.headers = {{"X-Trace", "1"}};
    for (auto const* r : {&other_body, &other_query, &other_header}) {
        auto refused = runs_->execute(ctx_, *r);
        ASSERT_FALSE(refused);
        EXPECT_EQ(refused.error(), errc::idempotency_key_reused) << refused.error().detail();
    }
    std::promise<result<runs::run_outcome>> told;
    runs_->execute(ctx_, other_body, [&](result<runs::run_outcome> out) { told.set_value(std::move(out)); });
    EXPECT_EQ(told.get_future().get().error(), errc::idempotency_key_reused);
    EXPECT_TRUE(must(runs_->execute(ctx_, send_sms("key-1"))).replayed);
    EXPECT_EQ(vendor_->requests().size(), 1u);
    EXPECT_EQ(first.response->body, "first");
}

// A keyed run refused before its first send (egress denied) is recorded, and its key claimed with
// it: another request with the key is refused, the same one answered that run.
TEST_F(run_service_test, a_keyed_run_refused_before_its_send_claims_its_key) {
    start({reply(200)}, net::egress_policy{});
    auto out = must(runs_->execute(ctx_, send_sms("key-3")));
    EXPECT_EQ(out.run.status(), runs::run_status::failed);
    auto other = send_sms("key-3");
    other.input.body = R"({"to":"+400"})";
    EXPECT_EQ(runs_->execute(ctx_, other).error(), errc::idempotency_key_reused);
    auto again = must(runs_->execute(ctx_, send_sms("key-3")));
    EXPECT_TRUE(again.replayed);
    EXPECT_EQ(again.run.id(), out.run.id());
    EXPECT_TRUE(vendor_->requests().empty());
}

// A retry is the same request whatever the order of its headers or the caller's own credential
// in them (a refreshed token): it gets the key's run, not a refusal.
TEST_F(run_service_test, a_retry_with_reordered_headers_or_a_refreshed_token_gets_the_keys_run) {
    start({reply(201, "first")});
    auto first = send_sms("key-4");
    first.input.headers = {{"X-Trace", "1"}, {"Authorization", "Bearer token-1"}, {"X-Locale", "fr"}};
    auto out = must(runs_->execute(ctx_, first));
    auto retry = send_sms("key-4");
    retry.input.headers = {{"x-locale", "fr"}, {"Authorization", "Bearer token-2"}, {"X-Trace", "1"}};
    auto again = must(runs_->execute(ctx_, retry));
    EXPECT_TRUE(again.replayed);
    EXPECT_EQ(again.run.id(), out.run.id());
    EXPECT_EQ(vendor_->requests().size(), 1u);
    auto query = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.runs().list({}, {}); }));
    EXPECT_EQ(query.items.size(), 1u);
    // Any other header is part of the request: another value is another request.
    auto other = send_sms("key-4");
    other.input.headers = {{"x-locale", "fr"}, {"Authorization", "Bearer token-2"}, {"X-Trace", "1"}, {"X-Session-Id", "s2"}};
    EXPECT_EQ(runs_->execute(ctx_, other).error(), errc::idempotency_key_reused);
}

// A request refused before its run was written (bad input) claims nothing: the corrected request
// may use the key.
TEST_F(run_service_test, a_request_refused_before_its_run_leaves_the_key_free) {
    start({reply(201, "ok")});
    auto bad = send_sms("key-2");
    bad.input.headers = {{"Accept-Encoding", "gzip"}};
    EXPECT_EQ(runs_->execute(ctx_, bad).error(), errc::invalid_argument);
    auto corrected = send_sms("key-2");
    corrected.input.body = R"({"to":"+300"})";
    auto out = must(runs_->execute(ctx_, corrected));
    EXPECT_FALSE(out.replayed);
    EXPECT_EQ(out.run.status(), runs::run_status::completed);
    EXPECT_EQ(vendor_->requests().size(), 1u);
}

TEST_F(run_service_test, a_denied_destination_is_poison_and_never_contacted) {
    start({reply(200)}, net::egress_policy{});
    auto out = must(runs_->execute(ctx_, send_sms()));
    EXPECT_EQ(out.run.status(), runs::run_status::failed);
    EXPECT_EQ(out.run.data().run_attempts.at(0).error_class, failures::failure_category::poison);
    EXPECT_TRUE(vendor_->requests().empty());
}

TEST_F(run_service_test, bad_input_and_retired_connections_record_nothing) {
    start({reply(200)});
    auto missing = send_sms();
    missing.input.path_params.clear();
    EXPECT_EQ(runs_->execute(ctx_, missing).error(), errc::invalid_argument);
    auto unknown = send_sms();
    unknown.operation = "sms.teleport";
    EXPECT_EQ(runs_->execute(ctx_, unknown).error(), errc::invalid_argument);
    must(store_->transact(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
        auto c = must(uow.connections().find(connection_id_));
        must(c.retire("done"));
        return uow.connections().save(c);
    }));
    // The connection → client binding is reused for binding_cache_ttl (1 s by default), no longer.
    clock_.advance(1'001ms);
    EXPECT_EQ(runs_->execute(ctx_, send_sms()).error(), errc::invalid_state);
    must(store_->read(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
        EXPECT_TRUE(must(uow.runs().list({}, {})).items.empty());
        return {};
    }));
    EXPECT_TRUE(vendor_->requests().empty());
}

TEST_F(run_service_test, a_forgotten_connection_is_read_again_at_its_next_run) {
    start({reply(200), reply(200)});
    EXPECT_EQ(must(runs_->execute(ctx_, send_sms())).run.status(), runs::run_status::completed);
    must(store_->transact(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
        auto c = must(uow.connections().find(connection_id_));
        must(c.retire("done"));
        return uow.connections().save(c);
    }));
    // What a platform does when a connection is retired through it: no binding_cache_ttl to wait.
    runs_->forget(connection_id_);
    EXPECT_EQ(runs_->execute(ctx_, send_sms()).error(), errc::invalid_state);
    EXPECT_EQ(vendor_->requests().size(), 1u);
}

TEST_F(run_service_test, a_run_starts_on_the_callers_thread_once_its_binding_and_credential_are_cached) {
    start({reply(200)}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}}, {.write_behind = true, .real_waits = true, .literal_base = true});
    EXPECT_FALSE(runs_->starts_without_blocking(ctx_, send_sms())) << "nothing cached yet";
    must(runs_->execute(ctx_, send_sms()));
    EXPECT_TRUE(runs_->starts_without_blocking(ctx_, send_sms()));
}

TEST_F(run_service_test, a_run_that_may_follow_redirects_never_starts_on_the_callers_thread) {
    // Redirects are followed with blocking sends (each hop checked and resolved): a caller on an
    // event loop must hand such a run to a thread that may block.
    start({reply(200)}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}},
          {.write_behind = true, .real_waits = true, .literal_base = true, .redirect_hops = 3});
    must(runs_->execute(ctx_, send_sms()));
    EXPECT_FALSE(runs_->starts_without_blocking(ctx_, send_sms()));
}

// A redirect to another origin carries no header, and a vendor that echoes a query-placed API
// key into `Location` does not get it carried there either: that hop is refused (the run fails
// as Poison) and the other origin is never contacted. So is a login redirect that carries the
// original URL in its own query, the key then encoded twice (`%252F`). A hop whose URL holds no
// secret goes on.
TEST_F(run_service_test, a_redirect_echoing_a_query_placed_key_is_never_followed_to_another_origin) {
    std::string const key = "qk/5ecret+2b=7e";
    loopback_server elsewhere;
    auto const other = "http://127.0.0.1:" + std::to_string(elsewhere.port());
    auto const original = "http://127.0.0.1:1/v1/messages?api_key=" + http::form_encode(key);
    start({reply(302, "", "Location: " + other + "/landing?api_key=" + http::form_encode(key) + "&page=2\r\n"),
           reply(302, "", "Location: " + other + "/login?return_to=" + http::form_encode(original) + "\r\n"),
           reply(302, "", "Location: " + other + "/landing?page=2\r\n")},
          {.allow = {net::cidr::parse("127.0.0.0/8").value()}}, {.redirect_hops = 3});
    auto cred = must(credentials_.create(ctx_, {.provider_id = provider_id_, .secret = secret_bytes(key),
                                                .api_key = credentials::api_key_placement{.in = "query", .name = "api_key"}}));
    auto request = send_sms();
    request.connection_id = connection_with(cred.id(), "proj-2");
    for (int echo = 0; echo < 2; ++echo) {
        auto echoed = must(runs_->execute(ctx_, request));
        EXPECT_EQ(echoed.run.status(), runs::run_status::failed) << echo;
        ASSERT_EQ(echoed.run.data().run_attempts.size(), 1u);
        EXPECT_EQ(echoed.run.data().run_attempts.at(0).error_class, failures::failure_category::poison);
        EXPECT_EQ(elsewhere.accepted(), 0) << "the key was taken to another origin";
        for (auto const& f : failures_of(echoed.run.id())) EXPECT_EQ(f.data().message.find(key), std::string::npos) << f.data().message;
    }
    ASSERT_EQ(vendor_->requests().size(), 2u);
    EXPECT_NE(vendor_->requests()[0].find("api_key=" + http::form_encode(key)), std::string::npos) << "the vendor itself gets the key";

    auto plain = must(runs_->execute(ctx_, request));
    EXPECT_EQ(plain.run.status(), runs::run_status::completed);
    ASSERT_EQ(elsewhere.requests().size(), 1u);
    EXPECT_TRUE(elsewhere.requests()[0].starts_with("GET /landing?page=2 ")) << elsewhere.requests()[0];
}

TEST_F(run_service_test, an_open_breaker_stops_calls_to_a_failing_vendor) {
    start({reply(500)}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}},
          {.breaker = {.consecutive_failures = 2, .break_duration = 3'600'000ms}});
    auto out = must(runs_->execute(ctx_, send_sms()));
    EXPECT_EQ(out.run.status(), runs::run_status::running);  // the retry worker tries again after the break
    EXPECT_EQ(vendor_->requests().size(), 2u);  // attempts 3 and 4 met an open breaker
    auto states = runs_->breaker_states();
    ASSERT_EQ(states.size(), 1u);
    EXPECT_EQ(states[0], (std::pair{connection_id_, resilience::breaker_state::open}));
    EXPECT_EQ(out.run.data().attempts, 4);
    // Retired (the connection service's hook), the connection's breaker goes: one kept per
    // connection ever retired grew the process, and the metrics' series, for its whole life.
    runs_->forget(connection_id_);
    EXPECT_TRUE(runs_->breaker_states().empty());
}

TEST_F(run_service_test, the_connections_budget_limits_the_call_rate) {
    start({reply(200, "ok")}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}},
          {.budget = rate_limit_budget{.requests_per_second = 1, .burst = 1}});
    must(runs_->execute(ctx_, send_sms()));
    must(runs_->execute(ctx_, send_sms()));  // waits up to 1 s for the next token (on the manual clock)
    EXPECT_EQ(slept_.size(), 1u);
    EXPECT_EQ(vendor_->requests().size(), 2u);
}

TEST_F(run_service_test, services_sharing_a_rate_limit_store_share_the_connections_budget) {
    resilience::rate_limiter shared(clock_);
    start({reply(200, "ok")}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}},
          {.budget = rate_limit_budget{.requests_per_second = 1, .burst = 1}, .rate_limits = &shared});
    std::vector<std::chrono::milliseconds> other_slept;
    runs::run_service other(*store_, credentials_, *blobs_, *transport_, {.allow = {net::cidr::parse("127.0.0.0/8").value()}}, dns_,
                            clock_,
                            {.max_rate_limit_wait = 0ms, .rate_limits = &shared, .sleep = [&](std::chrono::milliseconds d) { other_slept.push_back(d); }});
    must(runs_->execute(ctx_, send_sms()));
    auto second = must(other.execute(ctx_, send_sms()));  // the one token is gone: the shared budget says 429
    EXPECT_EQ(second.run.data().run_attempts.at(0).error_class, failures::failure_category::rate_limited);
    EXPECT_EQ(vendor_->requests().size(), 1u);
}

// Issue 12: a connection's retryPolicy replaces the service's retry options for its runs.
TEST_F(run_service_test, a_connections_retry_policy_replaces_the_services_retry_options) {
    start({reply(503), reply(503), reply(503), reply(200, "ok")}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}},
          {.retry = retry_policy{.max_attempts = 2, .initial_delay_ms = 300, .max_delay_ms = 1'000}});
    auto out = must(runs_->execute(ctx_, send_sms()));
    EXPECT_EQ(vendor_->requests().size(), 2u);  // the service's options would make 4 attempts
    EXPECT_EQ(out.run.data().attempts, 2);
    EXPECT_EQ(slept_, (std::vector<std::chrono::milliseconds>{150ms}));  // half of its 300 ms, not of the service's 1 s
    EXPECT_EQ(out.run.status(), runs::run_status::running);             // the retry worker takes it from here
}

TEST_F(run_service_test, a_connection_with_one_attempt_calls_the_vendor_once) {
    start({reply(503), reply(200, "ok")}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}},
          {.deferred_retries = 0, .retry = retry_policy{.max_attempts = 1, .initial_delay_ms = 100, .max_delay_ms = 100}});
    auto out = must(runs_->execute(ctx_, send_sms()));
    EXPECT_EQ(vendor_->requests().size(), 1u);
    EXPECT_EQ(out.run.status(), runs::run_status::failed);
    EXPECT_TRUE(slept_.empty());
}

// Issue 12: a connection's RateLimitBudget replaces the provider's (more generous) profile.
TEST_F(run_service_test, a_connections_budget_replaces_the_providers_rate_limit_profile) {
    start({reply(200, "ok")}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}},
          {.budget = rate_limit_budget{.requests_per_second = 0.001, .burst = 1},
           .provider_profile = rate_limit_profile{.requests_per_second = 1'000, .burst = 1'000}});
    must(runs_->execute(ctx_, send_sms()));
    // The next token is 1000 s away: each attempt gets our own 429, and the run waits for the worker.
    auto second = must(runs_->execute(ctx_, send_sms()));
    EXPECT_EQ(vendor_->requests().size(), 1u);
    EXPECT_EQ(second.run.data().run_attempts.at(0).error_class, failures::failure_category::rate_limited);
    EXPECT_FALSE(second.response.has_value());  // no vendor answer
}

// Issue 12: ConnectionEndpoint chooses the base URL by the operation's class.
TEST_F(run_service_test, an_operation_uses_the_connections_endpoint_of_its_class) {
    scripted_vendor uploads({reply(200, "uploaded")});
    dns_.add("upload.vendor.test", {*net::ip_address::parse("127.0.0.1")});
    start({reply(200, "default")}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}},
          {.endpoints = {{"upload", "http://upload.vendor.test:" + std::to_string(uploads.port()) + "/", std::nullopt}},
           .operation_class = "upload"});
    auto out = must(runs_->execute(ctx_, send_sms()));
    EXPECT_EQ(out.response->body, "uploaded");
    ASSERT_EQ(uploads.requests().size(), 1u);
    EXPECT_EQ(uploads.requests()[0].rfind("POST /v1/accounts/AC%201/messages?dry=no HTTP/1.1", 0), 0u) << uploads.requests()[0];
    EXPECT_TRUE(vendor_->requests().empty());
}

TEST_F(run_service_test, an_operation_without_an_endpoint_of_its_class_uses_the_default_one) {
    scripted_vendor fallback({reply(200, "default endpoint")});
    start({reply(200, "provider")}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}},
          {.endpoints = {{"default", "http://127.0.0.1:" + std::to_string(fallback.port()), std::nullopt}},
           .operation_class = "upload"});
    EXPECT_EQ(must(runs_->execute(ctx_, send_sms())).response->body, "default endpoint");
    EXPECT_TRUE(vendor_->requests().empty());
}

// Issue 12: a connection chooses its provider's environment; its runs use that base URL.
TEST_F(run_service_test, a_connection_in_the_sandbox_environment_calls_the_sandbox) {
    scripted_vendor sandbox({reply(200, "sandbox")});
    dns_.add("sandbox.vendor.test", {*net::ip_address::parse("127.0.0.1")});
    start({reply(200, "production")}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}},
          {.environment = "sandbox",
           .environments = {{"sandbox", "http://sandbox.vendor.test:" + std::to_string(sandbox.port())}}});
    auto out = must(runs_->execute(ctx_, send_sms()));
    EXPECT_EQ(out.response->body, "sandbox");
    EXPECT_EQ(sandbox.requests().size(), 1u);
    EXPECT_TRUE(vendor_->requests().empty());
}

TEST_F(run_service_test, a_connection_naming_an_environment_its_provider_lacks_is_refused) {
    start({reply(200)});
    auto p = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.providers().find(provider_id_); }));
    auto spec = connection_spec();
    spec.environment = "staging";
    auto refused = connections::integration_connection::create(ctx_, clock_.now(), p, spec);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error(), errc::invalid_argument);
    EXPECT_NE(refused.error().detail().find("\"staging\""), std::string::npos) << refused.error().detail();
}

// Issue 12: ConnectionScope is enforced before anything is recorded or sent.
TEST_F(run_service_test, an_operation_outside_the_granted_scopes_is_refused_before_anything_is_recorded_or_sent) {
    start({reply(200)}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}}, {.scopes = {"sms.status"}});
    auto refused = runs_->execute(ctx_, send_sms("scoped-key"));
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error(), errc::scope_not_granted);
    EXPECT_NE(refused.error().detail().find("\"sms.send\""), std::string::npos) << refused.error().detail();
    EXPECT_NE(refused.error().detail().find(connection_id_), std::string::npos) << refused.error().detail();
    EXPECT_TRUE(vendor_->requests().empty());
    EXPECT_FALSE(run_with_key("scoped-key"));
    must(store_->read(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
        EXPECT_TRUE(must(uow.runs().list({}, {})).items.empty());
        return {};
    }));
}

TEST_F(run_service_test, exhausted_attempts_leave_the_run_running_for_the_retry_worker) {
    start({reply(503, "", "Retry-After: 90\r\n")});
    auto request = send_sms();
    request.input.headers = {{"X-Trace-Note", "keep me"}};
    auto out = must(runs_->execute(ctx_, request));
    EXPECT_EQ(out.run.status(), runs::run_status::running);
    EXPECT_EQ(out.run.data().attempts, 4);
    ASSERT_TRUE(out.failure_id);
    auto f = failures_of(out.run.id());
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].id(), *out.failure_id);
    EXPECT_EQ(f[0].data().next_action, failures::next_action::retry);
    EXPECT_GE(*f[0].data().next_attempt_at, clock_.now() + 60s);  // the vendor's 90 s, capped by max_delay (60 s)
    auto input = must(blobs_->get("t1", "blob://t1/runs/" + out.run.id() + "/input"));
    EXPECT_NE(input.find("keep me"), std::string::npos);
}

// A credential the caller put in a header is kept nowhere, and a retry without it would go out
// unauthenticated (the connection's own credential goes elsewhere): the run ends when its
// attempts run out instead of waiting for the retry worker.
TEST_F(run_service_test, a_run_carrying_the_callers_own_credential_does_not_wait_for_the_retry_worker) {
    start({reply(503)});
    auto request = send_sms();
    request.input.headers = {{"X-Trace-Note", "keep me"}, {"Authorization", "Bearer user-secret"}};
    auto out = must(runs_->execute(ctx_, request));
    EXPECT_EQ(out.run.status(), runs::run_status::failed);
    EXPECT_EQ(out.run.data().attempts, 4);
    auto f = failures_of(out.run.id());
    ASSERT_EQ(f.size(), 1u);
    EXPECT_NE(f[0].data().next_action, failures::next_action::retry);
    EXPECT_EQ(blobs_->get("t1", "blob://t1/runs/" + out.run.id() + "/input").error(), errc::not_found);
    for (auto const& r : vendor_->requests()) EXPECT_NE(r.find("Bearer user-secret"), std::string::npos);
}

// Credentials go by many names: a header or query parameter named like one (a token, a key, a
// secret, a signature, `code`) is not written with the run's input for a later retry either.
TEST_F(run_service_test, a_run_whose_input_names_a_credential_anywhere_keeps_no_input) {
    start({reply(503)});
    using pairs = std::vector<std::pair<std::string, std::string>>;
    for (auto const& [headers, query] : std::vector<std::pair<pairs, pairs>>{
             {{{"X-Auth-Token", "tok_live_1"}}, {}},
             {{{"Ocp-Apim-Subscription-Key", "sub-key-1"}}, {}},
             {{{"Private-Token", "glpat-1"}}, {}},
             {{}, {{"api_key", "sk_live_1"}}},
             {{}, {{"code", "func-key-1"}}},
             {{}, {{"sig", "signed-1"}}}}) {
        auto request = send_sms();
        request.input.headers = headers;
        request.input.query = query;
        auto out = must(runs_->execute(ctx_, request));
        auto what = (headers.empty() ? query : headers).front().first;
        EXPECT_EQ(out.run.status(), runs::run_status::failed) << what;
        EXPECT_EQ(blobs_->get("t1", "blob://t1/runs/" + out.run.id() + "/input").error(), errc::not_found) << what;
    }
    // Other, plain names still wait for the worker with their input kept.
    auto request = send_sms();
    request.input.headers = {{"X-Trace-Note", "keep me"}, {"X-Partition-Key", "p1"}};
    request.input.query = {{"page", "2"}, {"author", "alice"}, {"sort_key", "date"}};
    auto out = must(runs_->execute(ctx_, request));
    EXPECT_EQ(out.run.status(), runs::run_status::running);
    EXPECT_NE(must(blobs_->get("t1", "blob://t1/runs/" + out.run.id() + "/input")).find("keep me"), std::string::npos);
}

// Escalating a failure takes it from the retry worker, which resumes only failures to retry: the
// run it kept Running ends Failed then, or nothing would ever end it. The escalation and the end
// commit together.
TEST_F(run_service_test, escalating_the_failure_of_a_run_waiting_for_the_retry_worker_fails_the_run) {
    start({reply(503, "", "Retry-After: 90\r\n")});
    auto out = must(runs_->execute(ctx_, send_sms()));
    ASSERT_EQ(out.run.status(), runs::run_status::running);
    ASSERT_TRUE(out.failure_id);
    failures::failure_service failures(*store_, clock_);
    auto escalated = must(failures.escalate(ctx_, *out.failure_id, "the vendor is down for the weekend", "OPS-7"));
    EXPECT_EQ(escalated.data().next_action, failures::next_action::escalate);
    auto run = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.runs().find(out.run.id()); }));
    EXPECT_EQ(run.status(), runs::run_status::failed);
    EXPECT_EQ(run.data().attempts, 4);
    // Nothing is left for a worker: the retry sweep and the orphan sweep find nothing to do.
    clock_.advance(24h);
    runs::retry_worker worker(*store_, *runs_, clock_);
    must(worker.sweep());
    EXPECT_EQ(vendor_->requests().size(), 4u);
    EXPECT_EQ(failures_of(out.run.id()).size(), 1u);
}

// While a retry worker holds a failure (its resume may be calling the vendor), an escalation is
// refused: accepted, the vendor would be called after a person was told the run never is again.
// Once the worker let go, the escalation ends the run, and a resume of it afterwards (a worker that
// claimed it just before) does not escalate it a second time.
TEST_F(run_service_test, an_escalation_waits_for_the_retry_workers_lease_and_is_not_repeated_by_a_later_resume) {
    start({reply(503, "", "Retry-After: 90\r\n"), reply(503), reply(503), reply(503)});
    auto out = must(runs_->execute(ctx_, send_sms()));
    ASSERT_EQ(out.run.status(), runs::run_status::running);
    ASSERT_TRUE(out.failure_id);
    clock_.advance(2h);
    auto leased = must(storage::transact_for(*store_, ctx_, [&](storage::unit_of_work& uow) {
        return uow.failures().claim_due(clock_.now(), "worker-1", clock_.now() + 2min, 1);
    }));
    ASSERT_EQ(leased.size(), 1u);
    failures::failure_service failures(*store_, clock_);
    auto refused = failures.escalate(ctx_, *out.failure_id, "the vendor is down", std::nullopt);
    ASSERT_FALSE(refused) << "escalated while a worker may be calling the vendor";
    EXPECT_EQ(refused.error(), errc::invalid_state);
    EXPECT_NE(refused.error().detail().find("being retried right now"), std::string::npos) << refused.error().detail();
    must(store_->transact(ctx_, [&](storage::unit_of_work& uow) {
        return uow.failures().release(*out.failure_id, "worker-1", std::nullopt);
    }));
    must(failures.escalate(ctx_, *out.failure_id, "the vendor is down", "OPS-9"));
    must(runs_->resume(ctx_, out.run.id(), runs::resume_reason::due));
    auto f = failures_of(out.run.id());
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].data().escalations.size(), 1u) << "escalated again by the resume";
    EXPECT_FALSE(f[0].resolved());
    EXPECT_EQ(vendor_->requests().size(), 4u);
}

// A run whose resume cannot start (its stored input unreadable now: an outage, not a loss) waits
// a lease's time and lets the runs due behind it go first: it held up every retry of its tenant.
TEST_F(run_service_test, a_resume_that_cannot_start_does_not_hold_up_the_runs_due_behind_it) {
    std::deque<std::string> script;
    for (int i = 0; i < 8; ++i) script.push_back(reply(503, "", "Retry-After: 90\r\n"));
    script.push_back(reply(200, R"({"sid":"SM2"})"));
    start(std::move(script));
    auto first = must(runs_->execute(ctx_, send_sms("first")));
    clock_.advance(1s);
    auto second = must(runs_->execute(ctx_, send_sms("second")));
    ASSERT_EQ(first.run.status(), runs::run_status::running);
    ASSERT_EQ(second.run.status(), runs::run_status::running);
    // The first run's input replaced by a link to itself: its read fails (ELOOP), and it is not gone.
    auto input = dir_.path() / "blobs" / "t1" / "runs" / first.run.id() / "input";
    ASSERT_TRUE(std::filesystem::exists(input));
    std::filesystem::remove(input);
    std::filesystem::create_symlink(input.filename(), input);
    clock_.advance(2h);
    runs::retry_worker worker(*store_, *runs_, clock_, {.threads = 1});
    (void)worker.sweep();
    auto resumed = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.runs().find(second.run.id()); }));
    EXPECT_EQ(resumed.status(), runs::run_status::completed) << "the run due behind the unreadable one was not resumed";
    auto waiting = failures_of(first.run.id());
    ASSERT_EQ(waiting.size(), 1u);
    EXPECT_FALSE(waiting[0].resolved());
    ASSERT_TRUE(waiting[0].data().next_attempt_at);
    EXPECT_GT(*waiting[0].data().next_attempt_at, clock_.now()) << "tried first again at the next sweep";
}

// A vendor that compresses unasked and echoes the credential: the echo is found in the decoded
// text and redacted in what the caller gets and in what is kept.
TEST_F(run_service_test, a_credential_echoed_in_a_compressed_answer_is_redacted) {
    auto const packed = testing::gzip(R"({"echo":"vendor-key","again":"vendor-key"})");
    start({reply(200, packed, "Content-Encoding: gzip\r\n")});
    auto out = must(runs_->execute(ctx_, send_sms()));
    EXPECT_EQ(out.run.status(), runs::run_status::completed);
    ASSERT_TRUE(out.response);
    EXPECT_EQ(out.response->body, R"({"echo":"[REDACTED]","again":"[REDACTED]"})");
    EXPECT_EQ(http::find_header(out.response->headers, "Content-Encoding"), "");
    ASSERT_TRUE(out.run.data().response_ref);
    EXPECT_EQ(must(blobs_->get("t1", *out.run.data().response_ref)), out.response->body);
    ASSERT_EQ(vendor_->requests().size(), 1u);
    EXPECT_NE(vendor_->requests()[0].find("Accept-Encoding: identity\r\n"), std::string::npos) << vendor_->requests()[0];
}

TEST_F(run_service_test, caller_headers_that_frame_route_or_take_the_credentials_place_are_refused_before_recording) {
    start({reply(200, "ok")});
    std::vector<std::pair<std::string, std::string>> const refused{
        {"Content-Length", "0"}, {"transfer-encoding", "chunked"}, {"Host", "internal.example"}, {"Connection", "close"},
        {"Keep-Alive", "timeout=5"}, {"Upgrade", "h2c"}, {"TE", "trailers"}, {"Trailer", "X"}, {"Proxy-Authorization", "x"},
        {"Proxy-Anything", "x"}, {"X-Note", "a\r\nContent-Length: 0"}, {"X-Note", "a\nb"}, {"X-Note", std::string("a\0b", 3)},
        {"X-Note\r\nHost", "x"}, {"X Note", "x"}, {"X:Note", "x"}, {"", "x"}, {"X-Api-Key", "mine"}, {"x-api-key", "mine"},
        // The library asks for uncompressed answers itself.
        {"Accept-Encoding", "gzip"}, {"accept-encoding", "br"}};
    for (std::size_t i = 0; i < refused.size(); ++i) {
        auto const& [name, value] = refused[i];
        auto request = send_sms("key-" + std::to_string(i));
        request.input.headers = {{"X-Fine", "ok"}, {name, value}};
        auto out = runs_->execute(ctx_, request);
        ASSERT_FALSE(out) << name;
        EXPECT_EQ(out.error(), errc::invalid_argument) << name;
        EXPECT_NE(out.error().detail().find("input.headers"), std::string::npos) << out.error().detail();
    }
    EXPECT_TRUE(vendor_->requests().empty());
    auto recorded = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.runs().list({}, {}); }));
    EXPECT_TRUE(recorded.items.empty()) << "a refused request records nothing, not even its idempotency key";
    // A well-formed header still reaches the vendor.
    auto request = send_sms();
    request.input.headers = {{"X-Note", "tab\tand UTF-8 \xc3\xa9"}};
    must(runs_->execute(ctx_, request));
    ASSERT_EQ(vendor_->requests().size(), 1u);
    EXPECT_NE(vendor_->requests()[0].find("X-Note: tab\tand UTF-8 \xc3\xa9\r\n"), std::string::npos);
}

TEST_F(run_service_test, a_query_parameter_named_like_a_query_placed_key_is_refused) {
    start({reply(200, "ok")});
    auto cred = must(credentials_.create(ctx_, {.provider_id = provider_id_, .secret = secret_bytes("query-key-1"),
                                                .api_key = credentials::api_key_placement{.in = "query", .name = "api_key"}}));
    std::string conn;
    must(store_->transact(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
        auto spec = connection_spec("proj-2");
        spec.endpoints.clear();
        spec.credential_id = cred.id();
        auto c = must(connections::integration_connection::create(ctx_, clock_.now(), must(uow.providers().find(provider_id_)), spec));
        must(c.record_health({health_status::healthy, "ok"}, clock_.now()));
        must(c.activate(true, clock_.now()));
        conn = c.id();
        return uow.connections().save(c);
    }));
    auto request = send_sms();
    request.connection_id = conn;
    request.input.query = {{"api_key", "chosen-by-the-caller"}};
    auto out = runs_->execute(ctx_, request);
    ASSERT_FALSE(out);
    EXPECT_EQ(out.error(), errc::invalid_argument);
    EXPECT_NE(out.error().detail().find("input.query"), std::string::npos) << out.error().detail();
    EXPECT_TRUE(vendor_->requests().empty());
    request.input.query = {{"dry", "no"}};
    must(runs_->execute(ctx_, request));
    EXPECT_NE(vendor_->requests().at(0).find("?dry=no&api_key=query-key-1 HTTP/1.1"), std::string::npos);
}

TEST_F(run_service_test, a_path_parameter_is_one_encoded_segment_and_dot_segments_are_refused) {
    start({reply(200, "ok")});
    // An empty one is refused too: /accounts//messages (or /contacts/ for /contacts/{id}) is another resource.
    // Nor may any piece of it between '/' or '\\' (encoded or not) be one: it is sent as one
    // encoded segment, but a server that decodes %2F before routing would step out of the path.
    for (std::string value : {".", "..", "", "../admin", "%2e%2e", "..\\x", "a/%2E./b", "..%2fx", "x?/../admin", "x#/.."}) {
        auto request = send_sms();
        request.input.path_params["account"] = value;
        auto out = runs_->execute(ctx_, request);
        ASSERT_FALSE(out) << value;
        EXPECT_EQ(out.error(), errc::invalid_argument);
        EXPECT_NE(out.error().detail().find("pathParams.account"), std::string::npos) << out.error().detail();
    }
    std::vector<std::pair<std::string, std::string>> const sent{
        {"a/b", "a%2Fb"}, {"...", "..."}, {"..a\\b..", "..a%5Cb.."}, {"%41", "%2541"}};
    for (auto const& [value, encoded] : sent) {
        auto request = send_sms();
        request.input.path_params["account"] = value;
        must(runs_->execute(ctx_, request));
        auto head = vendor_->requests().back();
        EXPECT_EQ(head.rfind("POST /v1/accounts/" + encoded + "/messages?dry=no HTTP/1.1", 0), 0u) << head;
    }
}

TEST_F(run_service_test, runs_execute_asynchronously_on_the_services_threads) {
    start({reply(200, "ok")});
    std::vector<std::future<result<runs::run_outcome>>> pending;
    for (int i = 0; i < 6; ++i) pending.push_back(runs_->execute_async(ctx_, send_sms()));
    for (auto& f : pending) EXPECT_EQ(must(f.get()).run.status(), runs::run_status::completed);
    EXPECT_EQ(vendor_->requests().size(), 6u);
}

/** A vendor on loopback that holds every request until `release()`, then answers each 200; one
 *  thread for all its connections. */
class holding_vendor {
public:
    /** The first `fail_first` requests are answered 503 at once instead of held. */
    explicit holding_vendor(int fail_first = 0) : fail_first_(fail_first) {
        auto const l = listen_tcp("127.0.0.1", 0, 256);
        fd_ = l.fd;
        port_ = l.port;
        thread_ = std::thread([this] { serve(); });
    }
    ~holding_vendor() {
        stop_ = true;
        thread_.join();
        for (auto& c : conns_) ::close(c.fd);
        ::close(fd_);
    }
    std::uint16_t port() const { return port_; }
    int held() const { return held_.load(); }
    void release() { release_ = true; }

private:
    struct conn {
        int fd;
        std::string in;
        bool held = false;
        bool closed = false;  // the client went away: no longer polled
    };
    void serve() {
        while (!stop_) {
            std::vector<pollfd> fds{{fd_, POLLIN, 0}};
            for (auto const& c : conns_) fds.push_back({c.fd, static_cast<short>(c.closed ? 0 : POLLIN), 0});
            ::poll(fds.data(), fds.size(), 10);
            if (fds[0].revents & POLLIN) conns_.push_back({::accept(fd_, nullptr, nullptr), {}});
            for (std::size_t i = 1; i < fds.size(); ++i) {
                auto& c = conns_[i - 1];
                if (!(fds[i].revents & (POLLIN | POLLHUP))) continue;
                char buf[4096];
                auto n = ::read(c.fd, buf, sizeof buf);
                if (n <= 0) c.closed = true;
                if (n > 0) c.in.append(buf, static_cast<std::size_t>(n));
                if (!c.held && c.in.find("\r\n\r\n") != std::string::npos) {
                    if (fail_first_ > 0) {
                        --fail_first_;
                        static constexpr std::string_view busy = "HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n";
                        (void)::write(c.fd, busy.data(), busy.size());
                        c.in.clear();
                        continue;
                    }
                    c.held = true;
                    ++held_;
                }
            }
            if (!release_) continue;
            for (auto& c : conns_)
                if (c.held) {  // answered; a kept-alive connection's next request is read afresh
                    static constexpr std::string_view ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    (void)::write(c.fd, ok.data(), ok.size());
                    c.held = false;
                    c.in.clear();
                }
        }
    }
    int fd_ = -1;
    std::uint16_t port_ = 0;
    int fail_first_;  // the serving thread's own
    std::atomic<bool> stop_{false}, release_{false};
    std::atomic<int> held_{0};
    std::vector<conn> conns_;  // the serving thread's own
    std::thread thread_;
};

std::size_t threads_of_this_process() {
    std::size_t n = 0;
    for ([[maybe_unused]] auto const& e : std::filesystem::directory_iterator("/proc/self/task")) ++n;
    return n;
}

// The service's threads are shared by every tenant: one tenant's runs blocked on their vendor (or
// on a slow name lookup, or a token endpoint) hold at most half of them, and another tenant's run
// is executed meanwhile instead of queueing behind them.
TEST_F(run_service_test, one_tenants_blocked_runs_hold_at_most_half_of_the_threads) {
    holding_vendor stuck;
    start({reply(200, "b")});
    auto const other = request_context::for_tenant("t2", "bob");
    auto stuck_connection = tenant_connection(other, stuck.port());
    std::vector<std::future<result<runs::run_outcome>>> held;
    for (int i = 0; i < 8; ++i) {
        auto r = send_sms();
        r.connection_id = stuck_connection;
        held.push_back(runs_->execute_async(other, std::move(r)));
    }
    for (int i = 0; i < 500 && stuck.held() < 2; ++i) std::this_thread::sleep_for(10ms);
    auto mine = runs_->execute_async(ctx_, send_sms());
    auto ready = mine.wait_for(10s);
    EXPECT_EQ(ready, std::future_status::ready) << "t1's run waited behind t2's blocked runs";
    EXPECT_EQ(stuck.held(), 2) << "t2's runs hold half of the 4 threads, no more";
    stuck.release();
    if (ready == std::future_status::ready) {
        EXPECT_EQ(must(mine.get()).response->body, "b");
    }
    for (auto& f : held) EXPECT_EQ(must(f.get()).run.status(), runs::run_status::completed);
}

// Twins of a keyed run that are execute_async jobs hold their tenant's share of the threads while
// they wait for the run: its record and report do not queue behind them.
TEST_F(run_service_test, execute_async_twins_waiting_for_their_run_do_not_hold_its_report_back) {
    start({"SLOW " + reply(200, "once")}, {.allow = {net::cidr::parse("127.0.0.1/32").value()}},
          {.idempotency_wait = 3'000ms});
    std::promise<result<runs::run_outcome>> owner;
    auto const began = std::chrono::steady_clock::now();
    runs_->execute(ctx_, send_sms("k"), [&](result<runs::run_outcome> out) { owner.set_value(std::move(out)); });
    auto a = runs_->execute_async(ctx_, send_sms("k"));
    auto b = runs_->execute_async(ctx_, send_sms("k"));
    auto first = owner.get_future().get();
    auto const took = std::chrono::steady_clock::now() - began;
    EXPECT_LT(took, 2s) << "the run's report waited for its twins' idempotency wait";
    ASSERT_TRUE(first);
    for (auto* twin : {&a, &b}) {
        auto out = twin->get();
        ASSERT_TRUE(out) << out.error().message();
        EXPECT_TRUE(out->replayed);
        EXPECT_EQ(out->run.id(), first->run.id());
    }
    EXPECT_EQ(vendor_->requests().size(), 1u);
}

// The service destroyed while an execute_async run owns a key that a handler twin waits for, and
// that run records nothing: the twin executes itself while the service stops, and nothing is
// left to crash on.
TEST_F(run_service_test, a_twin_that_executes_itself_while_the_service_stops_is_run_and_reported) {
    start({reply(200, "late")}, {.allow = {net::cidr::parse("127.0.0.1/32").value()}}, {.idempotency_wait = 10'000ms});
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(dir_.file("i.db").c_str(), &raw), SQLITE_OK);
    // The owner's claim waits for this lock, then the trigger refuses it: it records nothing.
    ASSERT_EQ(sqlite3_exec(raw, "BEGIN IMMEDIATE; CREATE TRIGGER refuse_runs BEFORE INSERT ON runs BEGIN SELECT RAISE(ABORT, 'refused'); END;",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    auto owner = runs_->execute_async(ctx_, send_sms("k"));
    for (auto const until = std::chrono::steady_clock::now() + 30s;
         !a_thread_sleeps("integ-sql-write") && std::chrono::steady_clock::now() < until;)
        std::this_thread::sleep_for(1ms);
    std::promise<result<runs::run_outcome>> told;
    auto twin = told.get_future();
    runs_->execute(ctx_, send_sms("k"), [&](result<runs::run_outcome> out) { told.set_value(std::move(out)); });
    std::thread committer([&] {
        std::this_thread::sleep_for(300ms);
        sqlite3_exec(raw, "COMMIT", nullptr, nullptr, nullptr);
    });
    runs_.reset();
    committer.join();
    EXPECT_FALSE(owner.get());
    ASSERT_EQ(twin.wait_for(0s), std::future_status::ready) << "the twin was never told";
    sqlite3_close(raw);
}

// execute with a handler returns once the vendor call has started: one calling thread puts 48
// runs in flight at once against a vendor that holds them all, with fewer threads in the process
// than runs, and each is reported once the vendor answers.
TEST_F(run_service_test, runs_waiting_on_their_vendor_hold_no_thread_each) {
    holding_vendor vendor;
    start({reply(200, "unused")}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}},
          {.write_behind = true, .vendor_port = vendor.port()});
    constexpr int runs = 48;
    std::mutex mutex;
    std::condition_variable cv;
    int reported = 0, completed = 0;
    for (int i = 0; i < runs; ++i)
        runs_->execute(ctx_, send_sms(), [&](result<runs::run_outcome> out) {
            std::lock_guard lock(mutex);
            ++reported;
            if (out && out->run.status() == runs::run_status::completed && out->response && out->response->body == "ok") ++completed;
            cv.notify_all();
        });
    {
        std::lock_guard lock(mutex);
        EXPECT_EQ(reported, 0) << "no run can end before the vendor answers";
    }
    for (int i = 0; i < 1000 && vendor.held() < runs; ++i) std::this_thread::sleep_for(10ms);
    EXPECT_EQ(vendor.held(), runs) << "every run's call is in flight at once";
    EXPECT_LT(threads_of_this_process(), static_cast<std::size_t>(runs));
    vendor.release();
    std::unique_lock lock(mutex);
    EXPECT_TRUE(cv.wait_for(lock, 30s, [&] { return reported == runs; })) << reported;
    EXPECT_EQ(completed, runs);
    lock.unlock();
    must(runs_->flush());
    auto stored = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) {
        return uow.runs().list({.status = runs::run_status::completed}, {.limit = 500});
    }));
    EXPECT_EQ(stored.items.size(), static_cast<std::size_t>(runs));
}

// The wait before a run's next attempt is a timer, not a sleeping thread: while run A waits
// 500 ms after its vendor's 503, run B's call goes out and is answered, and B is reported before
// A's second call is sent (a sleep on the transport's thread would hold B's call behind it).
TEST_F(run_service_test, a_run_waiting_between_attempts_delays_no_other_run) {
    start({reply(503), reply(200, "b"), reply(200, "a")}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}},
          {.write_behind = true, .real_waits = true});
    std::promise<result<runs::run_outcome>> a, b;
    runs_->execute(ctx_, send_sms(), [&](result<runs::run_outcome> out) { a.set_value(std::move(out)); });
    for (int i = 0; i < 500 && vendor_->requests().empty(); ++i) std::this_thread::sleep_for(10ms);
    ASSERT_EQ(vendor_->requests().size(), 1u);
    std::size_t seen_when_b_ended = 0;
    runs_->execute(ctx_, send_sms(), [&](result<runs::run_outcome> out) {
        seen_when_b_ended = vendor_->requests().size();
        b.set_value(std::move(out));
    });
    auto b_out = must(b.get_future().get());
    EXPECT_EQ(seen_when_b_ended, 2u) << "A's retry went out before B was answered";
    ASSERT_TRUE(b_out.response);
    EXPECT_EQ(b_out.response->body, "b");
    auto a_out = must(a.get_future().get());
    EXPECT_EQ(a_out.run.status(), runs::run_status::completed);
    EXPECT_EQ(a_out.run.data().attempts, 2);
    EXPECT_TRUE(slept_.empty());
}

// A 401 on a bearer token refreshes the token once and sends again. The refresh is a blocking
// token request, so it never runs on the transport's thread: while run A's refresh is held by
// its token endpoint, run B's call goes out and is answered.
TEST_F(run_service_test, a_token_refresh_after_a_401_delays_no_other_run) {
    start({reply(401), reply(200, "b"), reply(200, "a")}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}},
          {.write_behind = true, .real_waits = true});
    std::mutex mutex;
    std::condition_variable cv;
    int token_requests = 0;
    bool released = false;
    keep_alive_server idp([&](received_request const&) {
        std::unique_lock lock(mutex);
        int const n = ++token_requests;
        cv.notify_all();
        if (n == 2) cv.wait_for(lock, 30s, [&] { return released; });
        return http_answer_bytes(200, R"({"access_token":"tok-)" + std::to_string(n) + R"(","token_type":"Bearer","expires_in":3600})");
    });
    auto cred = must(credentials_.create(
        ctx_, {.provider_id = provider_id_, .auth_mode = auth_mode::oauth2_client_credentials, .secret = secret_bytes("cs-client-secret"),
               .oauth2 = credentials::oauth2_client_settings{"http://127.0.0.1:" + std::to_string(idp.port()) + "/token", "client-1", {}}}));
    auto const bearer_connection = connection_with(cred.id(), "proj-2");

    std::promise<result<runs::run_outcome>> a, b;
    auto a_request = send_sms();
    a_request.connection_id = bearer_connection;
    runs_->execute(ctx_, std::move(a_request), [&](result<runs::run_outcome> out) { a.set_value(std::move(out)); });
    {
        std::unique_lock lock(mutex);
        ASSERT_TRUE(cv.wait_for(lock, 20s, [&] { return token_requests == 2; })) << "A's 401 never refreshed its token";
    }
    bool held_when_b_ended = false;
    runs_->execute(ctx_, send_sms(), [&](result<runs::run_outcome> out) {
        {
            std::lock_guard lock(mutex);
            held_when_b_ended = !released;
        }
        b.set_value(std::move(out));
    });
    auto b_future = b.get_future();
    bool b_ended = b_future.wait_for(10s) == std::future_status::ready;
    {
        std::lock_guard lock(mutex);
        released = true;
    }
    cv.notify_all();
    EXPECT_TRUE(b_ended) << "B waited for A's token request";
    auto b_out = must(b_future.get());
    EXPECT_TRUE(held_when_b_ended) << "B was answered only after A's token request";
    ASSERT_TRUE(b_out.response);
    EXPECT_EQ(b_out.response->body, "b");
    auto a_out = must(a.get_future().get());
    EXPECT_EQ(a_out.run.status(), runs::run_status::completed);
    ASSERT_TRUE(a_out.response);
    EXPECT_EQ(a_out.response->body, "a");
    auto calls = vendor_->requests();
    ASSERT_EQ(calls.size(), 3u);
    EXPECT_NE(calls[0].find("Bearer tok-1"), std::string::npos) << calls[0];
    EXPECT_NE(calls[2].find("Bearer tok-2"), std::string::npos) << calls[2];
}

TEST_F(run_service_test, a_cancelled_run_fails_without_a_later_retry) {
    start({"HANG"});
    auto request = send_sms();
    auto cancel = std::make_shared<http::cancellation>();
    request.cancel = cancel;
    auto pending = runs_->execute_async(ctx_, request);
    while (vendor_->requests().empty()) std::this_thread::sleep_for(5ms);
    cancel->cancel();
    auto out = must(pending.get());
    EXPECT_EQ(out.run.status(), runs::run_status::failed);
    EXPECT_EQ(out.run.data().attempts, 1);
    auto f = failures_of(out.run.id());
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].data().error_code, "cancelled");
    EXPECT_EQ(f[0].data().next_action, failures::next_action::dead_letter);
}

runs::run_status status_of(storage::store& store, request_context const& ctx, std::string const& run_id) {
    return must(storage::read_for(store, ctx, [&](storage::unit_of_work& uow) { return uow.runs().find(run_id); })).status();
}

TEST_F(run_service_test, the_retry_worker_completes_a_waiting_run_when_it_is_due_and_resolves_its_failure) {
    start({reply(503), reply(503), reply(503), reply(503), reply(200, "done")});
    auto out = must(runs_->execute(ctx_, send_sms()));
    ASSERT_EQ(out.run.status(), runs::run_status::running);
    runs::retry_worker worker(*store_, *runs_, clock_);
    EXPECT_EQ(must(worker.sweep()), 0u);  // not due yet
    clock_.advance(61s);
    EXPECT_EQ(must(worker.sweep()), 1u);
    auto run = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.runs().find(out.run.id()); }));
    EXPECT_EQ(run.status(), runs::run_status::completed);
    EXPECT_EQ(run.data().attempts, 5);  // attempts never decrease: the retry continued the same run
    EXPECT_EQ(must(blobs_->get("t1", *run.data().response_ref)), "done");
    auto f = failures_of(out.run.id());
    ASSERT_EQ(f.size(), 1u);
    EXPECT_TRUE(f[0].resolved());
    EXPECT_EQ(vendor_->requests().back().rfind("POST /v1/accounts/AC%201/messages?dry=no", 0), 0u);  // same input
    EXPECT_EQ(must(worker.sweep()), 0u);
}

// A run its caller permitted on a Degraded connection is retried under the same terms.
TEST_F(run_service_test, a_run_permitted_on_a_degraded_connection_is_retried_on_it) {
    start({reply(503), reply(503), reply(503), reply(503), reply(200, "done")});
    must(store_->transact(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
        auto c = must(uow.connections().find(connection_id_));
        must(c.record_health({health_status::degraded, "slow answers"}, clock_.now()));
        return uow.connections().save(c);
    }));
    auto request = send_sms();
    request.allow_degraded = true;
    auto out = must(runs_->execute(ctx_, request));
    ASSERT_EQ(out.run.status(), runs::run_status::running);
    runs::retry_worker worker(*store_, *runs_, clock_);
    clock_.advance(61s);
    EXPECT_EQ(must(worker.sweep()), 1u);
    EXPECT_EQ(status_of(*store_, ctx_, out.run.id()), runs::run_status::completed);
    EXPECT_EQ(vendor_->requests().size(), 5u);
}

TEST_F(run_service_test, the_retry_worker_fails_the_run_and_escalates_when_retries_are_exhausted) {
    start({reply(503)}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}}, {.deferred_retries = 1});
    auto out = must(runs_->execute(ctx_, send_sms()));
    runs::retry_worker worker(*store_, *runs_, clock_);
    clock_.advance(61s);
    EXPECT_EQ(must(worker.sweep()), 1u);
    EXPECT_EQ(status_of(*store_, ctx_, out.run.id()), runs::run_status::failed);
    auto f = failures_of(out.run.id());
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].data().next_action, failures::next_action::escalate);
    ASSERT_EQ(f[0].data().escalations.size(), 1u);
    EXPECT_EQ(f[0].data().escalations[0].escalated_by, "retry-worker");
    EXPECT_NE(f[0].data().escalations[0].reason.find("http_503"), std::string::npos);
    EXPECT_EQ(f[0].data().attempt, 2);
    clock_.advance(3600s);
    EXPECT_EQ(must(worker.sweep()), 0u);  // escalated: never retried automatically again
    EXPECT_EQ(vendor_->requests().size(), 8u);
}

// Tenants are swept side by side: tenant a-slow (swept first, by name) has runs whose resumed
// calls hang at their vendor, and t1's due run is resumed and completed meanwhile.
TEST_F(run_service_test, the_retry_worker_resumes_one_tenants_runs_while_anothers_hang) {
    holding_vendor stuck(3 * 4);  // each of a-slow's 3 runs fails its 4 attempts, then its resume is held
    start({reply(503), reply(503), reply(503), reply(503), reply(200, "done")},
          {.allow = {net::cidr::parse("127.0.0.0/8").value()}}, {.breaker = {.consecutive_failures = 1'000}});
    auto const slow = request_context::for_tenant("a-slow", "bob");
    auto slow_connection = tenant_connection(slow, stuck.port());
    for (int i = 0; i < 3; ++i) {
        auto r = send_sms();
        r.connection_id = slow_connection;
        ASSERT_EQ(must(runs_->execute(slow, std::move(r))).run.status(), runs::run_status::running);
    }
    auto mine = must(runs_->execute(ctx_, send_sms()));
    ASSERT_EQ(mine.run.status(), runs::run_status::running);
    clock_.advance(61s);
    runs::retry_worker worker(*store_, *runs_, clock_);
    std::size_t handled = 0;
    std::thread sweeping([&] { handled = must(worker.sweep()); });
    for (int i = 0; i < 1000 && status_of(*store_, ctx_, mine.run.id()) != runs::run_status::completed; ++i)
        std::this_thread::sleep_for(10ms);
    EXPECT_EQ(status_of(*store_, ctx_, mine.run.id()), runs::run_status::completed) << "t1 waited for a-slow's vendor";
    for (int i = 0; i < 500 && stuck.held() < 1; ++i) std::this_thread::sleep_for(10ms);
    EXPECT_EQ(stuck.held(), 1) << "a-slow's first resume is held, and its others wait for it";
    stuck.release();
    sweeping.join();
    EXPECT_GE(handled, 2u);
}

// Nor past its first batch: a tenant that spent its batch takes another turn while the hanging
// tenant's part is still running (the sweep waited for it, holding every other tenant to one
// batch per sweep for as long as the vendor hung).
TEST_F(run_service_test, the_retry_worker_drains_one_tenants_runs_past_its_batch_while_anothers_hang) {
    holding_vendor stuck(4);  // a-slow's run fails its 4 attempts, then its resume is held
    std::deque<std::string> script(12, reply(503));
    for (int i = 0; i < 3; ++i) script.push_back(reply(200, "done"));
    start(script, {.allow = {net::cidr::parse("127.0.0.0/8").value()}}, {.breaker = {.consecutive_failures = 1'000}});
    auto const slow = request_context::for_tenant("a-slow", "bob");
    auto r = send_sms();
    r.connection_id = tenant_connection(slow, stuck.port());
    ASSERT_EQ(must(runs_->execute(slow, std::move(r))).run.status(), runs::run_status::running);
    std::vector<std::string> mine;
    for (int i = 0; i < 3; ++i) mine.push_back(must(runs_->execute(ctx_, send_sms())).run.id());
    clock_.advance(61s);
    runs::retry_worker worker(*store_, *runs_, clock_, {.batch = 1});
    std::size_t handled = 0;
    std::thread sweeping([&] { handled = must(worker.sweep()); });
    auto all_done = [&] {
        return std::all_of(mine.begin(), mine.end(),
                           [&](auto const& id) { return status_of(*store_, ctx_, id) == runs::run_status::completed; });
    };
    for (int i = 0; i < 1000 && !all_done(); ++i) std::this_thread::sleep_for(10ms);
    EXPECT_TRUE(all_done()) << "t1 resumed one batch, then waited for a-slow's vendor";
    EXPECT_EQ(stuck.held(), 1);
    stuck.release();
    sweeping.join();
    EXPECT_EQ(handled, 4u);
}

// A stop ends the sweep's turns: no failure is taken after it.
TEST_F(run_service_test, a_stopped_retry_sweep_takes_no_further_failure) {
    std::deque<std::string> script(12, reply(503));
    for (int i = 0; i < 3; ++i) script.push_back(reply(200, "done"));
    start(script, {.allow = {net::cidr::parse("127.0.0.0/8").value()}}, {.breaker = {.consecutive_failures = 1'000}});
    for (int i = 0; i < 3; ++i) must(runs_->execute(ctx_, send_sms()));
    clock_.advance(61s);
    runs::retry_worker worker(*store_, *runs_, clock_);
    std::atomic<bool> stop{true};
    EXPECT_EQ(must(worker.sweep(stop)), 0u);
    EXPECT_EQ(vendor_->requests().size(), 12u);
    stop = false;
    EXPECT_EQ(must(worker.sweep(stop)), 3u);
}

TEST_F(run_service_test, two_retry_workers_on_one_database_never_take_the_same_failure) {
    std::deque<std::string> script(24, reply(503));
    script.push_back(reply(200, "ok"));
    start(script, {.allow = {net::cidr::parse("127.0.0.0/8").value()}}, {.breaker = {.consecutive_failures = 1'000}});
    std::vector<std::string> waiting;
    for (int i = 0; i < 6; ++i) waiting.push_back(must(runs_->execute(ctx_, send_sms())).run.id());
    auto second_store = must(storage::open_sqlite_store({.path = dir_.file("i.db"), .clock = &clock_}));
    runs::run_service second_runs(*second_store, credentials_, *blobs_, *transport_,
                                  net::egress_policy{.allow = {net::cidr::parse("127.0.0.0/8").value()}}, dns_, clock_);
    runs::retry_worker a(*store_, *runs_, clock_, {.batch = 2});
    runs::retry_worker b(*second_store, second_runs, clock_, {.batch = 2});
    clock_.advance(61s);
    std::size_t handled_a = 0, handled_b = 0;
    std::thread ta([&] { for (int i = 0; i < 4; ++i) handled_a += must(a.sweep()); });
    std::thread tb([&] { for (int i = 0; i < 4; ++i) handled_b += must(b.sweep()); });
    ta.join();
    tb.join();
    EXPECT_EQ(handled_a + handled_b, 6u);
    for (auto const& id : waiting) EXPECT_EQ(status_of(*store_, ctx_, id), runs::run_status::completed);
    EXPECT_EQ(vendor_->requests().size(), 24u + 6u);  // each waiting run was executed again exactly once
}

// A retry worker leases each failure as it resumes its run, not all of a batch at once: a lease
// taken for the batch could lapse before its last run, which another worker would resume too.
TEST_F(run_service_test, a_retry_worker_leases_one_failure_at_a_time) {
    std::atomic<int> calls{0};
    std::vector<std::string> leased_at_resume;
    loopback_server vendor([&](int fd, loopback_server&) {
        std::string r = reply(503);
        if (++calls > 8) {  // two runs, four attempts each, then the resumes
            leased_at_resume.push_back(
                query_rows(dir_.file("i.db"), "SELECT count(*) FROM failures WHERE lease_owner IS NOT NULL", {}).at(0));
            r = reply(200, "ok");
        }
        (void)::write(fd, r.data(), r.size());
    });
    start({reply(200)}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}},
          {.breaker = {.consecutive_failures = 1'000}, .vendor_port = vendor.port()});
    for (int i = 0; i < 2; ++i) ASSERT_EQ(must(runs_->execute(ctx_, send_sms())).run.status(), runs::run_status::running);
    clock_.advance(61s);
    runs::retry_worker worker(*store_, *runs_, clock_, {.batch = 50});
    EXPECT_EQ(must(worker.sweep()), 2u);
    EXPECT_EQ(leased_at_resume, (std::vector<std::string>{"1", "1"})) << "more than the failure being resumed was leased";
}

TEST_F(run_service_test, a_retry_worker_killed_mid_sweep_leaves_a_lease_that_expires_for_the_next_one) {
    SKIP_FORK_UNDER_ASAN();
    start({reply(503), reply(503), reply(503), reply(503), "HANG", reply(200, "after restart")});
    auto id = must(runs_->execute(ctx_, send_sms())).run.id();
    auto due = clock_.now() + 61s;
    // A whole worker process of its own on the same files; it hangs in the vendor call.
    pid_t child = fork_service(due, {.attempt_timeout = 600'000ms}, [](storage::store& store, runs::run_service& service, clock const& clk) {
        runs::retry_worker worker(store, service, clk, {.owner = "doomed", .lease = 60'000ms});
        (void)worker.sweep();
    });
    ASSERT_GE(child, 0);
    while (vendor_->requests().size() < 5) std::this_thread::sleep_for(5ms);  // the child is in the call
    kill_process(child);
    EXPECT_EQ(status_of(*store_, ctx_, id), runs::run_status::running);
    runs::retry_worker restarted(*store_, *runs_, clock_, {.owner = "restarted"});
    clock_.set(due + 30s);
    EXPECT_EQ(must(restarted.sweep()), 0u);  // the dead worker's lease still holds
    // The 60 s it asked for were raised to the longest its run can take (a 600 s attempt): a
    // call still in flight at 61 s would otherwise be made a second time.
    clock_.set(due + 61s);
    EXPECT_EQ(must(restarted.sweep()), 0u);
    clock_.set(due + 3600s);
    EXPECT_EQ(must(restarted.sweep()), 1u);  // expired: taken over
    EXPECT_EQ(status_of(*store_, ctx_, id), runs::run_status::completed);
    EXPECT_TRUE(failures_of(id).at(0).resolved());
}

// The vendor refused the POST unread (429), so the worker may send it again; the worker that did
// died in the call, which the vendor may have acted on: the next worker does not send it a third time.
TEST_F(run_service_test, an_unkeyed_post_whose_resume_was_killed_in_the_call_is_not_sent_again) {
    SKIP_FORK_UNDER_ASAN();
    auto const limited = reply(429, "", "Retry-After: 1\r\n");
    start({limited, limited, limited, limited, "HANG", reply(200, "charged twice")},
          {.allow = {net::cidr::parse("127.0.0.0/8").value()}}, {.idempotency_header = std::nullopt});
    auto id = must(runs_->execute(ctx_, send_sms())).run.id();
    auto due = clock_.now() + 61s;
    pid_t child = fork_service(due, {.attempt_timeout = 600'000ms}, [](storage::store& store, runs::run_service& service, clock const& clk) {
        runs::retry_worker worker(store, service, clk, {.owner = "doomed"});
        (void)worker.sweep();
    });
    ASSERT_GE(child, 0);
    while (vendor_->requests().size() < 5) std::this_thread::sleep_for(5ms);  // the child is in the call
    kill_process(child);
    runs::retry_worker restarted(*store_, *runs_, clock_, {.owner = "restarted"});
    clock_.set(due + 3600s);  // the dead worker's lease ran out
    EXPECT_EQ(must(restarted.sweep()), 1u);
    EXPECT_EQ(vendor_->requests().size(), 5u);
    expect_failed_as_interrupted(id);
    auto escalations = failures_of(id).at(0).data().escalations;
    ASSERT_FALSE(escalations.empty());
    EXPECT_NE(escalations.back().reason.find("not sent again"), std::string::npos) << escalations.back().reason;
    clock_.advance(3600s);
    EXPECT_EQ(must(restarted.sweep()), 0u);
    EXPECT_EQ(vendor_->requests().size(), 5u);
}

// A resume that called the vendor but could not record the outcome keeps its lease: the next
// worker, once it lapses, does not send the POST again (before, it was released and due again).
TEST_F(run_service_test, an_unkeyed_post_whose_resume_could_not_record_its_outcome_is_not_sent_again) {
    auto id = unkeyed_post_waiting_for_the_worker(reply(200, "charged"));
    refuse_run_updates(true);
    runs::retry_worker worker(*store_, *runs_, clock_);
    clock_.advance(61s);
    EXPECT_FALSE(worker.sweep());  // the vendor was called; its outcome was not recorded
    ASSERT_EQ(vendor_->requests().size(), 5u);
    refuse_run_updates(false);
    clock_.advance(61s);
    EXPECT_EQ(must(worker.sweep()), 0u);  // still this worker's
    clock_.advance(3600s);
    EXPECT_EQ(must(worker.sweep()), 1u);
    EXPECT_EQ(vendor_->requests().size(), 5u);
    expect_failed_as_interrupted(id);
}

// A resume that failed before it could call the vendor gives the lease back: the run is due
// again a lease later (the runs due behind it go first meanwhile), and is resumed as due, not as
// interrupted.
TEST_F(run_service_test, a_resume_that_failed_before_its_call_gives_its_lease_back) {
    auto id = unkeyed_post_waiting_for_the_worker(reply(200, "ok"));
    retire_connection();
    refuse_run_updates(true);
    runs::retry_worker worker(*store_, *runs_, clock_);
    clock_.advance(61s);
    EXPECT_FALSE(worker.sweep());  // not executable, and that could not be recorded
    refuse_run_updates(false);
    EXPECT_EQ(must(worker.sweep()), 0u);  // not yet due again
    clock_.advance(1h);  // past the worker's lease (at least the run's longest execution)
    EXPECT_EQ(must(worker.sweep()), 1u);  // the lease was given back
    EXPECT_EQ(vendor_->requests().size(), 4u);
    auto f = failures_of(id);
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].data().error_code, "not_executable");
    EXPECT_EQ(f[0].data().next_action, failures::next_action::dead_letter);
}

// A provider's operation is served by its Active client of the highest version, whatever the
// order of registration: a new version took over nothing (the oldest Active client kept
// answering every operation it offered).
TEST_F(run_service_test, an_operation_is_served_by_the_highest_active_client_version) {
    start({reply(200, "ok"), reply(200, "ok")});
    auto add_client = [&](std::string const& version, std::string const& path) {
        clock_.advance(1s);  // ids follow the time of registration
        must(store_->transact(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
            auto p = must(uow.providers().find(provider_id_));
            auto spec = client_spec("Acme.Sms.ApiClient", version);
            spec.operations = {{"sms.send", "POST", path}};
            auto c = must(providers::external_api_client::register_new(ctx_, clock_.now(), p, spec));
            must(c.activate());
            return uow.api_clients().save(c);
        }));
        runs_->forget(connection_id_);
    };
    add_client("2.0.0", "/v2/accounts/{account}/messages");
    add_client("1.5.0", "/v1.5/accounts/{account}/messages");  // registered later, but older
    must(runs_->execute(ctx_, send_sms()));
    auto seen = vendor_->requests();
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].rfind("POST /v2/accounts/", 0), 0u) << seen[0];
}

// A parameter after the template's '?' is a query value: dots are data there (it was refused as
// a step out of the path).
TEST_F(run_service_test, a_parameter_in_the_templates_query_takes_dots) {
    start({reply(200, "ok")});
    clock_.advance(1s);
    must(store_->transact(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
        auto p = must(uow.providers().find(provider_id_));
        auto spec = client_spec("Acme.Sms.ApiClient", "2.0.0");
        spec.operations = {{"sms.send", "GET", "/v1/search?q={q}"}};
        auto c = must(providers::external_api_client::register_new(ctx_, clock_.now(), p, spec));
        must(c.activate());
        return uow.api_clients().save(c);
    }));
    runs_->forget(connection_id_);
    auto r = send_sms();
    r.input.path_params = {{"q", "../a/.."}};
    r.input.body.clear();
    auto out = must(runs_->execute(ctx_, r));
    EXPECT_EQ(out.run.status(), runs::run_status::completed);
    auto seen = vendor_->requests();
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].rfind("GET /v1/search?q=..%2Fa%2F..&dry=no HTTP/1.1", 0), 0u) << seen[0];
}

// The vendor's outage that deferred a run also fails the connection's health probe: the run then
// waits for the connection to be healthy again (it was dead-lettered as `not_executable`, and
// nobody was told); each refusal is one of its deferred executions, so one that stays down
// escalates.
TEST_F(run_service_test, a_deferred_run_waits_while_its_connection_is_degraded) {
    auto id = unkeyed_post_waiting_for_the_worker(reply(200, "ok"));
    probe_connection(integration::health_status::degraded);
    runs::retry_worker worker(*store_, *runs_, clock_);
    auto status = [&] {
        return must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.runs().find(id); })).status();
    };
    clock_.advance(61s);
    EXPECT_EQ(must(worker.sweep()), 1u);
    EXPECT_EQ(status(), runs::run_status::running);
    auto f = failures_of(id);
    ASSERT_EQ(f.size(), 1u);
    EXPECT_FALSE(f[0].resolved());
    EXPECT_EQ(f[0].data().next_action, failures::next_action::retry);
    EXPECT_EQ(f[0].data().error_code, "connection_unhealthy");
    EXPECT_EQ(vendor_->requests().size(), 4u) << "nothing was sent to a connection that is not healthy";
    probe_connection(integration::health_status::healthy);
    clock_.advance(61s);
    EXPECT_EQ(must(worker.sweep()), 0u) << "tried again within seconds, not minutes";
    clock_.advance(2min);
    EXPECT_EQ(must(worker.sweep()), 1u);
    EXPECT_EQ(status(), runs::run_status::completed);
    EXPECT_EQ(vendor_->requests().size(), 5u);
    EXPECT_TRUE(failures_of(id).at(0).resolved());
}

TEST_F(run_service_test, a_deferred_run_whose_connection_stays_unhealthy_escalates_once_its_deferred_executions_are_spent) {
    auto id = unkeyed_post_waiting_for_the_worker(reply(200, "ok"));
    probe_connection(integration::health_status::unhealthy);
    runs::retry_worker worker(*store_, *runs_, clock_);
    clock_.advance(61s);
    (void)must(worker.sweep());  // refused: tried again in 2 minutes
    for (int sweep = 0; sweep < 2; ++sweep) {  // refused again 2, then 4 minutes on: the third spends them
        auto run = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.runs().find(id); }));
        EXPECT_EQ(run.status(), runs::run_status::running) << "escalated after " << sweep + 1 << " refusals";
        clock_.advance(std::chrono::minutes(2 << sweep) + 1s);
        (void)must(worker.sweep());
    }
    auto run = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.runs().find(id); }));
    EXPECT_EQ(run.status(), runs::run_status::failed);
    auto f = failures_of(id);
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].data().error_code, "connection_unhealthy");
    EXPECT_EQ(f[0].data().next_action, failures::next_action::escalate);
    EXPECT_FALSE(f[0].data().escalations.empty()) << "a run given up on was not escalated";
    EXPECT_EQ(f[0].data().attempt, 4) << "the first execution and three deferred ones";
    EXPECT_EQ(vendor_->requests().size(), 4u);
}

// Runs waiting for the worker are Running past their lease too; the sweep's look for orphans
// finds their open failures in its read, and queues no write unit for each, every sweep.
TEST_F(run_service_test, recovering_orphans_writes_nothing_for_runs_waiting_for_the_worker) {
    auto const limited = reply(429, "", "Retry-After: 1\r\n");
    start(std::deque<std::string>(12, limited), {.allow = {net::cidr::parse("127.0.0.0/8").value()}},
          {.idempotency_header = std::nullopt});
    std::vector<std::string> ids;
    for (int i = 0; i < 3; ++i) ids.push_back(must(runs_->execute(ctx_, send_sms())).run.id());
    clock_.advance(runs_->run_lease() + 1s);
    auto const before = storage::sqlite_store_stats(*store_).value().units;
    EXPECT_EQ(must(runs_->recover_interrupted(ctx_)), 0u);
    EXPECT_EQ(storage::sqlite_store_stats(*store_).value().units, before) << "a write unit per run waiting for the worker";
    for (auto const& id : ids) {
        auto f = failures_of(id);
        ASSERT_EQ(f.size(), 1u);
        EXPECT_EQ(f[0].data().next_action, failures::next_action::retry);
    }
}

// An interrupted resume that cannot run the request again (its connection retired meanwhile)
// escalates for a person to check with the vendor, instead of dead-lettering in silence.
TEST_F(run_service_test, an_interrupted_run_that_cannot_run_again_escalates_instead_of_dead_lettering) {
    auto id = unkeyed_post_waiting_for_the_worker(reply(200, "charged"));
    refuse_run_updates(true);
    runs::retry_worker worker(*store_, *runs_, clock_);
    clock_.advance(61s);
    EXPECT_FALSE(worker.sweep());
    refuse_run_updates(false);
    retire_connection();
    clock_.advance(3600s);
    EXPECT_EQ(must(worker.sweep()), 1u);
    EXPECT_EQ(vendor_->requests().size(), 5u);
    expect_failed_as_interrupted(id);
    auto message = failures_of(id).at(0).data().message;
    EXPECT_NE(message.find("cannot run again"), std::string::npos) << message;
}

TEST_F(run_service_test, write_behind_records_every_run_after_flush_with_bodies_and_failures) {
    std::deque<std::string> script(5, reply(200, "ok"));
    script.push_back(reply(422, "bad"));
    start(script, {.allow = {net::cidr::parse("127.0.0.0/8").value()}}, {.write_behind = true});
    std::vector<runs::run_outcome> outs;
    for (int i = 0; i < 6; ++i) {
        outs.push_back(must(runs_->execute(ctx_, send_sms())));
        EXPECT_EQ(outs.back().run.status(), i < 5 ? runs::run_status::completed : runs::run_status::failed);
        // The outcome is the run as it will be recorded: it names its body and its failure already.
        ASSERT_TRUE(outs.back().run.data().response_ref);
        EXPECT_EQ(outs.back().failure_id.has_value(), i == 5);
    }
    must(runs_->flush());
    for (int i = 0; i < 6; ++i) {
        auto run = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.runs().find(outs[i].run.id()); }));
        EXPECT_EQ(run.status(), i < 5 ? runs::run_status::completed : runs::run_status::failed);
        EXPECT_EQ(run.data().response_ref, outs[i].run.data().response_ref);
        EXPECT_EQ(body_of(run, run.data().response_ref, storage::run_body::response), i < 5 ? "ok" : "bad");
    }
    auto f = failures_of(outs[5].run.id());
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].id(), *outs[5].failure_id);
    EXPECT_EQ(f[0].data().error_code, "http_422");
}

// The handler form answers only once the run is committed: what the handler is told is in the
// store with its attempts and both bodies, without a flush. A keyed run is recorded before its
// handler runs too (its twins wait for that outcome).
TEST_F(run_service_test, execute_with_a_handler_reports_a_write_behind_run_once_it_is_recorded_with_its_bodies) {
    start({reply(200, "ok"), reply(200, "keyed")}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}}, {.write_behind = true});
    for (auto key : {std::optional<std::string>(), std::optional<std::string>("order-1")}) {
        std::promise<void> checked;
        runs_->execute(ctx_, send_sms(key), [&](result<runs::run_outcome> out) {
            [&] {
                ASSERT_TRUE(out) << out.error().message();
                EXPECT_EQ(out->run.status(), runs::run_status::completed);
                ASSERT_TRUE(out->response);
                EXPECT_EQ(out->response->body, key ? "keyed" : "ok");
                auto run = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.runs().find(out->run.id()); }));
                EXPECT_EQ(run.status(), runs::run_status::completed);
                EXPECT_EQ(run.data().run_attempts.size(), 1u);
                ASSERT_TRUE(run.data().request_ref);
                ASSERT_TRUE(run.data().response_ref);
                EXPECT_EQ(body_of(run, run.data().request_ref, storage::run_body::request), R"({"to":"+100"})");
                EXPECT_EQ(body_of(run, run.data().response_ref, storage::run_body::response), key ? "keyed" : "ok");
            }();
            checked.set_value();
        });
        checked.get_future().wait();
    }
}

// A Completed run whose vendor answer the blob store refused lost that answer (a run without
// `responseRef`, silently): the body commits with its run instead, with or without write-behind.
class run_body_fallback : public run_service_test {
protected:
    void check(bool behind, durability recording = durability::immediate) {
        blobs_ = std::make_unique<refusing_responses>(std::move(blobs_));
        // Every body goes to the blob store first (none is small enough to stay with the run).
        start({reply(200, "the vendor's answer")}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}},
              {.write_behind = behind, .recording = recording, .inline_body_bytes = 0});
        auto out = must(runs_->execute(ctx_, send_sms()));
        ASSERT_TRUE(out.run.data().response_ref);
        EXPECT_TRUE(storage::is_stored_payload_ref(*out.run.data().response_ref));
        must(runs_->flush());
        auto run = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.runs().find(out.run.id()); }));
        EXPECT_EQ(run.status(), runs::run_status::completed);
        ASSERT_TRUE(run.data().response_ref);
        EXPECT_EQ(body_of(run, run.data().response_ref, storage::run_body::response), "the vendor's answer");
    }
};

TEST_F(run_body_fallback, a_response_body_the_blob_store_refuses_is_kept_with_its_write_behind_run) { check(true); }
TEST_F(run_body_fallback, a_response_body_the_blob_store_refuses_is_kept_with_its_run) { check(false); }
// Deferred recording writes such a run once, as it ends: the body goes in after its row.
TEST_F(run_body_fallback, a_response_body_the_blob_store_refuses_is_kept_with_a_run_recorded_as_it_ends) {
    check(false, durability::deferred);
}

// A blob store that cannot be read at the moment is not a missing input: the resume fails with
// the outage and the run waits for the next sweep (it was dead-lettered as `input_missing`).
TEST_F(run_service_test, a_resume_that_cannot_read_the_stored_input_now_leaves_the_run_for_the_next_sweep) {
    start({reply(503), reply(503), reply(503), reply(503), reply(200, "done")});
    auto out = must(runs_->execute(ctx_, send_sms()));
    ASSERT_EQ(out.run.status(), runs::run_status::running);
    hooked_blobs down(*blobs_);
    down.get_error = error{errc::unavailable, "blob store unreachable"};
    runs::run_service other(*store_, credentials_, down, *transport_, {.allow = {net::cidr::parse("127.0.0.0/8").value()}}, dns_,
                            clock_, {.sleep = [](std::chrono::milliseconds) {}});
    clock_.advance(61s);
    auto resumed = other.resume(ctx_, out.run.id());
    ASSERT_FALSE(resumed);
    EXPECT_EQ(resumed.error(), errc::unavailable) << resumed.error().detail();
    auto run = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.runs().find(out.run.id()); }));
    EXPECT_EQ(run.status(), runs::run_status::running);
    EXPECT_EQ(failures_of(out.run.id()).at(0).data().next_action, failures::next_action::retry);
    EXPECT_EQ(vendor_->requests().size(), 4u) << "nothing was sent";
    EXPECT_EQ(must(runs_->resume(ctx_, out.run.id())).run.status(), runs::run_status::completed);
}

// Nor is a store that fails the resume's read of the run's binding a refusal: the run waits for
// the next sweep (it was dead-lettered as `not_executable`, and nobody was told).
TEST_F(run_service_test, a_resume_whose_binding_cannot_be_read_now_leaves_the_run_for_the_next_sweep) {
    start({reply(503), reply(503), reply(503), reply(503), reply(200, "done")});
    auto out = must(runs_->execute(ctx_, send_sms()));
    ASSERT_EQ(out.run.status(), runs::run_status::running);
    runs_->forget(connection_id_);  // the binding is read from the store again
    exec_sql(dir_.file("i.db"), "ALTER TABLE api_clients_operations RENAME TO api_clients_operations_away;");
    clock_.advance(61s);
    auto resumed = runs_->resume(ctx_, out.run.id());
    exec_sql(dir_.file("i.db"), "ALTER TABLE api_clients_operations_away RENAME TO api_clients_operations;");
    ASSERT_FALSE(resumed);
    EXPECT_EQ(resumed.error(), errc::storage_failure) << resumed.error().detail();
    auto run = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.runs().find(out.run.id()); }));
    EXPECT_EQ(run.status(), runs::run_status::running);
    EXPECT_EQ(failures_of(out.run.id()).at(0).data().next_action, failures::next_action::retry);
    EXPECT_EQ(vendor_->requests().size(), 4u) << "nothing was sent";
    EXPECT_EQ(must(runs_->resume(ctx_, out.run.id())).run.status(), runs::run_status::completed);
}

// Small bodies commit with their run (no blob write, no fsync of their own); larger ones are
// written to the blob store before the commit that refers to them. A run waiting for the retry
// worker is executed again with the request body kept in the store.
TEST_F(run_service_test, write_behind_keeps_small_bodies_with_the_run_and_large_ones_in_the_blob_store) {
    std::string large(100, 'x');
    start({reply(200, "ok"), reply(200, large), reply(503), reply(503), reply(503), reply(503), reply(200, "done")},
          {.allow = {net::cidr::parse("127.0.0.0/8").value()}}, {.write_behind = true, .inline_body_bytes = 64});
    auto small_run = must(runs_->execute(ctx_, send_sms()));
    auto big_request = send_sms();
    big_request.input.body = R"({"to":")" + large + R"("})";
    auto large_run = must(runs_->execute(ctx_, big_request));
    auto waiting = must(runs_->execute(ctx_, send_sms()));
    must(runs_->flush());
    auto find = [&](std::string const& id) {
        return must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.runs().find(id); }));
    };

    auto small = find(small_run.run.id());
    ASSERT_TRUE(small.data().request_ref && small.data().response_ref);
    EXPECT_EQ(*small.data().request_ref, storage::stored_run_body_ref("t1", small.id(), storage::run_body::request));
    EXPECT_EQ(*small.data().response_ref, storage::stored_run_body_ref("t1", small.id(), storage::run_body::response));
    EXPECT_EQ(body_of(small, small.data().request_ref, storage::run_body::request), R"({"to":"+100"})");
    EXPECT_EQ(body_of(small, small.data().response_ref, storage::run_body::response), "ok");
    EXPECT_FALSE(blobs_->get("t1", blobs::reference("t1", "runs/" + small.id() + "/response"))) << "no blob for a small body";
    // Another tenant does not see them.
    auto other = request_context::for_tenant("t2", "mallory");
    EXPECT_FALSE(storage::read_for(*store_, other, [&](storage::unit_of_work& uow) {
        return uow.runs().body(small.id(), storage::run_body::response);
    }));

    auto big = find(large_run.run.id());
    ASSERT_TRUE(big.data().request_ref && big.data().response_ref);
    EXPECT_FALSE(storage::is_stored_payload_ref(*big.data().request_ref));
    EXPECT_FALSE(storage::is_stored_payload_ref(*big.data().response_ref));
    EXPECT_EQ(must(blobs_->get("t1", *big.data().request_ref)), big_request.input.body);
    EXPECT_EQ(must(blobs_->get("t1", *big.data().response_ref)), large);

    ASSERT_EQ(waiting.run.status(), runs::run_status::running);
    clock_.advance(61s);
    auto resumed = must(runs_->resume(ctx_, waiting.run.id()));
    EXPECT_EQ(resumed.run.status(), runs::run_status::completed);
    auto sent = vendor_->requests().back();
    EXPECT_EQ(sent.substr(sent.size() - 13), R"({"to":"+100"})") << "the retry sends the request body kept with the run";
}

// A process killed while its run waits for the vendor leaves the run Running with no attempt and no
// failure. Once the run is older than any execution can take (its lease), it cannot still be
// executing anywhere: recovery fails it as interrupted, and its Idempotency-Key then answers the
// Failed run instead of a Running one, without calling the vendor again. A run that waits for the
// retry worker is not an orphan.
TEST_F(run_service_test, a_run_a_killed_process_left_running_fails_as_interrupted_once_its_lease_ends) {
    SKIP_FORK_UNDER_ASAN();
    start({"HANG", reply(503)});
    pid_t child = fork_service(clock_.now(), {.attempt_timeout = 600'000ms},
                               [&](storage::store&, runs::run_service& service, clock const&) {
                                   (void)service.execute(ctx_, send_sms("order-7"));
                               });
    ASSERT_GE(child, 0);
    while (vendor_->requests().empty()) std::this_thread::sleep_for(5ms);  // the child is in the call
    kill_process(child);
    auto orphan = run_with_key("order-7");
    ASSERT_TRUE(orphan);
    EXPECT_EQ(orphan->status(), runs::run_status::running);
    auto waiting = must(runs_->execute(ctx_, send_sms()));  // 503s: Running, for the retry worker
    ASSERT_EQ(waiting.run.status(), runs::run_status::running);

    EXPECT_EQ(must(runs_->recover_interrupted(ctx_)), 0u);  // within its lease it may still be executing
    clock_.set(orphan->data().started_at.value() + runs_->run_lease());
    EXPECT_EQ(must(runs_->recover_interrupted(ctx_)), 1u);
    EXPECT_EQ(status_of(*store_, ctx_, orphan->id()), runs::run_status::failed);
    EXPECT_EQ(status_of(*store_, ctx_, waiting.run.id()), runs::run_status::running);
    auto f = failures_of(orphan->id());
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].data().category, failures::failure_category::transient);
    EXPECT_EQ(f[0].data().error_code, "interrupted");
    EXPECT_EQ(f[0].data().next_action, failures::next_action::escalate);
    EXPECT_NE(f[0].data().message.find("may or may not"), std::string::npos) << f[0].data().message;
    bool raised = false;
    for (auto const& e : must(store_->pending_events(1'000)))
        raised = raised || (e.envelope.event_type == "IntegrationFailed" && e.envelope.aggregate_id == orphan->id());
    EXPECT_TRUE(raised) << "the ending goes through the outbox";
    EXPECT_EQ(must(runs_->recover_interrupted(ctx_)), 0u);

    auto again = must(runs_->execute(ctx_, send_sms("order-7")));
    EXPECT_TRUE(again.replayed);
    EXPECT_EQ(again.run.id(), orphan->id());
    EXPECT_EQ(again.run.status(), runs::run_status::failed);
    EXPECT_EQ(vendor_->requests().size(), 1u + 4u);  // the child's call and the waiting run's four
}

// The same, found by the request instead of a sweep: a twin that outlived its lease is ended then.
TEST_F(run_service_test, a_key_whose_run_outlived_its_lease_answers_it_failed_at_once) {
    SKIP_FORK_UNDER_ASAN();
    start({"HANG"});
    pid_t child = fork_service(clock_.now(), {.attempt_timeout = 600'000ms},
                               [&](storage::store&, runs::run_service& service, clock const&) {
                                   (void)service.execute(ctx_, send_sms("order-8"));
                               });
    ASSERT_GE(child, 0);
    while (vendor_->requests().empty()) std::this_thread::sleep_for(5ms);
    kill_process(child);
    clock_.advance(runs_->run_lease());
    auto again = must(runs_->execute(ctx_, send_sms("order-8")));
    EXPECT_TRUE(again.replayed);
    EXPECT_EQ(again.run.status(), runs::run_status::failed);
    EXPECT_EQ(failures_of(again.run.id()).at(0).data().error_code, "interrupted");
    EXPECT_EQ(vendor_->requests().size(), 1u);
}

// Killed while it waited for a rate-limit token, before its first call: the run was never written,
// so its Idempotency-Key is free and the retried request calls the vendor.
TEST_F(run_service_test, a_run_killed_before_its_first_call_leaves_its_key_free) {
    SKIP_FORK_UNDER_ASAN();
    start({reply(200, "ok")}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}},
          {.budget = rate_limit_budget{.requests_per_second = 1, .burst = 1}});
    int waiting[2];
    ASSERT_EQ(::pipe(waiting), 0);
    runs::run_service_options o{.max_rate_limit_wait = 5'000ms, .sleep = [&](std::chrono::milliseconds) {
        (void)::write(waiting[1], "w", 1);  // in the wait for the next token: never wakes up
        for (;;) ::pause();
    }};
    pid_t child = fork_service(clock_.now(), std::move(o), [&](storage::store&, runs::run_service& service, clock const&) {
        (void)service.execute(ctx_, send_sms());            // takes the only token
        (void)service.execute(ctx_, send_sms("order-9"));  // waits for the next one
    });
    ASSERT_GE(child, 0);
    char c = 0;
    ASSERT_EQ(::read(waiting[0], &c, 1), 1);
    kill_process(child);
    ::close(waiting[0]);
    ::close(waiting[1]);
    EXPECT_FALSE(run_with_key("order-9")) << "a run was left behind for a call that never happened";
    EXPECT_EQ(vendor_->requests().size(), 1u);

    auto again = must(runs_->execute(ctx_, send_sms("order-9")));
    EXPECT_FALSE(again.replayed);
    EXPECT_EQ(again.run.status(), runs::run_status::completed);
    EXPECT_EQ(vendor_->requests().size(), 2u);
}

// Requests with one Idempotency-Key at once: one calls the vendor, the others wait for its outcome
// and get that run, finished; none sees it Running.
TEST_F(run_service_test, concurrent_executions_of_one_key_call_the_vendor_once_and_share_its_outcome) {
    start({"SLOW " + reply(201, "once")});
    std::vector<std::future<result<runs::run_outcome>>> pending;
    for (int i = 0; i < 6; ++i) pending.push_back(std::async(std::launch::async, [&] { return runs_->execute(ctx_, send_sms("same")); }));
    std::set<std::string> ids;
    int executed = 0;
    for (auto& f : pending) {
        auto out = must(f.get());
        EXPECT_EQ(out.run.status(), runs::run_status::completed);
        ASSERT_TRUE(out.response);
        EXPECT_EQ(out.response->body, "once");
        ids.insert(out.run.id());
        executed += out.replayed ? 0 : 1;
    }
    EXPECT_EQ(ids.size(), 1u);
    EXPECT_EQ(executed, 1);
    EXPECT_EQ(vendor_->requests().size(), 1u);
}

/** A vendor that answers `body` only once the test opens its gate. */
struct gated_vendor {
    std::promise<void> gate;
    std::shared_future<void> opened = gate.get_future().share();
    loopback_server server{[opened = opened](int fd, loopback_server&) {
        opened.wait();
        auto r = reply(200, "once");
        (void)::write(fd, r.data(), r.size());
    }};
};

// With a handler, a second request with the Idempotency-Key of a run executing here returns at
// once and is told that run (replayed) once it is recorded: no thread waits for it meanwhile.
TEST_F(run_service_test, a_twin_with_a_handler_gets_the_keys_run_without_holding_its_thread) {
    gated_vendor vendor;
    start({reply(200, "unused")}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}},
          {.write_behind = true, .idempotency_wait = 10'000ms, .vendor_port = vendor.server.port()});
    std::promise<result<runs::run_outcome>> first, second;
    runs_->execute(ctx_, send_sms("k"), [&](result<runs::run_outcome> out) { first.set_value(std::move(out)); });
    runs_->execute(ctx_, send_sms("k"), [&](result<runs::run_outcome> out) { second.set_value(std::move(out)); });
    // Both returned while the vendor still holds its answer: the twin did not wait on this thread.
    auto f1 = first.get_future(), f2 = second.get_future();
    EXPECT_NE(f2.wait_for(0s), std::future_status::ready) << "the twin was answered before the run it waits for ended";
    vendor.gate.set_value();
    auto a = must(f1.get());
    auto b = must(f2.get());
    EXPECT_EQ(a.run.id(), b.run.id());
    EXPECT_FALSE(a.replayed);
    EXPECT_TRUE(b.replayed);
    EXPECT_EQ(b.run.status(), runs::run_status::completed);
    ASSERT_TRUE(b.response);
    EXPECT_EQ(b.response->body, "once");
    EXPECT_EQ(vendor.server.requests().size(), 1u);
}

// The twin's wait is bounded without a thread too: past `idempotency_wait` it is told
// in_progress while the run goes on, and the run itself still ends normally.
TEST_F(run_service_test, a_twin_with_a_handler_is_told_in_progress_when_its_wait_runs_out) {
    gated_vendor vendor;
    start({reply(200, "unused")}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}},
          {.write_behind = true, .idempotency_wait = 50ms, .vendor_port = vendor.server.port()});
    std::promise<result<runs::run_outcome>> first, second;
    runs_->execute(ctx_, send_sms("k"), [&](result<runs::run_outcome> out) { first.set_value(std::move(out)); });
    runs_->execute(ctx_, send_sms("k"), [&](result<runs::run_outcome> out) { second.set_value(std::move(out)); });
    auto twin = second.get_future().get();
    vendor.gate.set_value();
    ASSERT_FALSE(twin);
    EXPECT_TRUE(twin.error() == errc::in_progress) << twin.error().message();
    auto owner = must(first.get_future().get());
    EXPECT_EQ(owner.run.status(), runs::run_status::completed);
    EXPECT_EQ(vendor.server.requests().size(), 1u);
}

// A twin executing here with another request under the same key is refused at once, not handed
// the owner's outcome when it lands.
TEST_F(run_service_test, a_twin_with_another_request_is_refused_at_once) {
    gated_vendor vendor;
    start({reply(200, "unused")}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}},
          {.write_behind = true, .idempotency_wait = 10'000ms, .vendor_port = vendor.server.port()});
    std::promise<result<runs::run_outcome>> first, second;
    runs_->execute(ctx_, send_sms("k"), [&](result<runs::run_outcome> out) { first.set_value(std::move(out)); });
    auto other = send_sms("k");
    other.input.body = R"({"to":"+999"})";
    runs_->execute(ctx_, other, [&](result<runs::run_outcome> out) { second.set_value(std::move(out)); });
    auto f2 = second.get_future();
    auto const at_once = f2.wait_for(0s) == std::future_status::ready;
    EXPECT_TRUE(at_once) << "the twin waited for a run of another request";
    auto sync = std::async(std::launch::async, [&] { return runs_->execute(ctx_, other); });
    auto sync_out = sync.get();
    EXPECT_FALSE(sync_out);
    if (!sync_out) {
        EXPECT_EQ(sync_out.error(), errc::idempotency_key_reused);
    }
    vendor.gate.set_value();
    auto twin = f2.get();
    EXPECT_FALSE(twin) << "handed the run of another request";
    if (!twin) {
        EXPECT_EQ(twin.error(), errc::idempotency_key_reused);
    }
    EXPECT_EQ(must(first.get_future().get()).run.status(), runs::run_status::completed);
    EXPECT_EQ(vendor.server.requests().size(), 1u);
}

// A twin still executing past `idempotency_wait` answers in_progress, whether it runs in this
// service or in another one on the same database (seen there as a Running run); once it ended,
// the key answers its run.
TEST_F(run_service_test, a_key_still_executing_past_the_wait_is_in_progress_here_and_in_another_service) {
    start({"HANG"}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}}, {.idempotency_wait = 100ms});
    auto first = send_sms("busy");
    auto cancel = std::make_shared<http::cancellation>();
    first.cancel = cancel;
    auto pending = runs_->execute_async(ctx_, first);
    while (vendor_->requests().empty()) std::this_thread::sleep_for(5ms);
    auto here = runs_->execute(ctx_, send_sms("busy"));
    ASSERT_FALSE(here);
    EXPECT_TRUE(here.error() == errc::in_progress) << here.error().message();

    auto second_store = must(storage::open_sqlite_store({.path = dir_.file("i.db"), .clock = &clock_}));
    runs::run_service other(*second_store, credentials_, *blobs_, *transport_,
                            net::egress_policy{.allow = {net::cidr::parse("127.0.0.0/8").value()}}, dns_, clock_,
                            {.idempotency_wait = 100ms});
    auto there = other.execute(ctx_, send_sms("busy"));
    ASSERT_FALSE(there);
    EXPECT_TRUE(there.error() == errc::in_progress) << there.error().message();

    cancel->cancel();
    auto done = must(pending.get());
    auto later = must(other.execute(ctx_, send_sms("busy")));
    EXPECT_TRUE(later.replayed);
    EXPECT_EQ(later.run.id(), done.run.id());
    EXPECT_EQ(later.run.status(), runs::run_status::failed);
    EXPECT_EQ(vendor_->requests().size(), 1u);
}

// A twin whose flight recorded no run executes itself on the service's threads. Destroying the
// service right after must wait for the flight that retry starts (it used to start after the
// destructor's wait for runs in flight, and its answer came back into a destroyed service).
TEST_F(run_service_test, destruction_waits_for_the_flight_of_a_twin_whose_run_recorded_nothing) {
    start({"SLOW " + reply(200, "late")}, {.allow = {net::cidr::parse("127.0.0.0/8").value()}}, {.idempotency_wait = 10'000ms});
    // A lock on the database holds the key's first claim until both requests joined; a trigger
    // then refuses runs started before the clock moved, so the first flight records nothing and
    // its twin runs again (a run started later).
    auto refuse_before = std::chrono::duration_cast<std::chrono::milliseconds>(clock_.now().time_since_epoch()).count() + 1;
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(dir_.file("i.db").c_str(), &raw), SQLITE_OK);
    auto sql = "BEGIN IMMEDIATE; CREATE TRIGGER refuse_early_runs BEFORE INSERT ON runs WHEN NEW.started_at < " +
               std::to_string(refuse_before) + " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;";
    ASSERT_EQ(sqlite3_exec(raw, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(raw);

    std::array<std::promise<result<runs::run_outcome>>, 2> told;
    std::array<std::future<result<runs::run_outcome>>, 2> outcomes{told[0].get_future(), told[1].get_future()};
    std::atomic<int> returned = 0;
    std::vector<std::thread> callers;
    for (std::size_t i = 0; i < 2; ++i)
        callers.emplace_back([&, i] {
            runs_->execute(ctx_, send_sms("k"), [&, i](result<runs::run_outcome> out) { told[i].set_value(std::move(out)); });
            ++returned;
        });
    // The twin returns at once; its owner waits for the lock in its claim.
    while (returned == 0) std::this_thread::sleep_for(1ms);
    // The owner stamps its run before its claim reaches the store's writer, which then waits for
    // the lock: the clock moves only after that (else nothing is refused; see the skip below).
    for (auto const until = std::chrono::steady_clock::now() + 30s;
         !a_thread_sleeps("integ-sql-write") && std::chrono::steady_clock::now() < until;)
        std::this_thread::sleep_for(1ms);
    clock_.advance(1'000ms);
    ASSERT_EQ(sqlite3_exec(raw, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(raw);
    for (auto& t : callers) t.join();

    std::size_t owner = 2;
    for (auto const until = std::chrono::steady_clock::now() + 60s; owner == 2 && std::chrono::steady_clock::now() < until;)
        for (std::size_t i = 0; i < 2 && owner == 2; ++i)
            if (outcomes[i].wait_for(1ms) == std::future_status::ready) owner = i;
    ASSERT_NE(owner, 2u) << "neither request was answered within 60 s";
    auto refused = outcomes[owner].get();
    if (refused) {
        // The owner stamped its run only after the clock moved (a slow machine, a sanitizer), so
        // nothing was refused and there was no late twin to wait for: this run proves nothing.
        runs_.reset();
        sqlite3_close(raw);
        GTEST_SKIP() << "the first claim was not refused, so no twin retried";
    }
    runs_.reset();
    auto& twin = outcomes[1 - owner];
    ASSERT_EQ(twin.wait_for(0s), std::future_status::ready) << "the service was destroyed before the twin's own run ended";
    auto late = must(twin.get());
    EXPECT_EQ(late.run.status(), runs::run_status::completed);
    ASSERT_TRUE(late.response);
    EXPECT_EQ(late.response->body, "late");
    EXPECT_EQ(vendor_->requests().size(), 1u);
    sqlite3_close(raw);
}

}  // namespace
}  // namespace integration::testing
