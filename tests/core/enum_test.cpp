#include <integration/core/enum.hpp>

#include <integration/core/error.hpp>
#include <integration/domain/policies.hpp>

#include <boost/system/system_error.hpp>
#include <gtest/gtest.h>

#include <set>
#include <string>

namespace {

using namespace integration;

TEST(enum_test, names_are_the_seed_spellings) {
    EXPECT_EQ(to_string(auth_mode::api_key), "ApiKey");
    EXPECT_EQ(to_string(auth_mode::oauth2_client_credentials), "OAuth2ClientCredentials");
    EXPECT_EQ(to_string(auth_mode::oauth2_authorization_code), "OAuth2AuthorizationCode");
    EXPECT_EQ(to_string(auth_mode::managed_identity), "ManagedIdentity");
    EXPECT_EQ(to_string(health_status::unhealthy), "Unhealthy");
}

TEST(enum_test, parse_enum_inverts_to_string) {
    for (auto m : {auth_mode::none, auth_mode::api_key, auth_mode::oauth2_client_credentials,
                   auth_mode::oauth2_authorization_code, auth_mode::managed_identity})
        EXPECT_EQ(parse_enum<auth_mode>(to_string(m), "authMode").value(), m);
}

TEST(enum_test, an_unknown_name_names_the_field_and_lists_the_accepted_values) {
    auto r = parse_enum<health_status>("healthy", "health");
    ASSERT_FALSE(r);
    EXPECT_TRUE(r.error() == errc::invalid_argument);
    EXPECT_EQ(r.error().detail(), "health must be one of Unknown, Healthy, Degraded, Unhealthy (got \"healthy\")");
    EXPECT_FALSE(parse_enum<health_status>("", "health"));
    EXPECT_FALSE(parse_enum<health_status>("Healthy ", "health"));
}

// ---- the error model ------------------------------------------------------------------------

TEST(error_test, an_error_compares_with_its_errc_and_carries_a_detail) {
    error e{errc::invalid_state, "cannot activate provider in status Deprecated"};
    EXPECT_TRUE(e == errc::invalid_state);
    EXPECT_FALSE(e == errc::invalid_argument);
    EXPECT_EQ(e.detail(), "cannot activate provider in status Deprecated");
    EXPECT_EQ(e.code().category().name(), std::string("integration"));
    EXPECT_EQ(e.message(), "operation not allowed in the current state: cannot activate provider in status Deprecated");
    EXPECT_EQ(error(errc::not_found, "").message(), "not found");
}

TEST(error_test, errc_values_are_stable) {
    // Persisted and mapped to problem types by the host: renumbering breaks stored data.
    EXPECT_EQ(static_cast<int>(errc::invalid_argument), 1);
    EXPECT_EQ(static_cast<int>(errc::invalid_state), 2);
    EXPECT_EQ(static_cast<int>(errc::invariant_violation), 3);
    EXPECT_EQ(static_cast<int>(errc::egress_denied), 15);
    EXPECT_EQ(static_cast<int>(errc::cancelled), 17);
}

TEST(error_test, every_errc_has_its_own_message) {
    std::set<std::string> messages;
    for (int v = static_cast<int>(errc::invalid_argument); v <= static_cast<int>(errc::cancelled); ++v) {
        auto m = make_error_code(static_cast<errc>(v)).message();
        EXPECT_NE(m, "unknown integration error") << v;
        EXPECT_TRUE(messages.insert(m).second) << "duplicate message " << m;
    }
}

TEST(error_test, value_on_a_failed_result_throws_system_error_with_the_detail) {
    result<int> r = fail(errc::conflict, "version moved on from 3 to 4");
    try {
        (void)r.value();
        FAIL() << "value() must throw";
    } catch (boost::system::system_error const& e) {
        EXPECT_EQ(e.code(), make_error_code(errc::conflict));
        EXPECT_NE(std::string(e.what()).find("version moved on from 3 to 4"), std::string::npos) << e.what();
    }
}

}  // namespace
