#include <integration/backends/curl/curl_transport.hpp>
#include <integration/services/credential_service.hpp>

#include "storage/fixtures.hpp"
#include "support/child_process.hpp"
#include "support/credential_doubles.hpp"
#include "support/keep_alive_server.hpp"
#include "support/query_string.hpp"
#include "support/sqlite_file.hpp"

#include <integration/backends/local_vault/local_secret_store.hpp>
#include <integration/backends/sqlite/sqlite_store.hpp>

#include <atomic>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <map>
#include <fstream>
#include <future>
#include <thread>

// OAuth2 client credentials against a real token server (oauth2-mock-server from the npm
// registry) on loopback, started and stopped by the test.

namespace integration::testing {
namespace {

std::size_t count_lines(std::string const& path) {
    std::ifstream f(path);
    std::size_t n = 0;
    for (std::string line; std::getline(f, line);) ++n;
    return n;
}

class oauth2_peer_test : public ::testing::Test {
protected:
    /** What every service here may reach: the peers on loopback. */
    static net::egress_policy loopback() { return {.allow = {net::cidr::parse("127.0.0.0/8").value()}}; }

    void SetUp() override {
        std::string script = std::string(INTEGRATION_PEERS_DIR) + "/oauth2_peer.mjs";
        ASSERT_TRUE(std::filesystem::exists(std::string(INTEGRATION_PEERS_DIR) + "/node_modules/oauth2-mock-server"))
            << "the test peers are not installed: run npm ci in " << INTEGRATION_PEERS_DIR << " (scripts/test.sh does)";
        allow("client-secret-1");
        peer_ = std::make_unique<child_process>(std::vector<std::string>{"node", script, count_file_, allowed_file_});
        auto line = peer_->read_line();
        ASSERT_EQ(line.rfind("PORT ", 0), 0u) << "peer said: " << line;
        token_url_ = "http://127.0.0.1:" + line.substr(5) + "/token";
        must(store_->transact(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
            auto p = active_provider(ctx_, clock_.now());
            provider_id_ = p.id();
            return uow.providers().save(p);
        }));
    }

    void allow(std::string const& secret) { std::ofstream(allowed_file_, std::ios::app) << secret << "\n"; }

    credentials::integration_credential create(std::string secret) {
        return must(service_.create(ctx_, {.provider_id = provider_id_,
                                           .auth_mode = auth_mode::oauth2_client_credentials,
                                           .secret = secret_bytes(secret),
                                           .oauth2 = credentials::oauth2_client_settings{token_url_, "client-1", {"read", "write"}}}));
    }

    static std::string bearer(credentials::resolved_credential const& r) {
        return std::string(r.headers.at(0).second.view());
    }

    temp_dir dir_;
    std::string count_file_ = dir_.file("tokens.count");
    std::string allowed_file_ = dir_.file("allowed.secrets");
    std::unique_ptr<child_process> peer_;
    std::string token_url_;
    manual_clock clock_{system_clock::instance().now()};
    std::unique_ptr<storage::store> store_ = must(storage::open_sqlite_store({.path = dir_.file("i.db"), .clock = &clock_}));
    std::unique_ptr<credentials::local_secret_store> vault_ = must(credentials::open_local_secret_store(
        {.path = dir_.file("s.db"), .key_file = dir_.file("master.key"), .key_env = "", .clock = &clock_}));
    credentials::fingerprinter fingerprints_ = must(credentials::fingerprinter::load_or_create(dir_.file("fp.key")));
    std::unique_ptr<http::transport> transport_ = http::make_curl_transport();
    net::static_resolver dns_;
    credentials::credential_service service_{*store_, *vault_, fingerprints_, clock_, *transport_, loopback(), dns_};
    request_context ctx_ = request_context::for_tenant("t1", "alice");
    std::string provider_id_;
};

TEST_F(oauth2_peer_test, a_token_is_fetched_cached_and_sent_as_bearer) {
    auto c = create("client-secret-1");
    auto first = must(service_.resolve(ctx_, c.id()));
    ASSERT_EQ(first.headers.size(), 1u);
    EXPECT_EQ(first.headers[0].first, "Authorization");
    EXPECT_EQ(bearer(first).rfind("Bearer eyJ", 0), 0u);  // a JWT from the server
    auto second = must(service_.resolve(ctx_, c.id()));
    EXPECT_EQ(bearer(second), bearer(first));
    EXPECT_EQ(count_lines(count_file_), 1u);
}

TEST_F(oauth2_peer_test, a_hundred_concurrent_callers_cause_one_token_request) {
    auto c = create("client-secret-1");
    std::atomic<int> ok{0};
    std::vector<std::thread> callers;
    for (int i = 0; i < 100; ++i)
        callers.emplace_back([&] {
            if (service_.resolve(ctx_, c.id())) ++ok;
        });
    for (auto& t : callers) t.join();
    EXPECT_EQ(ok.load(), 100);
    EXPECT_EQ(count_lines(count_file_), 1u);
}

TEST_F(oauth2_peer_test, the_token_is_refreshed_before_it_expires) {
    auto c = create("client-secret-1");
    auto first = bearer(must(service_.resolve(ctx_, c.id())));
    // The server issues 3600 s tokens; the default margin is 120 s.
    clock_.advance(std::chrono::seconds(3600 - 121));
    EXPECT_EQ(bearer(must(service_.resolve(ctx_, c.id()))), first);
    EXPECT_EQ(count_lines(count_file_), 1u);
    clock_.advance(std::chrono::seconds(2));
    must(service_.resolve(ctx_, c.id()));
    EXPECT_EQ(count_lines(count_file_), 2u);
}

TEST_F(oauth2_peer_test, invalidating_after_a_401_forces_one_fresh_token) {
    auto c = create("client-secret-1");
    must(service_.resolve(ctx_, c.id()));
    service_.invalidate_token(c.id());
    must(service_.resolve(ctx_, c.id()));
    must(service_.resolve(ctx_, c.id()));
    EXPECT_EQ(count_lines(count_file_), 2u);
}

TEST_F(oauth2_peer_test, a_401_forces_exactly_one_token_refresh_before_it_counts) {
    auto revoked = dir_.file("revoked.tokens");
    child_process api({"node", std::string(INTEGRATION_PEERS_DIR) + "/resource_peer.mjs", revoked});
    auto line = api.read_line();
    ASSERT_EQ(line.rfind("PORT ", 0), 0u) << line;
    http::request req{.method = "GET", .url = "http://127.0.0.1:" + line.substr(5) + "/v1/things"};
    auto c = create("client-secret-1");
    EXPECT_EQ(must(send_authorized(service_, *transport_, ctx_, c.id(), req)).status, 200);
    EXPECT_EQ(count_lines(count_file_), 1u);
    // The provider revokes the cached token: the next call refreshes once and succeeds. (The
    // server's RS256 tokens are deterministic within one second, hence the pause.)
    std::ofstream(revoked, std::ios::app) << bearer(must(service_.resolve(ctx_, c.id()))).substr(7) << "\n";
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    EXPECT_EQ(must(send_authorized(service_, *transport_, ctx_, c.id(), req)).status, 200);
    EXPECT_EQ(count_lines(count_file_), 2u);
    // When the fresh token is refused too, the 401 comes back after exactly one refresh.
    std::ofstream(revoked, std::ios::app) << "*\n";
    auto refused = send_authorized(service_, *transport_, ctx_, c.id(), req);
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->status, 401);
    EXPECT_EQ(count_lines(count_file_), 3u);
}

