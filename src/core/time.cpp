#include <integration/core/time.hpp>

#include <charconv>
#include <cstdio>

namespace integration {

std::string format_time(time_point t) {
    using namespace std::chrono;
    auto ms = to_unix_ms(t);
    auto days = floor<std::chrono::days>(milliseconds{ms});
    year_month_day ymd{sys_days{days}};
    auto rest = ms - duration_cast<milliseconds>(days).count();
    int year = static_cast<int>(ymd.year());
    if (year < 0 || year > 9999) {  // outside what four digits hold: let printf widen it
        char buf[64];
        std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02lld:%02lld:%02lld.%03lldZ", year,
                      static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                      static_cast<long long>(rest / 3'600'000), static_cast<long long>(rest / 60'000 % 60),
                      static_cast<long long>(rest / 1000 % 60), static_cast<long long>(rest % 1000));
        return buf;
    }
    // Digits by hand: this runs for every event, log line and JSON timestamp, and snprintf's
    // format parsing was a visible share of an access-logged request.
    char out[] = "0000-00-00T00:00:00.000Z";
    auto put = [&](int pos, long long value, int width) {
        for (int i = pos + width - 1; i >= pos; --i, value /= 10) out[i] = static_cast<char>('0' + value % 10);
    };
    put(0, year, 4);
    put(5, static_cast<unsigned>(ymd.month()), 2);
    put(8, static_cast<unsigned>(ymd.day()), 2);
    put(11, rest / 3'600'000, 2);
    put(14, rest / 60'000 % 60, 2);
    put(17, rest / 1000 % 60, 2);
    put(20, rest % 1000, 3);
    return std::string(out, 24);
}

namespace {

bool digits(std::string_view s, std::size_t pos, std::size_t n, int& out) {
    if (pos + n > s.size()) return false;
    out = 0;
    for (std::size_t i = pos; i < pos + n; ++i) {
        if (s[i] < '0' || s[i] > '9') return false;
        out = out * 10 + (s[i] - '0');
    }
    return true;
}

}  // namespace

result<time_point> parse_time(std::string_view s) {
    using namespace std::chrono;
    auto bad = [&] {
        return error{errc::invalid_argument,
                     "\"" + std::string(s) + "\" is not an RFC 3339 timestamp such as 2026-01-31T12:00:00Z"};
    };
    int y, mo, d, h, mi, se;
    if (!digits(s, 0, 4, y) || s.size() < 20 || s[4] != '-' || !digits(s, 5, 2, mo) || s[7] != '-' ||
        !digits(s, 8, 2, d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || !digits(s, 11, 2, h) ||
        s[13] != ':' || !digits(s, 14, 2, mi) || s[16] != ':' || !digits(s, 17, 2, se))
        return bad();
    year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)}, day{static_cast<unsigned>(d)}};
    if (!ymd.ok() || h > 23 || mi > 59 || se > 60) return bad();
    std::size_t pos = 19;
    std::int64_t frac_ms = 0;
    if (pos < s.size() && s[pos] == '.') {
        ++pos;
        std::size_t start = pos, n = 0;
        while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
            if (n < 3) frac_ms = frac_ms * 10 + (s[pos] - '0');
            ++n;
            ++pos;
        }
        if (pos == start) return bad();
        for (; n < 3; ++n) frac_ms *= 10;
    }
    std::int64_t offset_min = 0;
    if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
        ++pos;
    } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
        int oh, om;
        if (!digits(s, pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':' || !digits(s, pos + 4, 2, om) ||
            oh > 23 || om > 59)
            return bad();
        offset_min = (oh * 60 + om) * (s[pos] == '-' ? -1 : 1);
        pos += 6;
    } else {
        return bad();
    }
    if (pos != s.size()) return bad();
    auto tp = sys_days{ymd} + hours{h} + minutes{mi} + seconds{se} + milliseconds{frac_ms} - minutes{offset_min};
    // A time point counts nanoseconds in 64 bits: beyond 1677-2262 the conversion would wrap to
    // another date (a credential expiring in 2700 would read as expired in 2115).
    auto const ms = tp.time_since_epoch();
    if (ms > duration_cast<milliseconds>(time_point::max().time_since_epoch()) ||
        ms < duration_cast<milliseconds>(time_point::min().time_since_epoch()))
        return error{errc::invalid_argument, "\"" + std::string(s) + "\" is outside the times this library can hold "
                                             "(1677-09-21 to 2262-04-11)"};
    return time_point{duration_cast<time_point::duration>(ms)};
}

}  // namespace integration
