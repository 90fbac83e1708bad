#include <integration/domain/policies.hpp>

#include <gtest/gtest.h>

#include <limits>

namespace {

using integration::rate_limit_profile;

// A tenant chooses its own rate-limit profile: a rate so small that a call waits for days, or a
// burst so large that nothing is limited, is refused with the bound it crossed.
TEST(rate_limit_profile_test, is_bounded_on_both_sides_and_the_error_names_the_bound) {
    EXPECT_TRUE(rate_limit_profile({.requests_per_second = 0.001, .burst = 1}).validate());
    EXPECT_TRUE(rate_limit_profile({.requests_per_second = 100'000, .burst = 100'000}).validate());

    for (double rps : {0.0, -1.0, 0.000001, 0.000999, 100'001.0, std::numeric_limits<double>::infinity(),
                       std::numeric_limits<double>::quiet_NaN()}) {
        auto r = rate_limit_profile{.requests_per_second = rps, .burst = 1}.validate();
        ASSERT_FALSE(r) << rps;
        EXPECT_TRUE(r.error() == integration::errc::invalid_argument);
        EXPECT_NE(r.error().detail().find("requestsPerSecond must be between 0.001"), std::string::npos) << r.error().detail();
    }
    for (std::int64_t burst : {std::int64_t{0}, std::int64_t{-5}, std::int64_t{100'001}, std::int64_t{1'000'000'000}}) {
        auto r = rate_limit_profile{.requests_per_second = 1, .burst = burst}.validate();
        ASSERT_FALSE(r) << burst;
        EXPECT_NE(r.error().detail().find("burst must be between 1 and 100000, got " + std::to_string(burst)), std::string::npos)
            << r.error().detail();
    }
    auto tiny = rate_limit_profile{.requests_per_second = 0.000001, .burst = 1}.validate();
    EXPECT_NE(tiny.error().detail().find("got 1e-06"), std::string::npos) << tiny.error().detail();
}

}  // namespace