TEST_F(oauth2_peer_test, a_wrong_client_secret_is_an_auth_error_that_does_not_echo_the_secret) {
    auto c = create("not-the-right-secret");
    auto r = service_.resolve(ctx_, c.id());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::forbidden);
    EXPECT_NE(r.error().detail().find("401"), std::string::npos);
    EXPECT_EQ(r.error().message().find("not-the-right-secret"), std::string::npos);
}

TEST_F(oauth2_peer_test, rotation_verifies_the_new_client_secret_against_the_token_server) {
    auto c = create("client-secret-1");
    // The server does not know secret 2 yet: verification fetches a token with it and fails.
    auto verify = [&](credentials::resolved_credential const& m) -> result<void> {
        return m.headers.empty() ? result<void>(error{errc::forbidden, "no token"}) : result<void>{};
    };
    auto refused = service_.rotate(ctx_, c.id(), secret_bytes("client-secret-2"), verify);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error(), errc::verification_failed);
    must(service_.resolve(ctx_, c.id()));  // version 1 still works
    allow("client-secret-2");
    auto rotated = must(service_.rotate(ctx_, c.id(), secret_bytes("client-secret-2"), verify));
    EXPECT_EQ(rotated.data().current_version, 3);
    must(service_.resolve(ctx_, c.id()));
}

/** Follows the authorize URL one hop (as a browser would) and returns the redirect's query. */
std::map<std::string, std::string> authorize(http::transport& t, std::string const& url) {
    auto res = must(t.send({.method = "GET", .url = url}));
    EXPECT_EQ(res.status / 100, 3) << res.body;
    return query_of(std::string(http::find_header(res.headers, "Location")));
}

class authorization_code_test : public oauth2_peer_test {
protected:
    credentials::authorization_code_settings settings() {
        auto base = token_url_.substr(0, token_url_.size() - 6);
        return {base + "/authorize", token_url_, "client-1", {"openid", "offline_access"}, "https://app.example/callback"};
    }
    std::string connection_for_credentials() {
        std::string id;
        must(store_->transact(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
            auto p = must(uow.providers().find(provider_id_));
            auto c = must(connections::integration_connection::create(ctx_, clock_.now(), p, connection_spec()));
            must(c.attach_credential("cred-01JD3Q8V6X4T2M9R5B7N1K0FZC"));
            must(c.record_health({health_status::healthy, "ok"}, clock_.now()));
            must(c.activate(true, clock_.now()));
            id = c.id();
            return uow.connections().save(c);
        }));
        return id;
    }
    /** The errors of `callers` threads resolving credential `id` through `service` at once. */
    std::vector<std::string> resolve_at_once(credentials::credential_service& service, std::string const& id, int callers) {
        std::atomic<int> ready{0};
        std::vector<std::string> errors(static_cast<std::size_t>(callers));
        std::vector<std::thread> threads;
        for (int i = 0; i < callers; ++i)
            threads.emplace_back([&, i] {
                ++ready;
                while (ready < callers) std::this_thread::yield();
                if (auto r = service.resolve(ctx_, id); !r) errors[static_cast<std::size_t>(i)] = r.error().detail();
            });
        for (auto& t : threads) t.join();
        std::erase(errors, std::string());
        return errors;
    }
    credentials::integration_credential authorized(std::optional<std::string> connection_id = {}) {
        auto start = must(service_.begin_authorization(ctx_, provider_id_, connection_id, settings(), secret_bytes("client-secret-1")));
        auto q = authorize(*transport_, start.url);
        EXPECT_EQ(q["state"], start.state);
        return must(service_.complete_authorization(q["state"], q["code"]));
    }
};

TEST_F(authorization_code_test, the_authorize_url_carries_state_and_a_pkce_s256_challenge) {
    auto a = must(service_.begin_authorization(ctx_, provider_id_, {}, settings(), secret_bytes("client-secret-1")));
    auto b = must(service_.begin_authorization(ctx_, provider_id_, {}, settings(), secret_bytes("client-secret-1")));
    EXPECT_NE(a.state, b.state);
    EXPECT_GE(a.state.size(), 32u);
    EXPECT_NE(a.url.find("response_type=code"), std::string::npos);
    EXPECT_NE(a.url.find("code_challenge_method=S256"), std::string::npos);
    auto pos = a.url.find("code_challenge=");
    ASSERT_NE(pos, std::string::npos);
    auto challenge = a.url.substr(pos + 15, a.url.find('&', pos) - pos - 15);
    EXPECT_EQ(challenge.size(), 43u);  // base64url of a SHA-256 digest
    EXPECT_EQ(a.url.find("client-secret-1"), std::string::npos);
    EXPECT_NE(a.url.find("state=" + a.state), std::string::npos);
}

