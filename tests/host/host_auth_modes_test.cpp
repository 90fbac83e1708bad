// Every auth mode of the seed over HTTP, through the real integration-host binary: a credential is
// created (or authorized through the OAuth2 authorization-code routes), a connection made with it
// passes its health check, and a run reaches a loopback vendor that answers only the right
// Authorization. Real token servers: oauth2-mock-server and an IMDS-style peer (tests/peers).

#include "host/api_steps.hpp"
#include "host/host_process.hpp"
#include "support/base64.hpp"
#include "support/child_process.hpp"
#include "support/keep_alive_server.hpp"
#include "support/query_string.hpp"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <thread>

namespace integration::testing {
namespace {

namespace json = boost::json;

std::string const api_key = "ak-auth-modes-7c1e";
std::string const client_secret = "cs-auth-modes-4b9d";

/** `http://127.0.0.1:PORT/rest` as a port and an origin-form target. */
std::pair<std::uint16_t, std::string> split_loopback_url(std::string const& url) {
    auto host_at = url.find("://") + 3;
    auto slash = url.find('/', host_at);
    auto authority = url.substr(host_at, slash - host_at);
    EXPECT_EQ(authority.rfind("127.0.0.1:", 0), 0u) << url;
    return {static_cast<std::uint16_t>(std::stoi(authority.substr(authority.find(':') + 1))), url.substr(slash)};
}

class host_auth_modes : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(std::filesystem::exists(std::string(INTEGRATION_PEERS_DIR) + "/node_modules/oauth2-mock-server"))
            << "the test peers are not installed: run npm ci in " << INTEGRATION_PEERS_DIR;
        std::ofstream(allowed_file_) << client_secret << "\n";
        auto line = idp_.read_line();
        ASSERT_EQ(line.rfind("PORT ", 0), 0u) << "oauth2 peer said: " << line;
        idp_base_ = "http://127.0.0.1:" + line.substr(5);
        issuer_ = "http://localhost:" + line.substr(5);  // how oauth2-mock-server names itself
        line = imds_.read_line();
        ASSERT_EQ(line.rfind("PORT ", 0), 0u) << "imds peer said: " << line;
        imds_url_ = "http://127.0.0.1:" + line.substr(5) + "/metadata/identity/oauth2/token?api-version=2018-02-01";
        host_ = std::make_unique<host_process>(dir_.string(), std::vector<std::string>{"--key-rate-limit", "0", "--managed-identity-tenant", "tenant-x, tenant-a"});
        a_ = std::make_unique<api>(host_->port(), key_a_);
        provider_ = provider_with(*a_, "auth-modes", "http://127.0.0.1:" + std::to_string(vendor_.port()),
                                  {op("whoami.get", "GET", "/whoami")});
    }

    /** Which scheme authorized the request, or empty: the vendor's answer depends on it. */
    std::string scheme_of(received_request const& r) const {
        if (auto k = r.header("X-Api-Key")) return *k == api_key ? "api-key" : "";
        auto auth = r.header("Authorization").value_or("");
        if (auth.rfind("Bearer ", 0) != 0) return "";
        auto token = auth.substr(7);
        if (token.rfind("imds-", 0) == 0 && token.size() == 5 + 32) return "managed-identity";
        // A JWT the token server signed: its payload names the server as issuer.
        auto first = token.find('.'), second = token.find('.', first + 1);
        if (first == std::string::npos || second == std::string::npos) return "";
        boost::system::error_code ec;
        auto payload = json::parse(unbase64(token.substr(first + 1, second - first - 1)), ec);
        auto const* iss = ec || !payload.is_object() ? nullptr : payload.as_object().if_contains("iss");
        if (!iss || !iss->is_string()) return "";
        return iss->get_string() == issuer_ ? "oauth2" : "";
    }

    /** Connects with `credential` (its health check must pass), then runs `whoami.get`. */
    void connect_and_run(std::string const& credential, std::string const& expected_scheme) {
        auto conn = active_connection(*a_, provider_, credential);
        ASSERT_FALSE(conn.empty());
        auto r = run(*a_, conn, "whoami.get", {});
        ASSERT_EQ(r.status, 201) << r.body;
        EXPECT_EQ(str(r.json(), "status"), "Completed") << r.body;
        EXPECT_EQ(str(r.json().at("response"), "body"), "{\"scheme\":\"" + expected_scheme + "\"}") << r.body;
    }

    /** POST /integrations/oauth2/authorize against the oauth2 peer. */
    http_answer start_authorization(api const& a, std::string const& provider, std::string const& secret = client_secret) {
        return a.post("/integrations/oauth2/authorize",
                      json::object{{"providerId", provider},
                                   {"oauth2", json::object{{"authorizeUrl", idp_base_ + "/authorize"},
                                                           {"tokenUrl", idp_base_ + "/token"},
                                                           {"clientId", "client-1"},
                                                           {"clientSecret", secret},
                                                           {"scopes", json::array{"openid", "offline_access"}}}}});
    }

