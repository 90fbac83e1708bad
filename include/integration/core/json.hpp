#ifndef INTEGRATION_CORE_JSON_HPP
#define INTEGRATION_CORE_JSON_HPP

/** @file
 *  JSON mapping with the seed's camelCase names. A struct lists its fields once in
 *  `static auto json_fields()`; `to_json` and `from_json` walk that list, so each name is written
 *  in one place. Optional members are omitted when empty and may be absent on input.
 */

#include <integration/core/time.hpp>
#include <integration/core/enum.hpp>
#include <integration/core/error.hpp>
#include <integration/core/time.hpp>
#include <integration/export.hpp>

#include <boost/json/value.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace integration {

/** One JSON field bound to a data member. */
template <class T, class M>
struct json_field {
    std::string_view name;
    M T::*member;
    bool has_default = false;  ///< Absent (or null) when read: the member keeps its value instead of an error.
};

/** Declares a field for `json_fields()`; reading JSON without it is an error naming it. */
template <class T, class M>
constexpr json_field<T, M> field(std::string_view name, M T::*member) noexcept {
    return {name, member};
}

/** Declares a field that JSON may leave out: reading keeps the member's default (its initializer),
 *  so an optional input with a default value needs no `std::optional`. */
template <class T, class M>
constexpr json_field<T, M> defaulted_field(std::string_view name, M T::*member) noexcept {
    return {name, member, true};
}

/** True for structs that list their JSON fields. */
template <class T>
concept json_described = requires { T::json_fields(); };

namespace detail {

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};

INTEGRATION_EXPORT std::string json_path(std::string_view parent, std::string_view name);
INTEGRATION_EXPORT std::string json_path(std::string_view parent, std::size_t index);
INTEGRATION_EXPORT error json_type_error(std::string_view path, std::string_view expected);

}  // namespace detail

// ---- writing -------------------------------------------------------------------------------

inline boost::json::value to_json(std::string const& v) { return boost::json::value(v); }
inline boost::json::value to_json(bool v) { return boost::json::value(v); }
inline boost::json::value to_json(std::int64_t v) { return boost::json::value(v); }
inline boost::json::value to_json(int v) { return boost::json::value(v); }
inline boost::json::value to_json(double v) { return boost::json::value(v); }
inline boost::json::value to_json(time_point v) { return boost::json::value(format_time(v)); }
inline boost::json::value to_json(boost::json::value const& v) { return v; }
inline boost::json::value to_json(boost::json::object const& v) { return boost::json::value(v); }
template <named_enum E>
boost::json::value to_json(E e) {
    return boost::json::value(to_string(e));
}
template <class T>
boost::json::value to_json(std::vector<T> const& v);
template <json_described T>
boost::json::value to_json(T const& v);

template <class T>
boost::json::value to_json(std::vector<T> const& v) {
    boost::json::array a;
    a.reserve(v.size());
    for (auto const& e : v) a.push_back(to_json(e));
    return a;
}

/** Writes the listed fields of `v` into `out`. */
template <json_described T>
void write_fields(boost::json::object& out, T const& v) {
    std::apply(
        [&](auto const&... f) {
            (
                [&] {
                    auto const& m = v.*(f.member);
                    using M = std::remove_cvref_t<decltype(m)>;
                    if constexpr (detail::is_optional<M>::value) {
                        if (m) out[f.name] = to_json(*m);
                    } else {
                        out[f.name] = to_json(m);
                    }
                }(),
                ...);
        },
        T::json_fields());
}

template <json_described T>
boost::json::value to_json(T const& v) {
    boost::json::object o;
    write_fields(o, v);
    return o;
}

// ---- reading -------------------------------------------------------------------------------

INTEGRATION_EXPORT result<void> from_json(boost::json::value const& j, std::string& out, std::string_view path);
INTEGRATION_EXPORT result<void> from_json(boost::json::value const& j, bool& out, std::string_view path);
INTEGRATION_EXPORT result<void> from_json(boost::json::value const& j, std::int64_t& out, std::string_view path);
INTEGRATION_EXPORT result<void> from_json(boost::json::value const& j, int& out, std::string_view path);
INTEGRATION_EXPORT result<void> from_json(boost::json::value const& j, double& out, std::string_view path);
INTEGRATION_EXPORT result<void> from_json(boost::json::value const& j, time_point& out, std::string_view path);
INTEGRATION_EXPORT result<void> from_json(boost::json::value const& j, boost::json::value& out, std::string_view path);
INTEGRATION_EXPORT result<void> from_json(boost::json::value const& j, boost::json::object& out, std::string_view path);
template <named_enum E>
result<void> from_json(boost::json::value const& j, E& out, std::string_view path) {
    if (!j.is_string()) return detail::json_type_error(path, "a string");
    auto r = parse_enum<E>(j.get_string(), path);
    if (!r) return r.error();
    out = *r;
    return {};
}
template <class T>
result<void> from_json(boost::json::value const& j, std::vector<T>& out, std::string_view path);
template <json_described T>
result<void> from_json(boost::json::value const& j, T& out, std::string_view path);

