#include "form.hpp"

#include <algorithm>
#include <array>

namespace integration::detail {

namespace {

// The bytes form encoding leaves raw (RFC 3986 query characters), as a table: a body is decoded
// in runs of raw bytes, not one lookup in a string per byte.
constexpr auto raw_bytes = [] {
    std::array<bool, 256> t{};
    for (int c = 'a'; c <= 'z'; ++c) t[static_cast<unsigned char>(c)] = true;
    for (int c = 'A'; c <= 'Z'; ++c) t[static_cast<unsigned char>(c)] = true;
    for (int c = '0'; c <= '9'; ++c) t[static_cast<unsigned char>(c)] = true;
    for (char c : std::string_view("-._~!$'()*,;:@/?=")) t[static_cast<unsigned char>(c)] = true;
    return t;
}();

int nibble(char c) noexcept {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

}  // namespace

// Percent-decodes one name or value of a form (`+` is a space); nullopt on a broken escape or a
// byte that form encoding never leaves raw (RFC 3986 query characters only).
std::optional<std::string> form_decode(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size();) {
        std::size_t run = i;
        while (run < text.size() && raw_bytes[static_cast<unsigned char>(text[run])]) ++run;
        out.append(text.data() + i, run - i);
        i = run;
        if (i == text.size()) break;
        char const c = text[i];
        if (c == '+') {
            out += ' ';
            ++i;
        } else if (c == '%') {
            int const hi = i + 2 < text.size() ? nibble(text[i + 1]) : -1;
            int const lo = hi >= 0 ? nibble(text[i + 2]) : -1;
            if (lo < 0) return std::nullopt;
            out += static_cast<char>(hi << 4 | lo);
            i += 3;
        } else {
            return std::nullopt;
        }
    }
    return out;
}

// The decoded `name=value` pairs of a form body, or nullopt when it is not form encoding.
std::optional<form_fields> form_params(std::string_view body) {
    form_fields out;
    for (std::size_t at = 0; at < body.size();) {
        auto const end = std::min(body.find('&', at), body.size());
        auto const pair = body.substr(at, end - at);
        at = end + 1;
        if (pair.empty()) continue;
        auto const eq = pair.find('=');
        auto name = form_decode(pair.substr(0, eq));
        auto value = form_decode(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1));
        if (!name || !value) return std::nullopt;
        out.emplace_back(std::move(*name), std::move(*value));
    }
    return out;
}

}  // namespace integration::detail
