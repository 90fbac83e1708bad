#include "router.hpp"

#include <algorithm>

#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/stream_parser.hpp>
#include <boost/url/pct_string_view.hpp>

#include <integration/core/json.hpp>

#include <cmath>
#include <set>

namespace integration::host {
namespace {

// What Boost.JSON's parser takes but a request must not hold: a key twice in one object (the last
// would silently win) and a number too large for a double (it would become infinity). A second
// pass of the parser over a body already parsed; `problem` says what it found, and where.
class strict_json {
public:
    static constexpr std::size_t max_object_size = std::size_t(-1);
    static constexpr std::size_t max_array_size = std::size_t(-1);
    static constexpr std::size_t max_key_size = std::size_t(-1);
    static constexpr std::size_t max_string_size = std::size_t(-1);
    using error_code = boost::system::error_code;
    using string_view = boost::json::string_view;

    std::string problem;

    bool on_document_begin(error_code&) { return true; }
    bool on_document_end(error_code&) { return true; }
    bool on_object_begin(error_code&) { return open(true); }
    bool on_object_end(std::size_t, error_code&) { return close(); }
    bool on_array_begin(error_code&) { return open(false); }
    bool on_array_end(std::size_t, error_code&) { return close(); }
    bool on_key_part(string_view s, std::size_t, error_code&) {
        key_.append(s.data(), s.size());
        return true;
    }
    bool on_key(string_view s, std::size_t, error_code& ec) {
        key_.append(s.data(), s.size());
        auto& object = frames_.back();
        if (!object.keys.insert(key_).second)
            return fail(ec, "duplicate key '" + clip(key_) + "' in " + path(frames_.size() - 1) +
                                ": each key may appear once in an object");
        object.key = std::move(key_);
        key_.clear();
        return true;
    }
    bool on_string_part(string_view, std::size_t, error_code&) { return true; }
    bool on_string(string_view, std::size_t, error_code&) { return value(); }
    bool on_number_part(string_view s, error_code&) {
        number_.append(s.data(), s.size());
        return true;
    }
    bool on_int64(std::int64_t, string_view, error_code&) { return value(); }
    bool on_uint64(std::uint64_t, string_view, error_code&) { return value(); }
    bool on_double(double d, string_view s, error_code& ec) {
        number_.append(s.data(), s.size());
        if (!std::isfinite(d))
            return fail(ec, path(frames_.size()) + " is out of range: " + clip(number_) + " is beyond a 64-bit float");
        return value();
    }
    bool on_bool(bool, error_code&) { return value(); }
    bool on_null(error_code&) { return value(); }
    bool on_comment_part(string_view, error_code&) { return true; }
    bool on_comment(string_view, error_code&) { return true; }

private:
    struct frame {
        bool object;
        std::set<std::string, std::less<>> keys;
        std::string key;        // of the member being read
        std::size_t index = 0;  // of the element being read
    };

    bool open(bool object) {
        frames_.push_back({object, {}, {}, 0});
        return true;
    }
    bool close() {
        frames_.pop_back();
        return value();
    }
    bool value() {
        number_.clear();
        if (!frames_.empty() && !frames_.back().object) ++frames_.back().index;
        return true;
    }
    bool fail(error_code& ec, std::string what) {
        problem = std::move(what);
        ec = make_error_code(boost::system::errc::invalid_argument);
        return false;
    }
    // The first `depth` levels as the library names fields (`input.body[2].name`).
    std::string path(std::size_t depth) const {
        std::string out;
        for (std::size_t i = 0; i < depth; ++i)
            out = frames_[i].object ? integration::detail::json_path(out, frames_[i].key)
                                    : integration::detail::json_path(out, frames_[i].index);
        return out.empty() ? "the body" : out;
    }
    static std::string clip(std::string const& s) { return s.size() <= 64 ? s : s.substr(0, 64) + "..."; }

    std::vector<frame> frames_;
    std::string key_, number_;
};

}  // namespace

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
    add(std::move(method), std::move(pattern), async_handler([h = std::move(h)](call& c, responder done) { done(h(c)); }),
        options);
}

void router::add(std::string method, std::string pattern, async_handler h, route_options options) {
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
    // Split first, then decode each segment: an encoded `/` (`%2F`) stays inside its segment.
    // Only segments holding a `%` are decoded (into `decoded`, reserved so the views stay valid).
    auto segments = split_path(path);
    std::vector<std::string> decoded;
    decoded.reserve(segments.size());
    for (auto& segment : segments) {
        if (segment.find('%') == std::string_view::npos) continue;
        auto pct = boost::urls::make_pct_string_view(segment);
        if (!pct) return m;
        segment = decoded.emplace_back(pct->decode());
    }
    auto is_param = [](std::string const& want) { return want.size() > 2 && want.front() == '{' && want.back() == '}'; };
    for (auto const& r : routes_) {
        if (r.segments.size() != segments.size()) continue;
        bool ok = true;
        for (std::size_t i = 0; ok && i < segments.size(); ++i)
            ok = is_param(r.segments[i]) ? !segments[i].empty() : r.segments[i] == segments[i];
        if (!ok) continue;
        // HEAD is answered by the GET route (RFC 9110 9.3.2); the server sends no body.
        if (r.method != method && !(method == "HEAD" && r.method == "GET" && !r.options.no_head)) {
            m.path_known = true;
            m.pattern = r.pattern;
            m.allowed.push_back(r.method);
            if (r.method == "GET" && !r.options.no_head) m.allowed.emplace_back("HEAD");
            continue;
        }
        m.h = &r.h;
        m.options = r.options;
        m.pattern = r.pattern;
        for (std::size_t i = 0; i < segments.size(); ++i)
            if (auto const& want = r.segments[i]; is_param(want)) m.params.emplace(want.substr(1, want.size() - 2), segments[i]);
        return m;
    }
    return m;
}

result<void> only_members(boost::json::object const& o, std::string_view path, std::initializer_list<std::string_view> members) {
    for (auto const& kv : o) {
        if (std::find(members.begin(), members.end(), std::string_view(kv.key())) != members.end()) continue;
        std::string known;
        for (auto m : members) known.append(known.empty() ? "" : ", ").append(m);
        return error{errc::invalid_argument, (path.empty() ? "" : std::string(path) + ".") + std::string(kv.key()) +
                                                 " is not a field here; check its spelling (the fields are " + known + ")"};
    }
    return {};
}

result<boost::json::object> call::optional_json(std::initializer_list<std::string_view> members) const {
    if (body.empty()) return boost::json::object{};
    return json(members);
}

result<void> call::no_fields() const {
    auto o = optional_json({});
    if (!o) return o.error();
    if (!o->empty())
        return error{errc::invalid_argument, std::string(o->begin()->key()) + " is not a field here: this takes none"};
    return {};
}

result<boost::json::object> call::json(std::initializer_list<std::string_view> members) const {
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
    boost::json::basic_parser<strict_json> strict(boost::json::parse_options{});
    strict.write_some(false, body.data(), body.size(), ec);
    if (ec) return error{errc::invalid_argument, strict.handler().problem};
    if (members.size() != 0)
        if (auto r = only_members(v.as_object(), "", members); !r) return r.error();
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

result<bool> call::query_flag(std::string_view name) const {
    auto v = query_param(name);
    if (!v || *v == "false") return false;
    if (*v == "true") return true;
    return error{errc::invalid_argument, std::string(name) + " must be true or false"};
}

}  // namespace integration::host