    /** What the user's browser does: follows the authorize URL to the provider, which sends it
     *  back to the redirect URI with `code` and `state`; returns that redirect's URL. */
    std::string authorize_in_browser(std::string const& authorization_url) {
        auto [port, target] = split_loopback_url(authorization_url);
        auto answer = api(port, "").get(target);
        EXPECT_EQ(answer.status / 100, 3) << answer.body;
        return answer.headers["location"];
    }

    /** The browser arriving at the callback: no API key. */
    http_answer callback(std::uint16_t host_port, std::string const& query) const {
        return api(host_port, "").get("/integrations/oauth2/callback?" + query);
    }

    scratch_dir dir_{"auth-modes"};
    std::string key_a_ = create_key(dir_.string(), "tenant-a");
    std::string key_b_ = create_key(dir_.string(), "tenant-b");
    std::string count_file_ = (dir_.path() / "tokens.count").string();
    std::string allowed_file_ = (dir_.path() / "allowed.secrets").string();
    std::string imds_count_ = (dir_.path() / "imds.count").string();
    child_process idp_{{"node", std::string(INTEGRATION_PEERS_DIR) + "/oauth2_peer.mjs", count_file_, allowed_file_}};
    child_process imds_{{"node", std::string(INTEGRATION_PEERS_DIR) + "/imds_peer.mjs", imds_count_}};
    std::string idp_base_, issuer_, imds_url_;
    keep_alive_server vendor_{[this](received_request const& r) {
        auto scheme = scheme_of(r);
        if (scheme.empty()) return http_answer_bytes(401, "{\"error\":\"unauthorized\"}");
        return http_answer_bytes(200, r.target == "/health" ? "{}" : "{\"scheme\":\"" + scheme + "\"}");
    }};
    std::unique_ptr<host_process> host_;
    std::unique_ptr<api> a_;
    std::string provider_;
};

TEST_F(host_auth_modes, an_api_key_credential_connects_and_runs) {
    connect_and_run(api_key_credential(*a_, provider_, api_key), "api-key");
    // The vendor's answer depends on the header: a wrong key leaves the connection Pending.
    auto wrong = connect(*a_, provider_, api_key_credential(*a_, provider_, "not-" + api_key));
    ASSERT_EQ(wrong.status, 201) << wrong.body;
    EXPECT_EQ(str(wrong.json(), "status"), "Pending") << wrong.body;
}

TEST_F(host_auth_modes, an_oauth2_client_credentials_credential_connects_and_runs) {
    auto oauth2 = [&](std::string const& secret) {
        return create_credential(*a_, {{"providerId", provider_}, {"authMode", "OAuth2ClientCredentials"}, {"secret", secret},
                                       {"oauth2", json::object{{"tokenUrl", idp_base_ + "/token"}, {"clientId", "client-1"},
                                                               {"scopes", json::array{"read"}}}}});
    };
    connect_and_run(oauth2(client_secret), "oauth2");
    auto wrong = connect(*a_, provider_, oauth2("not-" + client_secret));
    ASSERT_EQ(wrong.status, 201) << wrong.body;
    EXPECT_EQ(str(wrong.json(), "status"), "Pending") << wrong.body;
}

TEST_F(host_auth_modes, a_managed_identity_credential_connects_and_runs) {
    auto identity = create_credential(*a_, {{"providerId", provider_}, {"authMode", "ManagedIdentity"},
                                            {"managedIdentity", json::object{{"endpointUrl", imds_url_},
                                                                             {"resource", "https://vendor.example/"}}}});
    connect_and_run(identity, "managed-identity");
    std::ifstream served(imds_count_);
    std::string line;
    ASSERT_TRUE(std::getline(served, line));
    EXPECT_EQ(line, "https://vendor.example/ -");  // system-assigned: no client id sent
}

// The managed identity is the machine's: only a tenant the operator lists (--managed-identity-tenant)
// may create a credential of it. Another tenant gets 403 and the identity endpoint is never called.
TEST_F(host_auth_modes, a_tenant_the_operator_did_not_list_may_not_use_the_managed_identity) {
    api b(host_->port(), key_b_);
    auto theirs = provider_with(b, "auth-modes-b", "http://127.0.0.1:" + std::to_string(vendor_.port()), {op("whoami.get", "GET", "/whoami")});
    auto refused = b.post("/integrations/credentials", json::object{{"providerId", theirs}, {"authMode", "ManagedIdentity"},
                                                                   {"managedIdentity", json::object{{"endpointUrl", imds_url_},
                                                                                                    {"resource", "https://vendor.example/"}}}});
    EXPECT_EQ(refused.status, 403) << refused.body;
    EXPECT_EQ(str(refused.json(), "type"), "https://integration.dev/problems/forbidden") << refused.body;
    EXPECT_NE(str(refused.json(), "detail").find("--managed-identity-tenant"), std::string::npos) << refused.body;
    std::ifstream served(imds_count_);
    std::string line;
    EXPECT_FALSE(std::getline(served, line)) << "the identity endpoint was called: " << line;
}