TEST_F(authorization_code_test, the_callback_exchanges_the_code_and_keeps_the_refresh_token_in_the_vault) {
    auto c = authorized();
    EXPECT_EQ(c.data().auth_mode, auth_mode::oauth2_authorization_code);
    EXPECT_EQ(c.status(), credentials::credential_status::active);
    auto before = count_lines(count_file_);
    auto m = must(service_.resolve(ctx_, c.id()));  // cached from the exchange
    EXPECT_EQ(bearer(m).rfind("Bearer ", 0), 0u);
    EXPECT_EQ(count_lines(count_file_), before);
    auto stored = must(vault_->get("t1", must(credentials::secret_ref::parse(c.data().key_vault_ref))));
    EXPECT_NE(stored.view().find("refreshToken"), std::string::npos);
}

TEST_F(authorization_code_test, a_wrong_reused_or_expired_state_is_refused) {
    auto start = must(service_.begin_authorization(ctx_, provider_id_, {}, settings(), secret_bytes("client-secret-1")));
    auto q = authorize(*transport_, start.url);
    auto wrong = service_.complete_authorization("not-" + q["state"], q["code"]);
    ASSERT_FALSE(wrong);
    EXPECT_EQ(wrong.error(), errc::forbidden);
    must(service_.complete_authorization(q["state"], q["code"]));
    auto replay = service_.complete_authorization(q["state"], q["code"]);
    ASSERT_FALSE(replay);
    EXPECT_EQ(replay.error(), errc::forbidden);
    auto late = must(service_.begin_authorization(ctx_, provider_id_, {}, settings(), secret_bytes("client-secret-1")));
    auto lq = authorize(*transport_, late.url);
    clock_.advance(std::chrono::minutes(11));
    EXPECT_EQ(service_.complete_authorization(lq["state"], lq["code"]).error(), errc::forbidden);
}

TEST_F(authorization_code_test, refresh_uses_the_stored_refresh_token_and_stores_a_rotated_one) {
    auto c = authorized();
    service_.invalidate_token(c.id());
    auto m = must(service_.resolve(ctx_, c.id()));
    EXPECT_EQ(bearer(m).rfind("Bearer ", 0), 0u);
    credentials::integration_credential stored = c;
    must(store_->read(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
        stored = must(uow.credentials().find(c.id()));
        return {};
    }));
    // The server rotated the refresh token: a new version holds it and the old one retired.
    EXPECT_EQ(stored.data().current_version, 2);
    EXPECT_EQ(stored.data().versions[0].state, credentials::version_state::retired);
    service_.invalidate_token(c.id());
    must(service_.resolve(ctx_, c.id()));  // the rotated token works
    // Each refresh ended a version: the spent refresh tokens before the last one are disabled,
    // for the vault to destroy, instead of staying readable for the credential's whole life.
    service_.invalidate_token(c.id());
    must(service_.resolve(ctx_, c.id()));
    std::vector<bool> enabled;
    for (auto const& v : must(vault_->versions("t1", must(credentials::secret_ref::parse(c.data().key_vault_ref)).name)))
        enabled.push_back(v.enabled);
    EXPECT_EQ(enabled, (std::vector<bool>{false, false, true, true}));
}

// The request that carries a refresh token spends it: libcurl's own re-send of it (its reused
// connection died before the answer) would be refused as invalid_grant by a provider that
// rotates refresh tokens, and taken for a revoked grant. It goes out once.
TEST_F(authorization_code_test, a_refresh_whose_connection_dies_is_not_sent_again) {
    std::atomic<int> refreshes{0};
    keep_alive_server token([&](received_request const& r) -> std::string {
        bool const refresh = r.body.find("grant_type=refresh_token") != std::string::npos;
        if (refresh && ++refreshes == 2) return std::string(keep_alive_server::hang_up);
        return http_answer_bytes(200, R"({"access_token":"at","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-)" +
                                          std::to_string(refreshes.load()) + R"("})");
    });
    auto s = settings();
    s.token_url = "http://127.0.0.1:" + std::to_string(token.port()) + "/token";
    auto start = must(service_.begin_authorization(ctx_, provider_id_, {}, s, secret_bytes("client-secret-1")));
    auto c = must(service_.complete_authorization(start.state, "code-1"));
    service_.invalidate_token(c.id());
    must(service_.resolve(ctx_, c.id()));  // the first refresh, answered on a kept-alive connection
    service_.invalidate_token(c.id());
    auto refreshed = service_.resolve(ctx_, c.id());  // the second goes out on it, and it dies
    EXPECT_FALSE(refreshed);
    EXPECT_EQ(refreshes.load(), 2) << "the second refresh token went out twice";
}

TEST_F(authorization_code_test, failed_refreshes_cool_down_then_exhaust_and_degrade_the_connection) {
    auto conn_id = connection_for_credentials();
    auto c = authorized(conn_id);
    std::ofstream(allowed_file_ + ".revoked") << "revoked\n";
    service_.invalidate_token(c.id());
    auto r = service_.resolve(ctx_, c.id());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::forbidden);
    EXPECT_TRUE(service_.refresh_exhausted(c.id()));
    auto calls = count_lines(count_file_);
    EXPECT_FALSE(service_.resolve(ctx_, c.id()));  // exhausted: no further calls
    EXPECT_EQ(count_lines(count_file_), calls);
    must(store_->read(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
        auto conn = must(uow.connections().find(conn_id));
        EXPECT_EQ(conn.status(), connections::connection_status::degraded);
        auto failures = must(uow.failures().list({}, {})).items;
        EXPECT_EQ(failures.size(), 1u);
        EXPECT_EQ(failures.at(0).data().category, failures::failure_category::auth);
        EXPECT_EQ(failures.at(0).data().error_code, "refresh_exhausted");
        return {};
    }));
    bool auth_failed = false;
    for (auto const& e : must(store_->pending_events(100)))
        if (e.envelope.event_type == "IntegrationFailed" && e.envelope.data.at("category").as_string() == "Auth") auth_failed = true;
    EXPECT_TRUE(auth_failed);
}

