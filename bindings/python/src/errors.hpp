#ifndef INTEGRATION_BINDINGS_PYTHON_ERRORS_HPP
#define INTEGRATION_BINDINGS_PYTHON_ERRORS_HPP

// Library errors in Python: `integration.Error` and a subclass of it per `errc` carrying the
// error code, raised from a failed `result` through `unwrap`; `guarded` is how an entry point
// written against the C API (no pybind11 dispatch) turns any C++ exception into a Python one.

#include <integration/core/error.hpp>

#include <pybind11/pybind11.h>

#include <exception>
#include <type_traits>
#include <utility>

namespace integration::python {

namespace py = pybind11;

/** A library error on its way to Python. */
struct library_error {
    error e;
};

template <class T>
T unwrap(result<T> r) {
    if (!r) throw library_error{r.error()};
    return std::move(*r);
}
inline void unwrap(result<void> r) {
    if (!r) throw library_error{r.error()};
}

/** Creates the error classes in `m` and registers `library_error`'s translation for pybind11's
 *  dispatch; called once from the module's init. */
void add_error_classes(py::module_& m);

/** Sets the Python error that `e` stands for (the class of its code). */
void raise(error const& e);

/** Runs the body of a C entry point (a type slot, a METH_FASTCALL method): a C++ exception
 *  becomes the Python error it stands for, and the entry point returns `failed`. */
template <class F, class R = std::invoke_result_t<F>>
R guarded(F&& f, std::type_identity_t<R> failed) noexcept {
    try {
        return f();
    } catch (library_error const& e) {
        // Making the error object can fail too (no memory, a class whose __init__ was replaced):
        // nothing may leave a noexcept entry point.
        try {
            raise(e.e);
        } catch (py::error_already_set& x) {
            x.restore();
        } catch (...) {
            PyErr_SetString(PyExc_RuntimeError, "integration: the library's error could not be raised");
        }
    } catch (py::error_already_set& e) {
        e.restore();
    } catch (py::builtin_exception const& e) {
        e.set_error();
    } catch (std::exception const& e) {
        PyErr_SetString(PyExc_RuntimeError, e.what());
    }
    return failed;
}

}  // namespace integration::python

#endif
