#include "convert.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse_options.hpp>
#include <datetime.h>

#include <array>
#include <chrono>
#include <cmath>

namespace integration::python {
namespace {

// Members whose keys the caller chose: never renamed, and nothing in them is read as a time.
bool caller_keys(std::string_view wire_name) {
    static constexpr std::array<std::string_view, 4> names{"configuration", "filter", "data", "headers"};
    for (auto n : names)
        if (n == wire_name) return true;
    return false;
}

bool is_time_key(std::string_view wire_name) {
    return wire_name.size() > 2 && wire_name.substr(wire_name.size() - 2) == "At";
}

}  // namespace

void init_convert() {
    PyDateTime_IMPORT;
    if (!PyDateTimeAPI) throw py::error_already_set();
}

std::string snake_case(std::string_view camel) {
    std::string out;
    out.reserve(camel.size() + 4);
    for (char c : camel) {
        if (c >= 'A' && c <= 'Z') {
            if (!out.empty()) out += '_';
            out += static_cast<char>(c - 'A' + 'a');
        } else {
            out += c;
        }
    }
    return out;
}

std::string camel_case(std::string_view snake) {
    std::string out;
    out.reserve(snake.size());
    bool upper = false;
    for (char c : snake) {
        if (c == '_' && !out.empty()) {
            upper = true;
            continue;
        }
        out += upper && c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
        upper = false;
    }
    return out;
}

std::optional<std::string> wire_name(std::string_view key) {
    auto wire = camel_case(key);
    if (snake_case(wire) != key) return std::nullopt;
    return wire;
}

std::string_view utf8_of(py::handle h, std::string_view what) {
    Py_ssize_t n = 0;
    char const* s = PyUnicode_AsUTF8AndSize(h.ptr(), &n);
    if (!s) {
        PyErr_Clear();
        throw py::value_error(std::string(what) + " is a str that cannot be UTF-8 (it holds a lone surrogate)");
    }
    return {s, static_cast<std::size_t>(n)};
}

py::object to_datetime(time_point t) {
    using namespace std::chrono;
    auto ms = floor<milliseconds>(t);
    auto day = floor<days>(ms);
    year_month_day ymd{day};
    hh_mm_ss<milliseconds> hms{ms - day};
    auto* dt = PyDateTimeAPI->DateTime_FromDateAndTime(
        static_cast<int>(ymd.year()), static_cast<int>(static_cast<unsigned>(ymd.month())),
        static_cast<int>(static_cast<unsigned>(ymd.day())), static_cast<int>(hms.hours().count()),
        static_cast<int>(hms.minutes().count()), static_cast<int>(hms.seconds().count()),
        static_cast<int>(hms.subseconds().count() * 1000), PyDateTime_TimeZone_UTC, PyDateTimeAPI->DateTimeType);
    if (!dt) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(dt);
}

time_point from_datetime(py::handle h, std::string const& what) {
    if (!PyDateTime_Check(h.ptr())) throw py::type_error(what + " must be a datetime");
    // timestamp() reads a naive datetime as local time, as everywhere in Python.
    double seconds = h.attr("timestamp")().cast<double>();
    // The library keeps nanoseconds since 1970 in 64 bits (1677-2262): a datetime past that would wrap.
    if (!(seconds > -9.2e9 && seconds < 9.2e9)) throw py::value_error(what + " must be between the years 1678 and 2261");
    return from_unix_ms(static_cast<std::int64_t>(std::llround(seconds * 1000.0)));
}

PyObject* interned(std::string_view text) {
    PyObject* s = PyUnicode_FromStringAndSize(text.data(), static_cast<Py_ssize_t>(text.size()));
    if (!s) throw py::error_already_set();
    PyUnicode_InternInPlace(&s);
    return s;
}

py::object json_member_to_python(std::string_view name, boost::json::value const& v) {
    return to_python(v, !caller_keys(name));
}

py::object to_python(boost::json::value const& v, bool rename) {
    switch (v.kind()) {
    case boost::json::kind::null: return py::none();
    case boost::json::kind::bool_: return py::bool_(v.get_bool());
    case boost::json::kind::int64: return py::int_(v.get_int64());
    case boost::json::kind::uint64: return py::int_(v.get_uint64());
    case boost::json::kind::double_: return py::float_(v.get_double());
    case boost::json::kind::string: {
        auto const& s = v.get_string();
        return py::str(s.data(), s.size());
    }
    case boost::json::kind::array: {
        auto const& a = v.get_array();
        py::list out(a.size());
        for (std::size_t i = 0; i < a.size(); ++i) out[i] = to_python(a[i], rename);
        return out;
    }
    case boost::json::kind::object: break;
    }
    py::dict out;
    for (auto const& [k, child] : v.get_object()) {
        std::string_view key(k.data(), k.size());
        if (!rename) {
            out[py::str(key.data(), key.size())] = to_python(child, false);
            continue;
        }
        py::object value;
        if (child.is_string() && is_time_key(key)) {
            if (auto t = parse_time(child.get_string())) value = to_datetime(*t);
        }
        if (!value) value = to_python(child, !caller_keys(key));
        out[py::str(snake_case(key))] = std::move(value);
    }
    return out;
}

boost::json::value to_json_value(py::handle h, bool rename, std::string const& what, std::size_t depth) {
    auto* o = h.ptr();
    // The host's JSON parser stops at the same depth; a list that holds itself would otherwise
    // recurse until the stack runs out.
    if (depth > boost::json::parse_options{}.max_depth)
        throw py::value_error(what + " is nested deeper than " + std::to_string(boost::json::parse_options{}.max_depth) +
                              " levels (or contains itself)");
    if (o == Py_None) return nullptr;
    if (PyBool_Check(o)) return o == Py_True;
    if (PyLong_Check(o)) {
        int overflow = 0;
        long long n = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (overflow) throw py::value_error(what + " is too large an integer");
        return static_cast<std::int64_t>(n);
    }
    if (PyFloat_Check(o)) {
        double d = PyFloat_AS_DOUBLE(o);
        if (!std::isfinite(d)) throw py::value_error(what + " is not finite: JSON has no NaN or Infinity");
        return d;
    }
    if (PyUnicode_Check(o)) {
        auto s = utf8_of(h, what);
        return boost::json::string(s.data(), s.size());
    }
    if (PyDateTime_Check(o)) return boost::json::string(format_time(from_datetime(h, what)));
    if (PyDict_Check(o)) {
        boost::json::object out;
        for (auto [k, child] : py::reinterpret_borrow<py::dict>(h)) {
            if (!PyUnicode_Check(k.ptr())) throw py::type_error(what + " keys must be str");
            std::string key(utf8_of(k, what + " key"));
            auto wire = rename ? wire_name(key) : std::optional<std::string>(key);
            if (!wire)
                throw py::type_error(what + ": the key '" + key + "' is not snake_case; spell it '" +
                                     snake_case(camel_case(key)) + "'");
            out[*wire] = to_json_value(child, rename && !caller_keys(*wire), what + "." + key, depth + 1);
        }
        return out;
    }
    if (PyList_Check(o) || PyTuple_Check(o)) {
        boost::json::array out;
        std::size_t i = 0;
        for (auto child : py::reinterpret_borrow<py::sequence>(h))
            out.push_back(to_json_value(child, rename, what + "[" + std::to_string(i++) + "]", depth + 1));
        return out;
    }
    throw py::type_error(what + " must be JSON (None, bool, int, float, str, dict, list or datetime), not " +
                         std::string(Py_TYPE(o)->tp_name));
}

}  // namespace integration::python