TEST_F(authorization_code_test, a_failing_token_endpoint_is_not_hammered_during_the_cooldown) {
    auto c = authorized();
    std::ofstream(allowed_file_, std::ios::trunc) << "some-other-secret\n";  // refreshes now get 401
    service_.invalidate_token(c.id());
    EXPECT_EQ(service_.resolve(ctx_, c.id()).error(), errc::forbidden);
    auto cooling = service_.resolve(ctx_, c.id());
    ASSERT_FALSE(cooling);
    EXPECT_EQ(cooling.error(), errc::unavailable);
    EXPECT_NE(cooling.error().detail().find("cooling down"), std::string::npos);
    EXPECT_FALSE(service_.refresh_exhausted(c.id()));
    allow("client-secret-1");
    clock_.advance(std::chrono::seconds(31));
    must(service_.resolve(ctx_, c.id()));
}

TEST_F(authorization_code_test, the_refresh_token_and_client_secret_stay_in_the_vault) {
    auto c = authorized();
    service_.invalidate_token(c.id());
    must(service_.resolve(ctx_, c.id()));  // refresh, which rotates the refresh token
    must(store_->read(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
        c = must(uow.credentials().find(c.id()));
        return {};
    }));
    std::vector<std::string> canaries{"client-secret-1"};
    for (auto const& v : c.data().versions) {
        auto doc = must(vault_->get("t1", must(credentials::secret_ref::parse(v.key_vault_ref))));
        auto j = boost::json::parse(doc.view());
        canaries.emplace_back(j.at("refreshToken").as_string());
    }
    ASSERT_EQ(canaries.size(), 3u);
    auto slurp = [](std::string const& path) {
        std::ifstream f(path, std::ios::binary);
        return std::string(std::istreambuf_iterator<char>(f), {});
    };
    std::string haystack = slurp(dir_.file("i.db")) + slurp(dir_.file("i.db-wal")) + slurp(dir_.file("s.db")) +
                           slurp(dir_.file("s.db-wal"));
    for (auto const& e : must(store_->pending_events(1000))) haystack += boost::json::serialize(to_json(e.envelope));
    haystack += boost::json::serialize(aggregate_to_json(c));
    for (auto const& canary : canaries) {
        ASSERT_GE(canary.size(), 8u);
        EXPECT_EQ(haystack.find(canary), std::string::npos) << "a secret leaked";
    }
}

// Callers that read the stored refresh token before another caller's refresh rotated it hold a
// spent token (the peer refuses a refresh token used twice, as providers that rotate them do):
// they take the token that refresh fetched, so one refresh serves them all and nothing is
// marked exhausted.
TEST_F(authorization_code_test, concurrent_callers_of_an_expiring_token_refresh_once) {
    auto c = authorized();
    auto const before = count_lines(count_file_);
    clock_.advance(std::chrono::seconds(3600));  // the exchange's token has expired
    EXPECT_EQ(resolve_at_once(service_, c.id(), 16), std::vector<std::string>{});
    EXPECT_FALSE(service_.refresh_exhausted(c.id()));
    EXPECT_EQ(count_lines(count_file_), before + 1);
    service_.invalidate_token(c.id());
    must(service_.resolve(ctx_, c.id()));  // the rotated token is the one stored
}

// A token that lives no longer than the refresh margin is refreshed at every use, and the provider
// rotates the refresh token each time: a caller that read the credential before another caller's
// refresh must use the rotated token the entry holds, not its spent copy (invalid_grant exhausted
// the credential and degraded its connection, for a person to authorize again).
TEST_F(authorization_code_test, callers_of_a_short_lived_token_never_send_a_spent_refresh_token) {
    auto c = authorized();
    credentials::credential_service short_lived{*store_, *vault_, fingerprints_, clock_, *transport_,
                                               loopback(), dns_,
                                               {.refresh_margin = std::chrono::hours(2)}};  // longer than the tokens live
    for (int round = 0; round < 3; ++round) {
        EXPECT_EQ(resolve_at_once(short_lived, c.id(), 8), std::vector<std::string>{});
        for (int i = 0; i < 3; ++i) {
            auto r = short_lived.resolve(ctx_, c.id());
            EXPECT_TRUE(r) << (r ? "" : r.error().detail());
        }
    }
    EXPECT_FALSE(short_lived.refresh_exhausted(c.id()));
}

// Two processes share the credential: the other one refreshed (the provider rotated the token)
// between this one's read of the credential and its refresh, so this one's refresh token is
// spent. It tries the one the other stored before counting the credential exhausted.
TEST_F(authorization_code_test, a_refresh_token_another_process_spent_is_replaced_by_the_one_it_stored) {
    auto c = authorized();
    switchable_vault vault(*vault_);
    credentials::credential_service here{*store_, vault, fingerprints_, clock_, *transport_, loopback(), dns_};
    vault.after_get = [&] {  // this process has read its refresh token; the other one refreshes now
        service_.invalidate_token(c.id());
        must(service_.resolve(ctx_, c.id()));
    };
    auto r = here.resolve(ctx_, c.id());
    ASSERT_TRUE(r) << r.error().detail();
    EXPECT_FALSE(here.refresh_exhausted(c.id()));
    EXPECT_EQ(count_lines(count_file_), 3u) << "the exchange, the other process's refresh, the retry (the spent one was refused)";
    here.invalidate_token(c.id());
    must(here.resolve(ctx_, c.id()));
}

