#ifndef INTEGRATION_CORE_ENUM_HPP
#define INTEGRATION_CORE_ENUM_HPP

/** @file
 *  Text names for the domain's enumerations, as the seed spells them ("Active", "OAuth2ClientCredentials").
 *  Each enumeration specialises `enum_names` with its names in declaration order.
 */

#include <integration/core/error.hpp>

#include <array>
#include <cstddef>
#include <string>
#include <string_view>

namespace integration {

/** Specialise with `static constexpr std::array<std::string_view, N> values` (declaration order). */
template <class E>
struct enum_names;

/** True for enumerations that have names. */
template <class E>
concept named_enum = std::is_enum_v<E> && requires { enum_names<E>::values; };

/** The seed name of `e`, e.g. "Active". */
template <named_enum E>
constexpr std::string_view to_string(E e) noexcept {
    return enum_names<E>::values[static_cast<std::size_t>(e)];
}

/** Parses a seed name; the error names `field` and lists the accepted values. */
template <named_enum E>
result<E> parse_enum(std::string_view text, std::string_view field) {
    auto const& names = enum_names<E>::values;
    for (std::size_t i = 0; i < names.size(); ++i)
        if (names[i] == text) return static_cast<E>(i);
    std::string accepted;
    for (auto n : names) {
        if (!accepted.empty()) accepted += ", ";
        accepted += n;
    }
    return error{errc::invalid_argument,
                 std::string(field) + " must be one of " + accepted + " (got \"" + std::string(text) + "\")"};
}

}  // namespace integration

#endif
