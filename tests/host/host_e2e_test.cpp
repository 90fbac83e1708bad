// End to end over real sockets: the integration-host binary with its own data directory, a
// loopback vendor, and plain-socket clients.

#include "host/host_process.hpp"
#include "host/http_client.hpp"
#include "support/base64.hpp"
#include "support/loopback_server.hpp"
#include "support/sqlite_file.hpp"
#include "support/tcp_listener.hpp"

#include <gtest/gtest.h>


#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

namespace integration::testing {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

/** The first row `sql` returns from the SQLite file `db` (columns joined by "|"), or nothing. */
std::optional<std::string> first_row(std::filesystem::path const& db, std::string const& sql, std::vector<std::string> const& params = {}) {
    auto rows = query_rows(db.string(), sql, params);
    if (rows.empty()) return std::nullopt;
    return rows.front();
}

constexpr char const* vendor_secret = "sk_live_SUPERSECRET_0123456789";

/** The vendor: /health answers 200 to an `X-Api-Key` it accepts (`vendor_secret` at first) and
 *  401 to any other, /echo/{id} echoes the body, /bad answers 400, /slow waits 1 s. */
class echo_vendor {
public:
    echo_vendor()
        : server_([this](int fd, loopback_server& self) {
              auto head = self.requests().back();
              auto head_end = head.find("\r\n\r\n") + 4;
              std::string body = head.substr(head_end);
              auto cl = head.find("Content-Length: ");
              if (cl != std::string::npos) {
                  auto want = std::stoul(head.substr(cl + 16));
                  char buf[4096];
                  while (body.size() < want) {
                      auto n = ::read(fd, buf, sizeof buf);
                      if (n <= 0) break;
                      body.append(buf, static_cast<std::size_t>(n));
                  }
              }
              auto path = head.substr(head.find(' ') + 1);
              path = path.substr(0, path.find(' '));
              int status = 200;
              if (path.rfind("/echo/", 0) == 0) ++echo_calls;
              if (path == "/bad") status = 400;
              if (path == "/slow") std::this_thread::sleep_for(1s);
              if (path == "/health" && !accepts(api_key_of(head))) status = 401;
              // A field sent twice (pagination links), spelled differently the second time.
              std::string answer = "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Type: application/json\r\nContent-Length: " +
                                   std::to_string(body.size()) + "\r\nLink: <p2>; rel=next\r\nlink: <p9>; rel=last" +
                                   "\r\nConnection: close\r\n\r\n" + body;
              (void)::write(fd, answer.data(), answer.size());
          }) {}
    std::uint16_t port() const { return server_.port(); }
    std::vector<std::string> requests() { return server_.requests(); }
    std::atomic<int> echo_calls{0};

    /** From now on /health accepts `key` too. */
    void accept(std::string key) {
        std::lock_guard lock(keys_mutex_);
        keys_.insert(std::move(key));
    }
    /** From now on /health refuses `key`. */
    void refuse(std::string const& key) {
        std::lock_guard lock(keys_mutex_);
        keys_.erase(key);
    }
    /** The `X-Api-Key` of a raw request, empty without one. */
    static std::string api_key_of(std::string const& request) {
        auto at = request.find("\r\nX-Api-Key: ");
        if (at == std::string::npos) return {};
        at += 13;
        return request.substr(at, request.find("\r\n", at) - at);
    }
    /** The requests for `path` (`GET /health`, `POST /echo/42`, ...) in arrival order. */
    std::vector<std::string> requests_for(std::string const& request_line_start) {
        std::vector<std::string> out;
        for (auto const& r : requests())
            if (r.rfind(request_line_start + " ", 0) == 0) out.push_back(r);
        return out;
    }

private:
    bool accepts(std::string const& key) {
        std::lock_guard lock(keys_mutex_);
        return keys_.contains(key);
    }

    std::mutex keys_mutex_;
    std::set<std::string> keys_{vendor_secret};
    loopback_server server_;  // last: its thread stops before the members it uses go
};

/** A vendor that serves every connection on a thread of its own, so that calls overlap. `answer`
 *  gets the request head and returns the whole response (sent with the connection closed after
 *  it), or nothing to hold the call unanswered until the caller goes away. */
class threaded_vendor {
public:
    using answer_fn = std::function<std::optional<std::string>(std::string const& head)>;

    explicit threaded_vendor(answer_fn answer) : answer_(std::move(answer)) {
        auto const l = listen_tcp();
        fd_ = l.fd;
        port_ = l.port;
        acceptor_ = std::thread([this] { accept_calls(); });
    }
    ~threaded_vendor() {
        stop_ = true;
        acceptor_.join();
        for (auto& t : calls_) t.join();
        ::close(fd_);
    }
    threaded_vendor(threaded_vendor const&) = delete;
    threaded_vendor& operator=(threaded_vendor const&) = delete;

    std::uint16_t port() const { return port_; }
    /** How many requests arrived whose head starts with `prefix` (e.g. "POST /echo/"). */
    int count(std::string_view prefix) {
        std::lock_guard lock(mutex_);
        return static_cast<int>(std::count_if(heads_.begin(), heads_.end(), [&](auto const& h) { return h.starts_with(prefix); }));
    }

private:
    void accept_calls() {
        while (!stop_) {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 50) <= 0) continue;
            int c = ::accept(fd_, nullptr, nullptr);
            if (c >= 0) calls_.emplace_back([this, c] { serve(c); });
        }
    }
    // False once the peer closed or the vendor stops.
    bool wait_readable(int c) {
        while (!stop_) {
            pollfd p{c, POLLIN, 0};
            if (::poll(&p, 1, 50) > 0) return true;
        }
        return false;
    }
    void serve(int c) {
        std::string in;
        char buf[4096];
        while (in.find("\r\n\r\n") == std::string::npos) {
            if (!wait_readable(c)) return (void)::close(c);
            auto n = ::read(c, buf, sizeof buf);
            if (n <= 0) return (void)::close(c);
            in.append(buf, static_cast<std::size_t>(n));
        }
        auto head = in.substr(0, in.find("\r\n\r\n") + 4);
        {
            std::lock_guard lock(mutex_);
            heads_.push_back(head);
        }
        if (auto answer = answer_(head)) {
            (void)::write(c, answer->data(), answer->size());
        } else {
            while (wait_readable(c) && ::read(c, buf, sizeof buf) > 0) {  // held until the caller goes away
            }
        }
        ::close(c);
    }

    answer_fn answer_;
    int fd_ = -1;
    std::uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::mutex mutex_;
    std::vector<std::string> heads_;
    std::vector<std::thread> calls_;  // only the acceptor thread adds to it
    std::thread acceptor_;
};

/** A whole vendor answer; the connection closes after it. */
std::string vendor_answer(int status, std::string const& body = "", std::string const& extra_headers = "") {
    return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Type: application/json\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\nConnection: close\r\n" + extra_headers + "\r\n" + body;
}

std::string str(json::value const& v, char const* name) { return std::string(v.at(name).as_string()); }

/** A provider with an active client, a credential and a connection, all of one tenant. */
struct tenant_setup {
    std::string provider_id, client_id, credential_id, connection_id;
};

/** An ApiKey credential of `secret` (sent as `X-Api-Key`) for `provider_id`, and a connection
 *  of `project` using it: the connection's answer. */
http_answer connect_with_key(api const& a, std::string const& provider_id, std::string const& secret,
                             std::string const& project, std::string const& name) {
    auto cred = a.post("/integrations/credentials",
                       json::object{{"providerId", provider_id}, {"authMode", "ApiKey"}, {"secret", secret},
                                    {"apiKey", json::object{{"in", "header"}, {"name", "X-Api-Key"}}}});
    EXPECT_EQ(cred.status, 201) << cred.body;
    return a.post("/integrations/connections", json::object{{"projectId", project}, {"providerId", provider_id},
                                                            {"displayName", name}, {"credentialId", str(cred.json(), "credentialId")}});
}

/** `provider_extra` adds fields to the provider's registration (e.g. a rateLimitProfile). */
tenant_setup set_up(api const& a, std::uint16_t vendor_port, std::string const& suffix, json::object const& provider_extra = {}) {
    tenant_setup t;
    json::object provider{{"key", "echo" + suffix}, {"displayName", "Echo"}, {"category", "BusinessSystem"},
                          {"authModel", "ApiKey"}, {"baseUrl", "http://127.0.0.1:" + std::to_string(vendor_port)},
                          {"capabilities", json::array{"echo.send", "echo.bad", "echo.slow"}},
                          {"healthCheck", json::object{{"method", "GET"}, {"path", "/health"}, {"expectStatus", 200}}}};
    for (auto const& [k, v] : provider_extra) provider[k] = v;
    auto p = a.post("/integrations/providers", provider);
    EXPECT_EQ(p.status, 201) << p.body;
    t.provider_id = str(p.json(), "providerId");
    EXPECT_EQ(str(p.json(), "status"), "Registered");
    auto c = a.post("/integrations/providers/" + t.provider_id + "/clients",
                    json::object{{"assemblyName", "Echo.ApiClient" + suffix}, {"version", "1.0.0"},
                                 {"capabilities", json::array{"echo.send", "echo.bad", "echo.slow"}}, {"authMode", "ApiKey"},
                                 // echo.send's retries after a 5xx are safe: every run sends its id as the key.
                                 {"operations", json::array{json::object{{"operation", "echo.send"}, {"method", "POST"}, {"path", "/echo/{id}"},
                                                                         {"idempotencyHeader", "Idempotency-Key"}},
                                                            json::object{{"operation", "echo.bad"}, {"method", "POST"}, {"path", "/bad"}},
                                                            json::object{{"operation", "echo.slow"}, {"method", "GET"}, {"path", "/slow"}}}}});
    EXPECT_EQ(c.status, 201) << c.body;
    t.client_id = str(c.json(), "apiClientId");
    auto act = a.post("/integrations/providers/" + t.provider_id + "/activate", json::object{});
    EXPECT_EQ(act.status, 200) << act.body;
    EXPECT_EQ(str(act.json(), "status"), "Active");
    auto cred = a.post("/integrations/credentials",
                       json::object{{"providerId", t.provider_id}, {"authMode", "ApiKey"}, {"secret", vendor_secret},
                                    {"apiKey", json::object{{"in", "header"}, {"name", "X-Api-Key"}}}});
    EXPECT_EQ(cred.status, 201) << cred.body;
    t.credential_id = str(cred.json(), "credentialId");
    auto conn = a.post("/integrations/connections",
                       json::object{{"projectId", "proj-1"}, {"providerId", t.provider_id}, {"displayName", "Echo conn"},
                                    {"credentialId", t.credential_id}});
    EXPECT_EQ(conn.status, 201) << conn.body;
    t.connection_id = str(conn.json(), "connectionId");
    EXPECT_EQ(str(conn.json(), "status"), "Active") << conn.body;
    return t;
}

/** Whether a health check after the first `skip` ones carried `key`. */
bool checked_with(echo_vendor& vendor, std::size_t skip, std::string const& key) {
    auto checks = vendor.requests_for("GET /health");
    return std::any_of(checks.begin() + static_cast<std::ptrdiff_t>(std::min(skip, checks.size())), checks.end(),
                       [&](std::string const& r) { return echo_vendor::api_key_of(r) == key; });
}

json::object run_body(std::string const& connection, std::string const& op = "echo.send", std::string const& msg = "hello") {
    json::object input{{"pathParams", json::object{{"id", "42"}}}};
    if (op != "echo.slow") input["body"] = json::object{{"msg", msg}};  // a GET carries none
    return {{"connectionId", connection}, {"operation", op}, {"input", std::move(input)}};
}

/** The value of one series (`name{labels}`) in a Prometheus exposition; 0 when absent. */
double metric(std::string const& text, std::string const& series) {
    auto at = text.find("\n" + series + " ");
    if (at == std::string::npos) return 0;
    return std::stod(text.substr(at + 1 + series.size() + 1));
}

/** UTC `now + d` as RFC 3339. */
std::string iso_time_in(std::chrono::seconds d) {
    auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now() + d);
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

/** Polls `check` until it holds or `timeout` passes. */
template <class F>
bool eventually(F check, std::chrono::milliseconds timeout = 5s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (check()) return true;
        std::this_thread::sleep_for(50ms);
    }
    return check();
}

class host_e2e : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = new std::filesystem::path(std::filesystem::temp_directory_path() /
                                         ("integration-host-" + std::to_string(::getpid())));
        std::filesystem::remove_all(*dir_);
        std::filesystem::create_directories(*dir_);
        key_a_ = new std::string(create_key(dir_->string(), "tenant-a"));
        key_b_ = new std::string(create_key(dir_->string(), "tenant-b"));
        admin_ = new std::string(create_key(dir_->string(), "tenant-admin", true));
        vendor_ = new echo_vendor();
        host_ = new host_process(dir_->string(), {"--read-timeout-ms", "700", "--key-rate-limit", "0"});
    }
    static void TearDownTestSuite() {
        delete host_;
        delete vendor_;
        std::filesystem::remove_all(*dir_);
        delete dir_;
        delete key_a_;
        delete key_b_;
        delete admin_;
    }
    api a() const { return api(host_->port(), *key_a_); }
    api b() const { return api(host_->port(), *key_b_); }
    api admin() const { return api(host_->port(), *admin_); }

    static std::filesystem::path* dir_;
    static std::string* key_a_;
    static std::string* key_b_;
    static std::string* admin_;
    static echo_vendor* vendor_;
    static host_process* host_;
};
std::filesystem::path* host_e2e::dir_ = nullptr;
std::string* host_e2e::key_a_ = nullptr;
std::string* host_e2e::key_b_ = nullptr;
std::string* host_e2e::admin_ = nullptr;
echo_vendor* host_e2e::vendor_ = nullptr;
host_process* host_e2e::host_ = nullptr;

TEST_F(host_e2e, keys_are_random_and_stored_hashed) {
    EXPECT_EQ(key_a_->rfind("ik_", 0), 0u);
    EXPECT_GE(key_a_->size(), 3u + 43u);
    EXPECT_NE(*key_a_, *key_b_);
    auto const hashes = query_rows((*dir_ / "integration.db").string(), "SELECT key_hash FROM api_keys");
    ASSERT_GE(hashes.size(), 2u);
    for (auto const& hash : hashes) {
        EXPECT_EQ(hash.find(*key_a_), std::string::npos);
        EXPECT_EQ(hash.find(*key_b_), std::string::npos);
    }
}

TEST_F(host_e2e, health_and_readiness_need_no_key) {
    api anon(host_->port(), "");
    EXPECT_EQ(anon.get("/healthz").status, 200);
    auto ready = anon.get("/readyz");
    EXPECT_EQ(ready.status, 200) << ready.body;
    EXPECT_EQ(str(ready.json(), "status"), "ready");
}

TEST_F(host_e2e, governed_run_end_to_end_with_idempotency_and_pagination) {
    auto t = set_up(a(), vendor_->port(), "-flow");
    // The credential is metadata only.
    auto cred = a().get("/integrations/credentials/" + t.credential_id);
    ASSERT_EQ(cred.status, 200);
    EXPECT_EQ(cred.body.find(vendor_secret), std::string::npos);
    EXPECT_EQ(str(cred.json(), "keyVaultRef").rfind("vault://", 0), 0u) << cred.body;
    EXPECT_EQ(str(cred.json(), "fingerprint").rfind("hmac-sha256:", 0), 0u);

    auto before = vendor_->echo_calls.load();
    auto run = a().post("/integrations/runs", run_body(t.connection_id), {{"Idempotency-Key", "order-1"}});
    ASSERT_EQ(run.status, 201) << run.body;
    auto rj = run.json();
    auto run_id = str(rj, "runId");
    EXPECT_EQ(run_id.rfind("run-", 0), 0u);
    EXPECT_EQ(str(rj, "status"), "Completed");
    EXPECT_EQ(rj.at("attempts").as_int64(), 1);
    EXPECT_EQ(rj.at("response").at("status").as_int64(), 200);
    EXPECT_NE(std::string(rj.at("response").at("body").as_string()).find("hello"), std::string::npos);
    // Each line of a repeated field is kept: joined, under the name as first spelled.
    EXPECT_EQ(str(rj.at("response").at("headers"), "Link"), "<p2>; rel=next, <p9>; rel=last") << run.body;
    EXPECT_EQ(vendor_->echo_calls.load(), before + 1);
    // The vendor got the secret in the configured header: resolved at call time.
    bool saw_key = false;
    for (auto const& r : vendor_->requests()) saw_key = saw_key || r.find(std::string("X-Api-Key: ") + vendor_secret) != std::string::npos;
    EXPECT_TRUE(saw_key);

    auto read = a().get("/integrations/runs/" + run_id);
    ASSERT_EQ(read.status, 200);
    auto attempts = read.json().at("runAttempts").as_array();
    ASSERT_EQ(attempts.size(), 1u);
    EXPECT_EQ(attempts[0].at("httpStatus").as_int64(), 200);
    EXPECT_TRUE(attempts[0].as_object().contains("latencyMs"));

    auto again = a().post("/integrations/runs", run_body(t.connection_id), {{"Idempotency-Key", "order-1"}});
    ASSERT_EQ(again.status, 201) << again.body;
    EXPECT_EQ(str(again.json(), "runId"), run_id);
    EXPECT_EQ(vendor_->echo_calls.load(), before + 1);
    auto clash = a().post("/integrations/runs", run_body(t.connection_id, "echo.send", "other"), {{"Idempotency-Key", "order-1"}});
    EXPECT_EQ(clash.status, 409) << clash.body;
    EXPECT_EQ(clash.headers["content-type"], "application/problem+json");
    // Not the retryable `conflict` of a race: retrying this key can never succeed.
    EXPECT_EQ(str(clash.json(), "type"), "https://integration.dev/problems/idempotency-key-reused") << clash.body;
    EXPECT_EQ(vendor_->echo_calls.load(), before + 1);

    auto second = a().post("/integrations/runs", run_body(t.connection_id));
    ASSERT_EQ(second.status, 201);
    auto page1 = a().get("/integrations/runs?connectionId=" + t.connection_id + "&limit=1");
    ASSERT_EQ(page1.status, 200) << page1.body;
    ASSERT_EQ(page1.json().at("items").as_array().size(), 1u);
    ASSERT_TRUE(page1.json().at("nextCursor").is_string());
    auto page2 = a().get("/integrations/runs?connectionId=" + t.connection_id + "&limit=1&cursor=" + str(page1.json(), "nextCursor"));
    ASSERT_EQ(page2.status, 200);
    ASSERT_EQ(page2.json().at("items").as_array().size(), 1u);
    EXPECT_NE(str(page1.json().at("items").at(0), "runId"), str(page2.json().at("items").at(0), "runId"));
    // A cursor no list handed out, or a filter given twice, has no one meaning: 400, not a guess.
    auto bad_cursor = a().get("/integrations/runs?limit=1&cursor=zzz");
    EXPECT_EQ(bad_cursor.status, 400) << bad_cursor.body;
    EXPECT_NE(bad_cursor.body.find("cursor"), std::string::npos) << bad_cursor.body;
    EXPECT_EQ(a().get("/integrations/runs?limit=1&cursor=" + t.connection_id).status, 400);
    auto twice = a().get("/integrations/runs?status=Completed&status=Failed");
    EXPECT_EQ(twice.status, 400) << twice.body;
    EXPECT_NE(twice.body.find("`status` is given more than once"), std::string::npos) << twice.body;
    auto providers = a().get("/integrations/providers?limit=1");
    ASSERT_EQ(providers.status, 200);
    EXPECT_EQ(providers.json().at("items").as_array().size(), 1u);

    // A vendor 400 is a Failed run with a classified failure.
    auto bad = a().post("/integrations/runs", run_body(t.connection_id, "echo.bad"));
    ASSERT_EQ(bad.status, 201) << bad.body;
    EXPECT_EQ(str(bad.json(), "status"), "Failed");
    auto failures = a().get("/integrations/failures?runId=" + str(bad.json(), "runId"));
    ASSERT_EQ(failures.status, 200);
    ASSERT_EQ(failures.json().at("items").as_array().size(), 1u) << failures.body;
    auto failure_id = str(failures.json().at("items").at(0), "failureId");
    auto esc = a().post("/integrations/failures/" + failure_id + "/escalate", json::object{{"reason", "vendor rejects it"}});
    EXPECT_EQ(esc.status, 200) << esc.body;
    // As host-api.md writes it, with no body: escalated with a reason that says how.
    auto bare = a().call("POST", "/integrations/failures/" + failure_id + "/escalate");
    ASSERT_EQ(bare.status, 200) << bare.body;
    EXPECT_NE(bare.body.find("escalated via the API"), std::string::npos) << bare.body;

    // Rotation: the vendor's health check checks the key, so the new key is verified against it
    // before it is activated, and runs use it from then on.
    vendor_->accept("sk_live_ROTATED_987654321");
    // A rotation replaces the secret only: another setting it would ignore is refused, naming it.
    for (auto const& oauth2 : {json::value(json::object{{"tokenUrl", "http://127.0.0.1:1/token2"}, {"clientSecret", "x"}}),
                               json::value("garbage")}) {
        auto ignored = a().post("/integrations/credentials/rotate",
                                json::object{{"credentialId", t.credential_id}, {"secret", "sk_live_ROTATED_987654321"}, {"oauth2", oauth2}});
        EXPECT_EQ(ignored.status, 400) << ignored.body;
        EXPECT_NE(ignored.body.find("oauth2"), std::string::npos) << ignored.body;
    }
    auto checks_before = vendor_->requests_for("GET /health").size();
    auto rotated = a().post("/integrations/credentials/rotate", json::object{{"credentialId", t.credential_id}, {"secret", "sk_live_ROTATED_987654321"}});
    ASSERT_EQ(rotated.status, 200) << rotated.body;
    EXPECT_EQ(rotated.json().at("activeVersion").as_int64(), 2);
    EXPECT_EQ(rotated.body.find("ROTATED"), std::string::npos);
    EXPECT_TRUE(checked_with(*vendor_, checks_before, "sk_live_ROTATED_987654321"));
    ASSERT_EQ(a().post("/integrations/runs", run_body(t.connection_id)).status, 201);
    EXPECT_EQ(echo_vendor::api_key_of(vendor_->requests_for("POST /echo/42").back()), "sk_live_ROTATED_987654321");

    auto log = host_->log_with("\"path\":\"/integrations/credentials/rotate\"");
    EXPECT_EQ(log.find(vendor_secret), std::string::npos);
    EXPECT_EQ(log.find("ROTATED"), std::string::npos);
    EXPECT_EQ(log.find(*key_a_), std::string::npos);
    EXPECT_NE(log.find("\"path\":\"/integrations/runs\""), std::string::npos);
}

