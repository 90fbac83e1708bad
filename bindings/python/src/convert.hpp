#ifndef INTEGRATION_BINDINGS_PYTHON_CONVERT_HPP
#define INTEGRATION_BINDINGS_PYTHON_CONVERT_HPP

// Between the library's JSON (camelCase names, RFC 3339 times) and Python values (snake_case
// keys, aware `datetime`s). Members whose keys belong to the caller (a connection's
// `configuration`, a subscription's `filter`, an event's `data`, `headers`) are copied as they are.

#include <integration/core/time.hpp>

#include <boost/json/value.hpp>
#include <pybind11/pybind11.h>

#include <string>
#include <string_view>

namespace integration::python {

namespace py = pybind11;

/** Imports the datetime C API; called once from the module's init. */
void init_convert();

/** `displayName` → `display_name`. */
std::string snake_case(std::string_view camel);
/** `display_name` → `displayName`. */
std::string camel_case(std::string_view snake);

/** Library JSON to Python; with `rename`, object keys become snake_case and strings under keys
 *  ending in `At` become `datetime`s. */
py::object to_python(boost::json::value const& v, bool rename = true);
/** Python to JSON (`None`, bool, int, float, str, dict with str keys, list, tuple, datetime);
 *  with `rename`, dict keys become camelCase. Anything else is a `TypeError` naming `what`. */
boost::json::value to_json_value(py::handle h, bool rename, std::string const& what);

py::object to_datetime(time_point t);
time_point from_datetime(py::handle h, std::string const& what);

}  // namespace integration::python

#endif