template <class T>
result<void> from_json(boost::json::value const& j, std::vector<T>& out, std::string_view path) {
    if (!j.is_array()) return detail::json_type_error(path, "an array");
    out.clear();
    out.reserve(j.get_array().size());
    std::size_t i = 0;
    for (auto const& e : j.get_array()) {
        T item{};
        if (auto r = from_json(e, item, detail::json_path(path, i++)); !r) return r;
        out.push_back(std::move(item));
    }
    return {};
}

/** Reads the listed fields of `T` from `o`; absent required fields are an error naming them. */
template <json_described T>
result<void> read_fields(boost::json::object const& o, T& out, std::string_view path) {
    result<void> status;
    std::apply(
        [&](auto const&... f) {
            (
                [&] {
                    if (!status) return;
                    auto& m = out.*(f.member);
                    using M = std::remove_cvref_t<decltype(m)>;
                    auto const* j = o.if_contains(f.name);
                    std::string p = detail::json_path(path, f.name);
                    if (!j || j->is_null()) {
                        if constexpr (detail::is_optional<M>::value)
                            m.reset();
                        else if (!f.has_default)
                            status = error{errc::invalid_argument, p + " is required"};
                        return;
                    }
                    if constexpr (detail::is_optional<M>::value) {
                        typename M::value_type inner{};
                        status = from_json(*j, inner, p);
                        if (status) m = std::move(inner);
                    } else {
                        status = from_json(*j, m, p);
                    }
                }(),
                ...);
        },
        T::json_fields());
    return status;
}

template <json_described T>
result<void> from_json(boost::json::value const& j, T& out, std::string_view path) {
    if (!j.is_object()) return detail::json_type_error(path, "an object");
    return read_fields(j.get_object(), out, path);
}

/** What `value_from_json` does with a member no field of the struct names. */
enum class unknown_members {
    ignore,  ///< Skipped: stored data written by a later version still reads.
    refuse,  ///< An error naming it: a caller's misspelt field (`scope` for `scopes`) is not silently dropped.
};

namespace detail {

template <class T>
struct is_vector : std::false_type {};
template <class T, class A>
struct is_vector<std::vector<T, A>> : std::true_type {};

/** The path of the first member of `j`, at any depth, that no field of `T` names; empty if none.
 *  Only shapes `from_json` reads are walked: a value of another type is refused there. */
template <class T>
std::string unknown_member(boost::json::value const& j, std::string_view path) {
    if constexpr (is_optional<T>::value || is_vector<T>::value) {
        using E = typename T::value_type;
        if constexpr (is_optional<T>::value) return unknown_member<E>(j, path);
        else if (j.is_array())
            for (std::size_t i = 0; i < j.get_array().size(); ++i)
                if (auto p = unknown_member<E>(j.get_array()[i], json_path(path, i)); !p.empty()) return p;
    } else if constexpr (json_described<T>) {
        if (!j.is_object()) return {};
        for (auto const& [name, v] : j.get_object()) {
            auto p = json_path(path, name);
            bool known = false;
            std::apply(
                [&](auto const&... f) {
                    (
                        [&] {
                            if (known || f.name != std::string_view(name)) return;
                            known = true;
                            p = unknown_member<std::remove_cvref_t<decltype(std::declval<T&>().*(f.member))>>(v, p);
                        }(),
                        ...);
                },
                T::json_fields());
            if (!known || !p.empty()) return p;
        }
    }
    return {};
}

}  // namespace detail

/** Parses a described struct from JSON; errors name the offending field path. */
template <json_described T>
result<T> value_from_json(boost::json::value const& j, unknown_members unknown = unknown_members::ignore) {
    T out{};
    if (auto r = from_json(j, out, ""); !r) return r.error();
    if (unknown == unknown_members::refuse)
        if (auto p = detail::unknown_member<T>(j, ""); !p.empty())
            return error{errc::invalid_argument, p + " is not a field here; check its spelling"};
    return out;
}

}  // namespace integration

#endif