// POST /integrations/failures/{id}/replay and .../resolve (additions to host-api.md): the outbox
// event an OutboxEvent failure tells of is published again and the failure resolved, or dropped
// by resolving it; a failure of another source is 409 to replay, an unknown one 404, another
// tenant's 404, a body with members 400.
TEST_F(host_e2e, a_dead_outbox_events_failure_is_replayed_and_its_event_published) {
    auto t = set_up(a(), vendor_->port(), "-replay");
    auto bad = a().post("/integrations/runs", run_body(t.connection_id, "echo.bad"));
    ASSERT_EQ(bad.status, 201) << bad.body;
    auto run_id = str(bad.json(), "runId");
    auto failures = a().get("/integrations/failures?runId=" + run_id);
    ASSERT_EQ(failures.status, 200);
    ASSERT_EQ(failures.json().at("items").as_array().size(), 1u) << failures.body;
    auto failure_id = str(failures.json().at("items").at(0), "failureId");
    auto of_run = a().call("POST", "/integrations/failures/" + failure_id + "/replay");
    EXPECT_EQ(of_run.status, 409) << of_run.body;
    EXPECT_EQ(str(of_run.json(), "type"), "https://integration.dev/problems/invalid-state") << of_run.body;
    EXPECT_EQ(a().call("POST", "/integrations/failures/fail-01JD3Q8V6X4T2M9R5B7N1K0FZC/replay").status, 404);

    // The relay parking the run's last event after 20 failed publications, as the store keeps it:
    // the event dead, and a failure of source OutboxEvent naming it (this one, re-sourced).
    auto const db = *dir_ / "integration.db";
    auto event = first_row(db, "SELECT event_id FROM outbox WHERE aggregate_id = ? ORDER BY sequence DESC LIMIT 1", {run_id});
    ASSERT_TRUE(event);
    // The host may be writing: wait for its lock rather than fail.
    exec_sql(db.string(), "PRAGMA busy_timeout = 10000; UPDATE outbox SET published_at = NULL, dead_at = 1, attempts = 20 WHERE event_id = '" + *event + "'");
    exec_sql(db.string(), "PRAGMA busy_timeout = 10000; UPDATE failures SET source = 'OutboxEvent', run_id = NULL, event_id = '" + *event +
                              "', next_action = 'DeadLetter', resolved_at = NULL WHERE failure_id = '" + failure_id + "'");
    EXPECT_EQ(b().call("POST", "/integrations/failures/" + failure_id + "/replay").status, 404) << "another tenant's";
    auto with_body = a().post("/integrations/failures/" + failure_id + "/replay", json::object{{"force", true}});
    EXPECT_EQ(with_body.status, 400) << with_body.body;
    auto replayed = a().call("POST", "/integrations/failures/" + failure_id + "/replay");
    ASSERT_EQ(replayed.status, 200) << replayed.body;
    EXPECT_TRUE(replayed.json().at("resolvedAt").is_string()) << replayed.body;
    EXPECT_EQ(str(replayed.json(), "source"), "OutboxEvent");
    std::optional<std::string> published;
    for (int i = 0; i < 100 && !(published = first_row(db, "SELECT published_at FROM outbox WHERE event_id = ? AND published_at IS NOT NULL", {*event})); ++i)
        std::this_thread::sleep_for(100ms);
    EXPECT_TRUE(published) << "the relay did not publish the replayed event";
    EXPECT_EQ(first_row(db, "SELECT dead_at IS NULL AND attempts = 0 FROM outbox WHERE event_id = ?", {*event}), "1");
    auto again = a().call("POST", "/integrations/failures/" + failure_id + "/replay");
    EXPECT_EQ(again.status, 409) << again.body;

    // Parked again, and resolved by hand instead: the event is dropped (marked published, never
    // offered again), so its aggregate's later events go on.
    exec_sql(db.string(), "PRAGMA busy_timeout = 10000; UPDATE outbox SET published_at = NULL, dead_at = 1, attempts = 20 WHERE event_id = '" +
                              *event + "'; UPDATE failures SET resolved_at = NULL WHERE failure_id = '" + failure_id + "'");
    auto bogus = a().post("/integrations/failures/" + failure_id + "/resolve", json::object{{"outcome", "Whatever"}});
    EXPECT_EQ(bogus.status, 400) << bogus.body;
    EXPECT_EQ(b().call("POST", "/integrations/failures/" + failure_id + "/resolve").status, 404) << "another tenant's";
    auto resolved = a().call("POST", "/integrations/failures/" + failure_id + "/resolve");
    ASSERT_EQ(resolved.status, 200) << resolved.body;
    EXPECT_TRUE(resolved.json().at("resolvedAt").is_string()) << resolved.body;
    EXPECT_EQ(first_row(db, "SELECT dead_at IS NULL AND published_at IS NOT NULL FROM outbox WHERE event_id = ?", {*event}), "1");
    EXPECT_EQ(a().call("POST", "/integrations/failures/" + failure_id + "/resolve").status, 409) << "resolved already";
}

TEST_F(host_e2e, another_tenants_resources_are_not_found_and_unchanged) {
    auto t = set_up(a(), vendor_->port(), "-iso");
    auto failed = a().post("/integrations/runs", run_body(t.connection_id, "echo.bad"));
    ASSERT_EQ(failed.status, 201);
    auto run_id = str(failed.json(), "runId");
    auto failure_id = str(a().get("/integrations/failures?runId=" + run_id).json().at("items").at(0), "failureId");
    auto calls = vendor_->echo_calls.load();

    struct probe {
        std::string method, target;
        json::value body;
    };
    std::vector<probe> probes{
        {"GET", "/integrations/providers/" + t.provider_id, nullptr},
        {"POST", "/integrations/providers/" + t.provider_id + "/clients",
         json::object{{"assemblyName", "Evil.Client"}, {"version", "1.0.0"}, {"capabilities", json::array{"echo.send"}},
                      {"authMode", "ApiKey"}, {"operations", json::array{}}}},
        {"GET", "/integrations/providers/" + t.provider_id + "/clients", nullptr},
        {"POST", "/integrations/providers/" + t.provider_id + "/activate", json::object{}},
        {"POST", "/integrations/providers/" + t.provider_id + "/deprecate", json::object{}},
        {"POST", "/integrations/credentials", json::object{{"providerId", t.provider_id}, {"authMode", "ApiKey"}, {"secret", "x"}}},
        {"GET", "/integrations/credentials/" + t.credential_id, nullptr},
        {"POST", "/integrations/credentials/rotate", json::object{{"credentialId", t.credential_id}, {"secret", "evil"}}},
        {"POST", "/integrations/credentials/" + t.credential_id + "/revoke", json::object{}},
        {"POST", "/integrations/connections", json::object{{"projectId", "p"}, {"providerId", t.provider_id}, {"displayName", "x"}}},
        {"GET", "/integrations/connections/" + t.connection_id, nullptr},
        {"POST", "/integrations/connections/" + t.connection_id + "/test", json::object{}},
        {"POST", "/integrations/connections/" + t.connection_id + "/retire", json::object{}},
        {"POST", "/integrations/connections/" + t.connection_id + "/inbound-webhook", json::object{{"scheme", "github"}, {"secret", "s"}}},
        {"POST", "/integrations/runs", run_body(t.connection_id)},
        {"GET", "/integrations/runs/" + run_id, nullptr},
        {"GET", "/integrations/failures/" + failure_id, nullptr},
        {"POST", "/integrations/failures/" + failure_id + "/escalate", json::object{{"reason", "evil"}}},
    };
    for (auto const& p : probes) {
        auto r = p.body.is_null() ? b().call(p.method, p.target) : b().post(p.target, p.body);
        EXPECT_EQ(r.status, 404) << p.method << " " << p.target << ": " << r.body;
        EXPECT_EQ(r.headers["content-type"], "application/problem+json") << p.target;
    }
    for (auto const& list : {"/integrations/providers", "/integrations/credentials", "/integrations/connections",
                             "/integrations/runs", "/integrations/failures"}) {
        auto r = b().get(list);
        ASSERT_EQ(r.status, 200) << list;
        EXPECT_TRUE(r.json().at("items").as_array().empty()) << list << ": " << r.body;
    }
    for (auto const& filtered : {"/integrations/runs?connectionId=" + t.connection_id, "/integrations/failures?runId=" + run_id,
                                 "/integrations/connections?providerId=" + t.provider_id}) {
        auto r = b().get(filtered);
        ASSERT_EQ(r.status, 200);
        EXPECT_TRUE(r.json().at("items").as_array().empty()) << filtered;
    }
    // Nothing changed for tenant A.
    EXPECT_EQ(vendor_->echo_calls.load(), calls);
    EXPECT_EQ(str(a().get("/integrations/providers/" + t.provider_id).json(), "status"), "Active");
    auto clients = a().get("/integrations/providers/" + t.provider_id + "/clients");
    EXPECT_EQ(clients.json().at("items").as_array().size(), 1u);
    auto cred = a().get("/integrations/credentials/" + t.credential_id).json();
    EXPECT_EQ(str(cred, "status"), "Active");
    EXPECT_EQ(cred.at("currentVersion").as_int64(), 1);
    EXPECT_EQ(str(a().get("/integrations/connections/" + t.connection_id).json(), "status"), "Active");
    EXPECT_TRUE(a().get("/integrations/failures/" + failure_id).json().at("escalations").as_array().empty());
}

// Every id a request body names (providerId, connectionId, credentialId) is looked up in the
// caller's tenant: tenant B's is 404 for tenant A, the other references of the body being A's own,
// and nothing is created or changed in either tenant.
TEST_F(host_e2e, ids_in_a_request_body_are_resolved_in_the_callers_tenant) {
    auto mine = set_up(a(), vendor_->port(), "-refs-a");
    auto theirs = set_up(b(), vendor_->port(), "-refs-b");
    auto count = [](api const& client, std::string const& list) {
        auto r = client.get(list + "?limit=500");
        EXPECT_EQ(r.status, 200) << list << ": " << r.body;
        return r.json().at("items").as_array().size();
    };
    auto credentials_before = count(a(), "/integrations/credentials");
    auto connections_before = count(a(), "/integrations/connections");
    auto runs_before = count(a(), "/integrations/runs");
    auto calls = vendor_->echo_calls.load();
    auto api_key = json::object{{"in", "header"}, {"name", "X-Api-Key"}};

    struct probe {
        std::string field, target;
        json::object body;
    };
    std::vector<probe> probes{
        {"providerId", "/integrations/credentials",
         {{"providerId", theirs.provider_id}, {"authMode", "ApiKey"}, {"secret", "sk_ref_1"}, {"apiKey", api_key}}},
        {"connectionId", "/integrations/credentials",
         {{"providerId", mine.provider_id}, {"connectionId", theirs.connection_id}, {"authMode", "ApiKey"},
          {"secret", "sk_ref_2"}, {"apiKey", api_key}}},
        {"providerId", "/integrations/connections",
         {{"projectId", "proj-refs"}, {"providerId", theirs.provider_id}, {"displayName", "x"}, {"credentialId", mine.credential_id}}},
        {"credentialId", "/integrations/connections",
         {{"projectId", "proj-refs"}, {"providerId", mine.provider_id}, {"displayName", "x"}, {"credentialId", theirs.credential_id}}},
        {"connectionId", "/integrations/runs", run_body(theirs.connection_id)},
        {"credentialId", "/integrations/credentials/rotate", {{"credentialId", theirs.credential_id}, {"secret", "sk_ref_3"}}},
    };
    for (auto const& p : probes) {
        auto r = a().post(p.target, p.body);
        EXPECT_EQ(r.status, 404) << p.target << " with tenant B's " << p.field << ": " << r.body;
        EXPECT_EQ(r.headers["content-type"], "application/problem+json") << p.target;
        if (r.status == 404) {
            EXPECT_EQ(str(r.json(), "type"), "https://integration.dev/problems/not-found") << r.body;
        }
        EXPECT_EQ(r.body.find("tenant-b"), std::string::npos) << r.body;
    }
    EXPECT_EQ(count(a(), "/integrations/credentials"), credentials_before);
    EXPECT_EQ(count(a(), "/integrations/connections"), connections_before);
    EXPECT_EQ(count(a(), "/integrations/runs"), runs_before);
    EXPECT_EQ(vendor_->echo_calls.load(), calls);
    // Tenant B's resources are as they were: one credential on its connection, at version 1.
    auto bound = b().get("/integrations/credentials?connectionId=" + theirs.connection_id);
    ASSERT_EQ(bound.status, 200) << bound.body;
    EXPECT_TRUE(bound.json().at("items").as_array().empty()) << bound.body;
    auto cred = b().get("/integrations/credentials/" + theirs.credential_id).json();
    EXPECT_EQ(cred.at("currentVersion").as_int64(), 1);
    EXPECT_EQ(str(b().get("/integrations/connections/" + theirs.connection_id).json(), "status"), "Active");
    // The same bodies with tenant A's own ids succeed.
    auto own = a().post("/integrations/credentials", json::object{{"providerId", mine.provider_id}, {"connectionId", mine.connection_id},
                                                                 {"authMode", "ApiKey"}, {"secret", "sk_ref_4"}, {"apiKey", api_key}});
    EXPECT_EQ(own.status, 201) << own.body;
}

// assemblyName + version: unique among global clients and within a tenant's own view (its
// clients and the global ones). Two tenants may register the same, a 409 reveals no other tenant,
// a tenant may not take a global client's, and an admin's global client is never blocked by a
// tenant's (the tenant keeps its own).
TEST_F(host_e2e, assembly_names_are_unique_per_tenant_view_without_revealing_other_tenants) {
    auto provider_of = [&](api const& client, std::string const& key, bool global = false) {
        auto body = json::object{{"key", key}, {"displayName", "Acme"}, {"category", "BusinessSystem"}, {"authModel", "ApiKey"},
                                 {"baseUrl", "http://127.0.0.1:" + std::to_string(vendor_->port())},
                                 {"capabilities", json::array{"echo.send"}}};
        if (global) body["scope"] = "global";
        auto r = client.post("/integrations/providers", body);
        EXPECT_EQ(r.status, 201) << r.body;
        return str(r.json(), "providerId");
    };
    auto client_of = [&](api const& client, std::string const& provider, std::string const& assembly) {
        return client.post("/integrations/providers/" + provider + "/clients",
                           json::object{{"assemblyName", assembly}, {"version", "1.0.0"}, {"capabilities", json::array{"echo.send"}},
                                        {"authMode", "ApiKey"}, {"operations", json::array{}}});
    };
    auto expect_taken = [](http_answer r, std::string const& by) {
        EXPECT_EQ(r.status, 409) << r.body;
        EXPECT_EQ(r.headers["content-type"], "application/problem+json");
        if (r.status != 409) return;
        EXPECT_EQ(str(r.json(), "type"), "https://integration.dev/problems/already-exists") << r.body;
        EXPECT_NE(str(r.json(), "detail").find(by), std::string::npos) << r.body;
        EXPECT_EQ(r.body.find("tenant-"), std::string::npos) << r.body;
        EXPECT_EQ(r.body.find("client-"), std::string::npos) << r.body;
    };
    auto pa = provider_of(a(), "asm-a"), pa2 = provider_of(a(), "asm-a2"), pb = provider_of(b(), "asm-b");
    ASSERT_EQ(client_of(a(), pa, "Acme.ApiClient").status, 201);
    auto b_same = client_of(b(), pb, "Acme.ApiClient");
    EXPECT_EQ(b_same.status, 201) << "tenant B learned that tenant A registered Acme.ApiClient 1.0.0: " << b_same.body;
    expect_taken(client_of(a(), pa2, "Acme.ApiClient"), "another client of this tenant");

    auto global = provider_of(admin(), "asm-global", true);
    ASSERT_EQ(client_of(admin(), global, "Global.ApiClient").status, 201);
    expect_taken(client_of(admin(), global, "Global.ApiClient"), "a global client");
    expect_taken(client_of(a(), pa2, "Global.ApiClient"), "a global client");
    expect_taken(client_of(b(), pb, "Global.ApiClient"), "a global client");
    // The operator publishing a name tenants already use: accepted, tenants keep their clients.
    EXPECT_EQ(client_of(admin(), global, "Acme.ApiClient").status, 201);
    EXPECT_EQ(b().get("/integrations/providers/" + pb + "/clients").json().at("items").as_array().size(), 1u);
    expect_taken(client_of(b(), pb, "Acme.ApiClient"), "a global client");
}

