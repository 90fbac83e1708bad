#include <integration/outbound/retry.hpp>

#include <integration/core/time.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>

namespace integration::resilience {

bool is_retryable_status(int s) noexcept {
    // Every 5xx but the two that say the request will never work here (501 Not Implemented, 505
    // HTTP Version Not Supported): 529 Overloaded, a CDN's 522/524 and the like pass.
    return s == 408 || s == 425 || s == 429 || (s >= 500 && s <= 599 && s != 501 && s != 505);
}

std::optional<time_point> parse_http_date(std::string_view t) {
    // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" (29 characters).
    static constexpr std::string_view months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    if (t.size() != 29 || t[3] != ',' || t[4] != ' ' || t[7] != ' ' || t[11] != ' ' || t[16] != ' ' ||
        t[19] != ':' || t[22] != ':' || t.substr(25) != " GMT")
        return std::nullopt;
    auto num = [&](std::size_t pos, std::size_t n, int& out) {
        auto [p, ec] = std::from_chars(t.data() + pos, t.data() + pos + n, out);
        return ec == std::errc{} && p == t.data() + pos + n;
    };
    int day, year, h, m, s;
    if (!num(5, 2, day) || !num(12, 4, year) || !num(17, 2, h) || !num(20, 2, m) || !num(23, 2, s)) return std::nullopt;
    auto mon = std::find(std::begin(months), std::end(months), t.substr(8, 3));
    if (mon == std::end(months)) return std::nullopt;
    using namespace std::chrono;
    year_month_day ymd{std::chrono::year{year}, month{static_cast<unsigned>(mon - std::begin(months) + 1)},
                       std::chrono::day{static_cast<unsigned>(day)}};
    if (!ymd.ok() || h > 23 || m > 59 || s > 60) return std::nullopt;
    // A date past what the clock can hold (2262, in nanoseconds) is its last moment: converted, it
    // would wrap around into the past.
    auto const since_epoch = (sys_days{ymd} + hours{h} + minutes{m} + seconds{s}).time_since_epoch();
    if (since_epoch >= duration_cast<seconds>(time_point::max().time_since_epoch())) return time_point::max();
    if (since_epoch <= duration_cast<seconds>(time_point::min().time_since_epoch())) return time_point::min();
    return time_point{duration_cast<time_point::duration>(since_epoch)};
}

namespace {

std::optional<double> number(std::string_view v) {
    while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
    while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
    if (v.empty()) return std::nullopt;
    double d = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
    if (ec != std::errc{} || p != v.data() + v.size() || !std::isfinite(d)) return std::nullopt;
    return d;
}

// At most a year: a larger value in milliseconds could overflow (1e17 s became a negative
// delay, so "retry now"), and any wait that long exceeds every deadline anyway.
std::chrono::milliseconds non_negative(double seconds) {
    constexpr double year_seconds = 366.0 * 24 * 3600;
    return std::chrono::milliseconds(static_cast<std::int64_t>(std::clamp(seconds, 0.0, year_seconds) * 1000.0));
}

}  // namespace

std::optional<std::chrono::milliseconds> server_requested_delay(http::headers const& h, time_point now) {
    using namespace std::chrono;
    if (auto v = http::find_header(h, "Retry-After"); !v.empty()) {
        // delta-seconds is never negative (RFC 9110 10.2.3): a negative one is not a delay.
        if (auto n = number(v)) return *n >= 0 ? std::optional(non_negative(*n)) : std::nullopt;
        if (auto d = parse_http_date(v)) return *d <= now ? milliseconds(0) : non_negative(duration<double>(*d - now).count());
        return std::nullopt;
    }
    for (auto name : {"RateLimit-Reset", "X-RateLimit-Reset", "X-Rate-Limit-Reset"}) {
        auto v = http::find_header(h, name);
        if (v.empty()) continue;
        auto n = number(v);
        if (!n) return std::nullopt;
        // GitHub and others send a Unix time here; the IETF draft sends seconds to wait.
        constexpr double year_seconds = 365.0 * 24 * 3600;
        if (*n > year_seconds) return non_negative(*n - static_cast<double>(to_unix_ms(now)) / 1000.0);
        return non_negative(*n);
    }
    return std::nullopt;
}

std::chrono::milliseconds backoff_delay(retry_options const& o, int next_attempt, double unit) noexcept {
    int exponent = std::clamp(next_attempt - 2, 0, 30);
    double ceiling = std::min(static_cast<double>(o.max_delay.count()),
                              static_cast<double>(o.base_delay.count()) * std::ldexp(1.0, exponent));
    return std::chrono::milliseconds(static_cast<std::int64_t>(ceiling * std::clamp(unit, 0.0, 1.0)));
}

retry_decision decide_retry(retry_options const& o, int attempt, bool retryable,
                            std::optional<std::chrono::milliseconds> requested, std::chrono::milliseconds elapsed,
                            double unit) noexcept {
    if (!retryable || attempt >= o.max_attempts) return {};
    auto delay = requested ? std::min(*requested, o.max_delay) : backoff_delay(o, attempt + 1, unit);
    if (elapsed + delay >= o.total_deadline) return {};
    return {true, delay};
}

}  // namespace integration::resilience
