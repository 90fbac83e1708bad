#include "router.hpp"

#include <boost/json/stream_parser.hpp>

namespace integration::host {

// Views into `path`: matching a request allocates nothing per segment.
std::vector<std::string_view> split_path(std::string_view path) {
    std::vector<std::string_view> out;
    std::size_t i = path.starts_with('/') ? 1 : 0;
    while (i <= path.size()) {
        auto slash = path.find('/', i);
        auto end = slash == std::string_view::npos ? path.size() : slash;
        out.emplace_back(path.substr(i, end - i));
        if (slash == std::string_view::npos) break;
        i = slash + 1;
    }
    if (!out.empty() && out.back().empty() && out.size() > 1) out.pop_back();  // tolerate a trailing slash
    return out;
}

std::string_view access_name(access a) noexcept {
    switch (a) {
    case access::open: return "open";
    case access::key: return "key";
    case access::admin: return "admin";
    }
    return "key";
}

void router::add(std::string method, std::string pattern, handler h, route_options options) {
    auto views = split_path(pattern);
    std::vector<std::string> segments(views.begin(), views.end());
    routes_.push_back({std::move(method), std::move(pattern), std::move(segments), std::move(h), options});
}

std::vector<router::route_info> router::routes() const {
    std::vector<route_info> out;
    for (auto const& r : routes_) out.push_back({r.method, r.pattern, r.options});
    return out;
}

router::match router::find(std::string_view method, std::string_view path) const {
    match m;
    auto segments = split_path(path);
    for (auto const& r : routes_) {
        if (r.segments.size() != segments.size()) continue;
        std::map<std::string, std::string, std::less<>> params;
        bool ok = true;
        for (std::size_t i = 0; ok && i < segments.size(); ++i) {
            auto const& want = r.segments[i];
            if (want.size() > 2 && want.front() == '{' && want.back() == '}') {
                if (segments[i].empty()) ok = false;
                else params[want.substr(1, want.size() - 2)] = std::string(segments[i]);
            } else {
                ok = want == segments[i];
            }
        }
        if (!ok) continue;
        if (r.method != method) {
            m.path_known = true;
            m.pattern = r.pattern;
            m.allowed.push_back(r.method);
            continue;
        }
        m.h = &r.h;
        m.options = r.options;
        m.pattern = r.pattern;
        m.params = std::move(params);
        return m;
    }
    return m;
}

result<boost::json::object> call::optional_json() const {
    if (body.empty()) return boost::json::object{};
    return json();
}

result<boost::json::object> call::json() const {
    if (body.empty())
        return error{errc::invalid_argument, "the request body is missing: send a JSON object (Content-Type: application/json)"};
    boost::json::stream_parser p;
    boost::system::error_code ec;
    auto used = p.write_some(body.data(), body.size(), ec);
    if (!ec && used < body.size())
        return error{errc::invalid_argument, "malformed JSON at byte " + std::to_string(used) + ": unexpected data after the value"};
    if (!ec) p.finish(ec);
    if (ec) return error{errc::invalid_argument, "malformed JSON at byte " + std::to_string(used) + ": " + ec.message()};
    auto v = p.release();
    if (!v.is_object()) return error{errc::invalid_argument, "the request body must be a JSON object"};
    return std::move(v.as_object());
}

std::optional<std::string> call::query_param(std::string_view name) const {
    if (auto it = query.find(name); it != query.end()) return it->second;
    return std::nullopt;
}

result<storage::page_request> call::page() const {
    storage::page_request p;
    if (auto l = query_param("limit")) {
        try {
            std::size_t pos = 0;
            auto n = std::stoul(*l, &pos);
            if (pos != l->size() || n < 1 || n > 500) throw std::out_of_range("limit");
            p.limit = n;
        } catch (...) {
            return error{errc::invalid_argument, "limit must be an integer from 1 to 500"};
        }
    }
    if (auto c = query_param("cursor")) p.cursor = *c;
    return p;
}

}  // namespace integration::host
