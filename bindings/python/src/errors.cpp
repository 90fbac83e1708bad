#include "errors.hpp"

#include <array>
#include <string>

namespace integration::python {
namespace {

// The exception class of each `errc`, in the enumeration's order (errc values start at 1).
struct error_kind {
    char const* code;
    char const* class_name;
    PyObject* extra_base;  // a built-in exception it also is, or null
};

std::array<error_kind, 22> error_kinds() {
    return {{{"invalid_argument", "InvalidArgument", PyExc_ValueError},
             {"invalid_state", "InvalidState", nullptr},
             {"invariant_violation", "InvariantViolation", nullptr},
             {"not_found", "NotFound", PyExc_LookupError},
             {"already_exists", "AlreadyExists", nullptr},
             {"conflict", "Conflict", nullptr},
             {"forbidden", "Forbidden", PyExc_PermissionError},
             {"storage_failure", "StorageFailure", nullptr},
             {"storage_busy", "StorageBusy", nullptr},
             {"schema_too_new", "SchemaTooNew", nullptr},
             {"database_missing", "DatabaseMissing", nullptr},
             {"unavailable", "Unavailable", nullptr},
             {"secret_store_failure", "SecretStoreFailure", nullptr},
             {"integrity_failure", "IntegrityFailure", nullptr},
             {"egress_denied", "EgressDenied", nullptr},
             {"timeout", "Timeout", PyExc_TimeoutError},
             {"cancelled", "Cancelled", nullptr},
             {"verification_failed", "VerificationFailed", nullptr},
             {"in_progress", "InProgress", nullptr},
             {"scope_not_granted", "ScopeNotGranted", nullptr},
             {"connection_lost", "ConnectionLost", PyExc_ConnectionError},
             {"idempotency_key_reused", "IdempotencyKeyReused", nullptr}}};
}

// Created once at import and kept for the life of the process (never decref'd at exit).
PyObject* error_base = nullptr;
std::array<PyObject*, 22> error_classes{};

}  // namespace

void add_error_classes(py::module_& m) {
    error_base = PyErr_NewExceptionWithDoc(
        "integration.Error",
        "An error of the library: `code` is its error code name (e.g. 'not_found'), `detail` says what "
        "went wrong and what to do; str() is the category message and the detail.",
        PyExc_Exception, nullptr);
    if (!error_base) throw py::error_already_set();
    PyObject_SetAttrString(error_base, "code", py::str("unknown").ptr());
    m.attr("Error") = py::handle(error_base);
    auto kinds = error_kinds();
    for (std::size_t i = 0; i < kinds.size(); ++i) {
        auto const& k = kinds[i];
        py::tuple bases = k.extra_base ? py::make_tuple(py::handle(error_base), py::handle(k.extra_base))
                                       : py::make_tuple(py::handle(error_base));
        auto name = std::string("integration.") + k.class_name;
        auto* cls = PyErr_NewException(name.c_str(), bases.ptr(), nullptr);
        if (!cls) throw py::error_already_set();
        PyObject_SetAttrString(cls, "code", py::str(k.code).ptr());
        error_classes[i] = cls;
        m.attr(k.class_name) = py::handle(cls);
    }
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (library_error const& e) {
            raise(e.e);
        }
    });
}

void raise(error const& e) {
    PyObject* cls = error_base;
    std::string code = "unknown";
    auto const value = static_cast<std::size_t>(e.code().value());
    if (e.code().category() == integration_category() && value >= 1 && value <= error_classes.size()) {
        cls = error_classes[value - 1];
        code = error_kinds()[value - 1].code;
    }
    // A message may repeat a caller's bytes (an id given as bytes): not UTF-8, it would raise
    // UnicodeDecodeError here instead of the error, or end the process where raising must not throw.
    auto text = [](std::string const& s) {
        return py::reinterpret_steal<py::object>(PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace"));
    };
    py::object instance = py::reinterpret_borrow<py::object>(cls)(text(e.message()));
    instance.attr("code") = code;
    instance.attr("detail") = text(e.detail());
    PyErr_SetObject(cls, instance.ptr());
}

}  // namespace integration::python
