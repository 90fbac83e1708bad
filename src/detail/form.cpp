#include "form.hpp"

#include <algorithm>

namespace integration::detail {

// Percent-decodes one name or value of a form (`+` is a space); nullopt on a broken escape or a
// byte that form encoding never leaves raw (RFC 3986 query characters only).
std::optional<std::string> form_decode(std::string_view text) {
    auto nibble = [](char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    };
    auto raw = [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               std::string_view("-._~!$'()*,;:@/?=").find(c) != std::string_view::npos;
    };
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        char const c = text[i];
        if (c == '+') {
            out += ' ';
        } else if (c == '%') {
            int const hi = i + 2 < text.size() ? nibble(text[i + 1]) : -1;
            int const lo = hi >= 0 ? nibble(text[i + 2]) : -1;
            if (lo < 0) return std::nullopt;
            out += static_cast<char>(hi << 4 | lo);
            i += 2;
        } else if (raw(c)) {
            out += c;
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
