#include <integration/services/credential_service.hpp>

#include "storage/fixtures.hpp"
#include "support/credential_doubles.hpp"
#include "support/base64.hpp"
#include "support/credential_world.hpp"
#include "support/fsync_recorder.hpp"
#include "support/keep_alive_server.hpp"

#include <integration/core/id.hpp>
#include <integration/backends/local_vault/local_secret_store.hpp>
#include <integration/backends/sqlite/sqlite_store.hpp>
#include <integration/services/signing_secret.hpp>
#include <integration/domain/subscription.hpp>

#include <boost/json/serialize.hpp>

#include <future>
#include <thread>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace integration::testing {
namespace {

using credentials::credential_status;

std::string slurp(std::string const& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

class credential_service_test : public ::testing::Test {
protected:
    void SetUp() override { provider_id_ = save_active_provider(*store_, ctx_, clock_.now()); }

    std::string value_of(credentials::resolved_credential const& r) {
        return std::string((r.headers.empty() ? r.query : r.headers).at(0).second.view());
    }

    temp_dir dir_;
    manual_clock clock_;
    std::unique_ptr<storage::store> store_ = must(storage::open_sqlite_store({.path = dir_.file("integration.db"), .clock = &clock_}));
    std::unique_ptr<credentials::local_secret_store> vault_ = must(credentials::open_local_secret_store(
        {.path = dir_.file("secrets.db"), .key_file = dir_.file("master.key"), .key_env = "", .clock = &clock_}));
    switchable_vault flaky_{*vault_};
    credentials::fingerprinter fingerprints_ = must(credentials::fingerprinter::load_or_create(dir_.file("fingerprint.key")));
    no_network net_;
    net::static_resolver dns_;
    credentials::credential_service service_{*store_, flaky_, fingerprints_, clock_, net_, {}, dns_};
    request_context ctx_ = request_context::for_tenant("t1", "alice");
    std::string provider_id_;
};

TEST_F(credential_service_test, an_api_key_is_stored_by_reference_and_resolved_per_request) {
    auto c = must(service_.create(ctx_, {.provider_id = provider_id_,
                                         .secret = secret_bytes("sk_live_abc"),
                                         .api_key = credentials::api_key_placement{.in = "header", .name = "Authorization", .prefix = "Bearer "}}));
    EXPECT_EQ(c.status(), credential_status::active);
    EXPECT_EQ(c.data().current_version, 1);
    EXPECT_EQ(c.data().key_vault_ref.rfind("vault://local/t1/secret-", 0), 0u);
    EXPECT_EQ(c.data().fingerprint, fingerprints_.fingerprint(secret_bytes("sk_live_abc")));
    auto material = must(service_.resolve(ctx_, c.id()));
    ASSERT_EQ(material.headers.size(), 1u);
    EXPECT_EQ(material.headers[0].first, "Authorization");
    EXPECT_EQ(value_of(material), "Bearer sk_live_abc");

    auto q = must(service_.create(ctx_, {.provider_id = provider_id_,
                                         .secret = secret_bytes("qk"),
                                         .api_key = credentials::api_key_placement{.in = "query", .name = "api_key"}}));
    auto qm = must(service_.resolve(ctx_, q.id()));
    ASSERT_EQ(qm.query.size(), 1u);
    EXPECT_EQ(qm.query[0].first, "api_key");
    EXPECT_EQ(value_of(qm), "qk");
}

TEST_F(credential_service_test, bad_requests_are_refused_and_leave_nothing_behind) {
    EXPECT_EQ(service_.create(ctx_, {.provider_id = provider_id_}).error(), errc::invalid_argument);
    EXPECT_EQ(service_.create(ctx_, {.provider_id = provider_id_, .secret = secret_bytes("x"),
                                     .api_key = credentials::api_key_placement{.in = "cookie"}})
                  .error(),
              errc::invalid_argument);
    EXPECT_EQ(service_.create(ctx_, {.provider_id = provider_id_, .auth_mode = auth_mode::oauth2_client_credentials,
                                     .secret = secret_bytes("x")})
                  .error(),
              errc::invalid_argument);
    // Another mode's settings are refused, not dropped: an OAuth2 client secret sent as an API key.
    auto mixed = service_.create(ctx_, {.provider_id = provider_id_, .secret = secret_bytes("client-secret"),
                                        .oauth2 = credentials::oauth2_client_settings{.token_url = "https://t.example/token",
                                                                                      .client_id = "c"}});
    ASSERT_FALSE(mixed);
    EXPECT_EQ(mixed.error(), errc::invalid_argument);
    EXPECT_NE(mixed.error().detail().find("oauth2"), std::string::npos) << mixed.error().detail();
    EXPECT_EQ(service_.create(ctx_, {.provider_id = provider_id_, .auth_mode = auth_mode::oauth2_client_credentials,
                                     .secret = secret_bytes("x"), .api_key = credentials::api_key_placement{},
                                     .oauth2 = credentials::oauth2_client_settings{.token_url = "https://t.example/token",
                                                                                   .client_id = "c"}})
                  .error(),
              errc::invalid_argument);
    EXPECT_EQ(service_.create(ctx_, {.provider_id = provider_id_, .secret = secret_bytes("x"),
                                     .managed_identity = credentials::managed_identity_settings{
                                         .endpoint_url = "http://169.254.169.254/metadata/identity/oauth2/token",
                                         .resource = "https://management.azure.com/"}})
                  .error(),
              errc::invalid_argument);
    auto unknown = service_.create(ctx_, {.provider_id = "prov-01JD3Q8V6X4T2M9R5B7N1K0FZC", .secret = secret_bytes("x")});
    EXPECT_EQ(unknown.error(), errc::not_found);
    // A header the transport would never send, and an expiry that has passed, are refused now
    // rather than at the first call.
    for (auto const& placement : {credentials::api_key_placement{.name = "Bad Name"}, credentials::api_key_placement{.name = "Host"},
                                  credentials::api_key_placement{.name = "Content-Length"},
                                  credentials::api_key_placement{.name = "X-Api-Key", .prefix = "Key\r\nX-Injected: 1 "}}) {
        auto bad = service_.create(ctx_, {.provider_id = provider_id_, .secret = secret_bytes("x"), .api_key = placement});
        ASSERT_FALSE(bad) << placement.name;
        EXPECT_EQ(bad.error(), errc::invalid_argument) << placement.name;
    }
    auto expired = service_.create(ctx_, {.provider_id = provider_id_, .secret = secret_bytes("x"), .expires_at = clock_.now() - std::chrono::seconds(1)});
    ASSERT_FALSE(expired);
    EXPECT_NE(expired.error().detail().find("has passed"), std::string::npos) << expired.error().detail();
    auto other = request_context::for_tenant("t2", "mallory");
    EXPECT_EQ(service_.create(other, {.provider_id = provider_id_, .secret = secret_bytes("x")}).error(), errc::not_found);
    std::size_t stored = 0;
    must(store_->read(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
        stored = must(uow.credentials().list({}, {})).items.size();
        return {};
    }));
    EXPECT_EQ(stored, 0u);
}

// A connection id is resolved in the caller's tenant like any other reference: another tenant's
// connection is not found (create and begin_authorization alike) and nothing is stored.
TEST_F(credential_service_test, another_tenants_connection_is_not_found_and_nothing_is_stored) {
    auto other = request_context::for_tenant("t2", "mallory");
    auto connection_of = [&](request_context const& ctx) {
        std::string id;
        must(store_->transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
            auto p = active_provider(ctx, clock_.now(), "acme-" + ctx.tenant_id);
            if (auto r = uow.providers().save(p); !r) return r;
            auto c = must(connections::integration_connection::create(ctx, clock_.now(), p, connection_spec()));
            id = c.id();
            return uow.connections().save(c);
        }));
        return id;
    };
    auto theirs = connection_of(other);
    auto mine = connection_of(ctx_);
    flaky_.down = true;  // refused before the secret store is asked: otherwise this says unavailable
    auto refused =
        service_.create(ctx_, {.provider_id = provider_id_, .connection_id = theirs, .secret = secret_bytes("sk_x")});
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error(), errc::not_found);
    EXPECT_NE(refused.error().detail().find("not found in this tenant"), std::string::npos) << refused.error().detail();
    auto begun = service_.begin_authorization(
        ctx_, provider_id_, theirs,
        {"https://idp.example/authorize", "https://idp.example/token", "client-1", {}, "https://app.example/callback"},
        secret_bytes("client-secret"));
    ASSERT_FALSE(begun);
    EXPECT_EQ(begun.error(), errc::not_found);
    must(store_->read(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
        EXPECT_TRUE(must(uow.credentials().list({}, {})).items.empty());
        return {};
    }));
    // The caller's own connection is fine when it is the credential's provider's: the secret
    // would otherwise be named for a connection that sends another vendor's requests.
    flaky_.down = false;
    auto foreign =
        service_.create(ctx_, {.provider_id = provider_id_, .connection_id = mine, .secret = secret_bytes("sk_x")});
    ASSERT_FALSE(foreign);
    EXPECT_EQ(foreign.error(), errc::invalid_argument);
    EXPECT_NE(foreign.error().detail().find("is provider "), std::string::npos) << foreign.error().detail();
    std::string own;
    must(store_->transact(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
        auto p = must(uow.providers().find(provider_id_));
        auto c = must(connections::integration_connection::create(ctx_, clock_.now(), p, connection_spec()));
        own = c.id();
        return uow.connections().save(c);
    }));
    auto created = must(
        service_.create(ctx_, {.provider_id = provider_id_, .connection_id = own, .secret = secret_bytes("sk_x")}));
    EXPECT_EQ(created.data().connection_id, own);
}

