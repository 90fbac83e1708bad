#include <integration/outbound/retry.hpp>

#include <integration/core/time.hpp>

#include <gtest/gtest.h>

namespace integration::resilience {
namespace {

using namespace std::chrono_literals;
using ms = std::chrono::milliseconds;

TEST(retry, retryable_statuses_include_429_and_425_but_not_client_errors) {
    // Every 5xx is worth another try (529 Overloaded, a CDN's 522 and 524) but the two that say
    // the request cannot work here.
    for (int s : {408, 425, 429, 500, 502, 503, 504, 507, 511, 522, 524, 529, 599}) EXPECT_TRUE(is_retryable_status(s)) << s;
    for (int s : {200, 201, 301, 400, 401, 403, 404, 409, 422, 501, 505, 600}) EXPECT_FALSE(is_retryable_status(s)) << s;
}

TEST(retry, retry_after_in_seconds_and_as_an_http_date) {
    auto now = parse_time("2026-11-24T10:00:00Z").value();
    EXPECT_EQ(server_requested_delay({{"Retry-After", "120"}}, now), ms(120'000));
    EXPECT_EQ(server_requested_delay({{"retry-after", " 3 "}}, now), ms(3'000));
    EXPECT_EQ(server_requested_delay({{"Retry-After", "Tue, 24 Nov 2026 10:00:30 GMT"}}, now), ms(30'000));
    // A date in the past means "now", never a negative wait.
    EXPECT_EQ(server_requested_delay({{"Retry-After", "Tue, 24 Nov 2026 09:00:00 GMT"}}, now), ms(0));
    // delta-seconds is never negative: "-5" is no delay (the backoff applies), not "retry now";
    // a huge one is a year at most instead of overflowing into a negative delay.
    EXPECT_FALSE(server_requested_delay({{"Retry-After", "-5"}}, now));
    for (auto huge : {"1e17", "9300000000000000", "1e300"})
        EXPECT_EQ(server_requested_delay({{"Retry-After", huge}}, now), ms(366LL * 24 * 3600 * 1000)) << huge;
    // So is a date far ahead, even one past what the clock holds (2262): converted, it wrapped
    // into the past and meant "retry now".
    for (auto far : {"Sat, 01 Jan 2300 00:00:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT", "Wed, 24 Nov 2032 10:00:00 GMT"})
        EXPECT_EQ(server_requested_delay({{"Retry-After", far}}, now), ms(366LL * 24 * 3600 * 1000)) << far;
    EXPECT_EQ(parse_http_date("Fri, 31 Dec 9999 23:59:59 GMT"), time_point::max());
    // And one long past, before what the clock holds (1678): "now", not a wait.
    EXPECT_EQ(server_requested_delay({{"Retry-After", "Mon, 01 Jan 1000 00:00:00 GMT"}}, now), ms(0));
    EXPECT_EQ(parse_http_date("Mon, 01 Jan 1000 00:00:00 GMT"), time_point::min());
    EXPECT_FALSE(server_requested_delay({{"Retry-After", "soon"}}, now));
    EXPECT_FALSE(server_requested_delay({{"Retry-After", "Tue, 24 Nov 2026 10:00:30 UTC"}}, now));
    EXPECT_FALSE(server_requested_delay({}, now));
}

TEST(retry, common_rate_limit_reset_headers) {
    auto now = parse_time("2026-11-24T10:00:00Z").value();
    auto epoch = std::to_string(to_unix_ms(now) / 1000 + 42);
    EXPECT_EQ(server_requested_delay({{"X-RateLimit-Reset", epoch}}, now), ms(42'000));  // GitHub: Unix time
    EXPECT_EQ(server_requested_delay({{"RateLimit-Reset", "7"}}, now), ms(7'000));       // IETF draft: seconds
    EXPECT_EQ(server_requested_delay({{"X-Rate-Limit-Reset", "1.5"}}, now), ms(1'500));
    // Retry-After wins when both are present.
    EXPECT_EQ(server_requested_delay({{"X-RateLimit-Reset", "9"}, {"Retry-After", "2"}}, now), ms(2'000));
}

TEST(retry, http_dates_are_parsed_strictly) {
    EXPECT_EQ(format_time(*parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT")), "1994-11-06T08:49:37.000Z");
    EXPECT_FALSE(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"));
    EXPECT_FALSE(parse_http_date("Sun, 31 Feb 1994 08:49:37 GMT"));
    EXPECT_FALSE(parse_http_date("Sun, 06 Nov 1994 25:49:37 GMT"));
    EXPECT_FALSE(parse_http_date(""));
}

TEST(retry, full_jitter_backoff_doubles_up_to_the_cap) {
    retry_options o{.max_attempts = 10, .base_delay = 800ms, .max_delay = 5'000ms};
    EXPECT_EQ(backoff_delay(o, 2, 0.999999), ms(799));
    EXPECT_EQ(backoff_delay(o, 3, 0.999999), ms(1'599));
    EXPECT_EQ(backoff_delay(o, 4, 0.5), ms(1'600));
    EXPECT_EQ(backoff_delay(o, 5, 0.999999), ms(4'999));  // 6400 capped at 5000
    EXPECT_EQ(backoff_delay(o, 30, 0.999999), ms(4'999));
    EXPECT_EQ(backoff_delay(o, 2, 0.0), ms(0));
}

TEST(retry, decisions_respect_attempts_deadline_and_the_servers_request) {
    retry_options o{.max_attempts = 3, .base_delay = 100ms, .max_delay = 10'000ms, .total_deadline = 20'000ms};
    auto d = decide_retry(o, 1, true, std::nullopt, 0ms, 0.5);
    EXPECT_TRUE(d.retry);
    EXPECT_EQ(d.delay, ms(50));
    EXPECT_FALSE(decide_retry(o, 1, false, std::nullopt, 0ms, 0.5).retry);   // not retryable
    EXPECT_FALSE(decide_retry(o, 3, true, std::nullopt, 0ms, 0.5).retry);    // out of attempts
    auto asked = decide_retry(o, 1, true, ms(4'000), 0ms, 0.5);
    EXPECT_TRUE(asked.retry);
    EXPECT_EQ(asked.delay, ms(4'000));
    EXPECT_EQ(decide_retry(o, 1, true, ms(600'000), 0ms, 0.5).delay, ms(10'000));  // capped
    EXPECT_FALSE(decide_retry(o, 2, true, ms(4'000), 17'000ms, 0.5).retry);         // past the deadline
}

}  // namespace
}  // namespace integration::resilience
