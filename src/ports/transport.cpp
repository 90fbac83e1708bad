#include <integration/ports/transport.hpp>

#include <algorithm>
#include <cctype>
#include <string>
#include <string_view>

namespace integration::http {

bool same_field_name(std::string_view a, std::string_view b) noexcept {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

bool is_idempotent_method(std::string_view m) noexcept {
    return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "TRACE" || m == "PUT" || m == "DELETE";
}

std::string_view find_header(headers const& h, std::string_view name) noexcept {
    for (auto const& [k, v] : h)
        if (same_field_name(k, name)) return v;
    return {};
}

headers combined_headers(headers const& h) {
    headers out;
    out.reserve(h.size());
    for (auto const& [k, v] : h) {
        auto same = std::find_if(out.begin(), out.end(), [&](auto const& f) { return same_field_name(f.first, k); });
        if (same == out.end())
            out.emplace_back(k, v);
        else
            same->second.append(", ").append(v);
    }
    return out;
}

std::string form_encode(std::string_view text) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : text) {
        if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

namespace {

bool is_token_char(unsigned char c) {
    return std::isalnum(c) || std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

// A header name as it can be shown in an error: control and non-ASCII bytes as \xNN.
std::string printable(std::string_view name) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : name) {
        if (c >= 0x20 && c < 0x7f) {
            out += static_cast<char>(c);
        } else {
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

}  // namespace

result<void> check_header_field(std::string_view name, std::string_view value) {
    if (name.empty() ||
        !std::all_of(name.begin(), name.end(), [](char c) { return is_token_char(static_cast<unsigned char>(c)); }))
        return error{errc::invalid_argument, "header name \"" + printable(name) +
                                                 "\" is not a token: use letters, digits and !#$%&'*+-.^_`|~ only"};
    for (auto framing :
         {"Content-Length", "Transfer-Encoding", "Host", "Connection", "Keep-Alive", "Upgrade", "TE", "Trailer", "Expect"})
        if (same_field_name(name, framing))
            return error{errc::invalid_argument,
                         "header \"" + std::string(name) +
                             "\" frames or routes the request, so only the transport sets it; remove it"};
    if (name.size() >= 6 && same_field_name(name.substr(0, 6), "Proxy-"))
        return error{errc::invalid_argument, "header \"" + std::string(name) +
                                                 "\" is meant for a proxy, so only the transport sets it; remove it"};
    for (unsigned char c : value)
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return error{errc::invalid_argument, "header \"" + std::string(name) +
                                                     "\" has a CR, LF, NUL or other control character in its value; "
                                                     "a header value is one line of text"};
    return {};
}

}  // namespace integration::http
