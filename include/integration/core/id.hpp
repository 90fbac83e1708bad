#ifndef INTEGRATION_CORE_ID_HPP
#define INTEGRATION_CORE_ID_HPP

/** @file
 *  Identifiers: a seed prefix and a ULID (48-bit millisecond time, 80 random bits from a CSPRNG,
 *  Crockford base32), e.g. `conn-01JD3Q8V6X4T2M9R5B7N1K0FZC`. Sortable by creation time,
 *  never sequential, not guessable.
 */

#include <integration/core/time.hpp>
#include <integration/export.hpp>

#include <string>
#include <string_view>

namespace integration {

/** The seed's identifier prefixes. */
namespace id_prefix {
inline constexpr std::string_view connection = "conn";
inline constexpr std::string_view provider = "prov";
inline constexpr std::string_view credential = "cred";
inline constexpr std::string_view subscription = "sub";
inline constexpr std::string_view delivery = "del";
inline constexpr std::string_view api_client = "client";
inline constexpr std::string_view run = "run";
inline constexpr std::string_view failure = "fail";
inline constexpr std::string_view event = "evt";
}  // namespace id_prefix

/** Makes `prefix-ULID` stamped with `now`. */
INTEGRATION_EXPORT std::string new_id(std::string_view prefix, time_point now);

/** The smallest id `new_id(prefix, t)` can make for any `t` at or after `at` (the ULID of `at`
 *  with no random bits): every id below it was made before `at`, so a store that walks ids in
 *  order can stop there. */
INTEGRATION_EXPORT std::string first_id_at(std::string_view prefix, time_point at);

/** True when `id` is `prefix-` followed by a well-formed ULID. */
INTEGRATION_EXPORT bool is_valid_id(std::string_view id, std::string_view prefix) noexcept;

/** Fills `out` with `n` bytes from the operating system's CSPRNG. Use it for keys and secrets. */
INTEGRATION_EXPORT void random_bytes(unsigned char* out, std::size_t n);

/** Fills `out` with `n` unpredictable bytes for identifiers (ids, trace and span ids): CSPRNG
 *  output served from a per-thread pool, which is faster for small draws. Not for key material. */
INTEGRATION_EXPORT void id_bytes(unsigned char* out, std::size_t n);

}  // namespace integration

#endif
