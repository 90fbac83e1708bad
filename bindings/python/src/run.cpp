#include "run.hpp"

#include "convert.hpp"
#include "errors.hpp"

#include <array>
#include <cstddef>
#include <new>
#include <span>
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

// The machinery every lazy mapping type here shares: an object starts with a `mapping_head`
// whose `kind` says which keys it has and how each value is built; the slots below are generic.
struct mapping_kind {
    char const* repr_prefix;                              // "integration.Run(" ...
    std::span<PyObject* const> keys;                      // in the order the dict had them
    bool (*present)(PyObject* self, std::size_t i);       // does the object have key `i`
    py::object (*value)(PyObject* self, std::size_t i);  // the value under key `i`, built now
    void (*destroy)(PyObject* self);                      // ends the object's C++ members
};

struct mapping_head {
    PyObject_HEAD
    mapping_kind const* kind;
};

mapping_kind const& kind_of(PyObject* self) { return *reinterpret_cast<mapping_head const*>(self)->kind; }

struct run_object {
    mapping_head head;
    runs::run_outcome outcome;
    bool executed;  // from `execute`: `response`, `failure_id` and `replayed` are keys too
};

/** A run's `response`: it reads the vendor's answer from the run it came from, which it keeps
 *  alive, so making one copies nothing. */
struct response_object {
    mapping_head head;
    PyObject* run;  // a strong reference
    http::response const* response;
};

run_object const& as_run(PyObject* self) { return *reinterpret_cast<run_object const*>(self); }
http::response const& as_response(PyObject* self) { return *reinterpret_cast<response_object const*>(self)->response; }

// Made at import and kept for the life of the process (never decref'd at exit), as the module's
// error classes.
PyTypeObject* run_type = nullptr;
PyTypeObject* response_type = nullptr;
std::array<PyObject*, key_count> keys{};  // interned: a literal key in Python code is the same object
std::array<PyObject*, 3> response_keys{};  // status, headers, body
PyObject* keys_view = nullptr;  // collections.abc's views, as any Mapping has them
PyObject* items_view = nullptr;
PyObject* values_view = nullptr;
PyObject* mapping_abc = nullptr;

bool is_lazy_mapping(PyObject* o) { return Py_TYPE(o) == run_type || Py_TYPE(o) == response_type; }

/** Calls `f(name, member)` with the `i`-th described field of `d`. */
template <class F>
void with_field(run_data const& d, std::size_t i, F&& f) {
    std::size_t at = 0;
    std::apply([&](auto const&... field) { ((at++ == i ? f(field.name, d.*(field.member)) : void()), ...); },
               run_data::json_fields());
}

template <class M>
constexpr bool is_optional_v = detail::is_optional<std::remove_cvref_t<M>>::value;

bool run_present(PyObject* self, std::size_t i) {
    auto const& r = as_run(self);
    if (i < field_count) {
        bool set = true;
        with_field(r.outcome.run.data(), i, [&](std::string_view, auto const& m) {
            if constexpr (is_optional_v<decltype(m)>) set = m.has_value();
        });
        return set;
    }
    return i == key_metadata || r.executed;
}

py::object make_response(PyObject* run, http::response const& response);

/** The value under key `i`, built now (each read builds its own: nothing is shared between reads,
 *  so a caller changing what it read changes nothing in the run). */
py::object run_value(PyObject* self, std::size_t i) {
    auto const& out = as_run(self).outcome;
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
    case key_response: return out.response ? make_response(self, *out.response) : py::none();
    case key_failure_id: return out.failure_id ? py::object(py::str(*out.failure_id)) : py::none();
    default: return py::bool_(out.replayed);
    }
}

void run_destroy(PyObject* self) { reinterpret_cast<run_object*>(self)->outcome.~run_outcome(); }

bool response_present(PyObject*, std::size_t) { return true; }

py::object response_value(PyObject* self, std::size_t i) {
    auto const& response = as_response(self);
    switch (i) {
    case 0: return py::int_(response.status);
    case 1: {
        py::dict headers;
        // Header fields are bytes on the wire: UTF-8 text as it is, and bytes that are not UTF-8
        // (a Latin-1 file name) as Latin-1, as Python's http.client reads them, so that every
        // one can be read.
        auto text = [](std::string const& s) {
            auto const n = static_cast<Py_ssize_t>(s.size());
            auto* o = PyUnicode_DecodeUTF8(s.data(), n, "strict");
            if (!o) {
                PyErr_Clear();
                o = PyUnicode_DecodeLatin1(s.data(), n, nullptr);
            }
            return py::reinterpret_steal<py::str>(o);
        };
        for (auto const& [k, v] : http::combined_headers(response.headers)) headers[text(k)] = text(v);
        return headers;
    }
    default: return py::bytes(response.body);
    }
}

void response_destroy(PyObject* self) { Py_DECREF(reinterpret_cast<response_object*>(self)->run); }