// Two processes share the credential and find its token expired at once. The provider takes a
// refresh token once: refreshing together, one was refused (invalid_grant) while the other had
// not stored the token it was given yet, and the credential counted as exhausted, for a person to
// authorize again. With the store's refresh lease the second waits for the first, then refreshes
// with the token the first stored, and the row names the newest token.
TEST_F(authorization_code_test, processes_refreshing_at_once_take_turns_and_the_row_names_the_newest_token) {
    auto c = authorized();
    auto their_store = must(storage::open_sqlite_store({.path = dir_.file("i.db"), .clock = &clock_}));
    credentials::credential_service theirs{*their_store, *vault_, fingerprints_, clock_, *transport_, loopback(), dns_};
    switchable_vault vault(*vault_);
    credentials::credential_service here{*store_, vault, fingerprints_, clock_, *transport_, loopback(), dns_};
    clock_.advance(std::chrono::seconds(3600));  // both processes' tokens have expired
    std::future<result<credentials::resolved_credential>> their_answer;
    vault.after_put = [&] {  // this process was given a new refresh token and has not recorded it in the row yet
        their_answer = std::async(std::launch::async, [&] { return theirs.resolve(ctx_, c.id()); });
        their_answer.wait_for(std::chrono::seconds(1));  // it waits for this process's lease
    };
    auto mine = here.resolve(ctx_, c.id());
    ASSERT_TRUE(mine) << mine.error().detail();
    ASSERT_TRUE(their_answer.valid());
    auto their = their_answer.get();
    ASSERT_TRUE(their) << their.error().detail();
    EXPECT_FALSE(theirs.refresh_exhausted(c.id()));
    EXPECT_EQ(count_lines(count_file_), 3u) << "the exchange, then one refresh each";
    auto row = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.credentials().find(c.id()); }));
    auto named = must(credentials::secret_ref::parse(row.data().key_vault_ref));
    std::int64_t newest = 0;
    for (auto const& v : must(vault_->versions(ctx_.tenant_id, named.name))) newest = std::max(newest, v.version);
    EXPECT_EQ(named.version, newest) << "the row names a refresh token the provider has spent";
}

// The store cannot take the refresh lease (here its table is gone; a full disk or a lost file
// does the same): the refresh goes ahead as it did before leases instead of failing every call.
TEST_F(authorization_code_test, a_refresh_goes_ahead_when_the_store_cannot_take_its_lease) {
    auto c = authorized();
    exec_sql(dir_.file("i.db"), "DROP TABLE credential_refresh_leases");
    clock_.advance(std::chrono::seconds(3600));
    auto r = service_.resolve(ctx_, c.id());
    ASSERT_TRUE(r) << r.error().detail();
    EXPECT_EQ(count_lines(count_file_), 2u);
}

// A 401 drops the token without waiting for the credential's refresh, which may be waiting for
// another process's lease or for the token endpoint: it is called on the transport's event loop.
TEST_F(authorization_code_test, dropping_a_token_after_a_401_does_not_wait_for_a_refresh_in_progress) {
    auto c = authorized();
    switchable_vault vault(*vault_);
    credentials::credential_service here{*store_, vault, fingerprints_, clock_, *transport_, loopback(), dns_};
    std::future_status dropped = std::future_status::deferred;
    std::future<void> drop;  // outlives the hook: a drop that waits for the refresh must not hold the refresh up
    vault.after_put = [&] {  // in the middle of a refresh
        drop = std::async(std::launch::async, [&] { here.invalidate_token(c.id()); });
        dropped = drop.wait_for(std::chrono::seconds(5));
    };
    auto r = here.resolve(ctx_, c.id());
    ASSERT_TRUE(r) << r.error().detail();
    EXPECT_EQ(dropped, std::future_status::ready) << "invalidate_token waited for the refresh";
    auto again = here.resolve(ctx_, c.id());  // the dropped token is not used again
    ASSERT_TRUE(again) << again.error().detail();
    EXPECT_EQ(count_lines(count_file_), 3u);
}

// A lease left by a process that stopped mid-refresh lapses: the next refresh waits no longer
// than the lease lives, and a caller meanwhile is told to try again (nothing is exhausted).
TEST_F(authorization_code_test, a_refresh_lease_left_by_a_stopped_process_lapses) {
    auto c = authorized();
    credentials::credential_service here{*store_, *vault_, fingerprints_, clock_, *transport_,
                                        loopback(), dns_,
                                        {.token_timeout = std::chrono::milliseconds(500),
                                         .refresh_lease = std::chrono::milliseconds(1000)}};
    must(store_->transact(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
        return must(uow.credentials().lease_refresh(c.id(), "stopped", clock_.now(), clock_.now() + std::chrono::seconds(3601)))
                   ? result<void>()
                   : result<void>(error{errc::conflict, "not taken"});
    }));
    clock_.advance(std::chrono::seconds(3600));
    auto waited = here.resolve(ctx_, c.id());
    ASSERT_FALSE(waited);
    EXPECT_EQ(waited.error(), errc::unavailable) << waited.error().detail();
    EXPECT_FALSE(here.refresh_exhausted(c.id()));
    EXPECT_EQ(count_lines(count_file_), 1u) << "no refresh while another process holds the lease";
    auto queued = here.resolve(ctx_, c.id());  // cools down instead of waiting as long again
    ASSERT_FALSE(queued);
    EXPECT_NE(queued.error().detail().find("cooling down"), std::string::npos) << queued.error().detail();
    clock_.advance(std::chrono::seconds(31));  // past the cooldown; the stopped process's lease has lapsed
    auto r = here.resolve(ctx_, c.id());
    ASSERT_TRUE(r) << r.error().detail();
    EXPECT_EQ(count_lines(count_file_), 2u);
}

// The provider rotated the refresh token and the secret store failed to store the new one: the
// old one is spent, so the new one stays in memory and serves this process (the access token it
// came with too), and the next refresh, with the store back, stores that refresh's successor.
TEST_F(authorization_code_test, a_rotated_refresh_token_the_secret_store_could_not_keep_serves_from_memory) {
    auto c = authorized();
    switchable_vault vault(*vault_);
    credentials::credential_service here{*store_, vault, fingerprints_, clock_, *transport_, loopback(), dns_};
    vault.after_get = [&] { vault.down = true; };  // its refresh token read, the store fails
    auto r = here.resolve(ctx_, c.id());
    ASSERT_TRUE(r) << r.error().detail();
    vault.down = false;
    here.invalidate_token(c.id());
    auto again = here.resolve(ctx_, c.id());
    ASSERT_TRUE(again) << again.error().detail();
    EXPECT_FALSE(here.refresh_exhausted(c.id())) << "it refreshed with the spent token";
    // Stored this time: another process (a restart) refreshes with what the store holds.
    credentials::credential_service restarted{*store_, *vault_, fingerprints_, clock_, *transport_, loopback(), dns_};
    auto after_restart = restarted.resolve(ctx_, c.id());
    ASSERT_TRUE(after_restart) << after_restart.error().detail();
    EXPECT_FALSE(restarted.refresh_exhausted(c.id()));
}

