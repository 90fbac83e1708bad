#ifndef INTEGRATION_BINDINGS_PYTHON_CONVERT_HPP
#define INTEGRATION_BINDINGS_PYTHON_CONVERT_HPP

// Between the library's JSON (camelCase names, RFC 3339 times) and Python values (snake_case
// keys, aware `datetime`s). Members whose keys belong to the caller (a connection's
// `configuration`, a subscription's `filter`, an event's `data`, `headers`) are copied as they are.

#include <integration/core/json.hpp>
#include <integration/core/time.hpp>

#include <boost/json/value.hpp>
#include <pybind11/pybind11.h>

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

namespace integration::python {

namespace py = pybind11;

/** Imports the datetime C API; called once from the module's init. */
void init_convert();

/** `displayName` → `display_name`. */
std::string snake_case(std::string_view camel);
/** `display_name` → `displayName`. */
std::string camel_case(std::string_view snake);
/** The camelCase wire name of the snake_case `key`; none when `key` is not how `snake_case`
 *  spells it (`displayName`, `display_name_`), which beside its twin (`display_name`) would
 *  silently win. */
std::optional<std::string> wire_name(std::string_view key);

/** The UTF-8 of the `str` `h` (owned by it). A lone surrogate is a ValueError naming `what` that
 *  does not repeat the text, which Python's UnicodeEncodeError would (a token, a secret). */
std::string_view utf8_of(py::handle h, std::string_view what);

/** Library JSON to Python; with `rename`, object keys become snake_case and strings under keys
 *  ending in `At` become `datetime`s. */
py::object to_python(boost::json::value const& v, bool rename = true);
/** Python to JSON (`None`, bool, int, float, str, dict with str keys, list, tuple, datetime);
 *  with `rename`, dict keys become camelCase, and a key `wire_name` refuses is a `TypeError`.
 *  Anything else is a `TypeError` naming `what`; NaN, infinities, a str that cannot be UTF-8
 *  and nesting past the host's parser depth (a list holding itself) are `ValueError`s. */
boost::json::value to_json_value(py::handle h, bool rename, std::string const& what, std::size_t depth = 0);

py::object to_datetime(time_point t);
time_point from_datetime(py::handle h, std::string const& what);

/** A new reference to the interned Python str of `text`. Call with the GIL held. */
PyObject* interned(std::string_view text);
/** A JSON member of a described struct as `to_python` renders it inside the library's JSON: the
 *  keys of caller-keyed members (`configuration`, `filter`, `data`, `headers`) as they are. */
py::object json_member_to_python(std::string_view name, boost::json::value const& v);

// Described structs straight to Python, field by field, as `to_python(to_json(v))` would give
// them, without building the JSON first (what each result of the module costs).
inline py::object typed_to_python(std::string const& v) { return py::str(v); }
inline py::object typed_to_python(bool v) { return py::bool_(v); }
inline py::object typed_to_python(std::int64_t v) { return py::int_(v); }
inline py::object typed_to_python(int v) { return py::int_(v); }
inline py::object typed_to_python(double v) { return py::float_(v); }
inline py::object typed_to_python(time_point v) { return to_datetime(v); }
template <named_enum E>
py::object typed_to_python(E e) {
    // Made once per enumeration and kept for the life of the process.
    static auto const names = [] {
        auto const& values = enum_names<E>::values;
        std::array<PyObject*, std::tuple_size_v<std::remove_cvref_t<decltype(values)>>> out{};
        for (std::size_t i = 0; i < out.size(); ++i) out[i] = interned(values[i]);
        return out;
    }();
    return py::reinterpret_borrow<py::object>(names.at(static_cast<std::size_t>(e)));
}
template <class T>
py::object typed_to_python(std::vector<T> const& v);
template <json_described T>
py::object typed_to_python(T const& v);

template <class V>
py::object member_to_python(std::string_view name, V const& value) {
    if constexpr (std::is_same_v<V, boost::json::value>)
        return json_member_to_python(name, value);
    else if constexpr (std::is_same_v<V, boost::json::object>)
        return json_member_to_python(name, boost::json::value(value));
    else
        return typed_to_python(value);
}

/** One member under `key`; an empty optional is left out, as `write_fields` does. */
template <class M>
void put_member(py::dict& out, PyObject* key, std::string_view name, M const& m) {
    py::object o;
    if constexpr (detail::is_optional<M>::value) {
        if (!m) return;
        o = member_to_python(name, *m);
    } else {
        o = member_to_python(name, m);
    }
    if (PyDict_SetItem(out.ptr(), key, o.ptr()) != 0) throw py::error_already_set();
}

/** The listed fields of `v` into `out`. */
template <json_described T>
void fields_to_python(py::dict& out, T const& v) {
    // The snake_case keys, made once per struct and kept for the life of the process.
    static auto const keys = std::apply(
        [](auto const&... f) { return std::array<PyObject*, sizeof...(f)>{interned(snake_case(f.name))...}; },
        T::json_fields());
    std::size_t index = 0;
    std::apply([&](auto const&... f) { (put_member(out, keys[index++], f.name, v.*(f.member)), ...); },
               T::json_fields());
}

template <class T>
py::object typed_to_python(std::vector<T> const& v) {
    py::list out(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) out[i] = typed_to_python(v[i]);
    return out;
}

template <json_described T>
py::object typed_to_python(T const& v) {
    py::dict out;
    fields_to_python(out, v);
    return out;
}

}  // namespace integration::python

#endif
