#include <integration/credentials/credential_service.hpp>

#include "storage/fixtures.hpp"
#include "support/child_process.hpp"

#include <integration/credentials/local_secret_store.hpp>
#include <integration/storage/sqlite_store.hpp>

#include <atomic>
#include <fstream>
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
    credentials::credential_service service_{*store_, *vault_, fingerprints_, clock_, *transport_};
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

}  // namespace
}  // namespace integration::testing
