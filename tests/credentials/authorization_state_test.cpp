// The pending state of an authorization-code flow lives in the store: a flow started by one
// credential service completes on another one over the same files (a restart, or a second host).
#include <integration/services/credential_service.hpp>

#include "storage/fixtures.hpp"
#include "support/keep_alive_server.hpp"

#include <integration/backends/curl/curl_transport.hpp>
#include <integration/backends/local_vault/local_secret_store.hpp>
#include <integration/backends/sqlite/sqlite_store.hpp>
#include <integration/outbound/egress_policy.hpp>

#include <fstream>
#include <iterator>

namespace integration::testing {
namespace {

using namespace std::chrono_literals;

/** One process's worth of the library over the files in `dir`. */
struct instance {
    instance(temp_dir const& dir, manual_clock& clock)
        : store(must(storage::open_sqlite_store({.path = dir.file("i.db"), .clock = &clock}))),
          vault(must(credentials::open_local_secret_store(
              {.path = dir.file("s.db"), .key_file = dir.file("k"), .key_env = "", .clock = &clock}))),
          fp(must(credentials::fingerprinter::load_or_create(dir.file("fp")))),
          service(*store, *vault, fp, clock, *transport, loopback, dns) {}

    std::unique_ptr<storage::store> store;
    std::unique_ptr<credentials::local_secret_store> vault;
    credentials::fingerprinter fp;
    std::unique_ptr<http::transport> transport = http::make_curl_transport();
    net::static_resolver dns;
    net::egress_policy loopback = {.allow = {net::cidr::parse("127.0.0.1/32").value()}};
    credentials::credential_service service;
};

std::string file_bytes(std::string const& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
}

class authorization_state : public ::testing::Test {
protected:
    void SetUp() override {
        instance first(dir_, clock_);
        must(first.store->transact(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
            auto p = active_provider(ctx_, clock_.now());
            provider_id_ = p.id();
            return uow.providers().save(p);
        }));
    }
    credentials::authorization_request begin(instance& i) {
        return must(i.service.begin_authorization(
            ctx_, provider_id_, std::nullopt,
            {"https://idp.example/authorize", "http://127.0.0.1:" + std::to_string(idp_.port()) + "/token", "client-1",
             {"offline_access"}, "https://app.example/callback"},
            secret_bytes(client_secret_)));
    }
    static std::string token_answer(received_request const&) {
        return http_answer_bytes(
            200, R"({"access_token":"at-1","refresh_token":"rt-1","token_type":"Bearer","expires_in":3600})");
    }

    temp_dir dir_;
    manual_clock clock_;
    keep_alive_server idp_{token_answer};
    request_context ctx_ = request_context::for_tenant("t1", "alice");
    std::string provider_id_;
    std::string const client_secret_ = "cs-7f3a-client-secret";
};

TEST_F(authorization_state, a_flow_begun_before_a_restart_completes_after_it_once) {
    std::string state;
    {
        instance before(dir_, clock_);
        state = begin(before).state;
    }
    // Neither the state nor the client secret is in the store's files.
    for (auto const& f : {dir_.file("i.db"), dir_.file("i.db-wal")}) {
        auto bytes = file_bytes(f);
        EXPECT_EQ(bytes.find(client_secret_), std::string::npos) << f;
        EXPECT_EQ(bytes.find(state.substr(0, state.find('.'))), std::string::npos) << f;
    }
    instance after(dir_, clock_);
    auto c = after.service.complete_authorization(state, "code-1");
    ASSERT_TRUE(c) << c.error().message();
    EXPECT_EQ(c->data().auth_mode, auth_mode::oauth2_authorization_code);
    EXPECT_EQ(c->meta().tenant_id, "t1");
    EXPECT_EQ(c->meta().created_by, "alice");
    auto requests = idp_.requests();
    ASSERT_EQ(requests.size(), 1u);
    auto const& body = requests[0].body;
    EXPECT_NE(body.find("code=code-1"), std::string::npos) << body;
    EXPECT_NE(body.find("client_secret=" + client_secret_), std::string::npos);
    EXPECT_NE(body.find("code_verifier="), std::string::npos);
    // The new credential works: its token comes from the exchange.
    auto material = must(after.service.resolve(ctx_, c->id()));
    EXPECT_EQ(std::string(material.headers.at(0).second.view()), "Bearer at-1");

    // A state is used once, on any instance.
    instance third(dir_, clock_);
    auto replay = third.service.complete_authorization(state, "code-1");
    ASSERT_FALSE(replay);
    EXPECT_EQ(replay.error(), errc::forbidden);
    EXPECT_NE(replay.error().detail().find("already used"), std::string::npos);
    EXPECT_EQ(idp_.requests().size(), 1u);
}

TEST_F(authorization_state, an_expired_state_is_refused_and_purged) {
    std::string state;
    {
        instance before(dir_, clock_);
        state = begin(before).state;
    }
    clock_.advance(10min);  // authorization_ttl
    instance after(dir_, clock_);
    auto late = after.service.complete_authorization(state, "code-1");
    ASSERT_FALSE(late);
    EXPECT_EQ(late.error(), errc::forbidden);
    EXPECT_NE(late.error().detail().find("expired"), std::string::npos) << late.error().detail();
    // Purged: the next try finds nothing at all, and the vault holds no pending secret any more.
    EXPECT_NE(after.service.complete_authorization(state, "code-1").error().detail().find("unknown"), std::string::npos);
    EXPECT_EQ(idp_.requests().size(), 0u);
    must(after.store->read(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
        EXPECT_EQ(uow.authorizations().purge_expired(clock_.now()).error(), errc::invalid_state);  // read-only
        return {};
    }));
}

TEST_F(authorization_state, a_state_is_looked_up_in_its_own_tenant_only) {
    instance one(dir_, clock_);
    auto state = begin(one).state;
    ASSERT_EQ(state.substr(state.find('.')), ".t1");
    auto random = state.substr(0, state.find('.'));
    for (auto const& forged : {random + ".t2", random, random + ".", random + ".bad tenant!", std::string()}) {
        auto r = one.service.complete_authorization(forged, "code-1");
        ASSERT_FALSE(r) << forged;
        EXPECT_EQ(r.error(), errc::forbidden) << forged;
    }
    EXPECT_EQ(idp_.requests().size(), 0u);
    must(one.service.complete_authorization(state, "code-1"));  // the real one still works
}

}  // namespace
}  // namespace integration::testing