TEST_F(credential_service_test, rotation_activates_a_verified_version_and_keeps_history) {
    auto c = must(service_.create(ctx_, {.provider_id = provider_id_, .secret = secret_bytes("old-key")}));
    int verified = 0;
    auto rotated = must(service_.rotate(ctx_, c.id(), secret_bytes("new-key"), [&](credentials::resolved_credential const& m) -> result<void> {
        ++verified;
        EXPECT_EQ(value_of(m), "new-key");
        return {};
    }));
    EXPECT_EQ(verified, 1);
    EXPECT_EQ(rotated.status(), credential_status::active);
    EXPECT_EQ(rotated.data().current_version, 2);
    EXPECT_EQ(rotated.data().versions.size(), 2u);
    EXPECT_EQ(rotated.data().versions[0].state, credentials::version_state::retired);
    EXPECT_EQ(value_of(must(service_.resolve(ctx_, c.id()))), "new-key");
    auto events = must(store_->pending_events(100));
    EXPECT_EQ(events.back().envelope.event_type, "CredentialRotated");
}

// Prior versions are kept until the new one verifies (storage.md): after each rotation the one it
// replaced stays readable for a moment's in-flight requests, and those before are disabled for the
// vault to destroy.
TEST_F(credential_service_test, each_rotation_disables_the_versions_before_the_one_it_replaced) {
    auto c = must(service_.create(ctx_, {.provider_id = provider_id_, .secret = secret_bytes("key-1")}));
    auto const name = must(credentials::secret_ref::parse(c.data().key_vault_ref)).name;
    auto ok = [](credentials::resolved_credential const&) -> result<void> { return {}; };
    for (auto key : {"key-2", "key-3", "key-4"}) must(service_.rotate(ctx_, c.id(), secret_bytes(key), ok));
    std::vector<bool> enabled;
    for (auto const& v : must(vault_->versions("t1", name))) enabled.push_back(v.enabled);
    EXPECT_EQ(enabled, (std::vector<bool>{false, false, true, true}));
    EXPECT_EQ(value_of(must(service_.resolve(ctx_, c.id()))), "key-4");
}