// A rotation whose new key the vendor refuses (its health check answers 401 to it) fails with
// 422: the prior version stays active and runs keep sending it.
TEST_F(host_e2e, a_rotation_the_vendor_refuses_keeps_the_prior_version_for_runs) {
    auto t = set_up(a(), vendor_->port(), "-rotfail");
    auto checks_before = vendor_->requests_for("GET /health").size();
    auto refused = a().post("/integrations/credentials/rotate",
                            json::object{{"credentialId", t.credential_id}, {"secret", "sk_live_REFUSED_55555"}});
    ASSERT_EQ(refused.status, 422) << refused.body;
    EXPECT_EQ(refused.headers["content-type"], "application/problem+json");
    EXPECT_EQ(str(refused.json(), "type"), "https://integration.dev/problems/verification-failed") << refused.body;
    EXPECT_NE(str(refused.json(), "detail").find("401"), std::string::npos) << refused.body;
    EXPECT_EQ(refused.body.find("REFUSED"), std::string::npos) << refused.body;
    EXPECT_TRUE(checked_with(*vendor_, checks_before, "sk_live_REFUSED_55555")) << "the vendor was never asked";

    auto cred = a().get("/integrations/credentials/" + t.credential_id);
    ASSERT_EQ(cred.status, 200) << cred.body;
    EXPECT_EQ(str(cred.json(), "status"), "Active") << cred.body;
    EXPECT_EQ(cred.json().at("activeVersion").as_int64(), 1) << cred.body;
    auto run = a().post("/integrations/runs", run_body(t.connection_id));
    ASSERT_EQ(run.status, 201) << run.body;
    EXPECT_EQ(str(run.json(), "status"), "Completed") << run.body;
    EXPECT_EQ(echo_vendor::api_key_of(vendor_->requests_for("POST /echo/42").back()), vendor_secret);
    EXPECT_EQ(host_->log().find("REFUSED"), std::string::npos);
}

// Destinations the egress policy refuses whatever they resolve to, and paths a request line
// cannot carry, are refused when registered (nothing is stored, nothing is contacted), instead
// of leaving a connection Pending with no reason. The host allows 127.0.0.0/8 only.
TEST_F(host_e2e, refused_destinations_and_unusable_paths_are_refused_at_registration) {
    auto provider = [&](std::string const& key, std::string const& base) {
        return json::object{{"key", key}, {"displayName", "Refused"}, {"category", "BusinessSystem"}, {"authModel", "ApiKey"},
                            {"baseUrl", base}, {"capabilities", json::array{"echo.send"}}};
    };
    int n = 0;
    for (auto const* base : {"https://169.254.169.254", "http://169.254.169.254/latest/meta-data", "http://10.0.0.1",
                             "https://10.0.0.1", "https://192.168.1.1:8443", "http://0xa9fea9fe", "https://0251.254.169.254",
                             "https://2852039166", "https://0xa.0.0.1", "https://[::ffff:169.254.169.254]", "https://[::1]",
                             "https://[fd00::1]", "https://0", "https://localhost", "https://api.localhost",
                             "http://[::ffff:a9fe:a9fe]", "https://user:hunter2@vendor.example", "https://vendor.example@10.0.0.1/"}) {
        auto key = "refused-" + std::to_string(++n);
        auto r = a().post("/integrations/providers", provider(key, base));
        EXPECT_EQ(r.status, 422) << base << ": " << r.body;
        EXPECT_EQ(r.headers["content-type"], "application/problem+json") << base;
        if (r.status == 422) {
            EXPECT_EQ(str(r.json(), "type"), "https://integration.dev/problems/egress-denied") << r.body;
            EXPECT_EQ(str(r.json(), "detail").rfind("baseUrl: ", 0), 0u) << r.body;
        }
        EXPECT_EQ(r.body.find("hunter2"), std::string::npos) << r.body;  // never the userinfo
    }
    for (auto const* base : {"file:///etc/passwd", "gopher://127.0.0.1:70/", "ftp://127.0.0.1/", "https://", "https://a b.example"}) {
        auto r = a().post("/integrations/providers", provider("refused-" + std::to_string(++n), base));
        EXPECT_EQ(r.status / 100, 4) << base << ": " << r.body;
        EXPECT_EQ(r.headers["content-type"], "application/problem+json") << base;
    }
    auto env = provider("refused-env", "http://127.0.0.1:" + std::to_string(vendor_->port()));
    env["environments"] = json::array{json::object{{"name", "internal"}, {"baseUrl", "https://172.16.0.1"}}};
    auto refused_env = a().post("/integrations/providers", env);
    EXPECT_EQ(refused_env.status, 422) << refused_env.body;
    EXPECT_NE(refused_env.body.find("environments[].baseUrl"), std::string::npos) << refused_env.body;
    for (auto const& path : std::vector<std::string>{"/health\r\nX-Injected: 1", "/he alth", "/health\t", std::string("/health\0x", 9)}) {
        auto bad = provider("refused-path", "http://127.0.0.1:" + std::to_string(vendor_->port()));
        bad["healthCheck"] = json::object{{"method", "GET"}, {"path", path}};
        auto r = a().post("/integrations/providers", bad);
        EXPECT_EQ(r.status, 400) << r.body;
        EXPECT_NE(r.body.find("healthCheck.path"), std::string::npos) << r.body;
    }
    auto listed = a().get("/integrations/providers?limit=500");
    ASSERT_EQ(listed.status, 200);
    EXPECT_EQ(listed.body.find("refused-"), std::string::npos) << listed.body;

    // An operation path a request line cannot carry: the client is refused.
    auto t = set_up(a(), vendor_->port(), "-paths");
    for (auto const* path : {"/echo/{id}\r\nHost: evil.example", "/echo/{id} HTTP/1.0", "/echo/\x7f"}) {
        auto r = a().post("/integrations/providers/" + t.provider_id + "/clients",
                          json::object{{"assemblyName", "Paths.Client"}, {"version", "2.0.0"}, {"capabilities", json::array{"echo.send"}},
                                       {"authMode", "ApiKey"},
                                       {"operations", json::array{json::object{{"operation", "echo.send"}, {"method", "POST"}, {"path", path}}}}});
        EXPECT_EQ(r.status, 400) << r.body;
        EXPECT_NE(r.body.find("operations[].path"), std::string::npos) << r.body;
    }
    // A connection endpoint the policy refuses: no connection, no probe.
    auto connections_before = a().get("/integrations/connections?limit=500").json().at("items").as_array().size();
    for (auto const* base : {"https://169.254.169.254", "http://10.0.0.1", "https://[::ffff:a9fe:a9fe]"}) {
        auto r = a().post("/integrations/connections",
                          json::object{{"projectId", "proj-paths"}, {"providerId", t.provider_id}, {"displayName", "Elsewhere"},
                                       {"credentialId", t.credential_id},
                                       {"endpoints", json::array{json::object{{"operationClass", "default"}, {"baseUrl", base}}}}});
        EXPECT_EQ(r.status, 422) << base << ": " << r.body;
        if (r.status == 422) {
            EXPECT_EQ(str(r.json(), "type"), "https://integration.dev/problems/egress-denied") << r.body;
        }
    }
    EXPECT_EQ(a().get("/integrations/connections?limit=500").json().at("items").as_array().size(), connections_before);
}

// A connection left Pending says why: the latest probe's detail is `healthReason`, stored with
// the connection and shown by every route that returns it.
TEST_F(host_e2e, a_pending_connection_shows_the_reason_of_its_last_health_check) {
    auto t = set_up(a(), vendor_->port(), "-reason");
    auto conn = connect_with_key(a(), t.provider_id, "sk_live_NOT_YET_7777", "proj-reason", "Not yet");
    ASSERT_EQ(conn.status, 201) << conn.body;
    EXPECT_EQ(str(conn.json(), "status"), "Pending") << conn.body;
    ASSERT_TRUE(conn.json().as_object().contains("healthReason")) << conn.body;
    ASSERT_TRUE(conn.json().at("healthReason").is_string()) << conn.body;
    EXPECT_EQ(str(conn.json(), "healthReason"), "expected HTTP 200 from /health, got 401") << conn.body;
    auto id = str(conn.json(), "connectionId");
    auto read = a().get("/integrations/connections/" + id);
    ASSERT_EQ(read.status, 200) << read.body;
    EXPECT_EQ(str(read.json(), "healthReason"), "expected HTTP 200 from /health, got 401") << read.body;
    auto listed = a().get("/integrations/connections?status=Pending&providerId=" + t.provider_id);
    ASSERT_EQ(listed.json().at("items").as_array().size(), 1u) << listed.body;
    EXPECT_EQ(str(listed.json().at("items").at(0), "healthReason"), "expected HTTP 200 from /health, got 401");
    EXPECT_EQ(conn.body.find("NOT_YET"), std::string::npos) << conn.body;

    // Once the vendor takes the key, a test activates it and the reason says so.
    vendor_->accept("sk_live_NOT_YET_7777");
    // The test takes no fields: one given is refused before the probe, as on every such route.
    auto with_field = a().post("/integrations/connections/" + id + "/test", json::object{{"force", true}});
    EXPECT_EQ(with_field.status, 400) << with_field.body;
    EXPECT_EQ(str(with_field.json(), "type"), "https://integration.dev/problems/validation") << with_field.body;
    EXPECT_EQ(str(a().get("/integrations/connections/" + id).json(), "healthReason"), "expected HTTP 200 from /health, got 401")
        << "no probe ran";
    auto tested = a().post("/integrations/connections/" + id + "/test", json::object{});
    ASSERT_EQ(tested.status, 200) << tested.body;
    EXPECT_EQ(str(tested.json(), "status"), "Active") << tested.body;
    EXPECT_EQ(str(tested.json(), "healthReason"), "HTTP 200 from /health") << tested.body;
    EXPECT_EQ(str(a().get("/integrations/connections/" + id).json(), "healthReason"), "HTTP 200 from /health");
}

// A connection that worked and fails its health check has one open failure, listed by
// `connectionId`; the vendor refusing its key escalates it, and the check that passes resolves it.
TEST_F(host_e2e, a_connections_failed_health_checks_are_one_failure_listed_by_the_connection) {
    auto t = set_up(a(), vendor_->port(), "-probe");
    vendor_->accept("sk_live_FLAKY_4242");
    auto conn = connect_with_key(a(), t.provider_id, "sk_live_FLAKY_4242", "proj-probe", "Flaky");
    ASSERT_EQ(conn.status, 201) << conn.body;
    ASSERT_EQ(str(conn.json(), "status"), "Active") << conn.body;
    auto id = str(conn.json(), "connectionId");
    auto listed = [&](std::string const& query) {
        auto page = a().get("/integrations/failures?connectionId=" + id + query);
        EXPECT_EQ(page.status, 200) << page.body;
        return page.json().at("items").as_array();
    };
    EXPECT_TRUE(listed("").empty());

    vendor_->refuse("sk_live_FLAKY_4242");
    for (int i = 0; i < 2; ++i) {
        auto tested = a().post("/integrations/connections/" + id + "/test", json::object{});
        ASSERT_EQ(tested.status, 200) << tested.body;
        EXPECT_EQ(str(tested.json(), "status"), "Degraded") << tested.body;
    }
    auto open = listed("&unresolved=true");
    ASSERT_EQ(open.size(), 1u);
    EXPECT_EQ(str(open.at(0), "source"), "HealthProbe");
    EXPECT_EQ(str(open.at(0), "connectionId"), id);
    EXPECT_EQ(str(open.at(0), "category"), "Auth");
    EXPECT_EQ(str(open.at(0), "nextAction"), "Escalate");
    EXPECT_EQ(open.at(0).at("attempt").as_int64(), 2);
    EXPECT_EQ(open.at(0).at("escalations").as_array().size(), 1u);
    EXPECT_TRUE(listed("").size() == 1u);
    EXPECT_TRUE(a().get("/integrations/failures?connectionId=" + t.connection_id).json().at("items").as_array().empty())
        << "another connection's failures are not listed";

    vendor_->accept("sk_live_FLAKY_4242");
    auto tested = a().post("/integrations/connections/" + id + "/test", json::object{});
    ASSERT_EQ(tested.status, 200) << tested.body;
    EXPECT_EQ(str(tested.json(), "status"), "Active") << tested.body;
    EXPECT_TRUE(listed("&unresolved=true").empty());
    auto all = listed("");
    ASSERT_EQ(all.size(), 1u);
    EXPECT_TRUE(all.at(0).at("resolvedAt").is_string());
}

