#ifndef INTEGRATION_CORE_UTF8_HPP
#define INTEGRATION_CORE_UTF8_HPP

/** @file
 *  UTF-8 checks for text that ends up in JSON (excerpts of bodies, decoded form fields, what a
 *  caller sent that an error or a log line repeats): JSON text is UTF-8, and a byte that is not
 *  would make the whole document unreadable to a strict parser.
 */

#include <cstddef>
#include <string>
#include <string_view>

namespace integration {

/** The length of the well-formed UTF-8 sequence starting at `s[i]` (no overlong forms, no
 *  surrogates, nothing above U+10FFFF), or 0 when none starts there. */
inline std::size_t utf8_sequence(std::string_view s, std::size_t i) noexcept {
    auto at = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    unsigned char c = at(i);
    if (c < 0x80) return 1;
    std::size_t n = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return 0;
    for (std::size_t k = 1; k < n; ++k)
        if ((at(i + k) & 0xc0) != 0x80) return 0;
    unsigned char d = at(i + 1);
    if ((c == 0xe0 && d < 0xa0) || (c == 0xed && d > 0x9f) || (c == 0xf0 && d < 0x90) || (c == 0xf4 && d > 0x8f))
        return 0;
    return n;
}

/** Whether `s` is well-formed UTF-8 throughout. */
inline bool is_valid_utf8(std::string_view s) noexcept {
    for (std::size_t i = 0; i < s.size();) {
        auto n = utf8_sequence(s, i);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

/** At most the first `cap` bytes of `body` as valid UTF-8: a sequence cut at the cap is dropped,
 *  and a byte that starts no valid sequence becomes U+FFFD. */
inline std::string utf8_excerpt(std::string_view body, std::size_t cap) {
    std::string out;
    out.reserve(cap < body.size() ? cap : body.size());
    for (std::size_t i = 0; i < body.size();) {
        auto n = utf8_sequence(body, i);
        std::string_view piece = n ? body.substr(i, n) : std::string_view("\xef\xbf\xbd");
        if (out.size() + piece.size() > cap) break;
        out += piece;
        i += n ? n : 1;
    }
    return out;
}

}  // namespace integration

#endif