// A rotation is held to the size a new credential is: over 64 KiB is refused before anything is
// stored or verified.
TEST_F(credential_service_test, a_rotation_to_a_secret_over_64_kib_is_refused) {
    auto c = must(service_.create(ctx_, {.provider_id = provider_id_, .secret = secret_bytes("good-key")}));
    bool verified = false;
    auto r = service_.rotate(ctx_, c.id(), secret_bytes(std::string(64 * 1024 + 1, 'a')), [&](auto const&) -> result<void> {
        verified = true;
        return {};
    });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::invalid_argument) << r.error().detail();
    EXPECT_FALSE(verified);
    auto stored = must(storage::read_for(*store_, ctx_, [&](storage::unit_of_work& uow) { return uow.credentials().find(c.id()); }));
    EXPECT_EQ(stored.status(), credential_status::active);
    EXPECT_EQ(stored.data().versions.size(), 1u);
    must(service_.rotate(ctx_, c.id(), secret_bytes(std::string(64 * 1024, 'a')), [](auto const&) -> result<void> { return {}; }));
}

TEST_F(credential_service_test, a_failed_verification_keeps_the_prior_version_active) {
    auto c = must(service_.create(ctx_, {.provider_id = provider_id_, .secret = secret_bytes("good-key")}));
    auto r = service_.rotate(ctx_, c.id(), secret_bytes("bad-key"), [&](credentials::resolved_credential const&) -> result<void> {
        // While verifying, the prior version is still the one in use.
        EXPECT_EQ(value_of(must(service_.resolve(ctx_, c.id()))), "good-key");
        return error{errc::forbidden, "health check answered 401"};
    });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::verification_failed);
    EXPECT_NE(r.error().detail().find("version 1 stays active"), std::string::npos);
    EXPECT_EQ(value_of(must(service_.resolve(ctx_, c.id()))), "good-key");
    must(store_->read(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
        auto stored = must(uow.credentials().find(c.id()));
        EXPECT_EQ(stored.status(), credential_status::active);
        EXPECT_EQ(stored.data().current_version, 1);
        EXPECT_EQ(stored.data().versions.at(1).state, credentials::version_state::failed);
        return {};
    }));
    // The failed version is disabled in the vault too.
    EXPECT_EQ(vault_->get("t1", {"local", "t1", must(credentials::secret_ref::parse(c.data().key_vault_ref)).name, 2}).error(),
              errc::invalid_state);
    auto events = must(store_->pending_events(100));
    EXPECT_EQ(events.back().envelope.event_type, "IntegrationFailed");
    EXPECT_EQ(events.back().envelope.data.at("category").as_string(), "Auth");
}

TEST_F(credential_service_test, a_vault_outage_during_rotation_changes_nothing_and_can_be_retried) {
    auto c = must(service_.create(ctx_, {.provider_id = provider_id_, .secret = secret_bytes("key-1")}));
    flaky_.down = true;
    auto r = service_.rotate(ctx_, c.id(), secret_bytes("key-2"), [](auto const&) -> result<void> { return {}; });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::unavailable);
    EXPECT_NE(r.error().detail().find("retry"), std::string::npos);
    flaky_.down = false;
    must(store_->read(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
        auto stored = must(uow.credentials().find(c.id()));
        EXPECT_EQ(stored.status(), credential_status::active);
        EXPECT_EQ(stored.data().versions.size(), 1u);
        return {};
    }));
    EXPECT_EQ(value_of(must(service_.resolve(ctx_, c.id()))), "key-1");
    auto retried = must(service_.rotate(ctx_, c.id(), secret_bytes("key-2"), [](auto const&) -> result<void> { return {}; }));
    EXPECT_EQ(retried.data().current_version, 2);
}

// Revoked material is unreadable at once, stays recoverable (disabled) for the vault's window,
// and is destroyed when that window ends.
TEST_F(credential_service_test, revoke_disables_every_version_and_deletes_the_secret_for_the_vault_to_purge) {
    auto c = must(service_.create(ctx_, {.provider_id = provider_id_, .secret = secret_bytes("key")}));
    auto revoked = must(service_.revoke(ctx_, c.id(), "leaked"));
    EXPECT_EQ(revoked.status(), credential_status::revoked);
    EXPECT_EQ(service_.resolve(ctx_, c.id()).error(), errc::invalid_state);
    auto ref = must(credentials::secret_ref::parse(c.data().key_vault_ref));
    EXPECT_EQ(vault_->get("t1", ref).error(), errc::not_found);  // soft-deleted
    auto versions = must(vault_->versions("t1", ref.name));
    ASSERT_EQ(versions.size(), 1u);
    EXPECT_FALSE(versions.front().enabled);
    clock_.advance(std::chrono::hours(24 * 90));
    EXPECT_EQ(must(vault_->purge_expired()), 1u);
    EXPECT_EQ(vault_->versions("t1", ref.name).error(), errc::not_found);
    EXPECT_EQ(service_.revoke(ctx_, c.id(), "again").error(), errc::invalid_state);
    auto other = request_context::for_tenant("t2", "mallory");
    EXPECT_EQ(service_.resolve(other, c.id()).error(), errc::not_found);
}