TEST_F(host_auth_modes, an_authorization_code_credential_is_authorized_in_the_browser_then_connects_and_runs) {
    auto started = start_authorization(*a_, provider_);
    ASSERT_EQ(started.status, 201) << started.body;
    auto url = str(started.json(), "authorizationUrl");
    auto redirect_uri = "http://127.0.0.1:" + std::to_string(host_->port()) + "/integrations/oauth2/callback";
    EXPECT_EQ(str(started.json(), "redirectUri"), redirect_uri);
    EXPECT_EQ(url.find(client_secret), std::string::npos) << url;
    auto q = query_of(url);
    EXPECT_EQ(q["state"], str(started.json(), "state"));
    EXPECT_EQ(q["code_challenge_method"], "S256");

    auto back = authorize_in_browser(url);
    ASSERT_EQ(back.rfind(redirect_uri + "?", 0), 0u) << back;
    auto done = callback(host_->port(), back.substr(back.find('?') + 1));
    ASSERT_EQ(done.status, 201) << done.body;
    EXPECT_EQ(done.headers["referrer-policy"], "no-referrer");
    EXPECT_EQ(str(done.json(), "authMode"), "OAuth2AuthorizationCode") << done.body;
    auto credential = str(done.json(), "credentialId");
    // It belongs to the tenant that started the flow, and only to it.
    EXPECT_EQ(a_->get("/integrations/credentials/" + credential).status, 200);
    EXPECT_EQ(api(host_->port(), key_b_).get("/integrations/credentials/" + credential).status, 404);
    connect_and_run(credential, "oauth2");

    // Neither the client secret nor the code appears in an answer, the host's log or the data.
    auto code = query_of(back)["code"];
    for (auto const& text : {started.body, done.body, host_->log()}) {
        EXPECT_EQ(text.find(client_secret), std::string::npos) << text;
        EXPECT_EQ(text.find(code), std::string::npos) << text;
    }
}

TEST_F(host_auth_modes, the_callback_takes_a_state_once_and_refuses_a_wrong_or_missing_one) {
    auto started = start_authorization(*a_, provider_);
    ASSERT_EQ(started.status, 201) << started.body;
    auto back = authorize_in_browser(str(started.json(), "authorizationUrl"));
    auto q = query_of(back);
    auto port = host_->port();
    auto refused = [](http_answer const& r, unsigned status, std::string const& type) {
        EXPECT_EQ(r.status, static_cast<int>(status)) << r.body;
        EXPECT_EQ(r.headers.at("content-type"), "application/problem+json") << r.body;
        EXPECT_EQ(problem_type(r), "https://integration.dev/problems/" + type) << r.body;
    };
    refused(callback(port, "code=" + q["code"] + "&state=not-" + q["state"]), 403, "authorization-refused");
    refused(callback(port, "code=" + q["code"]), 400, "validation");
    refused(callback(port, "state=" + q["state"]), 400, "validation");
    auto tokens = [&] { return std::filesystem::exists(count_file_) ? std::filesystem::file_size(count_file_) : 0; };
    auto tokens_before = tokens();
    auto denied = callback(port, "error=access_denied&error_description=%3Cscript%3E&state=" + q["state"]);
    refused(denied, 403, "authorization-refused");
    EXPECT_NE(problem_detail(denied).find("access_denied"), std::string::npos) << denied.body;
    EXPECT_EQ(denied.body.find("script"), std::string::npos) << "the provider's own text is not repeated";
    EXPECT_EQ(tokens(), tokens_before) << "no token was requested";
    // The refusal used the state up: the same state with a code no longer completes.
    refused(callback(port, "code=" + q["code"] + "&state=" + q["state"]), 403, "authorization-refused");
    EXPECT_EQ(tokens(), tokens_before) << "no token was requested";

    auto again = query_of(authorize_in_browser(str(start_authorization(*a_, provider_).json(), "authorizationUrl")));
    // A link checker's HEAD must not use the code up: 405, and the GET that follows completes.
    auto head = api(port, "").call("HEAD", "/integrations/oauth2/callback?code=" + again["code"] + "&state=" + again["state"]);
    EXPECT_EQ(head.status, 405);
    EXPECT_EQ(head.headers["allow"], "GET");
    EXPECT_EQ(tokens(), tokens_before) << "no token was requested";
    // Parameters the provider adds (RFC 9207's `iss`, `scope`) are its own, not refused.
    auto done = callback(port, "code=" + again["code"] + "&state=" + again["state"] + "&iss=http%3A%2F%2F127.0.0.1&scope=read");
    ASSERT_EQ(done.status, 201) << done.body;
    refused(callback(port, "code=" + again["code"] + "&state=" + again["state"]), 403, "authorization-refused");  // replayed

    // The start is a tenant's: no key is 401, another tenant's provider is 404, and the secret
    // is never echoed.
    refused(start_authorization(api(port, ""), provider_), 401, "unauthorized");
    refused(start_authorization(api(port, key_b_), provider_), 404, "not-found");
    auto bad = a_->post("/integrations/oauth2/authorize", json::object{{"providerId", provider_}, {"oauth2", json::object{}}});
    refused(bad, 400, "validation");
    for (auto const& text : {started.body, bad.body, host_->log()}) EXPECT_EQ(text.find(client_secret), std::string::npos);
}