TEST_F(host_e2e, errors_are_problem_details) {
    auto malformed = a().call("POST", "/integrations/providers", "{\"key\": \"x\",, }");
    EXPECT_EQ(malformed.status, 400);
    EXPECT_EQ(malformed.headers["content-type"], "application/problem+json");
    EXPECT_NE(str(malformed.json(), "detail").find("byte 12"), std::string::npos) << malformed.body;
    EXPECT_EQ(str(malformed.json(), "type"), "https://integration.dev/problems/validation");

    auto missing = a().post("/integrations/providers", json::object{{"key", "nodisplay"}});
    EXPECT_EQ(missing.status, 400);
    EXPECT_NE(str(missing.json(), "detail").find("displayName"), std::string::npos) << missing.body;

    auto no_key = api(host_->port(), "").get("/integrations/providers");
    EXPECT_EQ(no_key.status, 401);
    EXPECT_EQ(no_key.headers["www-authenticate"].rfind("Bearer", 0), 0u);
    EXPECT_EQ(api(host_->port(), "ik_unknown").get("/integrations/providers").status, 401);

    auto unknown = a().get("/integrations/nothing-here");
    EXPECT_EQ(unknown.status, 404);
    EXPECT_EQ(unknown.headers["content-type"], "application/problem+json");
    EXPECT_EQ(a().call("DELETE", "/integrations/providers").status, 405);

    auto text = parse_answer(raw_exchange(host_->port(),
        "POST /integrations/providers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + *key_a_ +
        "\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"));
    EXPECT_EQ(text.status, 415);

    auto too_big = parse_answer(raw_exchange(host_->port(),
        "POST /integrations/providers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + *key_a_ +
        "\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n{"));
    EXPECT_EQ(too_big.status, 413);
    // The route's own limit, though the length was refused before the header ended.
    EXPECT_NE(too_big.body.find("the body limit of this route is 65536 bytes"), std::string::npos) << too_big.body;

    auto smuggled = parse_answer(raw_exchange(host_->port(),
        "POST /integrations/providers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"));
    EXPECT_EQ(smuggled.status, 400);
    auto smuggled2 = parse_answer(raw_exchange(host_->port(),
        "POST /integrations/providers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"));
    EXPECT_EQ(smuggled2.status, 400);

    auto huge = parse_answer(raw_exchange(host_->port(),
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n"));
    EXPECT_TRUE(huge.status == 431 || huge.status == 400) << huge.status;
}

// RFC 9112 3.2: a proxy in front may route on Host, so a request whose Host is missing, doubled
// or not a host[:port] is refused rather than answered for whichever host the proxy guessed.
TEST_F(host_e2e, a_missing_doubled_or_malformed_host_is_400) {
    for (std::string const& fields : {std::string(""), std::string("Host: a\r\nHost: b\r\n"),
                                      std::string("Host: a b\r\n"), std::string("Host: evil.test/path\r\n"),
                                      std::string("Host: user@evil.test\r\n"), std::string("Host: x:99999999\r\n"),
                                      std::string("Host: [::1\r\n")}) {
        auto answer = parse_answer(raw_exchange(host_->port(), "GET /healthz HTTP/1.1\r\n" + fields + "\r\n"));
        EXPECT_EQ(answer.status, 400) << fields;
        EXPECT_NE(answer.body.find("Host"), std::string::npos) << answer.body;
    }
    for (std::string host : {"127.0.0.1:8080", "[::1]:80", "api.example.test", "", "xn--bcher-kva.example"}) {
        auto answer = parse_answer(raw_exchange(host_->port(), "GET /healthz HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n"));
        EXPECT_EQ(answer.status, 200) << host;
    }
    // HTTP/1.0 has no Host requirement.
    EXPECT_EQ(parse_answer(raw_exchange(host_->port(), "GET /healthz HTTP/1.0\r\n\r\n")).status, 200);
}

TEST_F(host_e2e, keep_alive_and_pipelined_requests_answer_in_order) {
    auto raw = raw_exchange(host_->port(),
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    auto first = raw.find("HTTP/1.1 200");
    auto second = raw.find("HTTP/1.1 404");
    auto third = raw.rfind("HTTP/1.1 200");
    ASSERT_NE(first, std::string::npos) << raw;
    ASSERT_NE(second, std::string::npos) << raw;
    EXPECT_LT(first, second);
    EXPECT_LT(second, third);
}

TEST_F(host_e2e, a_slow_client_is_disconnected_after_the_read_timeout) {
    int fd = connect_loopback(host_->port());
    std::string half = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
    ASSERT_GT(::send(fd, half.data(), half.size(), MSG_NOSIGNAL), 0);
    auto start = std::chrono::steady_clock::now();
    bool closed = false;
    auto got = read_all(fd, 5s, &closed);
    ::close(fd);
    EXPECT_TRUE(closed);
    EXPECT_EQ(got.find("200"), std::string::npos);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

// The router and host/openapi.json describe the same routes: every (method, pattern) the router
// registers is an operation of the document, and every operation is a registered route.
TEST_F(host_e2e, openapi_describes_exactly_the_routes_the_router_serves) {
    auto doc = a().get("/openapi.json");
    ASSERT_EQ(doc.status, 200);
    EXPECT_EQ(doc.headers["content-type"], "application/json");
    auto spec = doc.json().as_object();
    EXPECT_EQ(std::string(spec.at("openapi").as_string()).rfind("3.1", 0), 0u);
    EXPECT_EQ(str(spec.at("servers").at(0), "url"), "http://127.0.0.1:" + std::to_string(host_->port()));
    auto const& paths = spec.at("paths").as_object();
    std::set<std::string> served;
    std::istringstream lines(run_and_capture(std::string(INTEGRATION_HOST_BIN) + " routes"));
    std::string method, pattern, access, query;
    auto const& parameters = spec.at("components").at("parameters").as_object();
    while (lines >> method >> pattern >> access >> query) {
        served.insert(method + " " + pattern);
        std::string lower = method;
        for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        auto const* item = paths.if_contains(pattern);
        ASSERT_TRUE(item) << pattern << " is served but not in host/openapi.json";
        auto const* op = item->as_object().if_contains(lower);
        ASSERT_TRUE(op) << method << " " << pattern << " is served but not in host/openapi.json";
        EXPECT_TRUE(op->as_object().contains("operationId")) << pattern;
        // Open routes override the global bearer requirement with `security: []`; others inherit it.
        auto const* security = op->as_object().if_contains("security");
        if (access == "open") EXPECT_TRUE(security && security->as_array().empty()) << pattern;
        else EXPECT_EQ(security, nullptr) << pattern;
        // The query parameters documented are those the route takes (it refuses any other).
        std::string documented;
        if (auto const* listed = op->as_object().if_contains("parameters"))
            for (auto const& p : listed->as_array()) {
                auto const* param = &p.as_object();
                if (auto const* ref = param->if_contains("$ref")) {
                    std::string_view r = ref->as_string();
                    param = &parameters.at(r.substr(r.rfind('/') + 1)).as_object();
                }
                if (str(*param, "in") == "query") documented += (documented.empty() ? "" : ",") + str(*param, "name");
            }
        std::set<std::string> taken, described;
        for (auto [text, names] : {std::pair{&query, &taken}, std::pair{&documented, &described}}) {
            std::istringstream parts(*text == "-" ? "" : *text);
            for (std::string name; std::getline(parts, name, ',');) names->insert(name);
        }
        EXPECT_EQ(taken, described) << method << " " << pattern;
    }
    EXPECT_GE(served.size(), 28u);
    for (auto const& [path, item] : paths)
        for (auto const& [verb, op] : item.as_object()) {
            if (verb == "parameters") continue;
            std::string upper(verb);
            for (auto& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
            EXPECT_TRUE(served.contains(upper + " " + std::string(path))) << upper << " " << path << " is documented but not served";
        }
    auto const& run_params = paths.at("/integrations/runs").at("post").at("parameters").as_array();
    EXPECT_NE(json::serialize(run_params).find("IdempotencyKey"), std::string::npos);
    EXPECT_TRUE(spec.at("components").at("securitySchemes").as_object().contains("bearerAuth"));
}

// A real OpenAPI linter (Redocly CLI, recommended ruleset) accepts the served document.
TEST_F(host_e2e, openapi_passes_the_redocly_linter) {
    std::string cli = std::string(INTEGRATION_PEERS_DIR) + "/node_modules/@redocly/cli/bin/cli.js";
    ASSERT_TRUE(std::filesystem::exists(cli))
        << "the test peers are not installed: run npm ci in " << INTEGRATION_PEERS_DIR << " (scripts/test.sh does)";
    auto doc = a().get("/openapi.json");
    ASSERT_EQ(doc.status, 200);
    auto file = *dir_ / "openapi.json";
    std::ofstream(file) << doc.body;
    // Findings go to stdout, one per line with its severity; stderr has progress and banners.
    auto err = *dir_ / "redocly.stderr";
    auto out = run_and_capture("REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true node " + cli +
                               " lint --format=stylish " + file.string() + " 2>" + err.string() + "; echo \"exit=$?\"");
    std::ifstream in(err);
    std::string progress((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_NE(out.find("exit=0"), std::string::npos) << out << progress;
    EXPECT_EQ(out.find(" error "), std::string::npos) << out;
    EXPECT_EQ(out.find(" warning "), std::string::npos) << out;
    EXPECT_NE(progress.find("valid"), std::string::npos) << progress;
}

TEST_F(host_e2e, metrics_count_requests_by_route_pattern_with_a_histogram) {
    auto before = admin().get("/metrics");
    ASSERT_EQ(before.status, 200);
    EXPECT_EQ(before.headers["content-type"].rfind("text/plain; version=0.0.4", 0), 0u) << before.headers["content-type"];
    auto const route = std::string("route=\"/integrations/providers/{providerId}\",method=\"GET\"");
    auto const counter = "integration_http_requests_total{" + route + ",status=\"404\"}";
    auto const count = "integration_http_request_duration_seconds_count{" + route + "}";
    auto const unmatched = std::string("integration_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"}");
    for (auto const* id : {"prov-missing-1", "prov-missing-2", "prov-missing-3"})
        EXPECT_EQ(a().get(std::string("/integrations/providers/") + id).status, 404);
    EXPECT_EQ(a().get("/no/such/route-77").status, 404);

    auto after = admin().get("/metrics");
    ASSERT_EQ(after.status, 200);
    auto const& m = after.body;
    EXPECT_EQ(metric(m, counter) - metric(before.body, counter), 3) << m;
    EXPECT_EQ(metric(m, count) - metric(before.body, count), 3);
    EXPECT_EQ(metric(m, unmatched) - metric(before.body, unmatched), 1);
    // Cumulative buckets end at +Inf = _count, and a _sum is there.
    EXPECT_EQ(metric(m, "integration_http_request_duration_seconds_bucket{" + route + ",le=\"+Inf\"}"), metric(m, count));
    EXPECT_LE(metric(m, "integration_http_request_duration_seconds_bucket{" + route + ",le=\"0.005\"}"),
              metric(m, "integration_http_request_duration_seconds_bucket{" + route + ",le=\"30\"}"));
    EXPECT_NE(m.find("integration_http_request_duration_seconds_sum{" + route + "}"), std::string::npos);
    EXPECT_NE(m.find("# TYPE integration_http_request_duration_seconds histogram"), std::string::npos);
    // Patterns only: no raw path, no key, no Authorization header in any label.
    EXPECT_EQ(m.find("prov-missing"), std::string::npos);
    EXPECT_EQ(m.find("route-77"), std::string::npos);
    EXPECT_EQ(m.find(*key_a_), std::string::npos);
    EXPECT_EQ(m.find("ik_"), std::string::npos);
    EXPECT_EQ(m.find("Bearer"), std::string::npos);
    EXPECT_EQ(m.find("uthorization"), std::string::npos);
    // The four workers report.
    for (auto const* w : {"outbox-relay", "retry", "credential-rotation", "health-probe", "retention"}) {
        auto label = std::string("{worker=\"") + w + "\"}";
        for (auto const* name : {"integration_worker_lag_seconds", "integration_worker_failures_total",
                                 "integration_worker_last_success_timestamp_seconds"})
            EXPECT_NE(m.find(std::string("\n") + name + label + " "), std::string::npos) << name << label;
    }
    for (auto const* name : {"integration_outbox_failed_publications_total", "integration_outbox_dead_events_total"})
        EXPECT_NE(m.find(std::string("\n") + name + " 0\n"), std::string::npos) << name;
}

TEST_F(host_e2e, metrics_count_runs_by_final_status_without_replays) {
    auto t = set_up(a(), vendor_->port(), "-metrics");
    auto ops = admin();
    auto completed = std::string("integration_runs_total{status=\"Completed\"}");
    auto failed = std::string("integration_runs_total{status=\"Failed\"}");
    auto before = ops.get("/metrics").body;
    ASSERT_EQ(a().post("/integrations/runs", run_body(t.connection_id), {{"Idempotency-Key", "metrics-1"}}).status, 201);
    ASSERT_EQ(a().post("/integrations/runs", run_body(t.connection_id), {{"Idempotency-Key", "metrics-1"}}).status, 201);
    ASSERT_EQ(a().post("/integrations/runs", run_body(t.connection_id, "echo.bad")).status, 201);
    auto after = ops.get("/metrics").body;
    EXPECT_EQ(metric(after, completed) - metric(before, completed), 1) << after;
    EXPECT_EQ(metric(after, failed) - metric(before, failed), 1);
    auto runs = std::string("integration_http_requests_total{route=\"/integrations/runs\",method=\"POST\",status=\"201\"}");
    EXPECT_EQ(metric(after, runs) - metric(before, runs), 3);
    EXPECT_EQ(after.find(vendor_secret), std::string::npos);
    // The connection has run, so its breaker is reported: closed (0) after these calls.
    EXPECT_EQ(metric(after, "integration_breaker_state{connection=\"" + t.connection_id + "\"}"), 0) << after;
    EXPECT_NE(after.find("integration_breaker_state{connection=\"" + t.connection_id + "\"} 0"), std::string::npos);
}

TEST_F(host_e2e, protocol_errors_are_counted_under_their_route) {
    auto series = std::string("integration_http_requests_total{route=\"/integrations/providers\",method=\"POST\",status=\"413\"}");
    auto ops = admin();
    auto before = metric(ops.get("/metrics").body, series);
    auto too_big = parse_answer(raw_exchange(host_->port(),
        "POST /integrations/providers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n{"));
    ASSERT_EQ(too_big.status, 413);
    EXPECT_EQ(metric(ops.get("/metrics").body, series) - before, 1);
}

// /metrics is process-wide (it names connections of every tenant): admin keys only. The OpenAPI
// document needs any valid key. A tenant key on /metrics is a stable 403 problem.
TEST_F(host_e2e, metrics_need_an_admin_key_and_openapi_any_key) {
    api anon(host_->port(), "");
    auto no_key = anon.get("/metrics");
    EXPECT_EQ(no_key.status, 401);
    EXPECT_EQ(no_key.body.find("integration_http_requests_total"), std::string::npos);
    auto tenant = a().get("/metrics");
    EXPECT_EQ(tenant.status, 403) << tenant.body;
    EXPECT_EQ(tenant.headers["content-type"], "application/problem+json");
    EXPECT_EQ(str(tenant.json(), "type"), "https://integration.dev/problems/forbidden");
    EXPECT_EQ(tenant.json().at("status").as_int64(), 403);
    EXPECT_NE(str(tenant.json(), "detail").find("admin key"), std::string::npos) << tenant.body;
    EXPECT_EQ(tenant.body.find("integration_http_requests_total"), std::string::npos);
    EXPECT_EQ(admin().get("/metrics").status, 200);

    EXPECT_EQ(anon.get("/openapi.json").status, 401);
    EXPECT_EQ(api(host_->port(), "ik_unknown").get("/openapi.json").status, 401);
    EXPECT_EQ(a().get("/openapi.json").status, 200);
    EXPECT_EQ(admin().get("/openapi.json").status, 200);

    auto routes = run_and_capture(std::string(INTEGRATION_HOST_BIN) + " routes");
    EXPECT_NE(routes.find("GET /metrics admin -\n"), std::string::npos) << routes;
    EXPECT_NE(routes.find("GET /openapi.json key -\n"), std::string::npos) << routes;
    EXPECT_NE(routes.find("GET /healthz open -\n"), std::string::npos) << routes;
}

// scope "global": a tenant key may not register one (403), an admin key may, and every tenant
// then reads it but cannot change it or add clients to it.
TEST_F(host_e2e, global_providers_need_an_admin_key_and_other_tenants_only_read_them) {
    auto spec = [&](std::string const& key) {
        return json::object{{"key", key}, {"displayName", "Shared"}, {"category", "BusinessSystem"}, {"authModel", "ApiKey"},
                            {"baseUrl", "http://127.0.0.1:" + std::to_string(vendor_->port())},
                            {"capabilities", json::array{"echo.send"}}, {"scope", "global"}};
    };
    auto refused = a().post("/integrations/providers", spec("global-by-tenant"));
    EXPECT_EQ(refused.status, 403) << refused.body;
    EXPECT_EQ(refused.headers["content-type"], "application/problem+json");
    EXPECT_EQ(str(refused.json(), "type"), "https://integration.dev/problems/forbidden");
    EXPECT_NE(str(refused.json(), "detail").find("admin"), std::string::npos) << refused.body;
    EXPECT_EQ(a().get("/integrations/providers?limit=500").body.find("global-by-tenant"), std::string::npos);

    auto created = admin().post("/integrations/providers", spec("global-shared"));
    ASSERT_EQ(created.status, 201) << created.body;
    auto id = str(created.json(), "providerId");
    EXPECT_EQ(str(created.json(), "scope"), "global") << created.body;

    auto read = b().get("/integrations/providers/" + id);
    ASSERT_EQ(read.status, 200) << read.body;
    EXPECT_EQ(str(read.json(), "providerId"), id);
    EXPECT_NE(b().get("/integrations/providers?limit=500").body.find(id), std::string::npos);

    auto deprecate = b().post("/integrations/providers/" + id + "/deprecate", json::object{});
    EXPECT_EQ(deprecate.status, 403) << deprecate.body;
    EXPECT_EQ(str(deprecate.json(), "type"), "https://integration.dev/problems/forbidden");
    auto client = b().post("/integrations/providers/" + id + "/clients",
                           json::object{{"assemblyName", "Evil.Client"}, {"version", "1.0.0"}, {"capabilities", json::array{"echo.send"}},
                                        {"authMode", "ApiKey"}, {"operations", json::array{}}});
    EXPECT_EQ(client.status, 403) << client.body;
    // With a client the admin registered, activating it from a tenant is refused too.
    ASSERT_EQ(admin().post("/integrations/providers/" + id + "/clients",
                           json::object{{"assemblyName", "Shared.Client"}, {"version", "1.0.0"}, {"capabilities", json::array{"echo.send"}},
                                        {"authMode", "ApiKey"}, {"operations", json::array{}}}).status, 201);
    auto activate = b().post("/integrations/providers/" + id + "/activate", json::object{});
    EXPECT_EQ(activate.status, 403) << activate.body;
    auto after = b().get("/integrations/providers/" + id);
    EXPECT_EQ(str(after.json(), "status"), "Registered") << after.body;
    auto clients = admin().get("/integrations/providers/" + id + "/clients").json();
    ASSERT_EQ(clients.at("items").as_array().size(), 1u);
    EXPECT_EQ(str(clients.at("items").at(0), "status"), "Registered");
}

// --json-body-limit (64 KiB) for JSON routes, --body-limit (1 MiB) for runs, which carry vendor
// bodies: 100 KiB is refused by the first before a byte of its body is read, parsed by the second.
TEST_F(host_e2e, body_limits_are_chosen_per_route) {
    std::string pad(100 * 1024, 'x');
    auto providers = a().call("POST", "/integrations/providers", "{\"key\": \"" + pad + "\"}");
    EXPECT_EQ(providers.status, 413) << providers.body.substr(0, 300);
    EXPECT_EQ(providers.headers["content-type"], "application/problem+json");
    EXPECT_EQ(str(providers.json(), "type"), "https://integration.dev/problems/payload-too-large");
    EXPECT_NE(str(providers.json(), "detail").find("65536"), std::string::npos) << providers.body;

    auto runs = a().post("/integrations/runs",
                         json::object{{"connectionId", "conn-not-there"}, {"operation", "echo.send"},
                                      {"input", json::object{{"body", json::object{{"pad", pad}}}}}});
    EXPECT_EQ(runs.status, 404) << runs.body.substr(0, 300);  // parsed, then the connection is not found
    EXPECT_EQ(str(runs.json(), "type"), "https://integration.dev/problems/not-found");

    // Chunked: the same limits, counted as the chunks arrive.
    auto chunked = [&](std::string const& target) {
        return parse_answer(raw_exchange(host_->port(), "POST " + target + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + *key_a_ +
                                                            "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                                                            "Connection: close\r\n\r\n19000\r\n" + std::string(0x19000, ' ') + "\r\n0\r\n\r\n"));
    };
    EXPECT_EQ(chunked("/integrations/providers").status, 413);
    auto chunked_run = chunked("/integrations/runs");
    EXPECT_EQ(chunked_run.status, 400) << chunked_run.body;  // all whitespace: parsed, and not a JSON object
}

// `Expect: 100-continue`: the client sends its body only after the interim answer (curl waits a
// second for it), and a body the route would refuse gets its 413 without being sent.
TEST_F(host_e2e, expect_100_continue_gets_the_interim_answer_or_the_refusal_before_the_body) {
    std::string body = json::serialize(json::object{{"connectionId", "conn-not-there"}, {"operation", "echo.send"}});
    int fd = connect_loopback(host_->port());
    ASSERT_GE(fd, 0);
    auto head = "POST /integrations/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + *key_a_ +
                "\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: " + std::to_string(body.size()) +
                "\r\nConnection: close\r\n\r\n";
    ASSERT_EQ(::write(fd, head.data(), head.size()), static_cast<ssize_t>(head.size()));
    auto interim = read_all(fd, std::chrono::milliseconds(300));  // the answer must come well before curl's 1 s
    EXPECT_EQ(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    ASSERT_EQ(::write(fd, body.data(), body.size()), static_cast<ssize_t>(body.size()));
    auto final_answer = parse_answer(read_all(fd, std::chrono::milliseconds(3000)));
    ::close(fd);
    EXPECT_EQ(final_answer.status, 404) << final_answer.body;  // parsed, then the connection is not found

    // Too large for the route: 413 at once, and the body is never asked for.
    auto refused = parse_answer(raw_exchange(host_->port(), "POST /integrations/providers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                                                                *key_a_ + "\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
                                                                "Content-Length: 1000000\r\n\r\n"));
    EXPECT_EQ(refused.status, 413) << refused.body;

    // An HTTP/1.0 client gets no interim answer (RFC 9110 10.1.1): it sends its body unasked.
    int old_client = connect_loopback(host_->port());
    ASSERT_GE(old_client, 0);
    auto old_head = "POST /integrations/runs HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer " + *key_a_ +
                    "\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\n\r\n";
    ASSERT_EQ(::write(old_client, old_head.data(), old_head.size()), static_cast<ssize_t>(old_head.size()));
    EXPECT_EQ(read_all(old_client, std::chrono::milliseconds(300)), "") << "a 1.0 client was sent 100 Continue";
    ASSERT_EQ(::write(old_client, body.data(), body.size()), static_cast<ssize_t>(body.size()));
    auto old_answer = read_all(old_client, std::chrono::milliseconds(3000));
    ::close(old_client);
    EXPECT_EQ(old_answer.find("100 Continue"), std::string::npos) << old_answer;
    EXPECT_EQ(parse_answer(old_answer).status, 404) << old_answer;
}

// Bad input from egress-and-bad-input.md: each gets a clear 4xx problem, and the host stays up.
TEST_F(host_e2e, bad_input_gets_a_clear_4xx_and_the_host_stays_up) {
    auto auth = "Authorization: Bearer " + *key_a_ + "\r\n";
    auto two_lengths = parse_answer(raw_exchange(host_->port(),
        "POST /integrations/providers HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Type: application/json\r\n"
        "Content-Length: 2\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{}}"));
    EXPECT_EQ(two_lengths.status, 400) << two_lengths.body;
    EXPECT_EQ(two_lengths.headers["content-type"], "application/problem+json");
    EXPECT_EQ(two_lengths.headers["connection"], "close");

    auto empty = a().call("POST", "/integrations/providers", "");
    EXPECT_EQ(empty.status, 400) << empty.body;
    EXPECT_EQ(str(empty.json(), "type"), "https://integration.dev/problems/validation");
    EXPECT_NE(str(empty.json(), "detail").find("body is missing"), std::string::npos) << empty.body;
    EXPECT_EQ(a().call("POST", "/integrations/runs", "").status, 400);

    auto bad_utf8 = a().call("POST", "/integrations/providers", "{\"key\": \"caf\xC3\x28\", \"displayName\": \"x\"}");
    EXPECT_EQ(bad_utf8.status, 400) << bad_utf8.body;
    EXPECT_EQ(str(bad_utf8.json(), "type"), "https://integration.dev/problems/validation");
    EXPECT_NE(str(bad_utf8.json(), "detail").find("malformed JSON at byte 12"), std::string::npos) << bad_utf8.body;
    auto overlong = a().call("POST", "/integrations/providers", "{\"key\": \"\xC0\xAF\"}");
    EXPECT_EQ(overlong.status, 400) << overlong.body;

    // 100,000 levels: 100 KB, so on a JSON route the body limit refuses it first; on the runs
    // route it is parsed and refused past the parser's depth limit.
    std::string deep = std::string(100'000, '[') + std::string(100'000, ']');
    EXPECT_EQ(a().call("POST", "/integrations/providers", deep).status, 413);
    auto nested = a().call("POST", "/integrations/runs", "{\"input\": " + deep + "}");
    EXPECT_EQ(nested.status, 400) << nested.body.substr(0, 300);
    EXPECT_NE(str(nested.json(), "detail").find("malformed JSON"), std::string::npos) << nested.body;
    auto deep_objects = std::string();
    for (int i = 0; i < 50'000; ++i) deep_objects += "{\"a\":";
    auto nested_objects = a().call("POST", "/integrations/runs", deep_objects + "1" + std::string(50'000, '}'));
    EXPECT_EQ(nested_objects.status, 400) << nested_objects.body.substr(0, 300);

    EXPECT_EQ(api(host_->port(), "").get("/healthz").status, 200);
    EXPECT_EQ(a().get("/integrations/providers?limit=1").status, 200);
}

// A misspelt field is refused, naming it, at any depth: dropped in silence, `scope` (for `scopes`)
// made a connection that may use every capability of its provider, and `filters` (for `filter`) a
// subscription to every event. Nothing is created by a refused request.
TEST_F(host_e2e, a_field_a_route_does_not_take_is_refused_and_named_at_any_depth) {
    auto t = set_up(a(), vendor_->port(), "-typo");
    auto refused = [&](std::string const& path, json::object body, std::string const& field) {
        auto r = a().post(path, body);
        EXPECT_EQ(r.status, 400) << path << ": " << r.body;
        if (r.status != 400) return;
        EXPECT_EQ(str(r.json(), "type"), "https://integration.dev/problems/validation") << r.body;
        EXPECT_EQ(str(r.json(), "detail").rfind(field + " is not a field here", 0), 0u) << r.body;
    };
    auto connections_before = a().get("/integrations/connections?providerId=" + t.provider_id).json().at("items").as_array().size();
    refused("/integrations/connections",
            {{"projectId", "p"}, {"providerId", t.provider_id}, {"displayName", "typo"}, {"credentialId", t.credential_id},
             {"scope", json::array{"echo.send"}}},
            "scope");
    EXPECT_EQ(a().get("/integrations/connections?providerId=" + t.provider_id).json().at("items").as_array().size(),
              connections_before);
    refused("/integrations/providers",
            {{"key", "typo-provider"}, {"displayName", "x"}, {"category", "BusinessSystem"}, {"authModel", "ApiKey"},
             {"baseUrl", "http://127.0.0.1:1"}, {"healthCheck", json::object{{"method", "GET"}, {"path", "/"}, {"expectedStatus", 200}}}},
            "healthCheck.expectedStatus");
    refused("/integrations/providers/" + t.provider_id + "/clients",
            {{"assemblyName", "Typo"}, {"version", "1.0.0"}, {"capabilities", json::array{"echo.send"}}, {"authMode", "ApiKey"},
             {"operations", json::array{json::object{{"operation", "echo.send"}, {"method", "POST"}, {"path", "/x"}, {"idempotency", "K"}}}}},
            "operations[0].idempotency");
    refused("/integrations/credentials",
            {{"providerId", t.provider_id}, {"authMode", "ApiKey"}, {"secret", "s"},
             {"apiKey", json::object{{"in", "header"}, {"name", "X-Api-Key"}, {"header", "X-Api-Key"}}}},
            "apiKey.header");
    refused("/integrations/credentials", {{"providerId", t.provider_id}, {"authMode", "ApiKey"}, {"secret", "s"}, {"expires", "2030-01-01T00:00:00Z"}},
            "expires");
    refused("/webhooks/subscriptions",
            {{"projectId", "p"}, {"eventType", "IntegrationRunCompleted"}, {"endpointUrl", "http://127.0.0.1:1/hook"},
             {"filters", json::object{}}},
            "filters");
    auto body = run_body(t.connection_id);
    body["input"].as_object()["header"] = json::object{{"X-Trace", "1"}};
    refused("/integrations/runs", body, "input.header");
    auto runs_before = a().get("/integrations/runs?connectionId=" + t.connection_id).json().at("items").as_array().size();
    refused("/integrations/runs", {{"connectionId", t.connection_id}, {"operation", "echo.send"}, {"inputs", json::object{}}}, "inputs");
    EXPECT_EQ(a().get("/integrations/runs?connectionId=" + t.connection_id).json().at("items").as_array().size(), runs_before);
    auto retire = a().post("/integrations/connections/" + t.connection_id + "/retire", json::object{{"reasons", "x"}});
    EXPECT_EQ(retire.status, 400) << retire.body;
    EXPECT_NE(str(retire.json(), "detail").find("the fields are reason"), std::string::npos) << retire.body;
    EXPECT_EQ(str(a().get("/integrations/connections/" + t.connection_id).json(), "status"), "Active");
}

// An endless chunked body is cut at the route's limit with 413, not buffered.
TEST_F(host_e2e, an_endless_chunked_body_is_cut_with_413) {
    int fd = connect_loopback(host_->port());
    std::string head = "POST /integrations/providers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + *key_a_ +
                       "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    ASSERT_EQ(::send(fd, head.data(), head.size(), MSG_NOSIGNAL), static_cast<ssize_t>(head.size()));
    std::string chunk = "1000\r\n" + std::string(0x1000, ' ') + "\r\n";
    std::size_t sent = 0;
    std::string got;
    bool closed = false;
    // Chunks until the host answers or stops reading (or 256 MiB went out: it kept reading).
    while (sent < 256u * 1024 * 1024) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 0) > 0) break;
        auto n = ::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
        if (n <= 0) break;
        sent += static_cast<std::size_t>(n);
    }
    got = read_all(fd, 5s, &closed);
    ::close(fd);
    auto answer = parse_answer(got);
    EXPECT_EQ(answer.status, 413) << got.substr(0, 300);
    EXPECT_EQ(str(answer.json(), "type"), "https://integration.dev/problems/payload-too-large");
    EXPECT_TRUE(closed);
    // What went out is the route's 64 KiB plus what the loopback sockets' buffers hold.
    EXPECT_LT(sent, 64u * 1024 * 1024) << "the host kept reading";
    std::printf("[ chunked  ] %zu bytes sent before the 413\n", sent);
}

// The access log line of a request carries the trace id of the traceparent the client sent; a
// request refused before it reached the application (413, 400) carries one too, also in its answer.
TEST_F(host_e2e, access_log_lines_carry_the_clients_trace_id_protocol_errors_included) {
    std::string const trace = "0af7651916cd43dd8448eb211c80319c";
    auto r = a().call("GET", "/integrations/credentials?limit=2", "", {{"traceparent", "00-" + trace + "-b7ad6b7169203331-01"}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.headers["traceparent"].substr(0, 36), "00-" + trace + "-");
    auto line_with = [&](std::string const& text) {
        auto log = host_->log_with(text);
        auto at = log.find(text);
        if (at == std::string::npos) return std::string();
        auto begin = log.rfind('\n', at);
        return log.substr(begin == std::string::npos ? 0 : begin + 1, log.find('\n', at) - (begin == std::string::npos ? 0 : begin + 1));
    };
    auto line = line_with("\"traceId\":\"" + trace + "\"");
    EXPECT_NE(line.find("\"path\":\"/integrations/credentials\""), std::string::npos) << line;
    EXPECT_NE(line.find("\"status\":200"), std::string::npos) << line;
    EXPECT_NE(line.find("\"tenant\":\"tenant-a\""), std::string::npos) << line;

    std::string const refused_trace = "5bd66ef5095369c7b0d1f8f4bd33716a";
    auto too_big = parse_answer(raw_exchange(host_->port(),
        "POST /integrations/providers HTTP/1.1\r\nHost: x\r\ntraceparent: 00-" + refused_trace +
        "-b7ad6b7169203331-01\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"));
    ASSERT_EQ(too_big.status, 413);
    EXPECT_EQ(too_big.headers["traceparent"].substr(0, 36), "00-" + refused_trace + "-");
    line = line_with("\"traceId\":\"" + refused_trace + "\"");
    EXPECT_NE(line.find("\"status\":413"), std::string::npos) << line;

    // Malformed: no header to take a trace from, so a new one, in the answer and in the log.
    auto garbage = parse_answer(raw_exchange(host_->port(), "BLAH\x01 / HTTP/1.1\r\n\r\n"));
    ASSERT_EQ(garbage.status, 400) << garbage.body;
    auto tp = garbage.headers["traceparent"];
    ASSERT_EQ(tp.size(), 55u) << tp;
    auto generated = tp.substr(3, 32);
    line = line_with("\"traceId\":\"" + generated + "\"");
    EXPECT_NE(line.find("\"status\":400"), std::string::npos) << line;
}

// Owner-side success paths of routes the isolation test only probes from another tenant.
TEST_F(host_e2e, owners_test_retire_revoke_and_deprecate_and_filter_by_status) {
    auto t = set_up(a(), vendor_->port(), "-owner");
    auto tested = a().post("/integrations/connections/" + t.connection_id + "/test", json::object{});
    ASSERT_EQ(tested.status, 200) << tested.body;
    EXPECT_EQ(str(tested.json(), "status"), "Active");
    EXPECT_EQ(str(tested.json(), "connectionId"), t.connection_id);

    auto second = a().post("/integrations/connections", json::object{{"projectId", "proj-owner"}, {"providerId", t.provider_id},
                                                                    {"displayName", "Second"}, {"credentialId", t.credential_id}});
    ASSERT_EQ(second.status, 201) << second.body;
    auto second_id = str(second.json(), "connectionId");
    auto retired = a().post("/integrations/connections/" + second_id + "/retire", json::object{{"reason", "moved"}});
    ASSERT_EQ(retired.status, 200) << retired.body;
    EXPECT_EQ(str(retired.json(), "status"), "Retired");

    auto ids = [](http_answer const& page) {
        std::set<std::string> out;
        auto j = page.json();
        for (auto const& item : j.at("items").as_array()) out.insert(str(item, "connectionId"));
        return out;
    };
    auto by = "/integrations/connections?providerId=" + t.provider_id;
    EXPECT_EQ(ids(a().get(by + "&status=Active")), std::set<std::string>{t.connection_id});
    EXPECT_EQ(ids(a().get(by + "&status=Retired")), std::set<std::string>{second_id});
    EXPECT_TRUE(ids(a().get(by + "&status=Pending")).empty());
    auto bogus = a().get(by + "&status=Sleeping");
    EXPECT_EQ(bogus.status, 400) << bogus.body;
    EXPECT_EQ(str(bogus.json(), "type"), "https://integration.dev/problems/validation");
    // A retired connection runs no more.
    EXPECT_NE(a().post("/integrations/runs", run_body(second_id)).status, 201);

    auto spare = a().post("/integrations/credentials", json::object{{"providerId", t.provider_id}, {"authMode", "ApiKey"},
                                                                   {"secret", "sk_spare_111"},
                                                                   {"apiKey", json::object{{"in", "header"}, {"name", "X-Api-Key"}}}});
    ASSERT_EQ(spare.status, 201) << spare.body;
    auto spare_id = str(spare.json(), "credentialId");
    auto revoked = a().post("/integrations/credentials/" + spare_id + "/revoke", json::object{{"reason", "leaked"}});
    ASSERT_EQ(revoked.status, 200) << revoked.body;
    EXPECT_EQ(str(revoked.json(), "status"), "Revoked");
    EXPECT_EQ(str(a().get("/integrations/credentials/" + spare_id).json(), "status"), "Revoked");
    EXPECT_EQ(str(a().get("/integrations/credentials/" + t.credential_id).json(), "status"), "Active");
    // No body at all is fine where every field is optional.
    auto bare = a().call("POST", "/integrations/connections/" + t.connection_id + "/test", "");
    EXPECT_EQ(bare.status, 200) << bare.body;

    auto deprecated = a().post("/integrations/providers/" + t.provider_id + "/deprecate", json::object{{"reason", "v2 is out"}});
    ASSERT_EQ(deprecated.status, 200) << deprecated.body;
    EXPECT_EQ(str(deprecated.json(), "status"), "Deprecated");
    EXPECT_EQ(str(a().get("/integrations/providers/" + t.provider_id).json(), "status"), "Deprecated");
}

TEST_F(host_e2e, activate_without_a_client_is_409_and_a_failing_health_check_leaves_a_connection_pending) {
    auto p = a().post("/integrations/providers",
                      json::object{{"key", "sick"}, {"displayName", "Sick"}, {"category", "BusinessSystem"}, {"authModel", "ApiKey"},
                                   {"baseUrl", "http://127.0.0.1:" + std::to_string(vendor_->port())},
                                   {"capabilities", json::array{"echo.send"}},
                                   {"healthCheck", json::object{{"method", "POST"}, {"path", "/bad"}, {"expectStatus", 200}}}});
    ASSERT_EQ(p.status, 201) << p.body;
    auto id = str(p.json(), "providerId");
    auto early = a().post("/integrations/providers/" + id + "/activate", json::object{});
    EXPECT_EQ(early.status, 409) << early.body;
    EXPECT_EQ(early.headers["content-type"], "application/problem+json");
    EXPECT_EQ(str(a().get("/integrations/providers/" + id).json(), "status"), "Registered");

    auto c = a().post("/integrations/providers/" + id + "/clients",
                      json::object{{"assemblyName", "Sick.ApiClient"}, {"version", "1.0.0"}, {"capabilities", json::array{"echo.send"}},
                                   {"authMode", "ApiKey"},
                                   {"operations", json::array{json::object{{"operation", "echo.send"}, {"method", "POST"}, {"path", "/echo/{id}"}}}}});
    ASSERT_EQ(c.status, 201) << c.body;
    ASSERT_EQ(a().post("/integrations/providers/" + id + "/activate", json::object{}).status, 200);
    auto cred = a().post("/integrations/credentials", json::object{{"providerId", id}, {"authMode", "ApiKey"}, {"secret", "sk_sick_1"},
                                                                  {"apiKey", json::object{{"in", "header"}, {"name", "X-Api-Key"}}}});
    ASSERT_EQ(cred.status, 201) << cred.body;
    auto conn = a().post("/integrations/connections", json::object{{"projectId", "proj-sick"}, {"providerId", id}, {"displayName", "Sick"},
                                                                  {"credentialId", str(cred.json(), "credentialId")}});
    ASSERT_EQ(conn.status, 201) << conn.body;
    EXPECT_EQ(str(conn.json(), "status"), "Pending") << conn.body;
    auto conn_id = str(conn.json(), "connectionId");
    auto tested = a().post("/integrations/connections/" + conn_id + "/test", json::object{});
    ASSERT_EQ(tested.status, 200) << tested.body;
    EXPECT_EQ(str(tested.json(), "status"), "Pending") << tested.body;
    auto listed = a().get("/integrations/connections?status=Pending&providerId=" + id);
    ASSERT_EQ(listed.json().at("items").as_array().size(), 1u) << listed.body;
}

// limit + cursor walk every list to its end without repeats; limits outside 1-500 are 400.
TEST_F(host_e2e, credentials_connections_and_failures_page_with_limit_and_cursor) {
    auto t = set_up(a(), vendor_->port(), "-pages");
    ASSERT_EQ(a().post("/integrations/connections", json::object{{"projectId", "proj-pages"}, {"providerId", t.provider_id},
                                                               {"displayName", "Again"}, {"credentialId", t.credential_id}}).status, 201);
    ASSERT_EQ(a().post("/integrations/credentials", json::object{{"providerId", t.provider_id}, {"authMode", "ApiKey"}, {"secret", "sk_p2"},
                                                                {"apiKey", json::object{{"in", "header"}, {"name", "X-Api-Key"}}}}).status, 201);
    for (int i = 0; i < 2; ++i) ASSERT_EQ(a().post("/integrations/runs", run_body(t.connection_id, "echo.bad")).status, 201);

    struct list {
        std::string target, id;
    };
    for (auto const& l : {list{"/integrations/credentials?", "credentialId"},
                          list{"/integrations/connections?providerId=" + t.provider_id + "&", "connectionId"},
                          list{"/integrations/failures?", "failureId"}}) {
        auto everything = a().get(l.target + "limit=500");
        ASSERT_EQ(everything.status, 200) << everything.body;
        auto total = everything.json().at("items").as_array().size();
        EXPECT_GE(total, 2u) << l.target;
        EXPECT_TRUE(everything.json().at("nextCursor").is_null());
        std::set<std::string> seen;
        std::string cursor;
        int pages = 0;
        do {
            auto page = a().get(l.target + "limit=1" + (cursor.empty() ? "" : "&cursor=" + cursor));
            ASSERT_EQ(page.status, 200) << l.target << page.body;
            auto j = page.json();
            auto const& items = j.at("items").as_array();
            ASSERT_LE(items.size(), 1u);
            for (auto const& item : items) EXPECT_TRUE(seen.insert(str(item, l.id.c_str())).second) << l.target << " repeated";
            auto next = j.at("nextCursor");
            cursor = next.is_string() ? std::string(next.as_string()) : "";
            ASSERT_LT(++pages, 1000);
        } while (!cursor.empty());
        EXPECT_EQ(seen.size(), total) << l.target;
        for (auto const* bad : {"limit=0", "limit=501", "limit=abc", "limit=-1"}) {
            auto r = a().get(l.target + bad);
            EXPECT_EQ(r.status, 400) << l.target << bad << ": " << r.body;
            EXPECT_EQ(str(r.json(), "type"), "https://integration.dev/problems/validation") << l.target << bad;
            EXPECT_NE(str(r.json(), "detail").find("limit"), std::string::npos);
        }
    }
}

// Workers on short intervals: the outbox relay publishes what a registration raised, the health
// sweep probes the connection again, the rotation worker escalates a credential about to expire,
// and SIGTERM still exits 0 with all of them running.
TEST(host_workers, sweep_in_the_background_and_stop_on_sigterm) {
    scratch_dir dir("workers");
    auto key = create_key(dir.string(), "tenant-w");
    auto admin_key = create_key(dir.string(), "ops", true);
    echo_vendor vendor;
    int code = -100;
    std::string log;
    {
        host_process host(dir.string(), {"--key-rate-limit", "0", "--outbox-interval-ms", "100", "--probe-interval-ms", "1000",
                                         "--rotation-interval-ms", "200", "--retry-interval-ms", "200"});
        api client(host.port(), key);
        api ops(host.port(), admin_key);  // /metrics needs an admin key
        auto t = set_up(client, vendor.port(), "-workers");
        auto db = (dir.path() / "integration.db").string();
        auto unpublished = [&] { return first_row(db, "SELECT count(*) FROM outbox WHERE published_at IS NULL").value_or("?"); };
        EXPECT_TRUE(eventually([&] { return unpublished() == "0"; })) << unpublished();
        auto const total = first_row(db, "SELECT count(*) FROM outbox");
        ASSERT_TRUE(total);
        EXPECT_NE(*total, "0");
        EXPECT_TRUE(eventually([&] {
            auto m = ops.get("/metrics").body;
            return metric(m, "integration_events_published_total{type=\"IntegrationProviderRegistered\"}") == 1 &&
                   metric(m, "integration_worker_items_total{worker=\"outbox-relay\"}") >= 2;
        })) << ops.get("/metrics").body;

        // The periodic probe calls the vendor's health check again, without any request.
        auto health_calls = [&] {
            int n = 0;
            for (auto const& r : vendor.requests()) n += r.rfind("GET /health ", 0) == 0;
            return n;
        };
        auto probes = health_calls();
        EXPECT_TRUE(eventually([&] { return health_calls() > probes; })) << probes;
        // The sweep counts its items when it ends, after the vendor saw the probe.
        EXPECT_TRUE(eventually([&] {
            return metric(ops.get("/metrics").body, "integration_worker_items_total{worker=\"health-probe\"}") >= 1;
        }));

        // A credential expiring within the default notice and no minter: one rotation_required failure.
        auto soon = client.post("/integrations/credentials",
                                json::object{{"providerId", t.provider_id}, {"authMode", "ApiKey"}, {"secret", "sk_expiring_1"},
                                             {"apiKey", json::object{{"in", "header"}, {"name", "X-Api-Key"}}},
                                             {"expiresAt", iso_time_in(24h)}});
        ASSERT_EQ(soon.status, 201) << soon.body;
        auto cred_id = str(soon.json(), "credentialId");
        EXPECT_TRUE(eventually([&] {
            auto f = client.get("/integrations/failures");
            return f.body.find(cred_id) != std::string::npos && f.body.find("CredentialRotation") != std::string::npos;
        })) << client.get("/integrations/failures").body;

        auto m = ops.get("/metrics").body;
        for (auto const* w : {"outbox-relay", "retry", "credential-rotation", "health-probe", "retention"}) {
            EXPECT_EQ(metric(m, std::string("integration_worker_failures_total{worker=\"") + w + "\"}"), 0) << w << "\n" << host.log();
            EXPECT_GT(metric(m, std::string("integration_worker_last_success_timestamp_seconds{worker=\"") + w + "\"}"), 1.6e9) << w;
            EXPECT_LT(metric(m, std::string("integration_worker_lag_seconds{worker=\"") + w + "\"}"), 5) << w;
        }

        auto start = std::chrono::steady_clock::now();
        host.terminate();
        code = host.wait();
        EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
        log = host.log();
    }
    EXPECT_EQ(code, 0);
    EXPECT_NE(log.find("\"stopped\""), std::string::npos) << log;
    EXPECT_EQ(log.find("sk_expiring_1"), std::string::npos);
}

TEST(host_rate_limit, a_key_over_its_rate_gets_429_with_retry_after_and_other_keys_do_not) {
    scratch_dir dir("limit");
    auto busy = create_key(dir.string(), "tenant-busy");
    auto quiet = create_key(dir.string(), "tenant-quiet");
    {
        host_process host(dir.string(), {"--key-rate-limit", "1", "--key-burst", "3"});
        api client(host.port(), busy);
        for (int i = 0; i < 3; ++i) EXPECT_EQ(client.get("/integrations/providers").status, 200) << i;
        auto limited = client.get("/integrations/providers");
        EXPECT_EQ(limited.status, 429);
        EXPECT_EQ(str(limited.json(), "type"), "https://integration.dev/problems/rate-limited");
        EXPECT_EQ(limited.headers["retry-after"], "1");
        EXPECT_EQ(api(host.port(), quiet).get("/integrations/providers").status, 200);  // a bucket per key
        EXPECT_EQ(api(host.port(), "").get("/healthz").status, 200);                       // open routes are not limited
    }
}

TEST(host_dependencies, a_store_whose_file_vanished_answers_503_and_readyz_says_not_ready) {
    scratch_dir dir("deps");
    auto key = create_key(dir.string(), "tenant-d");
    {
        host_process host(dir.string());
        api client(host.port(), key);
        api anon(host.port(), "");
        ASSERT_EQ(client.get("/integrations/providers").status, 200);
        ASSERT_EQ(anon.get("/readyz").status, 200);
        std::filesystem::remove(dir.path() / "integration.db");  // the store's file is gone under it
        auto down = client.get("/integrations/providers");
        EXPECT_EQ(down.status, 503) << down.body;
        EXPECT_EQ(str(down.json(), "type"), "https://integration.dev/problems/database-missing");
        EXPECT_EQ(down.headers["content-type"], "application/problem+json");
        auto ready = anon.get("/readyz");
        EXPECT_EQ(ready.status, 503) << ready.body;
        EXPECT_EQ(anon.get("/healthz").status, 200);  // the process itself is up
    }
}

// A keep-alive connection waits --idle-timeout-ms for its next request only once its answer is
// written: a run slower than that (here 1 s against 300 ms) is answered on it, and the connection
// then takes the next request.
TEST(host_keep_alive, an_answer_slower_than_the_idle_timeout_reaches_its_keep_alive_client) {
    scratch_dir dir("slowidle");
    auto key = create_key(dir.string(), "tenant-t");
    echo_vendor vendor;
    host_process host(dir.string(), {"--idle-timeout-ms", "300"});
    api client(host.port(), key);
    auto t = set_up(client, vendor.port(), "-idle");
    keep_alive_connection kept(host.port());
    auto slow = kept.exchange(
        client.request("POST", "/integrations/runs", json::serialize(run_body(t.connection_id, "echo.slow")), {}, true), 30s);
    ASSERT_TRUE(slow.complete) << "the connection closed under its answer: " << slow.raw;
    auto answer = parse_answer(slow.raw);
    EXPECT_EQ(answer.status, 201) << slow.raw;
    EXPECT_NE(answer.headers["connection"], "close");
    auto next = kept.exchange(client.request("GET", "/healthz", "", {}, true), 5s);
    ASSERT_TRUE(next.complete) << next.raw;
    EXPECT_EQ(parse_answer(next.raw).status, 200);
}

// A client that ends a body with an empty line (RFC 9112 2.2 lets servers ignore it) and then
// waits for a slow answer keeps its connection: nothing is read, and no header deadline (here
// 300 ms) runs, while the answer is owed; the next request on it is answered too.
TEST(host_keep_alive, an_empty_line_after_a_body_neither_closes_the_connection_nor_breaks_the_next_request) {
    scratch_dir dir("crlf");
    auto key = create_key(dir.string(), "tenant-t");
    echo_vendor vendor;
    host_process host(dir.string(), {"--header-timeout-ms", "300"});
    api client(host.port(), key);
    auto t = set_up(client, vendor.port(), "-crlf");
    keep_alive_connection kept(host.port());
    for (auto op : {"echo.slow", "echo.send"}) {
        auto slow = kept.exchange(
            client.request("POST", "/integrations/runs", json::serialize(run_body(t.connection_id, op)), {}, true) + "\r\n",
            30s);
        ASSERT_TRUE(slow.complete) << op << ": the connection closed under its answer: " << slow.raw;
        EXPECT_EQ(parse_answer(slow.raw).status, 201) << slow.raw;
    }
    auto next = kept.exchange(client.request("GET", "/healthz", "", {}, true), 5s);
    ASSERT_TRUE(next.complete) << next.raw;
    EXPECT_EQ(parse_answer(next.raw).status, 200) << next.raw;
}

// At --max-connections, the connection that makes room is the one idle the longest, never one
// whose request is still being answered (however long ago that request came).
TEST(host_keep_alive, at_the_limit_a_connection_still_answering_is_not_the_one_closed) {
    scratch_dir dir("busyevict");
    auto key = create_key(dir.string(), "tenant-t");
    echo_vendor vendor;
    host_process host(dir.string(), {"--max-connections", "3"});
    api client(host.port(), key);
    auto t = set_up(client, vendor.port(), "-busy");
    keep_alive_connection busy(host.port());
    exchange_result slow;
    std::thread in_flight([&] {
        slow = busy.exchange(
            client.request("POST", "/integrations/runs", json::serialize(run_body(t.connection_id, "echo.slow")), {}, true), 30s);
    });
    auto at_vendor = [&] {
        auto heads = vendor.requests();
        return std::any_of(heads.begin(), heads.end(), [](auto const& h) { return h.find(" /slow ") != std::string::npos; });
    };
    EXPECT_TRUE(eventually(at_vendor, 30s)) << "the run never reached its vendor";
    keep_alive_connection idle_first(host.port()), idle_second(host.port());
    std::string const healthz = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    ASSERT_TRUE(idle_first.exchange(healthz, 5s).complete);
    // The host marks a connection idle just after its answer is written, which the client may see
    // first: a pause orders the two marks, so that `idle_first` is the one idle the longest.
    std::this_thread::sleep_for(200ms);
    ASSERT_TRUE(idle_second.exchange(healthz, 5s).complete);
    keep_alive_connection fresh(host.port());  // the fourth: one of the three makes room
    auto admitted = fresh.exchange(healthz, 5s);
    ASSERT_TRUE(admitted.complete) << admitted.raw;
    EXPECT_EQ(parse_answer(admitted.raw).status, 200);
    in_flight.join();
    ASSERT_TRUE(slow.complete) << slow.raw;
    EXPECT_EQ(parse_answer(slow.raw).status, 201) << slow.raw;
    EXPECT_FALSE(idle_first.exchange(healthz, 5s).complete) << "the connection idle the longest was kept";
    auto still = busy.exchange(healthz, 5s);
    EXPECT_TRUE(still.complete) << "the connection that was answering was the one closed: " << still.raw;
    EXPECT_TRUE(idle_second.exchange(healthz, 5s).complete);
}

TEST(host_shutdown, sigterm_lets_the_request_in_flight_finish_and_exits_zero) {
    scratch_dir dir("term");
    auto key = create_key(dir.string(), "tenant-t");
    echo_vendor vendor;
    int code = -100;
    {
        host_process host(dir.string());
        api client(host.port(), key);
        auto t = set_up(client, vendor.port(), "-term");
        http_answer slow;
        std::thread in_flight([&] { slow = client.post("/integrations/runs", run_body(t.connection_id, "echo.slow")); });
        // The signal comes while the run is at its vendor (which answers a second later).
        auto at_vendor = [&] {
            auto heads = vendor.requests();
            return std::any_of(heads.begin(), heads.end(), [](auto const& h) { return h.find(" /slow ") != std::string::npos; });
        };
        EXPECT_TRUE(eventually(at_vendor, 30s)) << "the run never reached its vendor";
        host.terminate();
        in_flight.join();
        EXPECT_EQ(slow.status, 201) << slow.body;
        EXPECT_EQ(str(slow.json(), "status"), "Completed");
        code = host.wait();
    }
    EXPECT_EQ(code, 0);
}

// --recording deferred answers before the fsync; the commit itself is done, so a host killed right
// after the answer still has the run when it starts again.
TEST(host_recording, a_deferred_run_survives_a_killed_host) {
    scratch_dir dir("deferred");
    auto key = create_key(dir.string(), "tenant-d");
    echo_vendor vendor;
    std::string run_id;
    {
        host_process host(dir.string(), {"--recording", "deferred"});
        api client(host.port(), key);
        auto t = set_up(client, vendor.port(), "-deferred");
        auto run = client.post("/integrations/runs", run_body(t.connection_id, "echo.send", "kept"));
        ASSERT_EQ(run.status, 201) << run.body;
        EXPECT_EQ(str(run.json(), "status"), "Completed");
        run_id = str(run.json(), "runId");
        host.kill_now();
        EXPECT_EQ(host.wait(), -SIGKILL);
    }
    {
        host_process host(dir.string());
        api client(host.port(), key);
        auto run = client.get("/integrations/runs/" + run_id);
        ASSERT_EQ(run.status, 200) << run.body;
        EXPECT_EQ(str(run.json(), "status"), "Completed");
        EXPECT_EQ(run.json().at("runAttempts").as_array().size(), 1u) << run.body;
    }
    try {
        host_process bad(dir.string(), {"--recording", "sometimes"});
        ADD_FAILURE() << "the host started with --recording sometimes";
    } catch (std::runtime_error const& e) {
        EXPECT_NE(std::string(e.what()).find("--recording must be immediate or deferred"), std::string::npos) << e.what();
    }
}

// Clients on kept-alive connections post runs until SIGTERM closes them. Every answer that went
// out is whole and a success, every answered run is Completed after a restart, and a request that
// got no answer was never taken: it left no run behind, and retried with its Idempotency-Key it
// runs now (a replay would mean the host ran it and lost the answer).
TEST(host_shutdown, sigterm_under_load_loses_no_accepted_request) {
    scratch_dir dir("load");
    auto key = create_key(dir.string(), "tenant-l");
    echo_vendor vendor, slow_vendor;
    struct sent {
        std::string idempotency_key, body;
        exchange_result got;
    };
    constexpr int clients = 8;
    std::vector<std::vector<sent>> requests(clients);
    int before_signal = 0;
    int code = -100;
    {
        host_process host(dir.string(), {"--key-rate-limit", "0"});
        api client(host.port(), key);
        // One client's runs each hold a vendor of their own for 1 s, so one is in flight at the signal
        // while the others keep the host busy.
        auto fast = set_up(client, vendor.port(), "-load").connection_id;
        auto slow = set_up(client, slow_vendor.port(), "-load-slow").connection_id;
        std::atomic<int> answers{0}, slow_answers{0};
        std::vector<std::thread> threads;
        for (int i = 0; i < clients; ++i)
            threads.emplace_back([&, i] {
                std::optional<keep_alive_connection> conn;
                for (int n = 0;; ++n) {
                    try {
                        if (!conn) conn.emplace(host.port());
                    } catch (std::runtime_error const&) {
                        return;  // refused: the host no longer accepts
                    }
                    auto k = "load-" + std::to_string(i) + "-" + std::to_string(n);
                    auto body =
                        json::serialize(i == 0 ? run_body(slow, "echo.slow", k) : run_body(fast, "echo.send", k));
                    auto got = conn->exchange(
                        client.request("POST", "/integrations/runs", body, {{"Idempotency-Key", k}}, true), 60s);
                    requests[i].push_back({k, body, got});
                    if (!got.complete) return;
                    ++answers;
                    if (i == 0) ++slow_answers;
                    // A draining host closes after its answer; a client reconnects to send the next one.
                    if (parse_answer(got.raw).headers["connection"] == "close") conn.reset();
                }
            });
        // A second of load and enough answers behind it, however slow the machine; then the signal
        // while the next slow run is at its vendor.
        auto start = std::chrono::steady_clock::now();
        auto waited = [&] { return std::chrono::steady_clock::now() - start > 60s; };
        while ((std::chrono::steady_clock::now() - start < 1s || answers < 30) && !waited())
            std::this_thread::sleep_for(10ms);
        for (int seen = slow_answers; slow_answers == seen && !waited();) std::this_thread::sleep_for(10ms);
        std::this_thread::sleep_for(300ms);
        before_signal = answers;
        host.terminate();
        for (auto& th : threads) th.join();
        code = host.wait();
    }
    EXPECT_EQ(code, 0);
    EXPECT_GT(before_signal, 20);

    std::vector<std::pair<std::string, std::string>> answered;  // run id, idempotency key
    std::vector<sent const*> unanswered;
    for (auto const& per_client : requests)
        for (auto const& s : per_client) {
            // An answer begun and not finished, or a silent open connection, is an answer lost.
            EXPECT_FALSE(s.got.timed_out) << s.idempotency_key << " timed out after " << s.got.raw.size() << " bytes";
            if (s.got.raw.empty()) {
                unanswered.push_back(&s);
                continue;
            }
            EXPECT_TRUE(s.got.complete) << s.idempotency_key << " was cut short: " << s.got.raw;
            if (!s.got.complete) continue;
            auto a = parse_answer(s.got.raw);
            boost::system::error_code ec;
            auto j = json::parse(a.body, ec);
            EXPECT_EQ(a.status, 201) << s.idempotency_key << ": " << a.body;
            EXPECT_FALSE(ec) << s.idempotency_key << ": " << a.body;
            if (a.status != 201 || ec) continue;
            EXPECT_EQ(str(j, "status"), "Completed") << s.idempotency_key << ": " << a.body;
            answered.emplace_back(str(j, "runId"), s.idempotency_key);
        }
    EXPECT_LE(unanswered.size(), static_cast<std::size_t>(clients));  // each client stops at its first

    {
        host_process host(dir.string(), {"--key-rate-limit", "0"});
        api client(host.port(), key);
        for (auto const& [id, k] : answered) {
            auto run = client.get("/integrations/runs/" + id);
            ASSERT_EQ(run.status, 200) << k << " answered " << id << " but it is gone: " << run.body;
            EXPECT_EQ(str(run.json(), "status"), "Completed") << k << ": " << run.body;
            EXPECT_EQ(str(run.json(), "idempotencyKey"), k);
        }
        for (auto const* st : {"Pending", "Running"}) {
            auto half = client.get(std::string("/integrations/runs?status=") + st);
            ASSERT_EQ(half.status, 200) << half.body;
            EXPECT_TRUE(half.json().at("items").as_array().empty()) << st << ": " << half.body;
        }
        for (auto const* s : unanswered) {
            auto again = client.call("POST", "/integrations/runs", s->body, {{"Idempotency-Key", s->idempotency_key}});
            ASSERT_EQ(again.status, 201) << s->idempotency_key << ": " << again.body;
            EXPECT_EQ(str(again.json(), "status"), "Completed") << s->idempotency_key << ": " << again.body;
            EXPECT_NE(again.headers["idempotent-replayed"], "true") << s->idempotency_key << " ran but its answer was lost";
        }
    }
    std::printf("[ load     ] %d answered before SIGTERM, %zu in all, %zu unanswered and not run\n", before_signal,
                answered.size(), unanswered.size());
}

// One deadline for a request's header and body together: a client that finishes its header a
// byte every 200 ms (done at ~1.2 s) and then trickles its body is cut off at --read-timeout-ms
// (2 s) after its connection started, not given a second deadline for the body (~3.2 s).
TEST(host_timeouts, a_trickling_client_gets_one_deadline_for_header_and_body) {
    scratch_dir dir("trickle");
    host_process host(dir.string(), {"--read-timeout-ms", "2000"});
    int fd = connect_loopback(host.port());
    auto start = std::chrono::steady_clock::now();
    std::string head = "POST /integrations/providers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Content-Length: 100\r\nX-Slow: a";
    ASSERT_EQ(::send(fd, head.data(), head.size(), MSG_NOSIGNAL), static_cast<ssize_t>(head.size()));
    std::string rest = "bc\r\n\r\n" + std::string(100, ' ');  // the header's end, then the body
    bool closed = false;
    std::chrono::steady_clock::duration header_done{};
    for (std::size_t i = 0; i < rest.size() && !closed; ++i) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 200) > 0) {
            char buf[512];
            closed = ::read(fd, buf, sizeof buf) <= 0;
            if (closed) break;
        }
        if (::send(fd, &rest[i], 1, MSG_NOSIGNAL) <= 0) closed = true;
        if (i == 5) header_done = std::chrono::steady_clock::now() - start;
    }
    if (!closed) read_all(fd, 3s, &closed);
    auto elapsed = std::chrono::steady_clock::now() - start;
    ::close(fd);
    EXPECT_TRUE(closed);
    EXPECT_LT(header_done, 1800ms) << "the header must be complete before the deadline for this test to mean anything";
    EXPECT_GE(elapsed, 1900ms) << "cut off before its deadline";
    EXPECT_LT(elapsed, 2800ms) << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count() << " ms";
}

// Past --max-connections a new connection gets 503 problem+json with Retry-After and is closed; it
// is counted and logged, and once a connection closes new ones are served again.
TEST(host_limits, past_max_connections_a_connection_gets_503_with_retry_after) {
    scratch_dir dir("maxconn");
    auto ops_key = create_key(dir.string(), "ops", true);
    host_process host(dir.string(), {"--max-connections", "2"});
    int first = connect_loopback(host.port());
    int second = connect_loopback(host.port());
    int third = connect_loopback(host.port());
    bool closed = false;
    auto raw = read_all(third, 5s, &closed);
    ::close(third);
    auto busy = parse_answer(raw);
    EXPECT_EQ(busy.status, 503) << raw;
    EXPECT_EQ(busy.headers["retry-after"], "1");
    EXPECT_EQ(busy.headers["content-type"], "application/problem+json");
    EXPECT_EQ(str(busy.json(), "type"), "https://integration.dev/problems/too-many-connections") << busy.body;
    EXPECT_TRUE(closed);

    ::close(first);
    api ops(host.port(), ops_key);
    EXPECT_TRUE(eventually([&] { return ops.get("/healthz").status == 200; }));
    http_answer m;
    EXPECT_TRUE(eventually([&] { return (m = ops.get("/metrics")).status == 200; }));
    EXPECT_GE(metric(m.body, "integration_http_connections_refused_total"), 1) << m.body;
    EXPECT_NE(host.log_with("refused a connection").find("--max-connections (2)"), std::string::npos) << host.log();
    ::close(second);
}

/** Sets environment variables for one scope, restoring what was there. */
class env_guard {
public:
    env_guard(std::initializer_list<std::pair<char const*, std::string>> vars) {
        for (auto const& [k, v] : vars) {
            char const* old = std::getenv(k);
            saved_.emplace_back(k, old ? std::optional<std::string>(old) : std::nullopt);
            ::setenv(k, v.c_str(), 1);
        }
    }
    ~env_guard() {
        for (auto const& [k, v] : saved_) v ? ::setenv(k.c_str(), v->c_str(), 1) : ::unsetenv(k.c_str());
    }
    env_guard(env_guard const&) = delete;
    env_guard& operator=(env_guard const&) = delete;

private:
    std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

// flag > INTEGRATION_* > config file > default, seen from outside: the public URL in the served
// OpenAPI document and the header limit a large header meets.
TEST(host_config, flags_win_over_environment_which_wins_over_the_config_file) {
    scratch_dir dir("config");
    auto key = create_key(dir.string(), "tenant-c");
    auto file = (dir.path() / "host.conf").string();
    std::ofstream(file) << "# settings\npublic-url = http://file.example\n\nheader-limit = 4096\n";
    auto served_url = [&](host_process const& h) {
        auto doc = api(h.port(), key).get("/openapi.json");
        return doc.status == 200 ? str(doc.json().at("servers").at(0), "url") : "status " + std::to_string(doc.status);
    };
    auto big_header = [&](host_process const& h) {
        return parse_answer(raw_exchange(h.port(), "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(6000, 'a') +
                                                       "\r\nConnection: close\r\n\r\n")).status;
    };
    {
        host_process h(dir.string());
        EXPECT_EQ(served_url(h), "http://127.0.0.1:" + std::to_string(h.port()));  // the default
        EXPECT_EQ(big_header(h), 200);                                              // under 16 KiB
    }
    {
        host_process h(dir.string(), {"--config", file});
        EXPECT_EQ(served_url(h), "http://file.example");
        EXPECT_EQ(big_header(h), 431);
    }
    {
        env_guard env{{"INTEGRATION_CONFIG", file}, {"INTEGRATION_PUBLIC_URL", "http://env.example"}};
        host_process h(dir.string());
        EXPECT_EQ(served_url(h), "http://env.example");
        EXPECT_EQ(big_header(h), 431);  // the file, named by INTEGRATION_CONFIG
    }
    {
        env_guard env{{"INTEGRATION_CONFIG", file}, {"INTEGRATION_PUBLIC_URL", "http://env.example"},
                      {"INTEGRATION_HEADER_LIMIT", "20000"}};
        host_process h(dir.string(), {"--public-url", "http://flag.example"});
        EXPECT_EQ(served_url(h), "http://flag.example");
        EXPECT_EQ(big_header(h), 200);  // the environment's 20000 over the file's 4096
    }
}

TEST(host_config, an_unknown_key_in_the_config_file_is_refused_with_its_line) {
    scratch_dir dir("badconfig");
    auto file = (dir.path() / "host.conf").string();
    std::ofstream(file) << "# settings\nheader-limit = 4096\nbody-limt = 10\n";
    try {
        host_process h(dir.string(), {"--config", file});
        ADD_FAILURE() << "the host started with an unknown key in its config file";
    } catch (std::runtime_error const& e) {
        std::string what = e.what();
        EXPECT_NE(what.find(file + ":3: unknown key 'body-limt'"), std::string::npos) << what;
    }
}

// Numbers a host cannot live with are refused at start, naming the flag and its range: a
// retention of centuries (its cut-off overflowed and every run was deleted), a probe interval
// under a second (it rounded to 0 and the prober spun), a wait that overflows.
TEST(host_config, durations_out_of_range_are_refused_at_start) {
    scratch_dir dir("ranges");
    for (auto const& [flag, value, says] : std::vector<std::tuple<std::string, std::string, std::string>>{
             {"--run-retention-days", "200000", "--run-retention-days must be a positive integer of at most 36525 (100 years)"},
             {"--probe-interval-ms", "999", "--probe-interval-ms must be at least 1000"},
             {"--retry-interval-ms", "10000000000000", "--retry-interval-ms must be a positive integer of at most 604800000 (7 days)"},
             {"--io-threads", "100000", "--io-threads must be a positive integer of at most 1024"},
             {"--public-url", "hooks.example.test", "--public-url must be an absolute http(s) URL"},
             {"--public-url", "https://hooks.example.test/x?y=1", "--public-url must be an absolute http(s) URL"},
             {"--max-redirects", "-1", "--max-redirects must be a whole number"},
             {"--body-limit", "-1", "--body-limit must be a positive integer"},
             {"--workers", " 4", "--workers must be a positive integer"},
             // 2^32 was read as a header limit of 0 (every request 431); 2^64-1 as a key burst
             // of -1 (every request 429).
             {"--header-limit", "4294967296", "--header-limit must be a positive integer of at most 1048576 (1 MiB)"},
             {"--key-burst", "18446744073709551615", "--key-burst must be a positive integer of at most 1000000"},
             {"--json-body-limit", "2000000000", "--json-body-limit must be a positive integer of at most 1073741824 (1 GiB)"},
             {"--webhook-tenant-in-flight", "257", "--webhook-tenant-in-flight must be at most --webhook-in-flight"},
             {"--managed-identity-tenant", "acme corp", "--managed-identity-tenant acme corp: tenantId must be"}}) {
        try {
            host_process h(dir.string(), {flag, value});
            ADD_FAILURE() << "the host started with " << flag << " " << value;
        } catch (std::runtime_error const& e) {
            EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
        }
    }
}

// 0 is --max-redirects' documented default (answer a 3xx as is), so it can be said explicitly;
// `serve --help` is help, not a flag missing its value.
TEST(host_config, max_redirects_takes_its_default_of_0_and_serve_help_prints_the_usage) {
    scratch_dir dir("zero");
    host_process h(dir.string(), {"--max-redirects", "0"});
    EXPECT_GT(h.port(), 0);
    auto help = run_and_capture(std::string(INTEGRATION_HOST_BIN) + " serve --help 2>&1");
    EXPECT_NE(help.find("usage:"), std::string::npos) << help;
    EXPECT_NE(help.find("--max-redirects"), std::string::npos) << help;
}

// keys create reads INTEGRATION_DATA, INTEGRATION_TENANT and INTEGRATION_ADMIN like its flags.
TEST(host_config, keys_create_takes_its_flags_admin_included_from_the_environment) {
    scratch_dir dir("keysenv");
    auto create = [&](char const* admin) {
        env_guard env{{"INTEGRATION_DATA", dir.string()}, {"INTEGRATION_TENANT", "ops-env"}, {"INTEGRATION_ADMIN", admin}};
        return run_and_capture(std::string(INTEGRATION_HOST_BIN) + " keys create 2>&1");
    };
    auto last_line = [](std::string out) {
        while (!out.empty() && out.back() == '\n') out.pop_back();
        return out.substr(out.rfind('\n') + 1);
    };
    auto admin_out = create("true");
    EXPECT_NE(admin_out.find("an admin API key for tenant ops-env"), std::string::npos) << admin_out;
    auto tenant_out = create("false");
    EXPECT_NE(tenant_out.find("an API key for tenant ops-env"), std::string::npos) << tenant_out;
    auto refused = create("maybe");
    EXPECT_NE(refused.find("must be true, false, 1 or 0"), std::string::npos) << refused;

    host_process host(dir.string());
    EXPECT_EQ(api(host.port(), last_line(admin_out)).get("/metrics").status, 200);
    EXPECT_EQ(api(host.port(), last_line(tenant_out)).get("/metrics").status, 403);
    auto mine = api(host.port(), last_line(tenant_out)).get("/integrations/providers");
    EXPECT_EQ(mine.status, 200) << mine.body;
}


// ---- every run ends, one key runs once, no tenant stalls another -----------------------------

/** The body of a run of echo.send whose path parameter is `id`. */
json::object run_with_id(std::string const& connection, std::string const& id) {
    return {{"connectionId", connection}, {"operation", "echo.send"},
            {"input", json::object{{"pathParams", json::object{{"id", id}}}, {"body", json::object{{"msg", id}}}}}};
}

// A host killed while runs wait on their vendor leaves them Running. The next host ends each one
// Failed with an `interrupted` failure once it is older than any run can take (its lease:
// --run-deadline-ms, 1 s of rate-limit wait, twice --attempt-timeout-ms and --orphan-margin-ms,
// here 10.5 s), and their Idempotency-Keys then answer the Failed run without calling the vendor.
TEST(host_recovery, runs_a_killed_host_left_running_end_failed_and_their_keys_answer_that) {
    scratch_dir dir("orphans");
    auto key = create_key(dir.string(), "tenant-o");
    threaded_vendor vendor([](std::string const& head) -> std::optional<std::string> {
        if (head.starts_with("GET /health ")) return vendor_answer(200);
        return std::nullopt;  // every run's call waits until the host is gone
    });
    std::vector<std::string> const flags{"--key-rate-limit",     "0",   "--run-deadline-ms",  "1000", "--attempt-timeout-ms", "4000",
                                         "--orphan-margin-ms",   "500", "--retry-interval-ms", "200"};
    std::vector<std::string> const keys{"orphan-0", "orphan-1", "orphan-2"};
    std::string connection;
    {
        host_process host(dir.string(), flags);
        api client(host.port(), key);
        connection = set_up(client, vendor.port(), "-orphans").connection_id;
        std::vector<std::thread> posts;
        for (auto const& k : keys)
            posts.emplace_back([&, k] { (void)client.post("/integrations/runs", run_body(connection), {{"Idempotency-Key", k}}); });
        EXPECT_TRUE(eventually([&] { return vendor.count("POST /echo/") == 3; }, 10s)) << vendor.count("POST /echo/");
        host.kill_now();
        EXPECT_EQ(host.wait(), -SIGKILL);
        for (auto& t : posts) t.join();
    }
    host_process host(dir.string(), flags);
    api client(host.port(), key);
    auto running = [&] { return client.get("/integrations/runs?status=Running").json().at("items").as_array().size(); };
    EXPECT_EQ(running(), 3u) << "the killed host's runs were not left Running";
    EXPECT_TRUE(eventually([&] { return running() == 0; }, 30s)) << client.get("/integrations/runs").body;
    auto runs = client.get("/integrations/runs").json().at("items").as_array();
    ASSERT_EQ(runs.size(), 3u);
    for (auto const& r : runs) {
        EXPECT_EQ(str(r, "status"), "Failed") << json::serialize(r);
        auto failures = client.get("/integrations/failures?runId=" + str(r, "runId")).json().at("items").as_array();
        ASSERT_EQ(failures.size(), 1u) << json::serialize(r);
        EXPECT_EQ(str(failures[0], "errorCode"), "interrupted");
        EXPECT_EQ(str(failures[0], "category"), "Transient");
        EXPECT_EQ(str(failures[0], "nextAction"), "Escalate");
    }
    for (auto const& k : keys) {
        auto again = client.post("/integrations/runs", run_body(connection), {{"Idempotency-Key", k}});
        EXPECT_EQ(again.status, 201) << k << ": " << again.body;
        EXPECT_EQ(str(again.json(), "status"), "Failed") << k << ": " << again.body;
        EXPECT_EQ(again.headers["idempotent-replayed"], "true") << k;
    }
    EXPECT_EQ(vendor.count("POST /echo/"), 3);
}

// A host killed while a run waits for its rate-limit token, before its call, left no run behind:
// the request retried with the same Idempotency-Key executes now, instead of answering a stuck run.
TEST(host_recovery, a_run_killed_before_it_called_the_vendor_executes_anew_with_its_key) {
    scratch_dir dir("unsent");
    auto key = create_key(dir.string(), "tenant-u");
    echo_vendor vendor;
    // One call per 10 s: the second run waits ~11 s for its token, within --run-deadline-ms.
    std::vector<std::string> const flags{"--key-rate-limit", "0", "--run-deadline-ms", "30000"};
    json::object const limited{{"rateLimitProfile", json::object{{"requestsPerSecond", 0.1}, {"burst", 1}}}};
    std::string connection;
    {
        host_process host(dir.string(), flags);
        api client(host.port(), key);
        connection = set_up(client, vendor.port(), "-unsent", limited).connection_id;
        ASSERT_EQ(client.post("/integrations/runs", run_with_id(connection, "first")).status, 201);  // the only token
        std::thread waiting([&] { (void)client.post("/integrations/runs", run_with_id(connection, "second"), {{"Idempotency-Key", "unsent-1"}}); });
        std::this_thread::sleep_for(1500ms);  // well into its ~10 s wait for the token
        host.kill_now();
        EXPECT_EQ(host.wait(), -SIGKILL);
        waiting.join();
    }
    ASSERT_EQ(vendor.echo_calls, 1) << "the second run reached the vendor before the host was killed";
    // The key is claimed with the run's first write, right before its call: nothing holds it.
    EXPECT_EQ(first_row(dir.path() / "integration.db", "SELECT count(*) FROM idempotency_keys WHERE key = ?", {"unsent-1"}),
              std::optional<std::string>("0"));
    host_process host(dir.string(), flags);
    api client(host.port(), key);
    auto again = client.post("/integrations/runs", run_with_id(connection, "second"), {{"Idempotency-Key", "unsent-1"}});
    EXPECT_EQ(again.status, 201) << again.body;
    EXPECT_EQ(str(again.json(), "status"), "Completed") << again.body;
    EXPECT_NE(again.headers["idempotent-replayed"], "true");
    EXPECT_EQ(vendor.echo_calls, 2);
}

// JSON is UTF-8: a vendor's body that is not (an image, gzip, Latin-1 text) is answered as
// base64 and says so, a header's stray bytes as U+FFFD; the answer stays JSON any client parses.
TEST(host_runs, a_vendor_answer_that_is_not_utf8_is_still_json) {
    scratch_dir dir("binary");
    auto key = create_key(dir.string(), "tenant-b");
    std::string const bytes("caf\xe9\x00\xff\x89PNG", 9);
    threaded_vendor vendor([&](std::string const& head) -> std::optional<std::string> {
        if (head.starts_with("GET /health ")) return vendor_answer(200);
        if (head.starts_with("POST /echo/text ")) return vendor_answer(200, "caf\xc3\xa9");
        return vendor_answer(200, bytes, "X-Note: caf\xe9\r\n");
    });
    host_process host(dir.string(), {"--key-rate-limit", "0"});
    api client(host.port(), key);
    auto connection = set_up(client, vendor.port(), "-binary").connection_id;
    auto a = client.post("/integrations/runs", run_with_id(connection, "image"));
    ASSERT_EQ(a.status, 201) << a.body;
    auto const answer = a.json();  // the parser refuses text that is not UTF-8
    auto const& res = answer.at("response");
    EXPECT_EQ(str(res, "bodyEncoding"), "base64");
    EXPECT_EQ(str(res, "body"), integration::testing::base64(bytes));
    EXPECT_EQ(str(res.at("headers"), "X-Note"), "caf\xef\xbf\xbd");

    auto text = client.post("/integrations/runs", run_with_id(connection, "text"));
    ASSERT_EQ(text.status, 201) << text.body;
    EXPECT_EQ(str(text.json().at("response"), "body"), "caf\xc3\xa9");
    EXPECT_FALSE(text.json().at("response").as_object().contains("bodyEncoding"));
}

// Requests with one Idempotency-Key at once: the vendor is called once; the others wait for that
// run and answer it finished or, past --idempotency-wait-ms, 409 idempotency-in-progress with
// Retry-After. None answers with the run still Running.
TEST(host_idempotency, concurrent_requests_with_one_key_call_the_vendor_once_and_never_answer_running) {
    scratch_dir dir("twins");
    auto key = create_key(dir.string(), "tenant-t");
    threaded_vendor vendor([](std::string const& head) -> std::optional<std::string> {
        if (head.starts_with("GET /health ")) return vendor_answer(200);
        std::this_thread::sleep_for(head.starts_with("POST /echo/long ") ? 4s : 1s);
        return vendor_answer(200, R"({"ok":true})");
    });
    host_process host(dir.string(), {"--key-rate-limit", "0", "--idempotency-wait-ms", "2500"});
    api client(host.port(), key);
    auto connection = set_up(client, vendor.port(), "-twins").connection_id;
    auto concurrently = [&](std::string const& id, std::string const& k) {
        std::vector<http_answer> answers(4);
        std::vector<std::thread> threads;
        for (auto& a : answers)
            threads.emplace_back([&] { a = client.post("/integrations/runs", run_with_id(connection, id), {{"Idempotency-Key", k}}); });
        for (auto& t : threads) t.join();
        return answers;
    };

    std::set<std::string> ids;
    for (auto const& a : concurrently("short", "twin-1")) {  // the call (1 s) ends within the wait
        EXPECT_EQ(a.status, 201) << a.body;
        EXPECT_EQ(str(a.json(), "status"), "Completed") << a.body;
        ids.insert(str(a.json(), "runId"));
    }
    EXPECT_EQ(ids.size(), 1u);
    EXPECT_EQ(vendor.count("POST /echo/short "), 1);

    int completed = 0, in_progress = 0;
    for (auto a : concurrently("long", "twin-2")) {  // the call (4 s) outlasts the wait
        if (a.status == 201) {
            EXPECT_EQ(str(a.json(), "status"), "Completed") << a.body;
            ++completed;
            continue;
        }
        EXPECT_EQ(a.status, 409) << a.body;
        EXPECT_EQ(str(a.json(), "type"), "https://integration.dev/problems/idempotency-in-progress") << a.body;
        EXPECT_EQ(a.headers["retry-after"], "1");
        ++in_progress;
    }
    EXPECT_EQ(completed + in_progress, 4);
    EXPECT_GE(completed, 1);
    EXPECT_GE(in_progress, 1);
    auto later = client.post("/integrations/runs", run_with_id(connection, "long"), {{"Idempotency-Key", "twin-2"}});
    EXPECT_EQ(later.status, 201) << later.body;
    EXPECT_EQ(str(later.json(), "status"), "Completed") << later.body;
    EXPECT_EQ(later.headers["idempotent-replayed"], "true");
    EXPECT_EQ(vendor.count("POST /echo/long "), 1);
}

// One tenant floods runs on a vendor answering 503 with Retry-After: 30 and on a provider with the
// smallest rate limit allowed. Neither holds a thread asleep: each run answers 202 with the run
// Running (the retry worker continues it), or 429 tenant-busy past --tenant-executions. Meanwhile
// another tenant's reads and runs each answer within a 5 s bound (on a host whose four workers
// the flood would otherwise hold asleep for 30 s each).
TEST(host_fairness, a_tenant_flooding_slow_vendors_stalls_no_other_tenant) {
    scratch_dir dir("fairness");
    auto key_a = create_key(dir.string(), "tenant-flood");
    auto key_b = create_key(dir.string(), "tenant-calm");
    threaded_vendor unavailable([](std::string const& head) -> std::optional<std::string> {
        if (head.starts_with("GET /health ")) return vendor_answer(200);
        return vendor_answer(503, "", "Retry-After: 30\r\n");
    });
    std::atomic<int> recovering_calls{0};
    threaded_vendor recovering([&](std::string const& head) -> std::optional<std::string> {
        if (head.starts_with("GET /health ")) return vendor_answer(200);
        return ++recovering_calls == 1 ? vendor_answer(503, "", "Retry-After: 3\r\n") : vendor_answer(200, R"({"done":true})");
    });
    echo_vendor fast;
    host_process host(dir.string(), {"--key-rate-limit", "0", "--workers", "4", "--execution-threads", "4", "--tenant-executions",
                                     "2", "--run-deadline-ms", "2000", "--retry-interval-ms", "200"});
    api a(host.port(), key_a), b(host.port(), key_b);
    auto flooded = set_up(a, unavailable.port(), "-flood").connection_id;
    auto throttled = set_up(a, fast.port(), "-throttled", {{"rateLimitProfile", json::object{{"requestsPerSecond", 0.001}, {"burst", 1}}}})
                         .connection_id;
    auto calm = set_up(b, fast.port(), "-calm").connection_id;
    auto within_5s = [&](api const& who, std::string const& method, std::string const& target, std::string const& body = "") {
        return parse_answer(raw_exchange(host.port(), who.request(method, target, body), 5s));
    };

    std::atomic<bool> flooding{true};
    std::mutex mutex;
    std::vector<http_answer> flood;
    std::vector<std::thread> threads;
    for (int i = 0; i < 8; ++i)
        threads.emplace_back([&, i] {
            while (flooding) {
                auto got = a.post("/integrations/runs", run_with_id(i % 2 ? flooded : throttled, "flood"));
                if (got.status == 429) std::this_thread::sleep_for(20ms);
                std::lock_guard lock(mutex);
                flood.push_back(std::move(got));
            }
        });
    EXPECT_TRUE(eventually([&] {
        std::lock_guard lock(mutex);
        return flood.size() >= 16;
    }, 20s));
    for (int i = 0; i < 5; ++i) {
        auto read = within_5s(b, "GET", "/integrations/providers");
        EXPECT_EQ(read.status, 200) << "tenant B's read got no answer within 5 s";
        auto run = within_5s(b, "POST", "/integrations/runs", json::serialize(run_with_id(calm, "calm")));
        EXPECT_EQ(run.status, 201) << "tenant B's run got no answer within 5 s: " << run.body;
        if (run.status == 201) {
            EXPECT_EQ(str(run.json(), "status"), "Completed") << run.body;
        }
    }
    flooding = false;
    for (auto& t : threads) t.join();

    int deferred = 0, busy = 0, completed = 0;
    for (auto got : flood) {
        if (got.status == 202) {
            ++deferred;
            EXPECT_EQ(str(got.json(), "status"), "Running") << got.body;
            EXPECT_TRUE(got.json().as_object().contains("failureId")) << got.body;
        } else if (got.status == 429) {
            ++busy;
            EXPECT_EQ(str(got.json(), "type"), "https://integration.dev/problems/tenant-busy") << got.body;
            EXPECT_EQ(got.headers["retry-after"], "1");
        } else {
            EXPECT_EQ(got.status, 201) << got.body;  // the throttled provider's one token
            ++completed;
        }
    }
    EXPECT_GT(deferred, 0);
    EXPECT_GT(busy, 0);
    EXPECT_LE(completed, 1);
    std::printf("[ flood    ] %d answered 202 Running, %d 429 tenant-busy, %d completed\n", deferred, busy, completed);

    // A run answered 202 is finished by the retry worker: its vendor asked for 3 s, past
    // --run-deadline-ms, then answers.
    auto later = set_up(a, recovering.port(), "-later").connection_id;
    auto accepted = a.post("/integrations/runs", run_with_id(later, "later"));
    ASSERT_EQ(accepted.status, 202) << accepted.body;
    auto id = str(accepted.json(), "runId");
    EXPECT_TRUE(eventually([&] { return str(a.get("/integrations/runs/" + id).json(), "status") == "Completed"; }, 20s))
        << a.get("/integrations/runs/" + id).body;
    EXPECT_EQ(recovering_calls, 2);
}

// Providers, API clients and connections all carry rate limits: a rate too small to serve or a
// burst too large to limit is refused at registration, naming the bound.
TEST_F(host_e2e, an_absurd_rate_limit_is_refused_at_registration_naming_its_bound) {
    auto t = set_up(a(), vendor_->port(), "-limits");
    json::object const tiny{{"requestsPerSecond", 0.000001}, {"burst", 1}};
    json::object const huge{{"requestsPerSecond", 10}, {"burst", 1'000'000'000}};
    auto expect_refused = [](http_answer const& got, std::string const& bound) {
        EXPECT_EQ(got.status, 400) << got.body;
        if (got.status == 400) {
            EXPECT_NE(str(got.json(), "detail").find(bound), std::string::npos) << got.body;
        }
    };
    for (auto const& [limit, bound] : {std::pair{tiny, "between 0.001 (one call in 1000 s) and 100000"}, std::pair{huge, "between 1 and 100000"}}) {
        expect_refused(a().post("/integrations/providers",
                                json::object{{"key", "absurd"}, {"displayName", "Absurd"}, {"category", "BusinessSystem"},
                                             {"authModel", "ApiKey"}, {"baseUrl", "http://127.0.0.1:1"},
                                             {"capabilities", json::array{"x.do"}}, {"rateLimitProfile", limit}}),
                       bound);
        expect_refused(a().post("/integrations/providers/" + t.provider_id + "/clients",
                                json::object{{"assemblyName", "Absurd.Client"}, {"version", "1.0.0"}, {"capabilities", json::array{"echo.send"}},
                                             {"authMode", "ApiKey"}, {"rateLimitProfile", limit},
                                             {"operations", json::array{json::object{{"operation", "echo.send"}, {"method", "POST"}, {"path", "/echo"}}}}}),
                       bound);
        expect_refused(a().post("/integrations/connections",
                                json::object{{"projectId", "proj-1"}, {"providerId", t.provider_id}, {"displayName", "Absurd"},
                                             {"credentialId", t.credential_id}, {"rateLimitBudget", limit}}),
                       bound);
    }
}

// ---- runs at the library's speed: answered once durable, fair between tenants ---------------

/** Blob `key` of `tenant` in the host's SQLite blob store (`blobs.db`, where small bodies go). */
std::optional<std::string> stored_blob(std::filesystem::path const& db, std::string const& tenant, std::string const& key) {
    return first_row(db, "SELECT data FROM blobs WHERE tenant_id = ? AND key = ?", {tenant, key});
}

/** A run's body as the embedded default keeps it: small bodies of runs recorded behind in their
 *  run's row (integration.db), others in blobs.db. */
std::optional<std::string> stored_body(std::filesystem::path const& data, std::string const& tenant, std::string const& run_id,
                                       std::string const& part) {
    if (auto b = stored_blob(data / "blobs.db", tenant, "runs/" + run_id + "/" + part)) return b;
    std::string column = part == "request" ? "request_body" : "response_body";
    return first_row(data / "integration.db",
                     "SELECT " + column + " FROM runs WHERE tenant_id = ? AND run_id = ? AND " + column + " IS NOT NULL",
                     {tenant, run_id});
}

/** A vendor that answers every call at once with `{"echo":"<last path segment>"}`. */
std::optional<std::string> echo_last_segment(std::string const& head) {
    if (head.starts_with("GET /health ")) return vendor_answer(200);
    auto path = head.substr(head.find(' ') + 1);
    path = path.substr(0, path.find(' '));
    return vendor_answer(200, R"({"echo":")" + path.substr(path.rfind('/') + 1) + R"("})");
}

// Clients post runs, every other one with an Idempotency-Key, until the host is killed with
// SIGKILL. A run is answered only after the commit that holds it (row, attempt, both bodies) is on
// disk, so every run answered 201 is in the store after a restart, Completed with its attempt and
// its request and response bodies. No run stays Running: a keyed run the kill caught after its
// Running row was written ends Failed (interrupted) once its lease ends.
TEST(host_recording, every_run_answered_201_survives_a_sigkill_under_load_and_none_stays_running) {
    scratch_dir dir("crash");
    std::string const tenant = "tenant-crash";
    auto key = create_key(dir.string(), tenant);
    threaded_vendor vendor(echo_last_segment);
    std::vector<std::string> const flags{"--key-rate-limit",   "0",   "--run-deadline-ms",   "1000", "--attempt-timeout-ms", "2000",
                                         "--orphan-margin-ms", "500", "--retry-interval-ms", "200"};
    struct answered {
        std::string run_id, id;
    };
    std::vector<answered> ok;
    std::atomic<int> refused{0};
    std::mutex mutex;
    {
        host_process host(dir.string(), flags);
        api client(host.port(), key);
        auto connection = set_up(client, vendor.port(), "-crash").connection_id;
        std::atomic<bool> posting{true};
        std::vector<std::thread> clients;
        for (int c = 0; c < 8; ++c)
            clients.emplace_back([&, c] {
                for (int i = 0; posting; ++i) {
                    auto id = "c" + std::to_string(c) + "-" + std::to_string(i);
                    std::map<std::string, std::string> extra;
                    if (i % 2) extra["Idempotency-Key"] = "key-" + id;
                    try {
                        auto got = client.post("/integrations/runs", run_with_id(connection, id), extra);
                        if (got.status == 0) continue;  // cut off by the kill: no answer
                        if (got.status != 201) {
                            ++refused;
                            continue;
                        }
                        auto run_id = str(got.json(), "runId");
                        std::lock_guard lock(mutex);
                        ok.push_back({run_id, id});
                    } catch (std::exception const&) {  // the host is gone, or its answer was cut short
                    }
                }
            });
        EXPECT_TRUE(eventually([&] {
            std::lock_guard lock(mutex);
            return ok.size() >= 300;
        }, 60s));
        host.kill_now();
        EXPECT_EQ(host.wait(), -SIGKILL);
        posting = false;
        for (auto& t : clients) t.join();
    }
    EXPECT_EQ(refused, 0) << "a run under load was answered other than 201";
    host_process host(dir.string(), flags);
    api client(host.port(), key);
    auto running = [&] { return client.get("/integrations/runs?status=Running&limit=500").json().at("items").as_array().size(); };
    EXPECT_TRUE(eventually([&] { return running() == 0; }, 30s)) << running() << " runs still Running";
    for (auto const& a : ok) {
        auto run = client.get("/integrations/runs/" + a.run_id);
        ASSERT_EQ(run.status, 200) << "run " << a.run_id << " (" << a.id << ") was answered 201 and lost: " << run.body;
        EXPECT_EQ(str(run.json(), "status"), "Completed") << run.body;
        EXPECT_EQ(run.json().at("runAttempts").as_array().size(), 1u) << run.body;
        EXPECT_EQ(stored_body(dir.path(), tenant, a.run_id, "request"), R"({"msg":")" + a.id + R"("})") << a.id;
        EXPECT_EQ(stored_body(dir.path(), tenant, a.run_id, "response"), R"({"echo":")" + a.id + R"("})") << a.id;
    }
    std::printf("[ crash    ] %zu runs answered 201 before SIGKILL, all found after the restart\n", ok.size());
}

// One tenant's runs hang on their vendor until --attempt-timeout-ms while another tenant runs
// against a fast vendor. The hanging tenant holds at most its --tenant-executions share of the
// execution threads (past it: 429 tenant-busy), and a run waiting for its commit holds no
// thread, so the other tenant's median run takes less than twice as long as it did alone.
TEST(host_fairness, runs_hanging_on_one_tenants_vendor_slow_another_tenants_runs_less_than_twice) {
    scratch_dir dir("fair-runs");
    auto key_a = create_key(dir.string(), "tenant-hang");
    auto key_b = create_key(dir.string(), "tenant-fast");
    // One hanging vendor per attempt (below): the timeouts of one attempt open the circuit
    // breaker of its vendor, and the next attempt's flood must hang again, not fail fast.
    std::vector<std::unique_ptr<threaded_vendor>> hanging;
    for (int i = 0; i < 3; ++i)
        hanging.push_back(std::make_unique<threaded_vendor>([](std::string const& head) -> std::optional<std::string> {
            if (head.starts_with("GET /health ")) return vendor_answer(200);
            return std::nullopt;  // held until the host's attempt times out
        }));
    threaded_vendor fast(echo_last_segment);
    host_process host(dir.string(), {"--key-rate-limit", "0", "--attempt-timeout-ms", "3000", "--run-deadline-ms", "1000"});
    api a(host.port(), key_a), b(host.port(), key_b);
    std::vector<std::string> hung;
    for (int i = 0; i < 3; ++i) hung.push_back(set_up(a, hanging[i]->port(), "-hang" + std::to_string(i)).connection_id);
    auto quick = set_up(b, fast.port(), "-fast").connection_id;
    auto median_run_ms = [&] {
        std::vector<double> ms;
        for (int i = 0; i < 41; ++i) {
            auto start = std::chrono::steady_clock::now();
            auto got = b.post("/integrations/runs", run_with_id(quick, "b" + std::to_string(i)));
            ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
            EXPECT_EQ(got.status, 201) << got.body;
        }
        std::sort(ms.begin(), ms.end());
        return ms[ms.size() / 2];
    };
    // Alone, then beside the flood, up to three times: a machine busy with other tests during one
    // measurement can double a median of 41 runs of a few ms, while a host that let the hanging
    // tenant hold tenant B's runs would make them wait the run deadline (1 s) every time.
    double alone = 0, beside = 0;
    for (int attempt = 1; attempt <= 3; ++attempt) {
        alone = median_run_ms();
        auto& vendor = *hanging[attempt - 1];
        std::atomic<bool> flooding{true};
        std::atomic<int> busy{0};
        std::vector<std::thread> flood;
        for (int i = 0; i < 32; ++i)
            flood.emplace_back([&, i] {
                for (int n = 0; flooding; ++n) {
                    auto id = "a" + std::to_string(attempt) + "-" + std::to_string(i) + "-" + std::to_string(n);
                    auto got = a.post("/integrations/runs", run_with_id(hung[attempt - 1], id));
                    if (got.status == 429) {
                        ++busy;
                        std::this_thread::sleep_for(50ms);
                    }
                }
            });
        EXPECT_TRUE(eventually([&] { return vendor.count("POST /echo/") >= 16; }, 10s)) << vendor.count("POST /echo/");
        EXPECT_TRUE(eventually([&] { return busy > 0; }, 10s)) << "the hanging tenant was never held to its share";
        beside = median_run_ms();
        flooding = false;
        for (auto& t : flood) t.join();
        std::printf("[ fairness ] tenant B's median run: %.2f ms alone, %.2f ms beside a tenant hanging on its vendor\n",
                    alone, beside);
        if (beside < 2 * alone) break;
    }
    EXPECT_LT(beside, 2 * alone);
}

// Runs waiting on their vendor hold no execution thread: with two execution threads (a tenant
// may hold one), sixteen runs of one tenant wait on a vendor that hangs, all at once; the
// seventeenth is refused by the tenant's in-flight bound (--tenant-executions), and another
// tenant's run completes meanwhile.
TEST(host_fairness, runs_waiting_on_a_vendor_hold_no_execution_thread_and_are_bounded_per_tenant) {
    scratch_dir dir("in-flight");
    auto key_a = create_key(dir.string(), "tenant-wait");
    auto key_b = create_key(dir.string(), "tenant-other");
    threaded_vendor hanging([](std::string const& head) -> std::optional<std::string> {
        if (head.starts_with("GET /health ")) return vendor_answer(200);
        return std::nullopt;  // held until the host's attempt times out
    });
    threaded_vendor fast(echo_last_segment);
    host_process host(dir.string(), {"--key-rate-limit", "0", "--execution-threads", "2", "--tenant-executions", "16",
                                     "--attempt-timeout-ms", "5000", "--run-deadline-ms", "1000"});
    api a(host.port(), key_a), b(host.port(), key_b);
    auto hung = set_up(a, hanging.port(), "-hang").connection_id;
    auto quick = set_up(b, fast.port(), "-fast").connection_id;
    std::atomic<int> answered{0};
    std::vector<std::thread> waiting;
    for (int i = 0; i < 16; ++i)
        waiting.emplace_back([&, i] {
            (void)a.post("/integrations/runs", run_with_id(hung, "w" + std::to_string(i)));
            ++answered;
        });
    EXPECT_TRUE(eventually([&] { return hanging.count("POST /echo/") >= 16; }, 4s))
        << "only " << hanging.count("POST /echo/") << " of 16 runs reached the vendor at once";
    EXPECT_EQ(answered.load(), 0);
    auto over = a.post("/integrations/runs", run_with_id(hung, "over"));
    EXPECT_EQ(over.status, 429) << over.body;
    if (over.status == 429) {
        EXPECT_EQ(str(over.json(), "type"), "https://integration.dev/problems/tenant-busy") << over.body;
    }
    // Subscribing resolves the endpoint's name (DNS, which a tenant chooses and can make slow): it
    // is held to the same bound, not to the threads every tenant's store-only routes share.
    auto subscribe = a.post("/webhooks/subscriptions", json::object{{"projectId", "p"}, {"eventType", "order.*"},
                                                                    {"endpointUrl", "http://127.0.0.1:9/hook"}});
    EXPECT_EQ(subscribe.status, 429) << subscribe.body;
    auto other = b.post("/integrations/runs", run_with_id(quick, "b"));
    EXPECT_EQ(other.status, 201) << other.body;
    for (auto& t : waiting) t.join();
}

// A run whose checks are all cached (its API key, binding and credential, a literal address)
// starts on the connection's thread: it is answered while the only execution thread is held by
// another tenant's probe of a vendor that does not answer (5 s, the probe's deadline).
TEST(host_fairness, a_run_whose_checks_are_cached_needs_no_execution_thread) {
    scratch_dir dir("run-here");
    auto key_a = create_key(dir.string(), "tenant-probe");
    auto key_b = create_key(dir.string(), "tenant-run");
    std::atomic<bool> hang{false};
    threaded_vendor probed([&](std::string const& head) -> std::optional<std::string> {
        if (head.starts_with("GET /health ") && hang) return std::nullopt;  // held until the probe gives up
        return vendor_answer(200);
    });
    threaded_vendor fast(echo_last_segment);
    host_process host(dir.string(),
                      {"--key-rate-limit", "0", "--execution-threads", "1", "--probe-interval-ms", "3600000"});
    api a(host.port(), key_a), b(host.port(), key_b);
    auto slow = set_up(a, probed.port(), "-probed").connection_id;
    auto quick = set_up(b, fast.port(), "-quick").connection_id;
    // The key and the binding stay cached for 1 s after the warming run: on a machine so loaded
    // that the probe took most of that to reach its vendor, the caches may be gone by the second
    // run, so that attempt is made again (after the probe's 5 s) rather than judged.
    for (int attempt = 1;; ++attempt) {
        auto warmed = std::chrono::steady_clock::now();
        auto warm = b.post("/integrations/runs", run_with_id(quick, "warm-" + std::to_string(attempt)));  // fills the caches
        ASSERT_EQ(warm.status, 201) << warm.body;
        hang = true;
        auto probes = probed.count("GET /health ");
        std::thread probe([&] { (void)a.post("/integrations/connections/" + slow + "/test", json::object{}); });
        bool reached = eventually([&] { return probed.count("GET /health ") > probes; }, 4s);
        if (std::chrono::steady_clock::now() - warmed > 600ms && attempt < 3) {
            probe.join();
            continue;
        }
        EXPECT_TRUE(reached) << "the probe never reached its vendor";
        auto run = parse_answer(raw_exchange(
            host.port(), b.request("POST", "/integrations/runs", json::serialize(run_with_id(quick, "second"))), 3s));
        EXPECT_EQ(run.status, 201) << "a run with its checks cached waited for the execution thread: " << run.body;
        probe.join();
        break;
    }
}

}  // namespace
}  // namespace integration::testing
