#include <integration/core/time.hpp>
#include <integration/ports/clock.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <random>
#include <string>

namespace {

using namespace integration;
using namespace std::chrono_literals;

time_point utc(int y, unsigned m, unsigned d, int hh = 0, int mm = 0, int ss = 0, int ms = 0) {
    namespace c = std::chrono;
    auto t = c::sys_days{c::year{y} / c::month{m} / c::day{d}} + c::hours{hh} + c::minutes{mm} + c::seconds{ss} +
             c::milliseconds{ms};
    return integration::time_point{c::duration_cast<integration::time_point::duration>(t.time_since_epoch())};
}

// ---- formatting -----------------------------------------------------------------------------

TEST(time_test, formats_utc_with_milliseconds) {
    EXPECT_EQ(format_time(manual_clock{}.now()), "2026-01-01T00:00:00.000Z");
    EXPECT_EQ(format_time(utc(2026, 3, 9, 14, 5, 7, 42)), "2026-03-09T14:05:07.042Z");
    EXPECT_EQ(format_time(utc(1970, 1, 1)), "1970-01-01T00:00:00.000Z");
    EXPECT_EQ(format_time(utc(2024, 2, 29, 23, 59, 59, 999)), "2024-02-29T23:59:59.999Z");
}

TEST(time_test, formatting_truncates_below_the_millisecond) {
    auto t = utc(2026, 1, 1, 0, 0, 0, 5) + 999us;
    EXPECT_EQ(format_time(t), "2026-01-01T00:00:00.005Z");
}

TEST(time_test, formats_instants_before_the_epoch) {
    EXPECT_EQ(format_time(from_unix_ms(-1)), "1969-12-31T23:59:59.999Z");
    EXPECT_EQ(format_time(utc(1900, 1, 1, 12)), "1900-01-01T12:00:00.000Z");
}

// ---- parsing --------------------------------------------------------------------------------

TEST(time_test, parses_utc_with_and_without_fraction) {
    EXPECT_EQ(parse_time("2026-01-01T00:00:00Z").value(), utc(2026, 1, 1));
    EXPECT_EQ(parse_time("2026-01-01T00:00:00.000Z").value(), utc(2026, 1, 1));
    EXPECT_EQ(parse_time("2026-03-09T14:05:07.042Z").value(), utc(2026, 3, 9, 14, 5, 7, 42));
    EXPECT_EQ(parse_time("2026-03-09T14:05:07.5Z").value(), utc(2026, 3, 9, 14, 5, 7, 500));
    EXPECT_EQ(parse_time("2026-03-09T14:05:07.123456789Z").value(), utc(2026, 3, 9, 14, 5, 7, 123))
        << "digits past the millisecond are dropped";
}

TEST(time_test, applies_numeric_offsets) {
    auto const midnight = utc(2026, 1, 1);
    EXPECT_EQ(parse_time("2026-01-01T02:00:00+02:00").value(), midnight);
    EXPECT_EQ(parse_time("2025-12-31T19:00:00-05:00").value(), midnight);
    EXPECT_EQ(parse_time("2025-12-31T18:30:00-05:30").value(), midnight);
    EXPECT_EQ(parse_time("2026-01-01T05:45:00.000+05:45").value(), midnight);
    EXPECT_EQ(parse_time("2026-01-01T00:00:00+00:00").value(), midnight);
    EXPECT_EQ(parse_time("2026-01-01T00:00:00-00:00").value(), midnight);
}

TEST(time_test, accepts_the_rfc3339_spellings_of_t_and_z) {
    auto const t = utc(2026, 1, 1, 8, 30);
    EXPECT_EQ(parse_time("2026-01-01t08:30:00z").value(), t);
    EXPECT_EQ(parse_time("2026-01-01 08:30:00Z").value(), t);
}

TEST(time_test, refuses_a_time_outside_what_a_time_point_holds_rather_than_wrapping) {
    // 2700 would wrap to 2115 in nanoseconds; 9999 to 1815.
    for (auto far : {"2700-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1600-01-01T00:00:00Z", "2262-04-12T00:00:00Z"}) {
        auto t = parse_time(far);
        ASSERT_FALSE(t) << far << " read as " << format_time(*t);
        EXPECT_EQ(t.error(), errc::invalid_argument);
        EXPECT_NE(t.error().detail().find("outside"), std::string::npos) << t.error().detail();
    }
    EXPECT_EQ(format_time(parse_time("2262-04-11T00:00:00Z").value()), "2262-04-11T00:00:00.000Z");
}

TEST(time_test, checks_calendar_dates) {
    EXPECT_TRUE(parse_time("2024-02-29T00:00:00Z"));
    EXPECT_FALSE(parse_time("2025-02-29T00:00:00Z"));
    EXPECT_FALSE(parse_time("2026-04-31T00:00:00Z"));
    EXPECT_TRUE(parse_time("2016-12-31T23:59:60Z")) << "RFC 3339 allows a leap second";
}

TEST(time_test, format_and_parse_round_trip) {
    std::mt19937_64 rng(20260101);
    std::uniform_int_distribution<std::int64_t> ms(-2'208'988'800'000, 7'258'118'400'000);  // 1900 to 2200
    for (int i = 0; i < 2000; ++i) {
        auto t = from_unix_ms(ms(rng));
        auto text = format_time(t);
        auto back = parse_time(text);
        ASSERT_TRUE(back) << text;
        EXPECT_EQ(*back, t) << text;
    }
}

class parse_time_rejects : public testing::TestWithParam<std::string> {};

TEST_P(parse_time_rejects, malformed_text_with_an_example_in_the_error) {
    auto r = parse_time(GetParam());
    ASSERT_FALSE(r) << GetParam();
    EXPECT_TRUE(r.error() == errc::invalid_argument);
    EXPECT_NE(r.error().detail().find("RFC 3339"), std::string::npos) << r.error().detail();
    EXPECT_NE(r.error().detail().find("2026-01-31T12:00:00Z"), std::string::npos) << r.error().detail();
}

INSTANTIATE_TEST_SUITE_P(
    time, parse_time_rejects,
    testing::Values("", "2026-01-01", "2026-01-01T00:00:00", "2026-01-01T00:00Z", "2026-1-01T00:00:00Z",
                    "26-01-01T00:00:00Z", "2026/01/01T00:00:00Z", "2026-01-01X00:00:00Z", "2026-13-01T00:00:00Z",
                    "2026-00-10T00:00:00Z", "2026-01-00T00:00:00Z", "2026-01-32T00:00:00Z", "2026-01-01T24:00:00Z",
                    "2026-01-01T23:60:00Z", "2026-01-01T23:59:61Z", "2026-01-01T00:00:00.Z",
                    "2026-01-01T00:00:00+2:00", "2026-01-01T00:00:00+0200", "2026-01-01T00:00:00+24:00",
                    "2026-01-01T00:00:00+01:60", "2026-01-01T00:00:00+01", "2026-01-01T00:00:00ZZ",
                    "2026-01-01T00:00:00Z ", " 2026-01-01T00:00:00Z", "2026-01-01T00:00:00UTC",
                    "1767225600000", "now"));

// ---- storage representation -----------------------------------------------------------------

TEST(time_test, unix_milliseconds_convert_both_ways_and_truncate) {
    EXPECT_EQ(to_unix_ms(manual_clock{}.now()), 1'767'225'600'000);
    EXPECT_EQ(from_unix_ms(1'767'225'600'000), utc(2026, 1, 1));
    EXPECT_EQ(to_unix_ms(from_unix_ms(-1)), -1);
    auto t = utc(2026, 1, 1, 0, 0, 0, 7) + 999us;
    EXPECT_EQ(truncate_ms(t), utc(2026, 1, 1, 0, 0, 0, 7));
    EXPECT_EQ(truncate_ms(truncate_ms(t)), truncate_ms(t));
}

}  // namespace