TEST_F(credential_service_test, canary_secrets_never_reach_the_database_its_wal_events_or_errors) {
    std::string const api_key = "CANARY-" + new_id("x", clock_.now());
    std::string const rotated_key = "CANARY-" + new_id("y", clock_.now());
    std::string const client_secret = "CANARY-" + new_id("z", clock_.now());
    // API key, rotated API key, OAuth2 client secret, webhook signing secret.
    auto c = must(service_.create(ctx_, {.provider_id = provider_id_, .secret = secret_bytes(api_key)}));
    must(service_.rotate(ctx_, c.id(), secret_bytes(rotated_key), [](auto const&) -> result<void> { return {}; }));
    must(service_.create(ctx_, {.provider_id = provider_id_, .auth_mode = auth_mode::oauth2_client_credentials,
                                .secret = secret_bytes(client_secret),
                                .oauth2 = credentials::oauth2_client_settings{"https://auth.example/token", "client", {}}}));
    auto signing = must(webhooks::create_signing_secret(flaky_, ctx_.tenant_id, clock_.now()));
    std::string const signing_secret(signing.secret.view());
    EXPECT_EQ(signing_secret.rfind("whsec_", 0), 0u);
    must(store_->transact(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
        auto s = must(webhooks::webhook_subscription::create(
            ctx_, clock_.now(), {"proj", "order.*", "https://hooks.example.com/x", signing.ref, {}, {}}));
        return uow.subscriptions().save(s);
    }));
    // Error paths that handle the secrets must not echo them either.
    std::vector<std::string> messages;
    messages.push_back(service_.rotate(ctx_, c.id(), secret_bytes(api_key), [](auto const&) -> result<void> {
                                   return error{errc::forbidden, "refused"};
                               }).error().message());
    messages.push_back(service_.create(ctx_, {.provider_id = "bad", .secret = secret_bytes(api_key)}).error().message());
    std::string haystack = slurp(dir_.file("integration.db")) + slurp(dir_.file("integration.db-wal")) +
                           slurp(dir_.file("secrets.db")) + slurp(dir_.file("secrets.db-wal"));
    for (auto const& e : must(store_->pending_events(1000))) haystack += boost::json::serialize(to_json(e.envelope));
    for (auto const& m : messages) haystack += m;
    must(store_->read(ctx_, [&](storage::unit_of_work& uow) -> result<void> {
        for (auto const& cred : must(uow.credentials().list({}, {})).items) haystack += boost::json::serialize(aggregate_to_json(cred));
        return {};
    }));
    EXPECT_GT(haystack.size(), 10'000u);
    for (auto const& canary : {api_key, rotated_key, client_secret, signing_secret})
        EXPECT_EQ(haystack.find(canary), std::string::npos) << "a secret leaked";
    // Yet each is there when needed.
    EXPECT_EQ(value_of(must(service_.resolve(ctx_, c.id()))), rotated_key);
    EXPECT_EQ(must(vault_->get("t1", must(credentials::secret_ref::parse(signing.ref)))).view(), signing_secret);
}

// ---- outbound calls: the egress policy, and what comes back ---------------------------------------

// Percent-encoding as most encoders do it: RFC 3986 unreserved characters stay.
std::string percent(unsigned char c) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') return std::string(1, static_cast<char>(c));
    return {'%', "0123456789ABCDEF"[c >> 4], "0123456789ABCDEF"[c & 15]};
}

// The service's own calls (tokens, managed identity) through a real transport; 127.0.0.1 is
// allowed and 127.0.0.2 stands for a refused network.
class credential_outbound_test : public ::testing::Test, protected credential_world {
protected:
    void SetUp() override { provider_id_ = save_active_provider(*store_, ctx_, clock_.now()); }
    credentials::integration_credential oauth2(std::string const& token_url) {
        return must(credentials_.create(ctx_, {.provider_id = provider_id_, .auth_mode = auth_mode::oauth2_client_credentials,
                                               .secret = secret_bytes(client_secret_),
                                               .oauth2 = credentials::oauth2_client_settings{token_url, "client-1", {}}}));
    }
    credentials::integration_credential identity(std::string const& endpoint) {
        return must(credentials_.create(ctx_, {.provider_id = provider_id_, .auth_mode = auth_mode::managed_identity,
                                               .secret = secret_bytes("identity-7"),
                                               .managed_identity = credentials::managed_identity_settings{endpoint, "https://x.test/"}}));
    }
    static std::string token_answer(received_request const&) {
        return http_answer_bytes(200, R"({"access_token":"tok/R3D4CT+ed=","token_type":"Bearer","expires_in":3600})");
    }

    std::string const client_secret_ = "cs-0f9e8d-client-secret";
    keep_alive_server inside_{token_answer, "127.0.0.2"};
    keep_alive_server idp_{token_answer};
    request_context ctx_ = request_context::for_tenant("t1");
    std::string provider_id_;
};

TEST_F(credential_outbound_test, a_call_whose_completion_frees_its_request_before_start_returns_leaves_no_write_behind) {
    // The pipeline's contract lets the request die once `done` ran, and a call may end (here at
    // once, in a real transport on its own thread) before `start` returns: the material's wipe
    // must not run after that on the freed request (the sanitizer build catches it).
    struct answers_at_once final : http::transport {
        std::vector<std::string> seen;
        result<http::response> send(http::request const& r) override {
            for (auto const& [k, v] : r.headers)
                if (k == "Authorization") seen.push_back(v);
            return http::response{.status = 200, .headers = {}, .body = "ok"};
        }
    } vendor;
    auto c = must(credentials_.create(ctx_, {.provider_id = provider_id_, .secret = secret_bytes("sk_at_once"),
                                             .api_key = credentials::api_key_placement{.in = "header", .name = "Authorization", .prefix = "Bearer "}}));
    std::vector<std::unique_ptr<http::policy>> policies;
    policies.push_back(std::make_unique<credentials::authentication_policy>(credentials_));
    http::pipeline pipeline(vendor, std::move(policies));
    http::call_context call{.ctx = &ctx_, .credential_id = c.id()};
    auto req = std::make_unique<http::request>(http::request{.url = "https://vendor.test/v1/x"});
    int status = 0;
    pipeline.start(*req, call, [&](result<http::response> res) {
        status = res ? res->status : -1;
        req.reset();
    });
    EXPECT_EQ(status, 200);
    EXPECT_EQ(req, nullptr);
    EXPECT_EQ(vendor.seen, std::vector<std::string>{"Bearer sk_at_once"});
}

