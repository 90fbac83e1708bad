#ifndef INTEGRATION_SRC_DETAIL_VALIDATE_HPP
#define INTEGRATION_SRC_DETAIL_VALIDATE_HPP

#include <integration/core/enum.hpp>
#include <integration/core/error.hpp>
#include <integration/core/utf8.hpp>
#include <integration/outbound/egress_policy.hpp>

#include <string>
#include <string_view>

namespace integration::detail {

/** Non-empty, at most `max` bytes, UTF-8, no control characters. */
inline result<void> require_text(std::string_view value, std::string_view field, std::size_t max = 256) {
    if (value.empty()) return error{errc::invalid_argument, std::string(field) + " must not be empty"};
    if (value.size() > max)
        return error{errc::invalid_argument,
                     std::string(field) + " must be at most " + std::to_string(max) + " characters"};
    for (unsigned char c : value)
        if (c < 0x20 || c == 0x7f)
            return error{errc::invalid_argument, std::string(field) + " must not contain control characters"};
    // Stored and shown as JSON text: bytes that are not UTF-8 would make the record unreadable.
    if (!is_valid_utf8(value)) return error{errc::invalid_argument, std::string(field) + " must be UTF-8 text"};
    return {};
}

/** `http://` or `https://` followed by a host. */
inline result<void> require_http_url(std::string_view value, std::string_view field) {
    if (auto r = require_text(value, field, 2048); !r) return r;
    auto rest = value.starts_with("https://") ? value.substr(8) : value.starts_with("http://") ? value.substr(7) : "";
    if (rest.empty() || rest.front() == '/')
        return error{errc::invalid_argument, std::string(field) + " must be an absolute http(s) URL"};
    return {};
}

/** Whether an absolute URL's authority carries user information (`user:password@`): a password
 *  in a stored URL would be kept outside the secret store, and repeated where the URL is named. */
inline bool has_userinfo(std::string_view url) {
    auto at = url.find("//");
    if (at == std::string_view::npos) return false;
    auto authority = url.substr(at + 2);
    return authority.substr(0, authority.find_first_of("/?#")).find('@') != std::string_view::npos;
}

/** A URL as messages and events name it: without its query, fragment or user information, where
 *  a key or a password may be. */
inline std::string url_without_secrets(std::string_view url) {
    url = url.substr(0, url.find_first_of("?#"));
    if (auto at = url.find("//"); at != std::string_view::npos)
        if (auto user = url.find('@', at + 2); user != std::string_view::npos && url.find('/', at + 2) > user)
            return std::string(url.substr(0, at + 2)) + std::string(url.substr(user + 1));
    return std::string(url);
}

/** Whether any piece of `path` between separators is `.` or `..`; percent-encoded dots (`%2e`)
 *  count. With `encoded_separators`, `\`, `%2f` and `%5c` separate pieces too, as many servers
 *  read them; without, only `/` does. `?` and `#` are ordinary characters here. */
inline bool has_dot_piece(std::string_view path, bool encoded_separators) {
    auto encodes = [&](std::size_t i, char c) {
        return path[i] == '%' && i + 2 < path.size() && path[i + 1] == c / 16 + '0' &&
               (path[i + 2] | 0x20) == "0123456789abcdef"[c % 16];
    };
    std::string segment;  // with %2e decoded
    for (std::size_t i = 0; i <= path.size(); ++i) {
        bool const separator = i == path.size() || path[i] == '/' ||
                               (encoded_separators && (path[i] == '\\' || encodes(i, '/') || encodes(i, '\\')));
        if (separator) {
            if (segment == "." || segment == "..") return true;
            segment.clear();
            if (i < path.size() && path[i] == '%') i += 2;
        } else if (encodes(i, '.')) {
            segment += '.';
            i += 2;
        } else {
            segment += path[i];
        }
    }
    return false;
}

/** Whether `path` (up to its query) has a `.` or `..` segment (`has_dot_piece`): with
 *  `encoded_separators` as many servers read a path (for templates), without as curl reads a URL
 *  (for a path whose parameters were encoded into single segments). */
inline bool has_dot_segment(std::string_view path, bool encoded_separators = true) {
    return has_dot_piece(path.substr(0, path.find_first_of("?#")), encoded_separators);
}

/** A base URL, to which operation paths are appended: an http(s) URL without a query or a
 *  fragment (which would swallow every path after it) or a `.`/`..` segment. */
inline result<void> require_base_url(std::string_view value, std::string_view field) {
    if (auto r = require_http_url(value, field); !r) return r;
    if (value.find_first_of("?#") != std::string_view::npos)
        return error{errc::invalid_argument, std::string(field) + " must not have a query or a fragment: "
                                             "operation paths are appended to it"};
    auto rest = value.substr(value.find("//") + 2);
    if (auto slash = rest.find('/'); slash != std::string_view::npos && has_dot_segment(rest.substr(slash)))
        return error{errc::invalid_argument, std::string(field) + " must not have a '.' or '..' segment"};
    return {};
}

/** A URL path: starts with '/', at most 2048 bytes, no control characters and no spaces (a request
 *  line cannot carry them, so such a path could never be called). */
inline result<void> require_path(std::string_view value, std::string_view field) {
    if (value.empty() || value.front() != '/')
        return error{errc::invalid_argument, std::string(field) + " must start with '/'"};
    if (auto r = require_text(value, field, 2048); !r) return r;
    if (value.find(' ') != std::string_view::npos)
        return error{errc::invalid_argument,
                     std::string(field) + " must not contain spaces; percent-encode them as %20"};
    return {};
}

/** `egress.check_static(url)`: what the egress policy refuses before any name is resolved, its
 *  error naming `field`. */
inline result<void> require_allowed_url(net::egress_policy const& egress, std::string_view url,
                                        std::string_view field) {
    if (auto d = egress.check_static(url); !d)
        return error{d.error().code(), std::string(field) + ": " + d.error().detail()};
    return {};
}

/** The standard "cannot X while Y" error. */
template <named_enum E>
error bad_transition(std::string_view what, std::string_view action, E from) {
    return {errc::invalid_state,
            "cannot " + std::string(action) + " " + std::string(what) + " in status " + std::string(to_string(from))};
}

}  // namespace integration::detail

#endif