mapping_kind const run_kind{"integration.Run(", keys, &run_present, &run_value, &run_destroy};
mapping_kind const response_kind{"integration.Response(", response_keys, &response_present, &response_value,
                                 &response_destroy};

/** The index of `key` when the object has it, else `keys.size()`; as for a dict, an unhashable
 *  key is a `TypeError`. */
std::size_t lookup(PyObject* self, PyObject* key) {
    auto const& kind = kind_of(self);
    auto const count = kind.keys.size();
    std::size_t i = 0;
    while (i < count && key != kind.keys[i]) ++i;
    if (i == count) {
        if (!PyUnicode_Check(key)) {
            if (PyObject_Hash(key) == -1) throw py::error_already_set();
            return count;
        }
        i = 0;  // a str made at run time
        while (i < count && PyUnicode_Compare(key, kind.keys[i]) != 0) ++i;
        if (i == count) return count;
    }
    return kind.present(self, i) ? i : count;
}

py::dict to_dict(PyObject* self) {
    auto const& kind = kind_of(self);
    py::dict d;
    for (std::size_t i = 0; i < kind.keys.size(); ++i)
        if (kind.present(self, i)) d[kind.keys[i]] = kind.value(self, i);
    return d;
}

// ---- the slots ---------------------------------------------------------------------------------

void mapping_dealloc(PyObject* self) {
    auto* type = Py_TYPE(self);
    kind_of(self).destroy(self);
    type->tp_free(self);
    Py_DECREF(type);  // a heap type's instances hold a reference to it
}

PyObject* mapping_getitem(PyObject* self, PyObject* key) {
    return guarded([&]() -> PyObject* {
        auto i = lookup(self, key);
        if (i == kind_of(self).keys.size()) {
            // As a dict raises it: the key as the only argument, even when it is a tuple.
            auto args = py::make_tuple(py::handle(key));
            PyErr_SetObject(PyExc_KeyError, args.ptr());
            return nullptr;
        }
        return kind_of(self).value(self, i).release().ptr();
    }, nullptr);
}

Py_ssize_t mapping_length(PyObject* self) {
    auto const& kind = kind_of(self);
    Py_ssize_t n = 0;
    for (std::size_t i = 0; i < kind.keys.size(); ++i) n += kind.present(self, i);
    return n;
}

int mapping_contains(PyObject* self, PyObject* key) {
    return guarded([&] { return lookup(self, key) == kind_of(self).keys.size() ? 0 : 1; }, -1);
}

PyObject* mapping_iter(PyObject* self) {
    return guarded([&]() -> PyObject* {
        auto const& kind = kind_of(self);
        py::list present_keys;
        for (std::size_t i = 0; i < kind.keys.size(); ++i)
            if (kind.present(self, i)) present_keys.append(py::handle(kind.keys[i]));
        return PyObject_GetIter(present_keys.ptr());
    }, nullptr);
}

/** `==` and `!=` against another lazy mapping or any mapping (a dict with the same content is
 *  equal). */
PyObject* mapping_richcompare(PyObject* self, PyObject* other, int op) {
    return guarded([&]() -> PyObject* {
        if (op != Py_EQ && op != Py_NE) Py_RETURN_NOTIMPLEMENTED;
        py::object theirs;
        if (is_lazy_mapping(other)) {
            theirs = to_dict(other);
        } else if (PyDict_Check(other)) {
            theirs = py::reinterpret_borrow<py::object>(other);
        } else {
            int mapping = PyObject_IsInstance(other, mapping_abc);
            if (mapping < 0) throw py::error_already_set();
            if (!mapping) Py_RETURN_NOTIMPLEMENTED;
            theirs = py::dict(py::reinterpret_borrow<py::object>(other));
        }
        return PyObject_RichCompare(to_dict(self).ptr(), theirs.ptr(), op);
    }, nullptr);
}

PyObject* mapping_repr(PyObject* self) {
    return guarded([&] { return PyUnicode_FromFormat("%s%R)", kind_of(self).repr_prefix, to_dict(self).ptr()); }, nullptr);
}

PyObject* mapping_get(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    return guarded([&]() -> PyObject* {
        if (nargs < 1 || nargs > 2)
            throw py::type_error("get expected 1 or 2 arguments, got " + std::to_string(nargs));
        auto i = lookup(self, args[0]);
        if (i != kind_of(self).keys.size()) return kind_of(self).value(self, i).release().ptr();
        PyObject* fallback = nargs == 2 ? args[1] : Py_None;
        Py_INCREF(fallback);
        return fallback;
    }, nullptr);
}

PyObject* mapping_keys(PyObject* self, PyObject*) { return PyObject_CallOneArg(keys_view, self); }
PyObject* mapping_items(PyObject* self, PyObject*) { return PyObject_CallOneArg(items_view, self); }
PyObject* mapping_values(PyObject* self, PyObject*) { return PyObject_CallOneArg(values_view, self); }

template <class F>
PyCFunction c_function(F* f) {
    return reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(f));
}

template <class F>
void* slot(F* f) {
    return reinterpret_cast<void*>(f);
}

