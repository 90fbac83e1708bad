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

namespace {

error out_of_range(std::string_view path, std::string_view range) {
    return {errc::invalid_argument, (path.empty() ? std::string("the document") : std::string(path)) +
                                        " is out of range: it must be " + std::string(range)};
}

enum class integral { ok, not_an_integer, too_large };

// Boost.JSON reads an integer past 64 bits as a double, and one past a double as infinity: such a
// number is too large, not of the wrong kind.
integral to_int64(boost::json::value const& j, std::int64_t& out) {
    if (j.is_int64()) {
        out = j.get_int64();
    } else if (j.is_uint64()) {
        if (j.get_uint64() > static_cast<std::uint64_t>(INT64_MAX)) return integral::too_large;
        out = static_cast<std::int64_t>(j.get_uint64());
    } else if (j.is_double() && std::trunc(j.get_double()) == j.get_double()) {  // infinity included
        if (std::abs(j.get_double()) >= 9e15) return integral::too_large;
        out = static_cast<std::int64_t>(j.get_double());
    } else {
        return integral::not_an_integer;
    }
    return integral::ok;
}

}  // namespace

result<void> from_json(boost::json::value const& j, std::int64_t& out, std::string_view path) {
    switch (to_int64(j, out)) {
        case integral::ok:
            return {};
        case integral::too_large:
            return out_of_range(path, "a 64-bit integer");
        case integral::not_an_integer:
            break;
    }
    return detail::json_type_error(path, "an integer");
}

result<void> from_json(boost::json::value const& j, int& out, std::string_view path) {
    std::int64_t v = 0;
    auto kind = to_int64(j, v);
    if (kind == integral::not_an_integer) return detail::json_type_error(path, "an integer");
    if (kind == integral::too_large || v < INT32_MIN || v > INT32_MAX) return out_of_range(path, "a 32-bit integer");
    out = static_cast<int>(v);
    return {};
}

result<void> from_json(boost::json::value const& j, double& out, std::string_view path) {
    if (!j.is_number()) return detail::json_type_error(path, "a number");
    out = j.to_number<double>();
    if (!std::isfinite(out)) return out_of_range(path, "a finite 64-bit float");
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