// Rotating an authorization-code credential verifies the new refresh token by using it; the
// provider then rotates it, and the rotation keeps the token it returned, not the spent one.
TEST_F(authorization_code_test, a_rotation_keeps_the_refresh_token_its_verification_was_given) {
    auto c = authorized();
    auto verify = [](credentials::resolved_credential const& m) -> result<void> {
        return m.headers.empty() ? result<void>(error{errc::forbidden, "no token"}) : result<void>{};
    };
    auto rotated = must(service_.rotate(ctx_, c.id(), secret_bytes(R"({"clientSecret":"client-secret-1","refreshToken":"rt-from-the-operator"})"),
                                        verify));
    EXPECT_EQ(rotated.status(), credentials::credential_status::active);
    auto doc = must(vault_->get("t1", must(credentials::secret_ref::parse(rotated.data().key_vault_ref))));
    EXPECT_EQ(doc.view().find("rt-from-the-operator"), std::string::npos) << "the spent token was kept";
    service_.invalidate_token(c.id());
    must(service_.resolve(ctx_, c.id()));  // refreshes with the token the verification got back
    EXPECT_FALSE(service_.refresh_exhausted(c.id()));
}

// A rotation to a refresh token the provider refuses fails its verification, and nothing else:
// the active version's connection stays Active, and no refresh_exhausted failure is raised.
TEST_F(authorization_code_test, a_rotation_to_a_refused_refresh_token_leaves_the_active_version_alone) {
    auto conn_id = connection_for_credentials();
    auto c = authorized(conn_id);
    std::ofstream(allowed_file_ + ".revoked") << "revoked\n";
    auto r = service_.rotate(ctx_, c.id(), secret_bytes(R"({"clientSecret":"client-secret-1","refreshToken":"rt-refused"})"),
                             [](credentials::resolved_credential const&) -> result<void> { return {}; });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::verification_failed) << r.error().detail();
    EXPECT_FALSE(service_.refresh_exhausted(c.id()));
    must(store_->read(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
        EXPECT_EQ(must(uow.connections().find(conn_id)).status(), connections::connection_status::active);
        EXPECT_TRUE(must(uow.failures().list({}, {})).items.empty());
        EXPECT_EQ(must(uow.credentials().find(c.id())).status(), credentials::credential_status::active);
        return {};
    }));
    std::filesystem::remove(allowed_file_ + ".revoked");
    service_.invalidate_token(c.id());
    must(service_.resolve(ctx_, c.id()));  // the active version refreshes as before
}

// A rotation whose verification was given a new refresh token and then failed (the health check
// said no) disables the version as restaged too: it holds the client secret and the one refresh
// token the provider still honours for it, and no version of the credential names it any more.
TEST_F(authorization_code_test, a_failed_rotation_disables_its_restaged_version) {
    auto c = authorized();
    auto r = service_.rotate(ctx_, c.id(), secret_bytes(R"({"clientSecret":"client-secret-1","refreshToken":"rt-from-the-operator"})"),
                             [](credentials::resolved_credential const&) -> result<void> { return error{errc::unavailable, "503"}; });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::verification_failed) << r.error().detail();
    auto stored = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.credentials().find(c.id()); }));
    int failed = 0;
    for (auto const& v : stored.data().versions) {
        if (v.state != credentials::version_state::failed) continue;
        ++failed;
        auto held = vault_->get("t1", must(credentials::secret_ref::parse(v.key_vault_ref)));
        EXPECT_FALSE(held) << "the failed version's material is still readable: " << v.key_vault_ref;
    }
    EXPECT_EQ(failed, 1);
    must(service_.resolve(ctx_, c.id()));
}

// A verification given a new refresh token keeps it in a new vault version, then records that
// version in the row; when the store refuses the record, the rotation fails and that version,
// which no row names, is disabled rather than left holding a live refresh token.
TEST_F(authorization_code_test, a_restaged_version_the_store_could_not_record_is_disabled) {
    auto c = authorized();
    switchable_vault vault(*vault_);
    credentials::credential_service here{*store_, vault, fingerprints_, clock_, *transport_, loopback(), dns_};
    vault.after_put = [&] {  // the rotation's version is staged; the verification's put comes next
        vault.after_put = [&] {
            exec_sql(dir_.file("i.db"), "CREATE TRIGGER refuse BEFORE UPDATE ON credentials BEGIN SELECT RAISE(ABORT, 'refused'); END");
        };
    };
    auto r = here.rotate(ctx_, c.id(), secret_bytes(R"({"clientSecret":"client-secret-1","refreshToken":"rt-from-the-operator"})"),
                         [](credentials::resolved_credential const&) -> result<void> { return {}; });
    exec_sql(dir_.file("i.db"), "DROP TRIGGER refuse");
    ASSERT_FALSE(r);
    auto named = must(credentials::secret_ref::parse(c.data().key_vault_ref));
    std::int64_t newest = 0;
    for (auto const& v : must(vault_->versions(ctx_.tenant_id, named.name))) newest = std::max(newest, v.version);
    ASSERT_GE(newest, 3) << "the verification's version was not put";
    auto unrecorded = named;
    unrecorded.version = newest;
    EXPECT_FALSE(vault_->get("t1", unrecorded)) << "the unrecorded version is still readable";
}

