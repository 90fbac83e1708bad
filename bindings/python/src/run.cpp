#include "run.hpp"

#include "convert.hpp"

#include <array>
#include <cstddef>
#include <new>
#include <tuple>
#include <type_traits>

namespace integration::python {
namespace {

using runs::run_data;

// The keys in the order the dict had them: the run's described fields (an empty optional is no
// key), `metadata`, then what only `execute` returns.
constexpr std::size_t field_count = std::tuple_size_v<decltype(run_data::json_fields())>;
constexpr std::size_t key_metadata = field_count;
constexpr std::size_t key_response = field_count + 1;
constexpr std::size_t key_failure_id = field_count + 2;
constexpr std::size_t key_replayed = field_count + 3;
constexpr std::size_t key_count = field_count + 4;

struct run_object {
    PyObject_HEAD
    runs::run_outcome outcome;
    bool executed;  // from `execute`: `response`, `failure_id` and `replayed` are keys too
};

run_object const& as_run(PyObject* self) { return *reinterpret_cast<run_object const*>(self); }

// Made at import and kept for the life of the process (never decref'd at exit), as the module's
// error classes.
PyTypeObject* run_type = nullptr;
std::array<PyObject*, key_count> keys{};  // interned: a literal key in Python code is the same object
PyObject* response_status = nullptr;
PyObject* response_headers = nullptr;
PyObject* response_body = nullptr;
PyObject* keys_view = nullptr;  // collections.abc's views, as any Mapping has them
PyObject* items_view = nullptr;
PyObject* values_view = nullptr;
PyObject* mapping_abc = nullptr;

/** Runs the body of one of the type's C slots: a C++ exception becomes the Python error it
 *  stands for, and the slot returns `failed`. */
template <class F, class R = std::invoke_result_t<F>>
R guarded(F&& f, R failed) noexcept {
    try {
        return f();
    } catch (py::error_already_set& e) {
        e.restore();
    } catch (py::builtin_exception const& e) {
        e.set_error();
    } catch (std::exception const& e) {
        PyErr_SetString(PyExc_RuntimeError, e.what());
    }
    return failed;
}

/** Calls `f(name, member)` with the `i`-th described field of `d`. */
template <class F>
void with_field(run_data const& d, std::size_t i, F&& f) {
    std::size_t at = 0;
    std::apply([&](auto const&... field) { ((at++ == i ? f(field.name, d.*(field.member)) : void()), ...); },
               run_data::json_fields());
}

template <class M>
constexpr bool is_optional_v = detail::is_optional<std::remove_cvref_t<M>>::value;

bool present(run_object const& r, std::size_t i) {
    if (i < field_count) {
        bool set = true;
        with_field(r.outcome.run.data(), i, [&](std::string_view, auto const& m) {
            if constexpr (is_optional_v<decltype(m)>) set = m.has_value();
        });
        return set;
    }
    return i == key_metadata || r.executed;
}

py::object response_to_python(http::response const& response) {
    py::dict headers;
    for (auto const& [k, v] : response.headers) headers[py::str(k)] = py::str(v);
    py::dict out;
    out[response_status] = py::int_(response.status);
    out[response_headers] = std::move(headers);
    out[response_body] = py::bytes(response.body);
    return out;
}

/** The value under key `i`, built now (each read builds its own: nothing is shared between reads,
 *  so a caller changing what it read changes nothing in the run). */
py::object value(run_object const& r, std::size_t i) {
    auto const& out = r.outcome;
    if (i < field_count) {
        py::object v;
        with_field(out.run.data(), i, [&](std::string_view name, auto const& m) {
            if constexpr (is_optional_v<decltype(m)>)
                v = member_to_python(name, *m);
            else
                v = member_to_python(name, m);
        });
        return v;
    }
    switch (i) {
    case key_metadata: return typed_to_python(out.run.meta());
    case key_response: return out.response ? response_to_python(*out.response) : py::none();
    case key_failure_id: return out.failure_id ? py::object(py::str(*out.failure_id)) : py::none();
    default: return py::bool_(out.replayed);
    }
}

/** The index of `key` when the run has it, else `key_count`; as for a dict, an unhashable key
 *  is a `TypeError`. */
std::size_t lookup(run_object const& r, PyObject* key) {
    std::size_t i = 0;
    while (i < key_count && key != keys[i]) ++i;
    if (i == key_count) {
        if (!PyUnicode_Check(key)) {
            if (PyObject_Hash(key) == -1) throw py::error_already_set();
            return key_count;
        }
        i = 0;  // a str made at run time
        while (i < key_count && PyUnicode_Compare(key, keys[i]) != 0) ++i;
        if (i == key_count) return key_count;
    }
    return present(r, i) ? i : key_count;
}

py::dict to_dict(run_object const& r) {
    py::dict d;
    for (std::size_t i = 0; i < key_count; ++i)
        if (present(r, i)) d[keys[i]] = value(r, i);
    return d;
}

// ---- the slots ---------------------------------------------------------------------------------

void run_dealloc(PyObject* self) {
    auto* type = Py_TYPE(self);
    reinterpret_cast<run_object*>(self)->outcome.~run_outcome();
    type->tp_free(self);
    Py_DECREF(type);  // a heap type's instances hold a reference to it
}

PyObject* run_getitem(PyObject* self, PyObject* key) {
    return guarded([&]() -> PyObject* {
        auto const& r = as_run(self);
        auto i = lookup(r, key);
        if (i == key_count) {
            // As a dict raises it: the key as the only argument, even when it is a tuple.
            auto args = py::make_tuple(py::handle(key));
            PyErr_SetObject(PyExc_KeyError, args.ptr());
            return nullptr;
        }
        return value(r, i).release().ptr();
    }, static_cast<PyObject*>(nullptr));
}

Py_ssize_t run_length(PyObject* self) {
    Py_ssize_t n = 0;
    for (std::size_t i = 0; i < key_count; ++i) n += present(as_run(self), i);
    return n;
}

int run_contains(PyObject* self, PyObject* key) {
    return guarded([&] { return lookup(as_run(self), key) == key_count ? 0 : 1; }, -1);
}

PyObject* run_iter(PyObject* self) {
    return guarded([&]() -> PyObject* {
        auto const& r = as_run(self);
        py::list present_keys;
        for (std::size_t i = 0; i < key_count; ++i)
            if (present(r, i)) present_keys.append(py::handle(keys[i]));
        return PyObject_GetIter(present_keys.ptr());
    }, static_cast<PyObject*>(nullptr));
}

/** `==` and `!=` against another Run or any mapping (a dict with the same content is equal). */
PyObject* run_richcompare(PyObject* self, PyObject* other, int op) {
    return guarded([&]() -> PyObject* {
        if (op != Py_EQ && op != Py_NE) Py_RETURN_NOTIMPLEMENTED;
        py::object theirs;
        if (Py_TYPE(other) == run_type) {
            theirs = to_dict(as_run(other));
        } else if (PyDict_Check(other)) {
            theirs = py::reinterpret_borrow<py::object>(other);
        } else {
            int mapping = PyObject_IsInstance(other, mapping_abc);
            if (mapping < 0) throw py::error_already_set();
            if (!mapping) Py_RETURN_NOTIMPLEMENTED;
            theirs = py::dict(py::reinterpret_borrow<py::object>(other));
        }
        return PyObject_RichCompare(to_dict(as_run(self)).ptr(), theirs.ptr(), op);
    }, static_cast<PyObject*>(nullptr));
}

PyObject* run_repr(PyObject* self) {
    return guarded([&] { return PyUnicode_FromFormat("integration.Run(%R)", to_dict(as_run(self)).ptr()); },
                   static_cast<PyObject*>(nullptr));
}

PyObject* run_get(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    return guarded([&]() -> PyObject* {
        if (nargs < 1 || nargs > 2)
            throw py::type_error("get expected 1 or 2 arguments, got " + std::to_string(nargs));
        auto const& r = as_run(self);
        auto i = lookup(r, args[0]);
        if (i != key_count) return value(r, i).release().ptr();
        PyObject* fallback = nargs == 2 ? args[1] : Py_None;
        Py_INCREF(fallback);
        return fallback;
    }, static_cast<PyObject*>(nullptr));
}

PyObject* run_keys(PyObject* self, PyObject*) { return PyObject_CallOneArg(keys_view, self); }
PyObject* run_items(PyObject* self, PyObject*) { return PyObject_CallOneArg(items_view, self); }
PyObject* run_values(PyObject* self, PyObject*) { return PyObject_CallOneArg(values_view, self); }

template <class F>
PyCFunction c_function(F* f) {
    return reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(f));
}

template <class F>
void* slot(F* f) {
    return reinterpret_cast<void*>(f);
}

PyMethodDef run_methods[] = {
    {"get", c_function(&run_get), METH_FASTCALL, "get($self, key, default=None, /)\n--\n\nThe value of key if the run has it, else default."},
    {"keys", c_function(&run_keys), METH_NOARGS, "keys($self, /)\n--\n\nThe keys, as a KeysView."},
    {"items", c_function(&run_items), METH_NOARGS, "items($self, /)\n--\n\nThe (key, value) pairs, as an ItemsView."},
    {"values", c_function(&run_values), METH_NOARGS, "values($self, /)\n--\n\nThe values, as a ValuesView."},
    {nullptr, nullptr, 0, nullptr}};

char const run_doc[] =
    "A governed run, as a read-only mapping (collections.abc.Mapping) with the keys and values of the "
    "dict the module returned before: the run's snake_case fields, `datetime`s, `metadata`, and from "
    "execute() `response`, `failure_id` and `replayed`. It owns its data (readable after the platform is "
    "closed) and builds each value when it is read; dict(run) is a plain dict of it.";

PyType_Slot run_slots[] = {
    {Py_tp_dealloc, slot(&run_dealloc)},
    {Py_tp_repr, slot(&run_repr)},
    {Py_tp_hash, slot(&PyObject_HashNotImplemented)},
    {Py_tp_iter, slot(&run_iter)},
    {Py_tp_richcompare, slot(&run_richcompare)},
    {Py_tp_methods, run_methods},
    {Py_tp_doc, const_cast<char*>(run_doc)},
    {Py_mp_subscript, slot(&run_getitem)},
    {Py_mp_length, slot(&run_length)},
    {Py_sq_length, slot(&run_length)},
    {Py_sq_contains, slot(&run_contains)},
    {0, nullptr}};

#ifdef Py_TPFLAGS_DISALLOW_INSTANTIATION
constexpr unsigned long run_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION;
#else
constexpr unsigned long run_flags = Py_TPFLAGS_DEFAULT;
#endif

PyType_Spec run_spec{"integration.Run", static_cast<int>(sizeof(run_object)), 0, static_cast<unsigned int>(run_flags),
                     run_slots};

py::object make_run(runs::run_outcome outcome, bool executed) {
    PyObject* self = run_type->tp_alloc(run_type, 0);
    if (!self) throw py::error_already_set();
    auto* r = reinterpret_cast<run_object*>(self);
    new (&r->outcome) runs::run_outcome(std::move(outcome));
    r->executed = executed;
    return py::reinterpret_steal<py::object>(self);
}

}  // namespace

