#ifndef INTEGRATION_CORE_TIME_HPP
#define INTEGRATION_CORE_TIME_HPP

/** @file
 *  RFC 3339 text for instants: the one format used in JSON, storage and events.
 */

#include <integration/core/error.hpp>
#include <integration/export.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace integration {

/** Wall-clock instants, millisecond precision as stored. */
using time_point = std::chrono::system_clock::time_point;

/** Formats as `2026-01-01T00:00:00.000Z` (UTC, milliseconds). */
INTEGRATION_EXPORT std::string format_time(time_point t);

/** Parses RFC 3339 (`Z` or `+hh:mm` offset, optional fraction). */
INTEGRATION_EXPORT result<time_point> parse_time(std::string_view text);

/** Milliseconds since the Unix epoch, the storage representation. */
inline std::int64_t to_unix_ms(time_point t) noexcept {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

/** The inverse of `to_unix_ms`. */
inline time_point from_unix_ms(std::int64_t ms) noexcept {
    return time_point{std::chrono::duration_cast<time_point::duration>(std::chrono::milliseconds{ms})};
}

/** Truncates to the millisecond, the precision every backend keeps. */
inline time_point truncate_ms(time_point t) noexcept { return from_unix_ms(to_unix_ms(t)); }

}  // namespace integration

#endif