// The active version refreshed while a rotation's verification is under way: that refresh
// cannot move the row (the credential is Rotating), and once the rotation ends its version is
// the one refreshed from, not the document the earlier refresh kept in memory.
TEST_F(authorization_code_test, a_refresh_during_a_rotation_does_not_undo_the_rotation) {
    auto c = authorized();
    allow("client-secret-2");
    switchable_vault vault(*vault_);
    credentials::credential_service here{*store_, vault, fingerprints_, clock_, *transport_, loopback(), dns_};
    must(here.resolve(ctx_, c.id()));
    // The rotation stages its version (the first put), and its verification restages it with the
    // refresh token it was given (the second); then the active version is refreshed here.
    vault.after_put = [&] {
        vault.after_put = [&] {
            here.invalidate_token(c.id());
            must(here.resolve(ctx_, c.id()));
        };
    };
    must(here.rotate(ctx_, c.id(), secret_bytes(R"({"clientSecret":"client-secret-2","refreshToken":"rt-operator"})"),
                     [](credentials::resolved_credential const& m) -> result<void> {
                         return m.headers.empty() ? result<void>(error{errc::forbidden, "no token"}) : result<void>{};
                     }));
    here.invalidate_token(c.id());
    must(here.resolve(ctx_, c.id()));
    auto row = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.credentials().find(c.id()); }));
    auto doc = must(vault_->get("t1", must(credentials::secret_ref::parse(row.data().key_vault_ref))));
    EXPECT_NE(doc.view().find("client-secret-2"), std::string::npos) << "the rotation was undone";
}

// An authorization-code credential's secret is its {clientSecret, refreshToken} document: a bare
// client secret is refused up front, naming what to send, and nothing is staged.
TEST_F(authorization_code_test, a_rotation_to_a_bare_client_secret_is_refused_with_what_to_send) {
    auto c = authorized();
    auto r = service_.rotate(ctx_, c.id(), secret_bytes("client-secret-2"),
                             [](credentials::resolved_credential const&) -> result<void> { return {}; });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::invalid_argument);
    EXPECT_NE(r.error().detail().find("refreshToken"), std::string::npos) << r.error().detail();
    EXPECT_EQ(r.error().detail().find("client-secret-2"), std::string::npos);
    auto row = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.credentials().find(c.id()); }));
    EXPECT_EQ(row.status(), credentials::credential_status::active);
    EXPECT_EQ(row.data().versions.size(), c.data().versions.size());
}

// A rotation that ends while a refresh of the version it replaces waits for the token endpoint:
// the refresh's rotated refresh token belongs to the replaced client secret, and saving it would
// make that secret (perhaps leaked, the reason for the rotation) the active version again.
TEST_F(authorization_code_test, a_rotation_that_ends_during_a_refresh_is_not_undone_by_it) {
    auto c = authorized();
    allow("client-secret-2");
    switchable_vault vault(*vault_);
    credentials::credential_service here{*store_, vault, fingerprints_, clock_, *transport_, loopback(), dns_};
    // The refresh below has its answer and has put the new refresh token in the vault; before it
    // records that version, the rotation runs from start to end.
    vault.after_put = [&] {
        must(here.rotate(ctx_, c.id(), secret_bytes(R"({"clientSecret":"client-secret-2","refreshToken":"rt-operator"})"),
                         [](credentials::resolved_credential const& m) -> result<void> {
                             return m.headers.empty() ? result<void>(error{errc::forbidden, "no token"}) : result<void>{};
                         }));
    };
    here.invalidate_token(c.id());
    must(here.resolve(ctx_, c.id()));  // the access token it got is good
    auto row = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.credentials().find(c.id()); }));
    auto doc = must(vault_->get("t1", must(credentials::secret_ref::parse(row.data().key_vault_ref))));
    EXPECT_NE(doc.view().find("client-secret-2"), std::string::npos) << "the refresh put the replaced client secret back";
    here.invalidate_token(c.id());
    must(here.resolve(ctx_, c.id()));  // later refreshes start from the rotation's version
    row = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.credentials().find(c.id()); }));
    doc = must(vault_->get("t1", must(credentials::secret_ref::parse(row.data().key_vault_ref))));
    EXPECT_NE(doc.view().find("client-secret-2"), std::string::npos);
}

// A credential revoked while its token is fetched (the token endpoint answers after the
// revocation committed): the token is not handed out, whether the provider rotated the refresh
// token (which the revoked secret refuses to store) or the flow has none (client credentials).
TEST_F(authorization_code_test, a_token_fetched_across_a_revocation_is_not_handed_out) {
    std::string revoking;  // the credential the token endpoint revokes before it answers
    keep_alive_server token([&](received_request const& r) -> std::string {
        if (!revoking.empty() && r.body.find("grant_type=authorization_code") == std::string::npos)
            must(service_.revoke(ctx_, std::exchange(revoking, std::string()), "leaked"));
        return http_answer_bytes(200, R"({"access_token":"at-after-revocation","token_type":"Bearer","expires_in":3600,)"
                                      R"("refresh_token":"rt-rotated"})");
    });
    auto url = "http://127.0.0.1:" + std::to_string(token.port()) + "/token";
    auto s = settings();
    s.token_url = url;
    auto start = must(service_.begin_authorization(ctx_, provider_id_, {}, s, secret_bytes("client-secret-1")));
    auto code = must(service_.complete_authorization(start.state, "code-1"));
    auto client = must(service_.create(ctx_, {.provider_id = provider_id_,
                                              .auth_mode = auth_mode::oauth2_client_credentials,
                                              .secret = secret_bytes("client-secret-1"),
                                              .oauth2 = credentials::oauth2_client_settings{url, "client-1", {}}}));
    for (auto const& id : {code.id(), client.id()}) {
        service_.invalidate_token(id);
        revoking = id;
        auto got = service_.resolve(ctx_, id);
        ASSERT_FALSE(got) << id << ": a token minted across the revocation was handed out";
        EXPECT_EQ(got.error(), errc::invalid_state) << got.error().detail();
        EXPECT_FALSE(service_.resolve(ctx_, id));
    }
}

// An exhausted refresh token stops refreshes until new material arrives: a rotation to a fresh
// refresh token lets the credential refresh again, without a restart.
TEST_F(authorization_code_test, a_rotation_ends_an_exhausted_refresh_token) {
    auto c = authorized();
    std::ofstream(allowed_file_ + ".revoked") << "revoked\n";
    service_.invalidate_token(c.id());
    EXPECT_FALSE(service_.resolve(ctx_, c.id()));
    ASSERT_TRUE(service_.refresh_exhausted(c.id()));
    std::filesystem::remove(allowed_file_ + ".revoked");
    must(service_.rotate(ctx_, c.id(), secret_bytes(R"({"clientSecret":"client-secret-1","refreshToken":"rt-reauthorized"})"),
                         [](credentials::resolved_credential const&) -> result<void> { return {}; }));
    clock_.advance(std::chrono::seconds(31));  // past the cooldown of the failed refresh
    service_.invalidate_token(c.id());
    must(service_.resolve(ctx_, c.id()));
    EXPECT_FALSE(service_.refresh_exhausted(c.id()));
}