// Needs the pending authorization state in the store (issue 12, the store helper's change): with
// the state kept in memory, the restarted host does not know it and answers 403. Expected to fail
// until that change is merged; do not disable it.
TEST_F(host_auth_modes, the_authorization_code_flow_survives_a_host_restart_between_start_and_callback) {
    auto started = start_authorization(*a_, provider_);
    ASSERT_EQ(started.status, 201) << started.body;
    auto back = authorize_in_browser(str(started.json(), "authorizationUrl"));
    host_.reset();  // SIGTERM, then a new host on the same data directory
    host_ = std::make_unique<host_process>(dir_.string(), std::vector<std::string>{"--key-rate-limit", "0", "--managed-identity-tenant", "tenant-a"});
    a_ = std::make_unique<api>(host_->port(), key_a_);
    auto done = callback(host_->port(), back.substr(back.find('?') + 1));
    ASSERT_EQ(done.status, 201) << done.body;
    connect_and_run(str(done.json(), "credentialId"), "oauth2");
    // Still once only.
    EXPECT_EQ(callback(host_->port(), back.substr(back.find('?') + 1)).status, 403);
}

// The callback carries no API key: it is counted against the tenant its state names, so a tenant
// whose token endpoint hangs holds back its own callbacks only, not every tenant's.
TEST(host_oauth2_callback, a_tenant_whose_token_endpoint_hangs_does_not_hold_back_another_tenants_callback) {
    scratch_dir dir("callback-share");
    auto key_a = create_key(dir.string(), "tenant-a");
    std::promise<void> arrived_p, release_p;
    auto arrived = arrived_p.get_future();
    auto release = release_p.get_future().share();
    std::atomic<bool> told{false};
    keep_alive_server idp([&](received_request const&) {
        if (!told.exchange(true)) arrived_p.set_value();
        release.wait();
        return http_answer_bytes(200, R"({"access_token":"at","token_type":"Bearer","expires_in":3600,"refresh_token":"rt"})");
    });
    auto const idp_url = "http://127.0.0.1:" + std::to_string(idp.port());
    host_process host(dir.string(), {"--key-rate-limit", "0", "--execution-threads", "2"});  // half of them: 1
    api a(host.port(), key_a);
    auto provider = provider_with(a, "slow-idp", idp_url, {op("x.get", "GET", "/x")});
    auto started = a.post("/integrations/oauth2/authorize",
                          json::object{{"providerId", provider},
                                       {"oauth2", json::object{{"authorizeUrl", idp_url + "/authorize"},
                                                               {"tokenUrl", idp_url + "/token"}, {"clientId", "c1"},
                                                               {"clientSecret", "cs-callback-share"}, {"scopes", json::array{}}}}});
    ASSERT_EQ(started.status, 201) << started.body;
    std::thread slow([&, state = str(started.json(), "state")] {
        api(host.port(), "").get("/integrations/oauth2/callback?code=c1&state=" + state);
    });
    bool waiting = arrived.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
    http_answer other, own;
    if (waiting) {
        other = api(host.port(), "").get("/integrations/oauth2/callback?code=c2&state=forged.tenant-b");
        // Nor does a callback (whose state anyone may write) take from its tenant's own keyed
        // requests: tenant-a's health check still finds a thread.
        own = a.post("/integrations/connections/conn-01JD3Q8V6X4T2M9R5B7N1K0FZC/test", json::object{});
    }
    release_p.set_value();
    slow.join();
    ASSERT_TRUE(waiting) << "tenant-a's token request never reached its endpoint";
    EXPECT_EQ(other.status, 403) << "tenant-b's callback waited for tenant-a's: " << other.body;
    EXPECT_EQ(own.status, 404) << "tenant-a's probe waited for its callback: " << own.body;
}

}  // namespace
}  // namespace integration::testing
