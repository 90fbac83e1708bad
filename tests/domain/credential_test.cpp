#include <integration/domain/credential.hpp>

#include <integration/domain/event.hpp>

#include "domain/fixtures.hpp"

#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>

namespace {

using namespace integration;
using namespace integration::credentials;
using fixtures::fingerprint;
using fixtures::snap;
using fixtures::tenant_ctx;

constexpr std::string_view rotated_event = events::event_type::credential_rotated;
constexpr std::string_view revoked_event = events::event_type::credential_revoked;
constexpr std::string_view failed_event = events::event_type::integration_failed;

std::string const v1_ref = "vault://local/t1/acme-api-key?version=1";
std::string const v2_ref = "vault://local/t1/acme-api-key?version=2";
std::string const v3_ref = "vault://local/t1/acme-api-key?version=3";

std::size_t count_state(integration_credential const& c, version_state s) {
    return static_cast<std::size_t>(std::count_if(c.data().versions.begin(), c.data().versions.end(),
                                                  [&](auto const& v) { return v.state == s; }));
}

class credential_test : public testing::Test {
protected:
    manual_clock clock;
    std::string provider_id = new_id(id_prefix::provider, clock.now());

    credential_spec spec() {
        return {.provider_id = provider_id,
                .auth_mode = auth_mode::api_key,
                .key_vault_ref = v1_ref,
                .fingerprint = fingerprint('1'),
                .auth_parameters = {{"headerName", "X-Api-Key"}}};
    }
    integration_credential active() {
        return integration_credential::create(tenant_ctx(), clock.now(), spec()).value();
    }
    integration_credential rotating() {
        auto c = active();
        c.begin_rotation(v2_ref, fingerprint('2'), clock.now()).value();
        return c;
    }
    integration_credential revoked() {
        auto c = active();
        c.revoke("leaked in a log", clock.now()).value();
        return c;
    }
};

// ---- creation -------------------------------------------------------------------------------

TEST_F(credential_test, create_makes_an_active_credential_whose_version_1_is_active) {
    auto s = spec();
    s.connection_id = new_id(id_prefix::connection, clock.now());
    s.rotation_policy = rotation_policy{.rotate_every_days = 90, .notify_before_days = 14};
    s.expires_at = clock.now() + std::chrono::days{365};
    auto c = integration_credential::create(tenant_ctx(), clock.now(), s).value();

    EXPECT_TRUE(is_valid_id(c.id(), id_prefix::credential)) << c.id();
    EXPECT_EQ(c.status(), credential_status::active);
    EXPECT_EQ(c.data().current_version, 1);
    EXPECT_EQ(c.data().key_vault_ref, v1_ref);
    EXPECT_EQ(c.data().fingerprint, fingerprint('1'));
    EXPECT_EQ(c.data().rotation_policy->rotate_every_days, 90);
    ASSERT_EQ(c.data().versions.size(), 1u);
    auto const* v = c.active_version();
    ASSERT_NE(v, nullptr);
    EXPECT_EQ(v->version, 1);
    EXPECT_EQ(v->key_vault_ref, v1_ref);
    EXPECT_EQ(v->activated_at, clock.now());
    EXPECT_EQ(c.staged_version(), nullptr);
    EXPECT_TRUE(c.pending_events().empty());
}

TEST_F(credential_test, create_refuses_malformed_references) {
    auto bad_provider = spec();
    bad_provider.provider_id = "acme";
    EXPECT_ERRC(integration_credential::create(tenant_ctx(), clock.now(), bad_provider), errc::invalid_argument);

    auto bad_connection = spec();
    bad_connection.connection_id = new_id(id_prefix::provider, clock.now());
    EXPECT_ERRC(integration_credential::create(tenant_ctx(), clock.now(), bad_connection), errc::invalid_argument);

    for (std::string ref : {"", "acme-api-key", "://x", "vault://", "Vault://local/x"}) {
        auto s = spec();
        s.key_vault_ref = ref;
        EXPECT_ERRC(integration_credential::create(tenant_ctx(), clock.now(), s), errc::invalid_argument);
    }
    for (std::string f : {std::string(), std::string(64, 'a'), "sha256:" + std::string(64, 'a'),
                          "hmac-sha256:" + std::string(63, 'a'), "hmac-sha256:" + std::string(64, 'A')}) {
        auto s = spec();
        s.fingerprint = f;
        EXPECT_ERRC(integration_credential::create(tenant_ctx(), clock.now(), s), errc::invalid_argument);
    }
}

TEST_F(credential_test, create_refuses_auth_mode_none_and_negative_rotation_days) {
    auto none = spec();
    none.auth_mode = auth_mode::none;
    EXPECT_ERRC(integration_credential::create(tenant_ctx(), clock.now(), none), errc::invalid_argument);

    auto negative = spec();
    negative.rotation_policy = rotation_policy{.rotate_every_days = -1};
    EXPECT_ERRC(integration_credential::create(tenant_ctx(), clock.now(), negative), errc::invalid_argument);

    // 200,000 days ("practically never") would wrap to a date in the past once added to now: due at once.
    auto far = spec();
    far.rotation_policy = rotation_policy{.rotate_every_days = 200'000, .notify_before_days = 7};
    EXPECT_ERRC(integration_credential::create(tenant_ctx(), clock.now(), far), errc::invalid_argument);
    far.rotation_policy = rotation_policy{.rotate_every_days = 90, .notify_before_days = INT64_MAX};
    EXPECT_ERRC(integration_credential::create(tenant_ctx(), clock.now(), far), errc::invalid_argument);
    far.rotation_policy = rotation_policy{.rotate_every_days = 36'500, .notify_before_days = 36'500};
    EXPECT_TRUE(integration_credential::create(tenant_ctx(), clock.now(), far));
}

// ---- "No field ever contains secret material" -----------------------------------------------

class credential_secret_parameters : public testing::TestWithParam<std::string> {};

TEST_P(credential_secret_parameters, are_refused_without_echoing_the_value) {
    manual_clock clock;
    credential_spec s{.provider_id = new_id(id_prefix::provider, clock.now()),
                      .auth_mode = auth_mode::oauth2_client_credentials,
                      .key_vault_ref = v1_ref,
                      .fingerprint = fingerprint(),
                      .auth_parameters = {{"clientId", "acme-client"}, {GetParam(), "s3cr3t-v4lue"}}};
    auto r = integration_credential::create(tenant_ctx(), clock.now(), s);
    ASSERT_FALSE(r);
    EXPECT_TRUE(r.error() == errc::invariant_violation) << r.error().message();
    EXPECT_NE(r.error().detail().find("authParameters." + GetParam()), std::string::npos) << r.error().detail();
    EXPECT_EQ(r.error().message().find("s3cr3t-v4lue"), std::string::npos) << "the error must not echo the secret";
}

INSTANTIATE_TEST_SUITE_P(credential, credential_secret_parameters,
                         testing::Values("clientSecret", "client_secret", "password", "Password", "token",
                                         "accessToken", "refresh_token", "apiKey", "api-key", "API_KEY",
                                         "privateKey", "credential"));

TEST_F(credential_test, non_secret_auth_parameters_are_accepted) {
    auto s = spec();
    s.auth_mode = auth_mode::oauth2_client_credentials;
    s.auth_parameters = {{"tokenUrl", "https://login.acme.example/oauth2/token"},
                         {"token_url", "https://login.acme.example/oauth2/token"},
                         {"tokenEndpoint", "https://login.acme.example/oauth2/token"},
                         {"clientId", "acme-client"},
                         {"scope", "sms.send sms.status"},
                         {"headerName", "Authorization"},
                         // Where the API key goes is not the key itself: a non-string placement object.
                         {"apiKey", {{"in", "header"}, {"name", "X-Api-Key"}}},
                         {"placement", {{"in", "query"}, {"name", "key"}}}};
    auto c = integration_credential::create(tenant_ctx(), clock.now(), s);
    ASSERT_TRUE(c) << c.error().message();
    EXPECT_EQ(c->data().auth_parameters.at("clientId").as_string(), "acme-client");
}

TEST_F(credential_test, secret_strings_nested_in_an_object_are_refused_too) {
    auto s = spec();
    s.auth_parameters = {{"oauth", {{"clientId", "acme-client"}, {"clientSecret", "s3cr3t-v4lue"}}}};
    auto r = integration_credential::create(tenant_ctx(), clock.now(), s);
    EXPECT_ERRC(r, errc::invariant_violation);
    EXPECT_NE(r.error().detail().find("clientSecret"), std::string::npos) << r.error().detail();
    EXPECT_EQ(r.error().detail().find("s3cr3t-v4lue"), std::string::npos);

    auto listed = spec();
    listed.auth_parameters = {{"apiKeys", boost::json::array{"k-1", "k-2"}}};
    auto l = integration_credential::create(tenant_ctx(), clock.now(), listed);
    EXPECT_ERRC(l, errc::invariant_violation);
    EXPECT_NE(l.error().detail().find("authParameters.apiKeys[0]"), std::string::npos) << l.error().detail();

    auto scopes = spec();
    scopes.auth_parameters = {{"scopes", boost::json::array{"sms.send", "sms.status"}},
                              {"oauth", {{"tokenUrl", "https://login.acme.example/token"}, {"clientId", "c"}}}};
    EXPECT_TRUE(integration_credential::create(tenant_ctx(), clock.now(), scopes)) << "non-secret nesting is fine";
}

TEST_F(credential_test, events_carry_only_references_and_fingerprints) {
    // Every event of a full lifecycle, checked against the fields an event may carry.
    std::set<std::string> const allowed{"credentialId", "providerId",    "previousVersion", "currentVersion",
                                        "keyVaultRef",  "fingerprint",   "reason",          "source",
                                        "category",     "failedVersion", "activeVersion",   "message"};
    auto c = active();
    c.begin_rotation(v2_ref, fingerprint('2'), clock.now()).value();
    c.fail_rotation("verification call answered 401", clock.now()).value();
    c.begin_rotation(v3_ref, fingerprint('3'), clock.now()).value();
    c.complete_rotation(clock.now()).value();
    c.revoke("decommissioned", clock.now()).value();

    ASSERT_EQ(fixtures::event_types(c), (std::vector<std::string>{std::string(failed_event), std::string(rotated_event),
                                                                  std::string(revoked_event)}));
    for (auto const& e : c.pending_events())
        for (auto const& kv : e.data)
            EXPECT_TRUE(allowed.contains(std::string(kv.key()))) << e.event_type << " carries " << kv.key();

    auto const& rotated = c.pending_events()[1].data;
    EXPECT_EQ(rotated.at("keyVaultRef").as_string(), v3_ref);
    EXPECT_EQ(rotated.at("fingerprint").as_string(), fingerprint('3'));
    EXPECT_TRUE(validate_key_vault_ref(rotated.at("keyVaultRef").as_string()));
    EXPECT_TRUE(validate_fingerprint(rotated.at("fingerprint").as_string()));
}

TEST_F(credential_test, stored_form_holds_references_and_fingerprints_only) {
    auto c = rotating();
    auto j = aggregate_to_json(c);
    EXPECT_EQ(j.at("keyVaultRef").as_string(), v1_ref);
    EXPECT_EQ(j.at("fingerprint").as_string(), fingerprint('1'));
    auto text = boost::json::serialize(j);
    for (auto word : {"secret", "password", "plaintext", "\"value\""})
        EXPECT_EQ(text.find(word), std::string::npos) << word << " in " << text;
}

// ---- Active → Rotating → Active -------------------------------------------------------------

TEST_F(credential_test, begin_rotation_stages_a_new_version_and_keeps_the_prior_one_active) {
    auto c = active();
    clock.advance(std::chrono::hours{1});
    auto n = c.begin_rotation(v2_ref, fingerprint('2'), clock.now());
    ASSERT_TRUE(n) << n.error().message();
    EXPECT_EQ(*n, 2);
    EXPECT_EQ(c.status(), credential_status::rotating);
    EXPECT_TRUE(c.pending_events().empty()) << "nothing is rotated until verification passes";

    ASSERT_NE(c.active_version(), nullptr);
    EXPECT_EQ(c.active_version()->version, 1);
    EXPECT_EQ(c.data().current_version, 1);
    EXPECT_EQ(c.data().key_vault_ref, v1_ref) << "callers keep using the prior version";
    ASSERT_NE(c.staged_version(), nullptr);
    EXPECT_EQ(c.staged_version()->version, 2);
    EXPECT_EQ(c.staged_version()->key_vault_ref, v2_ref);
    EXPECT_EQ(c.staged_version()->state, version_state::staged);
    EXPECT_EQ(c.staged_version()->created_at, clock.now());
    EXPECT_EQ(count_state(c, version_state::active), 1u);
}

TEST_F(credential_test, complete_rotation_activates_the_staged_version_and_raises_rotated) {
    auto c = rotating();
    clock.advance(std::chrono::minutes{3});
    auto new_expiry = clock.now() + std::chrono::days{90};
    ASSERT_TRUE(c.complete_rotation(clock.now(), new_expiry));

    EXPECT_EQ(c.status(), credential_status::active);
    EXPECT_EQ(c.data().current_version, 2);
    EXPECT_EQ(c.data().key_vault_ref, v2_ref);
    EXPECT_EQ(c.data().fingerprint, fingerprint('2'));
    EXPECT_EQ(c.data().last_rotated_at, clock.now());
    EXPECT_EQ(c.data().expires_at, new_expiry);
    EXPECT_EQ(c.staged_version(), nullptr);
    ASSERT_NE(c.active_version(), nullptr);
    EXPECT_EQ(c.active_version()->version, 2);
    EXPECT_EQ(c.active_version()->activated_at, clock.now());
    EXPECT_EQ(c.data().versions[0].state, version_state::retired);
    EXPECT_EQ(c.data().versions[0].deactivated_at, clock.now());
    EXPECT_EQ(count_state(c, version_state::active), 1u);

    ASSERT_EQ(c.pending_events().size(), 1u);
    auto const& e = c.pending_events()[0];
    EXPECT_EQ(e.event_type, rotated_event);
    EXPECT_EQ(e.data.at("credentialId").as_string(), c.id());
    EXPECT_EQ(e.data.at("previousVersion").as_int64(), 1);
    EXPECT_EQ(e.data.at("currentVersion").as_int64(), 2);
}

TEST_F(credential_test, complete_rotation_without_a_new_expiry_keeps_the_old_one) {
    auto s = spec();
    s.expires_at = clock.now() + std::chrono::days{30};
    auto c = integration_credential::create(tenant_ctx(), clock.now(), s).value();
    c.begin_rotation(v2_ref, fingerprint('2'), clock.now()).value();
    ASSERT_TRUE(c.complete_rotation(clock.now()));
    EXPECT_EQ(c.data().expires_at, s.expires_at);
}

TEST_F(credential_test, fail_rotation_keeps_the_prior_version_and_raises_integration_failed) {
    auto c = rotating();
    ASSERT_TRUE(c.fail_rotation("verification call answered 401", clock.now()));

    EXPECT_EQ(c.status(), credential_status::active);
    EXPECT_EQ(c.data().current_version, 1);
    EXPECT_EQ(c.data().key_vault_ref, v1_ref);
    ASSERT_NE(c.active_version(), nullptr);
    EXPECT_EQ(c.active_version()->version, 1);
    EXPECT_EQ(c.data().versions[1].state, version_state::failed);
    EXPECT_EQ(c.staged_version(), nullptr);
    EXPECT_FALSE(c.data().last_rotated_at);

    ASSERT_EQ(c.pending_events().size(), 1u);
    auto const& e = c.pending_events()[0];
    EXPECT_EQ(e.event_type, failed_event);
    EXPECT_EQ(e.data.at("source").as_string(), "CredentialRotation");
    EXPECT_EQ(e.data.at("category").as_string(), "Auth");
    EXPECT_EQ(e.data.at("failedVersion").as_int64(), 2);
    EXPECT_EQ(e.data.at("activeVersion").as_int64(), 1);
}

TEST_F(credential_test, exactly_one_version_is_active_through_any_sequence_of_rotations) {
    auto c = active();
    auto check = [&](char const* step) {
        EXPECT_EQ(count_state(c, version_state::active), 1u) << step;
        ASSERT_NE(c.active_version(), nullptr) << step;
        EXPECT_EQ(c.active_version()->version, c.data().current_version) << step;
    };
    check("created");
    EXPECT_EQ(c.begin_rotation(v2_ref, fingerprint('2'), clock.now()).value(), 2);
    check("staged 2");
    c.fail_rotation("401", clock.now()).value();
    check("failed 2");
    EXPECT_EQ(c.begin_rotation(v3_ref, fingerprint('3'), clock.now()).value(), 3) << "numbers are never reused";
    check("staged 3");
    c.complete_rotation(clock.now()).value();
    check("activated 3");
    EXPECT_EQ(c.data().current_version, 3);
}

// A provider that rotates its refresh token on every refresh ends a version each time: the
// credential keeps the active version and the newest ended ones, and numbers go on from the
// highest (a failed one included) without reuse.
TEST_F(credential_test, only_the_newest_ended_versions_are_kept) {
    auto c = active();
    auto ref = [](std::int64_t n) { return "vault://local/t1/acme-api-key?version=" + std::to_string(n); };
    for (std::int64_t n = 2; n <= 30; ++n) {
        ASSERT_EQ(c.begin_rotation(ref(n), fingerprint('2'), clock.now()).value(), n);
        if (n % 7 == 0) c.fail_rotation("401", clock.now()).value();
        else c.complete_rotation(clock.now()).value();
    }
    EXPECT_EQ(c.data().versions.size(), max_ended_versions + 1);
    EXPECT_EQ(count_state(c, version_state::active), 1u);
    EXPECT_EQ(c.data().current_version, 30);
    std::vector<std::int64_t> kept;
    for (auto const& v : c.data().versions) kept.push_back(v.version);
    std::ranges::sort(kept);
    EXPECT_EQ(kept.front(), 30 - static_cast<std::int64_t>(max_ended_versions)) << "an older version was kept";
    EXPECT_EQ(c.begin_rotation(ref(31), fingerprint('3'), clock.now()).value(), 31);
    c.fail_rotation("401", clock.now()).value();  // the highest number is a failed version now
    EXPECT_EQ(c.data().versions.size(), max_ended_versions + 1);
    EXPECT_EQ(c.begin_rotation(ref(32), fingerprint('3'), clock.now()).value(), 32) << "a number was reused";
    EXPECT_TRUE(integration_credential::restore(c.meta(), c.data()).has_value());
}

TEST_F(credential_test, begin_rotation_refuses_malformed_new_version) {
    auto c = active();
    auto before = snap(c);
    EXPECT_ERRC(c.begin_rotation("not a ref", fingerprint('2'), clock.now()), errc::invalid_argument);
    EXPECT_ERRC(c.begin_rotation(v2_ref, "plaintext-secret", clock.now()), errc::invalid_argument);
    EXPECT_EQ(c.status(), credential_status::active);
    EXPECT_UNCHANGED(c, before);
}

// ---- → Revoked ------------------------------------------------------------------------------

TEST_F(credential_test, active_and_rotating_revoke_disabling_every_version) {
    for (auto c : {active(), rotating()}) {
        clock.advance(std::chrono::seconds{1});
        ASSERT_TRUE(c.revoke("leaked in a log", clock.now()));
        EXPECT_EQ(c.status(), credential_status::revoked);
        EXPECT_EQ(c.active_version(), nullptr);
        EXPECT_EQ(c.staged_version(), nullptr);
        for (auto const& v : c.data().versions) {
            EXPECT_EQ(v.state, version_state::disabled);
            EXPECT_EQ(v.deactivated_at, clock.now());
        }
        ASSERT_EQ(c.pending_events().size(), 1u);
        auto const& e = c.pending_events()[0];
        EXPECT_EQ(e.event_type, revoked_event);
        EXPECT_EQ(e.data.at("credentialId").as_string(), c.id());
        EXPECT_EQ(e.data.at("reason").as_string(), "leaked in a log");
    }
}

// ---- illegal transitions --------------------------------------------------------------------

TEST_F(credential_test, rotating_cannot_begin_another_rotation) {
    auto c = rotating();
    auto before = snap(c);
    EXPECT_ERRC(c.begin_rotation(v3_ref, fingerprint('3'), clock.now()), errc::invalid_state);
    EXPECT_EQ(c.status(), credential_status::rotating);
    EXPECT_UNCHANGED(c, before);
}

TEST_F(credential_test, active_cannot_complete_or_fail_a_rotation) {
    auto c = active();
    auto before = snap(c);
    EXPECT_ERRC(c.complete_rotation(clock.now()), errc::invalid_state);
    EXPECT_ERRC(c.fail_rotation("no rotation", clock.now()), errc::invalid_state);
    EXPECT_EQ(c.status(), credential_status::active);
    EXPECT_UNCHANGED(c, before);
}

TEST_F(credential_test, revoked_is_terminal) {
    auto c = revoked();
    auto before = snap(c);
    EXPECT_ERRC(c.begin_rotation(v2_ref, fingerprint('2'), clock.now()), errc::invalid_state);
    EXPECT_ERRC(c.complete_rotation(clock.now()), errc::invalid_state);
    EXPECT_ERRC(c.fail_rotation("x", clock.now()), errc::invalid_state);
    EXPECT_ERRC(c.revoke("again", clock.now()), errc::invalid_state);
    EXPECT_ERRC(c.attach_connection(new_id(id_prefix::connection, clock.now())), errc::invalid_state);
    EXPECT_EQ(c.status(), credential_status::revoked);
    EXPECT_UNCHANGED(c, before);
}

TEST_F(credential_test, attach_connection_binds_a_connection_id) {
    auto c = active();
    auto conn = new_id(id_prefix::connection, clock.now());
    ASSERT_TRUE(c.attach_connection(conn));
    EXPECT_EQ(c.data().connection_id, conn);
    auto before = snap(c);
    EXPECT_ERRC(c.attach_connection(new_id(id_prefix::credential, clock.now())), errc::invalid_argument);
    EXPECT_UNCHANGED(c, before);
}

// ---- restore --------------------------------------------------------------------------------

TEST_F(credential_test, restore_refuses_anything_but_exactly_one_active_version) {
    auto c = rotating();
    auto two_active = c.data();
    two_active.versions[1].state = version_state::active;
    EXPECT_ERRC(integration_credential::restore(c.meta(), two_active), errc::integrity_failure);

    auto none_active = c.data();
    none_active.versions[0].state = version_state::retired;
    EXPECT_ERRC(integration_credential::restore(c.meta(), none_active), errc::integrity_failure);

    EXPECT_TRUE(integration_credential::restore(c.meta(), c.data()));
    auto r = revoked();
    EXPECT_TRUE(integration_credential::restore(r.meta(), r.data())) << "a revoked credential has none";
}

}  // namespace