TEST(managed_identity, tokens_come_from_the_imds_endpoint_and_are_cached) {
    temp_dir dir;
    auto count = dir.file("imds.count");
    child_process peer({"node", std::string(INTEGRATION_PEERS_DIR) + "/imds_peer.mjs", count});
    auto line = peer.read_line();
    ASSERT_EQ(line.rfind("PORT ", 0), 0u) << line;
    manual_clock clock{system_clock::instance().now()};
    auto store = must(storage::open_sqlite_store({.path = dir.file("i.db"), .clock = &clock}));
    auto vault = must(credentials::open_local_secret_store({.path = dir.file("s.db"), .key_file = dir.file("k"), .key_env = "", .clock = &clock}));
    auto fp = must(credentials::fingerprinter::load_or_create(dir.file("fp")));
    auto transport = http::make_curl_transport();
    net::static_resolver dns;
    auto const loopback = net::egress_policy{.allow = {net::cidr::parse("127.0.0.0/8").value()}};
    credentials::credential_service service(*store, *vault, fp, clock, *transport, loopback, dns, {.managed_identity_tenants = {"t1"}});
    auto ctx = request_context::for_tenant("t1");
    auto const provider_id = save_active_provider(*store, ctx, clock.now());
    auto endpoint = "http://127.0.0.1:" + line.substr(5) + "/metadata/identity/oauth2/token?api-version=2018-02-01";
    auto user_assigned = must(service.create(ctx, {.provider_id = provider_id, .auth_mode = auth_mode::managed_identity,
                                                   .secret = secret_bytes("identity-client-7"),
                                                   .managed_identity = credentials::managed_identity_settings{endpoint, "https://vault.example/"}}));
    auto system_assigned = must(service.create(ctx, {.provider_id = provider_id, .auth_mode = auth_mode::managed_identity,
                                                     .managed_identity = credentials::managed_identity_settings{endpoint, "https://mgmt.example/"}}));
    auto a = must(service.resolve(ctx, user_assigned.id()));
    EXPECT_EQ(std::string(a.headers.at(0).second.view()).rfind("Bearer imds-", 0), 0u);
    must(service.resolve(ctx, user_assigned.id()));
    must(service.resolve(ctx, system_assigned.id()));
    std::ifstream f(count);
    std::vector<std::string> lines;
    for (std::string l; std::getline(f, l);) lines.push_back(l);
    ASSERT_EQ(lines.size(), 2u);  // the second resolve of the first identity hit the cache
    EXPECT_EQ(lines[0], "https://vault.example/ identity-client-7");
    EXPECT_EQ(lines[1], "https://mgmt.example/ -");

    // The identity is the machine's: a tenant the operator did not list may not create such a
    // credential, and one taken off the list may no longer use it. Neither reaches the endpoint.
    auto other = request_context::for_tenant("t2");
    auto const other_provider = save_active_provider(*store, other, clock.now());
    auto refused = service.create(other, {.provider_id = other_provider, .auth_mode = auth_mode::managed_identity,
                                          .managed_identity = credentials::managed_identity_settings{endpoint, "https://mgmt.example/"}});
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error(), errc::forbidden);
    EXPECT_NE(refused.error().detail().find("managed_identity_tenants"), std::string::npos) << refused.error().detail();
    auto by_scheme = service.create(other, {.provider_id = other_provider, .secret = secret_bytes("identity-9"), .scheme = "ManagedIdentity",
                                            .managed_identity = credentials::managed_identity_settings{endpoint, "https://mgmt.example/"}});
    ASSERT_FALSE(by_scheme) << "the built-in scheme named as an added one";
    EXPECT_EQ(by_scheme.error(), errc::forbidden);
    credentials::credential_service unlisted(*store, *vault, fp, clock, *transport, loopback, dns);
    auto used = unlisted.resolve(ctx, system_assigned.id());
    ASSERT_FALSE(used);
    EXPECT_EQ(used.error(), errc::forbidden);
    std::ifstream again(count);
    std::size_t calls = 0;
    for (std::string l; std::getline(again, l);) ++calls;
    EXPECT_EQ(calls, 2u) << "the identity endpoint was called for a tenant not allowed to use it";

    // The metadata endpoint allowed for managed identities only: their token requests reach it,
    // and every other call the service makes there (an OAuth2 token request, as a run) is refused.
    credentials::credential_service fenced(*store, *vault, fp, clock, *transport, net::egress_policy{}, dns,
                                           {.managed_identity_tenants = {"t1"},
                                            .managed_identity_allow = {net::cidr::parse("127.0.0.1/32").value()}});
    must(fenced.resolve(ctx, system_assigned.id()));
    auto oauth = must(fenced.create(ctx, {.provider_id = provider_id, .auth_mode = auth_mode::oauth2_client_credentials,
                                          .secret = secret_bytes("client-secret-1"),
                                          .oauth2 = credentials::oauth2_client_settings{
                                              "http://127.0.0.1:" + line.substr(5) + "/token", "client-1", {}}}));
    auto elsewhere = fenced.resolve(ctx, oauth.id());
    ASSERT_FALSE(elsewhere) << "a call other than a managed identity's reached the metadata address";
    EXPECT_EQ(elsewhere.error(), errc::egress_denied) << elsewhere.error().detail();
    credentials::credential_service shared_only(*store, *vault, fp, clock, *transport, net::egress_policy{}, dns,
                                                {.managed_identity_tenants = {"t1"}});
    auto denied = shared_only.resolve(ctx, user_assigned.id());
    ASSERT_FALSE(denied);
    EXPECT_EQ(denied.error(), errc::egress_denied) << denied.error().detail();
}

}  // namespace
}  // namespace integration::testing