TEST_F(credential_outbound_test, token_and_identity_endpoints_the_egress_policy_refuses_are_never_called) {
    dns_.add("inside.test", {*net::ip_address::parse("127.0.0.2")});
    auto port = std::to_string(inside_.port());
    std::vector<credentials::integration_credential> refused{
        oauth2("http://inside.test:" + port + "/token"), oauth2("http://INSIDE.test.:" + port + "/token"),
        oauth2("http://127.0.0.2:" + port + "/token"), oauth2("http://2130706434:" + port + "/token"),
        identity("http://inside.test:" + port + "/metadata/identity/oauth2/token?api-version=2018-02-01"),
        identity("http://127.0.0.2:" + port + "/metadata/identity/oauth2/token")};
    for (auto const& c : refused) {
        auto r = credentials_.resolve(ctx_, c.id());
        ASSERT_FALSE(r) << c.id();
        EXPECT_EQ(r.error(), errc::egress_denied) << r.error().detail();
        EXPECT_EQ(r.error().detail().find(client_secret_), std::string::npos);
        // A managed identity's secret is its client id, sent in the endpoint's query.
        EXPECT_EQ(r.error().detail().find("identity-7"), std::string::npos) << r.error().detail();
    }
    // The authorization-code exchange goes through the same check.
    auto begun = must(credentials_.begin_authorization(ctx_, provider_id_, std::nullopt,
                                                       {"https://idp.example/authorize", "http://inside.test:" + port + "/token",
                                                        "client-1", {"offline_access"}, "https://app.example/callback"},
                                                       secret_bytes(client_secret_)));
    EXPECT_EQ(credentials_.complete_authorization(begun.state, "code-1").error(), errc::egress_denied);
    EXPECT_EQ(inside_.accepted(), 0);
    EXPECT_EQ(inside_.bytes_received(), 0u);
    // A refused name's error never says where it points.
    auto named = credentials_.resolve(ctx_, refused[0].id());
    EXPECT_EQ(named.error().detail().find("127.0.0.2"), std::string::npos) << named.error().detail();
    // The same calls to an allowed address are made, pinned to the checked answer.
    dns_.add("idp.test", {*net::ip_address::parse("127.0.0.1")});
    auto allowed = must(credentials_.resolve(ctx_, oauth2("http://idp.test:" + std::to_string(idp_.port()) + "/token").id()));
    EXPECT_EQ(std::string(allowed.headers.at(0).second.view()), "Bearer tok/R3D4CT+ed=");
    ASSERT_EQ(idp_.requests().size(), 1u);
    EXPECT_EQ(idp_.requests()[0].header("Host"), "idp.test:" + std::to_string(idp_.port()));
}

// A URL the credential keeps is stored and named in errors: a password in it is refused when it
// is stored, and a managed identity's client id (its secret, in the endpoint's query) is never
// repeated when the endpoint fails.
TEST_F(credential_outbound_test, token_endpoint_urls_never_carry_or_repeat_a_secret) {
    for (auto const* url : {"https://client-1:pa55w0rd@idp.example/token", "https://pa55w0rd@idp.example/token"}) {
        auto c = credentials_.create(ctx_, {.provider_id = provider_id_, .auth_mode = auth_mode::oauth2_client_credentials,
                                            .secret = secret_bytes(client_secret_),
                                            .oauth2 = credentials::oauth2_client_settings{url, "client-1", {}}});
        ASSERT_FALSE(c) << url;
        EXPECT_EQ(c.error(), errc::invalid_argument);
        EXPECT_EQ(c.error().detail().find("pa55w0rd"), std::string::npos) << c.error().detail();
        auto mi = credentials_.create(ctx_, {.provider_id = provider_id_, .auth_mode = auth_mode::managed_identity,
                                             .secret = secret_bytes("identity-7"),
                                             .managed_identity = credentials::managed_identity_settings{url, "https://x.test/"}});
        EXPECT_EQ(mi.error(), errc::invalid_argument) << url;
        auto begun = credentials_.begin_authorization(ctx_, provider_id_, std::nullopt,
                                                      {"https://idp.example/authorize", url, "client-1", {}, "https://app.example/callback"},
                                                      secret_bytes(client_secret_));
        EXPECT_EQ(begun.error(), errc::invalid_argument) << url;
    }
    // A user name before '@' in the path or the query is not user information.
    must(credentials_.create(ctx_, {.provider_id = provider_id_, .auth_mode = auth_mode::oauth2_client_credentials,
                                    .secret = secret_bytes(client_secret_),
                                    .oauth2 = credentials::oauth2_client_settings{"https://idp.example/t@x?a=b@c", "client-1", {}}}));
    keep_alive_server failing([](received_request const&) { return http_answer_bytes(503, "{}"); });
    auto down = credentials_.resolve(
        ctx_, identity("http://127.0.0.1:" + std::to_string(failing.port()) + "/metadata/identity/oauth2/token?api-version=1").id());
    ASSERT_FALSE(down);
    EXPECT_EQ(down.error(), errc::unavailable) << down.error().detail();
    EXPECT_NE(down.error().detail().find("/metadata/identity/oauth2/token"), std::string::npos) << down.error().detail();
    EXPECT_EQ(down.error().detail().find("identity-7"), std::string::npos) << down.error().detail();
    ASSERT_EQ(failing.requests().size(), 1u);
    EXPECT_NE(failing.requests()[0].target.find("client_id=identity-7"), std::string::npos);  // it was sent
}

