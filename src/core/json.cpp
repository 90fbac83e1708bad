#include <integration/core/json.hpp>

#include <boost/json/serialize.hpp>

#include <cmath>

namespace integration {
namespace detail {

std::string json_path(std::string_view parent, std::string_view name) {
    if (parent.empty()) return std::string(name);
    return std::string(parent) + "." + std::string(name);
}

std::string json_path(std::string_view parent, std::size_t index) {
    return std::string(parent) + "[" + std::to_string(index) + "]";
}

error json_type_error(std::string_view path, std::string_view expected) {
    return {errc::invalid_argument, (path.empty() ? std::string("the document") : std::string(path)) +
                                        " must be " + std::string(expected)};
}

}  // namespace detail

result<void> from_json(boost::json::value const& j, std::string& out, std::string_view path) {
    if (!j.is_string()) return detail::json_type_error(path, "a string");
    out = j.get_string();
    return {};
}

result<void> from_json(boost::json::value const& j, bool& out, std::string_view path) {
    if (!j.is_bool()) return detail::json_type_error(path, "true or false");
    out = j.get_bool();
    return {};
}

result<void> from_json(boost::json::value const& j, std::int64_t& out, std::string_view path) {
    if (j.is_int64()) {
        out = j.get_int64();
    } else if (j.is_uint64() && j.get_uint64() <= static_cast<std::uint64_t>(INT64_MAX)) {
        out = static_cast<std::int64_t>(j.get_uint64());
    } else if (j.is_double() && std::trunc(j.get_double()) == j.get_double() && std::abs(j.get_double()) < 9e15) {
        out = static_cast<std::int64_t>(j.get_double());
    } else {
        return detail::json_type_error(path, "an integer");
    }
    return {};
}

result<void> from_json(boost::json::value const& j, int& out, std::string_view path) {
    std::int64_t v;
    if (auto r = from_json(j, v, path); !r) return r;
    if (v < INT32_MIN || v > INT32_MAX) return detail::json_type_error(path, "a 32-bit integer");
    out = static_cast<int>(v);
    return {};
}

result<void> from_json(boost::json::value const& j, double& out, std::string_view path) {
    if (!j.is_number()) return detail::json_type_error(path, "a number");
    out = j.to_number<double>();
    return {};
}

result<void> from_json(boost::json::value const& j, time_point& out, std::string_view path) {
    if (!j.is_string()) return detail::json_type_error(path, "an RFC 3339 timestamp string");
    auto t = parse_time(j.get_string());
    if (!t) return error{errc::invalid_argument, std::string(path) + ": " + t.error().detail()};
    out = *t;
    return {};
}

result<void> from_json(boost::json::value const& j, boost::json::value& out, std::string_view) {
    out = j;
    return {};
}

result<void> from_json(boost::json::value const& j, boost::json::object& out, std::string_view path) {
    if (!j.is_object()) return detail::json_type_error(path, "an object");
    out = j.get_object();
    return {};
}

}  // namespace integration
