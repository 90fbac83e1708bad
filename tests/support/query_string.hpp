#ifndef INTEGRATION_TESTS_SUPPORT_QUERY_STRING_HPP
#define INTEGRATION_TESTS_SUPPORT_QUERY_STRING_HPP

// The query of a URL as name -> raw (still percent-encoded) value, as the OAuth2 tests read an
// authorize URL or the redirect back from it.

#include <map>
#include <string>

namespace integration::testing {

inline std::map<std::string, std::string> query_of(std::string const& url) {
    std::map<std::string, std::string> q;
    auto query = url.substr(url.find('?') + 1);
    for (std::size_t pos = 0; pos < query.size();) {
        auto amp = query.find('&', pos);
        auto part = query.substr(pos, amp == std::string::npos ? std::string::npos : amp - pos);
        auto eq = part.find('=');
        q[part.substr(0, eq)] = eq == std::string::npos ? "" : part.substr(eq + 1);
        if (amp == std::string::npos) break;
        pos = amp + 1;
    }
    return q;
}

}  // namespace integration::testing

#endif
