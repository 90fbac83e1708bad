#include <integration/domain/semantic_version.hpp>

#include <charconv>
#include <vector>

namespace integration::providers {
namespace {

bool numeric_identifier(std::string_view s, std::uint64_t& out) {
    if (s.empty() || (s.size() > 1 && s[0] == '0')) return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc{} && p == s.data() + s.size();
}

bool dot_identifiers(std::string_view s, bool prerelease) {
    if (s.empty()) return false;
    std::size_t start = 0;
    while (true) {
        auto dot = s.find('.', start);
        auto id = s.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
        if (id.empty() || id.find_first_not_of("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-") !=
                              std::string_view::npos)
            return false;
        if (prerelease && id.size() > 1 && id[0] == '0' && id.find_first_not_of("0123456789") == std::string_view::npos)
            return false;
        if (dot == std::string_view::npos) return true;
        start = dot + 1;
    }
}

std::vector<std::string_view> split(std::string_view s) {
    std::vector<std::string_view> out;
    std::size_t start = 0;
    while (true) {
        auto dot = s.find('.', start);
        out.push_back(s.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start));
        if (dot == std::string_view::npos) return out;
        start = dot + 1;
    }
}

}  // namespace

result<semantic_version> semantic_version::parse(std::string_view text) {
    auto bad = [&] {
        return error{errc::invalid_argument,
                     "version \"" + std::string(text) + "\" is not a semantic version such as 1.4.0 or 2.0.0-beta.1"};
    };
    semantic_version v;
    auto plus = text.find('+');
    if (plus != std::string_view::npos) {
        if (!dot_identifiers(text.substr(plus + 1), false)) return bad();
        v.build = text.substr(plus + 1);
        text = text.substr(0, plus);
    }
    auto dash = text.find('-');
    if (dash != std::string_view::npos) {
        if (!dot_identifiers(text.substr(dash + 1), true)) return bad();
        v.prerelease = text.substr(dash + 1);
        text = text.substr(0, dash);
    }
    auto parts = split(text);
    if (parts.size() != 3 || !numeric_identifier(parts[0], v.major) || !numeric_identifier(parts[1], v.minor) ||
        !numeric_identifier(parts[2], v.patch))
        return bad();
    return v;
}

std::string semantic_version::to_string() const {
    std::string s = std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
    if (!prerelease.empty()) s += "-" + prerelease;
    if (!build.empty()) s += "+" + build;
    return s;
}

std::strong_ordering operator<=>(semantic_version const& a, semantic_version const& b) {
    if (auto c = std::tie(a.major, a.minor, a.patch) <=> std::tie(b.major, b.minor, b.patch); c != 0) return c;
    // A prerelease sorts before its release: 1.0.0-rc.1 < 1.0.0.
    if (a.prerelease.empty() || b.prerelease.empty()) return a.prerelease.empty() <=> b.prerelease.empty();
    auto x = split(a.prerelease), y = split(b.prerelease);
    for (std::size_t i = 0; i < x.size() && i < y.size(); ++i) {
        std::uint64_t nx, ny;
        bool ax = numeric_identifier(x[i], nx), ay = numeric_identifier(y[i], ny);
        if (ax && ay) {
            if (nx != ny) return nx <=> ny;
        } else if (ax != ay) {
            return ax ? std::strong_ordering::less : std::strong_ordering::greater;
        } else if (auto c = x[i].compare(y[i]); c != 0) {
            return c < 0 ? std::strong_ordering::less : std::strong_ordering::greater;
        }
    }
    return x.size() <=> y.size();
}

}  // namespace integration::providers