TEST_F(credential_outbound_test, a_token_endpoints_own_error_text_is_not_repeated) {
    keep_alive_server echoing([&](received_request const& r) {
        auto code = r.body.find("client_id=known") != std::string::npos ? std::string("invalid_client") : "you sent " + r.body;
        return http_answer_bytes(400, R"({"error":")" + code + R"("})");
    });
    auto url = "http://127.0.0.1:" + std::to_string(echoing.port()) + "/token";
    auto unknown = credentials_.resolve(ctx_, oauth2(url).id());
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error(), errc::forbidden);
    EXPECT_EQ(unknown.error().detail().find("you sent"), std::string::npos) << unknown.error().detail();
    EXPECT_EQ(unknown.error().detail().find(client_secret_), std::string::npos) << unknown.error().detail();
    auto known = must(credentials_.create(ctx_, {.provider_id = provider_id_, .auth_mode = auth_mode::oauth2_client_credentials,
                                                 .secret = secret_bytes(client_secret_),
                                                 .oauth2 = credentials::oauth2_client_settings{url, "known", {}}}));
    auto r = credentials_.resolve(ctx_, known.id());
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().detail().find("invalid_client"), std::string::npos) << r.error().detail();
}

// A token's `expires_in` comes from the token endpoint, which a tenant chooses: a fraction, a
// number far out of range, a negative one or text never throws or overflows. Whole seconds
// between 0 and a year are kept, a fraction rounded down, anything else is an hour.
TEST_F(credential_outbound_test, any_expires_in_a_token_endpoint_sends_gives_a_bounded_lifetime) {
    std::mutex mutex;
    std::string expires_in;
    keep_alive_server idp([&](received_request const&) {
        std::lock_guard lock(mutex);
        return http_answer_bytes(200, R"({"access_token":"tok-1","token_type":"Bearer","expires_in":)" + expires_in + "}");
    });
    auto c = oauth2("http://127.0.0.1:" + std::to_string(idp.port()) + "/token");
    using std::chrono::seconds;
    auto const year = seconds(365LL * 24 * 3600);
    for (auto const& [sent, lifetime] : std::vector<std::pair<std::string, seconds>>{
             {"3600.5", seconds(3600)},          {"1e300", year},  {"9223372036854775807", year}, {"18446744073709551615", year},
             {"-5", seconds(0)},                 {"-1e300", seconds(0)}, {"\"120\"", seconds(120)}, {"\"abc\"", seconds(3600)},
             {"\"99999999999999999999\"", year}, {"null", seconds(3600)}, {"[1]", seconds(3600)},   {"7200", seconds(7200)}}) {
        {
            std::lock_guard lock(mutex);
            expires_in = sent;
        }
        credentials_.invalidate_token(c.id());
        auto m = credentials_.resolve(ctx_, c.id());
        ASSERT_TRUE(m) << sent << ": " << m.error().detail();
        ASSERT_TRUE(m->expires_at) << sent;
        EXPECT_EQ(*m->expires_at - clock_.now(), lifetime) << "expires_in " << sent;
    }
}

