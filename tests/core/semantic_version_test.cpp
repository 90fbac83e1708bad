#include <integration/domain/semantic_version.hpp>

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

using integration::errc;
using integration::providers::semantic_version;

semantic_version v(std::string_view text) { return semantic_version::parse(text).value(); }

TEST(semantic_version_test, parses_core_prerelease_and_build) {
    auto a = v("1.22.333");
    EXPECT_EQ(a.major, 1u);
    EXPECT_EQ(a.minor, 22u);
    EXPECT_EQ(a.patch, 333u);
    EXPECT_TRUE(a.prerelease.empty());
    EXPECT_TRUE(a.build.empty());

    auto b = v("2.0.0-rc.1+sha.5114f85");
    EXPECT_EQ(b.major, 2u);
    EXPECT_EQ(b.prerelease, "rc.1");
    EXPECT_EQ(b.build, "sha.5114f85");

    auto c = v("1.0.0+20130313144700");
    EXPECT_TRUE(c.prerelease.empty());
    EXPECT_EQ(c.build, "20130313144700");

    EXPECT_EQ(v("0.0.0").major, 0u);
    EXPECT_EQ(v("18446744073709551615.0.0").major, 18446744073709551615u);
}

TEST(semantic_version_test, to_string_gives_back_the_canonical_text) {
    for (auto text : {"1.2.3", "0.1.0-alpha", "1.0.0-x.7.z.92", "1.0.0-alpha+001", "1.0.0+exp.sha.5114f85",
                      "1.0.0-x-y-z.--"})
        EXPECT_EQ(v(text).to_string(), text);
}

class semantic_version_rejects : public testing::TestWithParam<std::string> {};

TEST_P(semantic_version_rejects, malformed_text) {
    auto r = semantic_version::parse(GetParam());
    ASSERT_FALSE(r) << GetParam();
    EXPECT_TRUE(r.error() == errc::invalid_argument);
    EXPECT_NE(r.error().detail().find("1.4.0"), std::string::npos) << "the error shows an example";
}

INSTANTIATE_TEST_SUITE_P(semantic_version, semantic_version_rejects,
                         testing::Values("", "1", "1.2", "1.2.3.4", "v1.2.3", "01.2.3", "1.02.3", "1.2.03",
                                         "-1.2.3", "1.-2.3", "1.2.x", " 1.2.3", "1.2.3 ", "1.2.3-", "1.2.3+",
                                         "1.2.3-01", "1.2.3-a..b", "1.2.3-beta!", "1.2.3+build+more",
                                         "1.2.3+a..b", "18446744073709551616.0.0", "1..3", "1.2.3-α"));

TEST(semantic_version_test, precedence_follows_the_semver_specification) {
    // The ordered example of SemVer 2.0.0 section 11, plus numeric-core cases.
    std::vector<std::string> const ordered{"0.9.9",         "1.0.0-alpha",  "1.0.0-alpha.1", "1.0.0-alpha.beta",
                                           "1.0.0-beta",    "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1",
                                           "1.0.0",         "1.0.1",        "1.9.0",         "1.10.0",
                                           "2.0.0-0",       "2.0.0",        "10.0.0"};
    for (std::size_t i = 0; i < ordered.size(); ++i)
        for (std::size_t j = 0; j < ordered.size(); ++j) {
            auto a = v(ordered[i]), b = v(ordered[j]);
            EXPECT_EQ(a < b, i < j) << ordered[i] << " < " << ordered[j];
            EXPECT_EQ(a == b, i == j) << ordered[i] << " == " << ordered[j];
        }
}

TEST(semantic_version_test, a_prerelease_is_lower_than_its_release) {
    EXPECT_LT(v("1.0.0-rc.1"), v("1.0.0"));
    EXPECT_GT(v("1.0.0"), v("1.0.0-rc.1"));
    EXPECT_LT(v("1.0.0"), v("1.0.1-alpha"));
}

TEST(semantic_version_test, build_metadata_does_not_affect_precedence) {
    EXPECT_EQ(v("1.0.0+a"), v("1.0.0+b"));
    EXPECT_EQ(v("1.0.0-rc.1+a"), v("1.0.0-rc.1"));
    EXPECT_FALSE(v("1.0.0+z") < v("1.0.0+a"));
}

}  // namespace
