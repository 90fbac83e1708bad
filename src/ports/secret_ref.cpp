#include <integration/ports/secret_store.hpp>

#include <charconv>

namespace integration::credentials {

result<void> validate_secret_name(std::string_view name) {
    if (name.empty() || name.size() > 128 ||
        name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != std::string_view::npos)
        return error{errc::invalid_argument, "a secret name must be 1-128 characters of A-Z, a-z, 0-9, '.', '_' or '-'"};
    return {};
}

result<secret_ref> secret_ref::parse(std::string_view uri) {
    auto bad = [] { return error{errc::invalid_argument, "a secret reference looks like vault://<store>/<tenant>/<name>?version=<n>"}; };
    constexpr std::string_view scheme = "vault://";
    if (!uri.starts_with(scheme)) return bad();
    uri.remove_prefix(scheme.size());
    secret_ref r;
    auto q = uri.find('?');
    auto path = uri.substr(0, q);
    if (q != std::string_view::npos) {
        auto query = uri.substr(q + 1);
        if (!query.starts_with("version=")) return bad();
        query.remove_prefix(8);
        auto [p, ec] = std::from_chars(query.data(), query.data() + query.size(), r.version);
        if (ec != std::errc{} || p != query.data() + query.size() || r.version < 0) return bad();
    }
    auto s1 = path.find('/');
    if (s1 == std::string_view::npos) return bad();
    auto s2 = path.find('/', s1 + 1);
    if (s2 == std::string_view::npos || path.find('/', s2 + 1) != std::string_view::npos) return bad();
    r.store = path.substr(0, s1);
    r.tenant = path.substr(s1 + 1, s2 - s1 - 1);
    r.name = path.substr(s2 + 1);
    if (r.store.empty() || r.tenant.empty()) return bad();
    if (auto v = validate_secret_name(r.name); !v) return v.error();
    return r;
}

std::string secret_ref::uri() const {
    std::string s = "vault://" + store + "/" + tenant + "/" + name;
    if (version > 0) s += "?version=" + std::to_string(version);
    return s;
}

}  // namespace integration::credentials