// Calls in flight with a token all get their 401 once the vendor stops taking it; the first
// fetches the next token, and a 401 that comes after that, to a call sent with the old token,
// leaves the new one alone (each such 401 fetched another token: a refresh storm, and with
// rotating refresh tokens a vault write and a CredentialRotated event each).
TEST_F(credential_outbound_test, a_late_401_to_a_call_sent_with_an_old_token_does_not_drop_the_new_one) {
    std::atomic<int> issued{0};
    keep_alive_server idp([&](received_request const&) {
        return http_answer_bytes(200, R"({"access_token":"tok-)" + std::to_string(++issued) + R"(","token_type":"Bearer","expires_in":3600})");
    });
    std::promise<void> release;
    auto released = release.get_future().share();
    std::atomic<bool> held{false};
    keep_alive_server vendor([&](received_request const& r) {
        if (r.header("Authorization").value_or("") != "Bearer tok-1") return http_answer_bytes(200, "ok");
        if (!held.exchange(true)) released.wait();  // the first call's 401 comes last
        return http_answer_bytes(401, "expired");
    });
    auto c = oauth2("http://127.0.0.1:" + std::to_string(idp.port()) + "/token");
    http::request req{.url = "http://127.0.0.1:" + std::to_string(vendor.port()) + "/v1/things"};
    auto late = std::async(std::launch::async, [&] { return send_authorized(credentials_, *transport_, ctx_, c.id(), req); });
    for (int i = 0; i < 3000 && !held.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_TRUE(held.load()) << "the first call never reached the vendor";
    auto first = must(send_authorized(credentials_, *transport_, ctx_, c.id(), req));
    EXPECT_EQ(first.status, 200);
    EXPECT_EQ(issued.load(), 2);
    release.set_value();
    auto second = must(late.get());
    EXPECT_EQ(second.status, 200);
    EXPECT_EQ(issued.load(), 2) << "the late 401 to tok-1 dropped tok-2 and fetched another";
}

// A token that lives less than twice the refresh margin (120 s) is fetched again half way
// through its life, not at every use.
TEST_F(credential_outbound_test, a_short_lived_token_serves_until_half_its_life) {
    std::atomic<int> issued{0};
    keep_alive_server idp([&](received_request const&) {
        return http_answer_bytes(200, R"({"access_token":"tok-)" + std::to_string(++issued) + R"(","token_type":"Bearer","expires_in":60})");
    });
    auto c = oauth2("http://127.0.0.1:" + std::to_string(idp.port()) + "/token");
    for (int i = 0; i < 3; ++i) must(credentials_.resolve(ctx_, c.id()));
    EXPECT_EQ(issued.load(), 1);
    clock_.advance(std::chrono::seconds(31));
    must(credentials_.resolve(ctx_, c.id()));
    EXPECT_EQ(issued.load(), 2);
}

// A revoked credential's token and material leave memory (its client secret, its access token:
// kept until the process ended), and material no longer used is dropped as new material comes.
TEST_F(credential_outbound_test, a_revoked_credentials_token_and_unused_material_leave_memory) {
    auto c = oauth2("http://127.0.0.1:" + std::to_string(idp_.port()) + "/token");
    must(credentials_.resolve(ctx_, c.id()));
    EXPECT_EQ(credentials_.cached().tokens, 1u);
    must(credentials_.revoke(ctx_, c.id(), "leaked"));
    EXPECT_EQ(credentials_.cached().tokens, 0u);
    EXPECT_EQ(credentials_.cached().materials, 0u);

    for (int i = 0; i < 1100; ++i) {
        auto key = must(credentials_.create(ctx_, {.provider_id = provider_id_, .secret = secret_bytes("k" + std::to_string(i)),
                                                   .api_key = credentials::api_key_placement{.name = "X-Api-Key"}}));
        must(credentials_.resolve(ctx_, key.id()));
        if (i == 999) clock_.advance(std::chrono::hours(1));  // the material of the first 1,000 expires
    }
    EXPECT_LT(credentials_.cached().materials, 200u);
}

// A credential revoked while a resolve was reading it: that resolve may still use what it read,
// but its material is not cached, so no later call uses the revoked credential.
TEST_F(credential_outbound_test, material_read_while_its_credential_is_revoked_is_not_cached) {
    switchable_vault vault(*vault_);
    credentials::credential_service service(*store_, vault, fp_, clock_, *transport_, loopback_, dns_);
    auto c = must(service.create(ctx_, {.provider_id = provider_id_, .secret = secret_bytes("sk_revoked_midway"),
                                        .api_key = credentials::api_key_placement{.name = "X-Api-Key"}}));
    vault.after_get = [&] { must(service.revoke(ctx_, c.id(), "leaked")); };
    must(service.resolve(ctx_, c.id()));
    auto after = service.resolve(ctx_, c.id());
    ASSERT_FALSE(after) << "the revoked credential's material came from the cache";
    EXPECT_EQ(after.error(), errc::invalid_state);
}

// A key file is written as a new file of its own and its name made durable: a link planted at
// its temporary name is replaced, not followed (the key never lands elsewhere), and the folder
// is synced after the rename (a power loss must not keep secrets sealed under a lost key).
TEST(key_files, are_written_fresh_and_their_folder_synced) {
    temp_dir dir;
    auto const folder = std::filesystem::canonical(dir.path());
    auto const key_file = (folder / "fp.key").string();
    auto const elsewhere = (folder / "elsewhere.txt").string();
    std::ofstream(elsewhere) << "untouched\n";
    std::filesystem::create_symlink(elsewhere, key_file + ".tmp");
    auto synced = fsynced_during([&] { must(credentials::fingerprinter::load_or_create(key_file)); });
    EXPECT_TRUE(synced.contains(folder.string())) << "the key file's folder was not synced";
    std::ifstream in(elsewhere);
    std::string line;
    std::getline(in, line);
    EXPECT_EQ(line, "untouched") << "the key was written through the link";
    EXPECT_TRUE(std::filesystem::is_regular_file(std::filesystem::symlink_status(key_file)));
    EXPECT_EQ(std::filesystem::status(key_file).permissions() & std::filesystem::perms::all, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}

// Issue 12: authentication is a registry of schemes; a vendor adapter adds one and its
// credentials are sent the way it says, through the same redaction as the built-in schemes.
TEST_F(credential_outbound_test, an_added_auth_scheme_builds_the_material_of_its_credentials) {
    int built = 0;
    must(credentials_.add_scheme("VendorSignature", [&](credentials::auth_scheme_input const& in) -> result<credentials::resolved_credential> {
        ++built;
        credentials::resolved_credential out;
        std::string value = "Sig " + in.credential.id() + ":" + std::string(in.secret.view());
        out.headers.emplace_back("X-Vendor-Signature", secret_bytes(std::string_view(value)));
        out.secrets.push_back(in.secret.clone());
        return out;
    }));
    EXPECT_EQ(credentials_.add_scheme("VendorSignature", [](auto const&) { return result<credentials::resolved_credential>(); }).error(),
              errc::already_exists);
    EXPECT_EQ(credentials_.add_scheme("ApiKey", [](auto const&) { return result<credentials::resolved_credential>(); }).error(),
              errc::already_exists);
    EXPECT_EQ(credentials_.create(ctx_, {.provider_id = provider_id_, .secret = secret_bytes("s"), .scheme = "Unregistered"}).error(),
              errc::invalid_argument);
    // A built-in auth mode named as a scheme would skip its settings' checks (a ManagedIdentity
    // without an endpoint): it is given as the auth mode instead.
    for (auto const* builtin : {"ManagedIdentity", "ApiKey", "OAuth2ClientCredentials"}) {
        auto named = credentials_.create(ctx_, {.provider_id = provider_id_, .secret = secret_bytes("s"), .scheme = builtin});
        ASSERT_FALSE(named) << builtin;
        EXPECT_EQ(named.error(), errc::invalid_argument) << builtin;
        EXPECT_NE(named.error().detail().find("authMode"), std::string::npos) << named.error().detail();
    }

    keep_alive_server vendor([](received_request const& r) { return http_answer_bytes(200, "echo " + r.header("X-Vendor-Signature").value_or("")); });
    auto c = must(credentials_.create(ctx_, {.provider_id = provider_id_, .secret = secret_bytes("vendor-secret-1"), .scheme = "VendorSignature"}));
    EXPECT_EQ(credentials::scheme_of(c), "VendorSignature");
    http::request req{.url = "http://127.0.0.1:" + std::to_string(vendor.port()) + "/signed"};
    auto res = must(send_authorized(credentials_, *transport_, ctx_, c.id(), req));
    EXPECT_EQ(built, 1);
    ASSERT_EQ(vendor.requests().size(), 1u);
    EXPECT_EQ(vendor.requests()[0].header("X-Vendor-Signature").value_or(""), "Sig " + c.id() + ":vendor-secret-1");
    EXPECT_EQ(res.body, "echo Sig " + c.id() + ":[REDACTED]");  // the echo is redacted like any other
}

// A body that is nothing but echoes of the key: every one is replaced, side by side, in one pass
// (replacing in place moved the rest of the body at each echo: minutes for 16 MiB, on the
// transport's one thread).
TEST_F(credential_outbound_test, a_body_full_of_echoes_is_redacted_echo_by_echo) {
    std::string const key = "sk-live/CANARY+1";
    std::string encoded = http::form_encode(key);
    std::string body, expected;
    for (int i = 0; i < 100'000; ++i) {
        body += (i % 3 == 0 ? encoded : key) + (i % 2 ? "," : "");
        expected += std::string("[REDACTED]") + (i % 2 ? "," : "");
    }
    keep_alive_server mirror([&](received_request const&) { return http_answer_bytes(200, body); });
    auto by_key = must(credentials_.create(ctx_, {.provider_id = provider_id_, .secret = secret_bytes(key),
                                                  .api_key = credentials::api_key_placement{.name = "X-Api-Key"}}));
    http::request req{.method = "GET", .url = "http://127.0.0.1:" + std::to_string(mirror.port()) + "/echo"};
    auto res = must(send_authorized(credentials_, *transport_, ctx_, by_key.id(), req));
    EXPECT_TRUE(res.body == expected) << res.body.substr(0, 200);
}

TEST_F(credential_outbound_test, send_authorized_redacts_every_echo_of_the_key_or_token_and_refuses_to_shadow_it) {
    std::string const key = "sk_live/R3D4CT+\"quoted\"\\x";
    // Echoes the request raw, JSON-escaped, percent-encoded and in base64 at three alignments, and
    // the credential headers as answer headers (names and values).
    keep_alive_server mirror([](received_request const& r) {
        auto raw = r.head + "\r\n\r\n" + r.body;
        std::string pct;
        for (unsigned char c : raw) pct += percent(c);
        auto body = "RAW " + raw + "\nJSON " + boost::json::serialize(boost::json::string(raw)) + "\nPCT " + pct + "\nB0 " + base64(raw) +
                    "\nB1 " + base64("." + raw) + "\nB2 " + base64(".." + raw) + "\nend";
        std::string extra;
        for (auto const* name : {"X-Api-Key", "Authorization"})
            if (auto v = r.header(name)) extra += "X-Echo: " + *v + "\r\n";
        return http_answer_bytes(200, body, extra);
    });
    auto by_key = must(credentials_.create(ctx_, {.provider_id = provider_id_, .secret = secret_bytes(key),
                                                  .api_key = credentials::api_key_placement{.name = "X-Api-Key", .prefix = "Key "}}));
    auto by_token = oauth2("http://127.0.0.1:" + std::to_string(idp_.port()) + "/token");
    http::request req{.method = "POST", .url = "http://127.0.0.1:" + std::to_string(mirror.port()) + "/echo", .body = "keep this"};
    for (auto const& [c, secret] : {std::pair{by_key.id(), key}, std::pair{by_token.id(), std::string("tok/R3D4CT+ed=")}}) {
        auto res = must(send_authorized(credentials_, *transport_, ctx_, c, req));
        std::string all = res.body;
        for (auto const& [k, v] : res.headers) all += "\n" + k + ": " + v;
        EXPECT_NE(all.find("keep this"), std::string::npos);
        EXPECT_NE(all.find("[REDACTED]"), std::string::npos) << all;
        auto json = boost::json::serialize(boost::json::string(secret));
        std::string pct;
        for (unsigned char ch : secret) pct += percent(ch);
        for (auto const& form : {secret, json.substr(1, json.size() - 2), pct, base64(secret).substr(0, 12)})
            EXPECT_EQ(all.find(form), std::string::npos) << "found " << form << " in " << all;
        for (auto at = all.find("\nB"); at != std::string::npos; at = all.find("\nB", at + 1)) {
            // Decoding any of the base64 lines must not give the secret back.
            std::string line = all.substr(at + 4, all.find('\n', at + 1) - at - 4), decoded;
            unsigned v = 0;
            int bits = 0;
            for (char ch : line) {
                auto const* p = std::strchr(b64_alphabet, ch);
                if (!p || ch == '\0') continue;
                v = (v << 6) | static_cast<unsigned>(p - b64_alphabet);
                if ((bits += 6) >= 8) decoded += static_cast<char>((v >> (bits -= 8)) & 0xff);
            }
            EXPECT_EQ(decoded.find(secret), std::string::npos) << line;
        }
    }
    // A request that already sets the credential's header is refused, and not sent.
    auto before = mirror.requests().size();
    auto shadowed = req;
    shadowed.headers = {{"x-api-key", "mine"}};
    EXPECT_EQ(send_authorized(credentials_, *transport_, ctx_, by_key.id(), shadowed).error(), errc::invalid_argument);
    shadowed.headers = {{"AUTHORIZATION", "Bearer mine"}};
    EXPECT_EQ(send_authorized(credentials_, *transport_, ctx_, by_token.id(), shadowed).error(), errc::invalid_argument);
    EXPECT_EQ(mirror.requests().size(), before);
}

}  // namespace
}  // namespace integration::testing