void add_run_class(py::module_& m) {
    std::size_t at = 0;
    std::apply([&](auto const&... f) { ((keys[at++] = interned(snake_case(f.name))), ...); }, run_data::json_fields());
    keys[key_metadata] = interned("metadata");
    keys[key_response] = interned("response");
    keys[key_failure_id] = interned("failure_id");
    keys[key_replayed] = interned("replayed");
    response_status = interned("status");
    response_headers = interned("headers");
    response_body = interned("body");

    auto* type = PyType_FromSpec(&run_spec);
    if (!type) throw py::error_already_set();
    run_type = reinterpret_cast<PyTypeObject*>(type);
#ifndef Py_TPFLAGS_DISALLOW_INSTANTIATION
    run_type->tp_new = nullptr;  // made by the module only
#endif
    auto abc = py::module_::import("collections.abc");
    keys_view = py::object(abc.attr("KeysView")).release().ptr();
    items_view = py::object(abc.attr("ItemsView")).release().ptr();
    values_view = py::object(abc.attr("ValuesView")).release().ptr();
    mapping_abc = py::object(abc.attr("Mapping")).release().ptr();
    abc.attr("Mapping").attr("register")(py::handle(type));
    m.attr("Run") = py::handle(type);
}

py::object run_to_python(runs::integration_run run) {
    return make_run(runs::run_outcome{.run = std::move(run)}, false);
}

py::object run_to_python(runs::run_outcome outcome) { return make_run(std::move(outcome), true); }

}  // namespace integration::python