PyMethodDef mapping_methods[] = {
    {"get", c_function(&mapping_get), METH_FASTCALL, "get($self, key, default=None, /)\n--\n\nThe value of key if present, else default."},
    {"keys", c_function(&mapping_keys), METH_NOARGS, "keys($self, /)\n--\n\nThe keys, as a KeysView."},
    {"items", c_function(&mapping_items), METH_NOARGS, "items($self, /)\n--\n\nThe (key, value) pairs, as an ItemsView."},
    {"values", c_function(&mapping_values), METH_NOARGS, "values($self, /)\n--\n\nThe values, as a ValuesView."},
    {nullptr, nullptr, 0, nullptr}};

/** The slots of a lazy mapping type; only the doc differs between the types. */
std::array<PyType_Slot, 12> mapping_slots(char const* doc) {
    return {{{Py_tp_dealloc, slot(&mapping_dealloc)},
             {Py_tp_repr, slot(&mapping_repr)},
             {Py_tp_hash, slot(&PyObject_HashNotImplemented)},
             {Py_tp_iter, slot(&mapping_iter)},
             {Py_tp_richcompare, slot(&mapping_richcompare)},
             {Py_tp_methods, mapping_methods},
             {Py_tp_doc, const_cast<char*>(doc)},
             {Py_mp_subscript, slot(&mapping_getitem)},
             {Py_mp_length, slot(&mapping_length)},
             {Py_sq_length, slot(&mapping_length)},
             {Py_sq_contains, slot(&mapping_contains)},
             {0, nullptr}}};
}

char const run_doc[] =
    "A governed run, as a read-only mapping (collections.abc.Mapping) with the keys and values of the "
    "dict the module returned before: the run's snake_case fields, `datetime`s, `metadata`, and from "
    "execute() `response` (an integration.Response or None), `failure_id` and `replayed`. It owns its data "
    "(readable after the platform is closed) and builds each value when it is read; dict(run) is a plain "
    "dict of it.";

char const response_doc[] =
    "The vendor's answer to an executed run, as a read-only mapping (collections.abc.Mapping): `status` "
    "(int), `headers` (a dict of str) and `body` (bytes), built when read; dict(response) is a plain dict "
    "of it.";

auto run_slots = mapping_slots(run_doc);
auto response_slots = mapping_slots(response_doc);

#ifdef Py_TPFLAGS_DISALLOW_INSTANTIATION
constexpr unsigned long mapping_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION;
#else
constexpr unsigned long mapping_flags = Py_TPFLAGS_DEFAULT;
#endif

PyType_Spec run_spec{"integration.Run", static_cast<int>(sizeof(run_object)), 0,
                     static_cast<unsigned int>(mapping_flags), run_slots.data()};
PyType_Spec response_spec{"integration.Response", static_cast<int>(sizeof(response_object)), 0,
                          static_cast<unsigned int>(mapping_flags), response_slots.data()};

/** Makes the type of `spec`, registered as a `collections.abc.Mapping`, as `m.<name>`. */
PyTypeObject* add_mapping_type(py::module_& m, char const* name, PyType_Spec& spec) {
    auto* type = PyType_FromSpec(&spec);
    if (!type) throw py::error_already_set();
    auto* t = reinterpret_cast<PyTypeObject*>(type);
#ifndef Py_TPFLAGS_DISALLOW_INSTANTIATION
    t->tp_new = nullptr;  // made by the module only
#endif
    py::handle(mapping_abc).attr("register")(py::handle(type));
    m.attr(name) = py::handle(type);
    return t;
}

py::object make_response(PyObject* run, http::response const& response) {
    PyObject* self = response_type->tp_alloc(response_type, 0);
    if (!self) throw py::error_already_set();
    auto* r = reinterpret_cast<response_object*>(self);
    r->head.kind = &response_kind;
    Py_INCREF(run);
    r->run = run;
    r->response = &response;
    return py::reinterpret_steal<py::object>(self);
}

py::object make_run(runs::run_outcome outcome, bool executed) {
    PyObject* self = run_type->tp_alloc(run_type, 0);
    if (!self) throw py::error_already_set();
    auto* r = reinterpret_cast<run_object*>(self);
    r->head.kind = &run_kind;
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
    response_keys = {interned("status"), interned("headers"), interned("body")};

    auto abc = py::module_::import("collections.abc");
    keys_view = py::object(abc.attr("KeysView")).release().ptr();
    items_view = py::object(abc.attr("ItemsView")).release().ptr();
    values_view = py::object(abc.attr("ValuesView")).release().ptr();
    mapping_abc = py::object(abc.attr("Mapping")).release().ptr();
    run_type = add_mapping_type(m, "Run", run_spec);
    response_type = add_mapping_type(m, "Response", response_spec);
}

py::object run_to_python(runs::integration_run run) {
    return make_run(runs::run_outcome{.run = std::move(run)}, false);
}

py::object run_to_python(runs::run_outcome outcome) { return make_run(std::move(outcome), true); }

}  // namespace integration::python
