// The `integration` Python module: `integration::platform` and nothing else. Every call that
// touches a backend or a vendor runs with the GIL released; results are plain dicts (snake_case
// keys, `datetime`s), runs `integration.Run` mappings of the same (run.hpp); library errors are
// `integration.Error` subclasses carrying the error code.

#include "convert.hpp"
#include "errors.hpp"
#include "run.hpp"

#include <integration/core/aggregate.hpp>
#include <integration/platform.hpp>

#include <boost/algorithm/string/predicate.hpp>
#include <boost/json/serialize.hpp>
#include <pybind11/eval.h>
#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <unistd.h>

#include <array>
#include <chrono>
#include <iostream>
#include <limits>
#include <mutex>
#include <thread>
#include <optional>
#include <tuple>

namespace integration::python {
namespace {

// ---- the platform and a tenant's view of it --------------------------------------------------

/** The `log` callable of `open`, called from the workers' threads; released with the GIL held. */
struct python_log {
    py::object fn;
    ~python_log() {
        py::gil_scoped_acquire gil;
        fn = py::object();
    }
};

/** True on a thread while it runs the `log` callable: closing the platform there would wait for
 *  that thread itself to stop. */
thread_local bool in_log_callback = false;

class py_platform {
public:
    py_platform(std::unique_ptr<platform> p, std::string data_dir)
        : p_(std::move(p)), data_dir_(std::move(data_dir)), pid_(::getpid()) {}
    ~py_platform() {
        if (in_log_callback) {
            // The last reference went in the log callback, on a worker the platform would join.
            std::lock_guard lock(mutex_);
            if (p_) static_cast<void>(new std::shared_ptr<platform>(std::move(p_)));
            return;
        }
        close();
    }
    py_platform(py_platform const&) = delete;
    py_platform& operator=(py_platform const&) = delete;

    /** The platform for one call; a call in flight keeps it open until it returns. */
    std::shared_ptr<platform> get() const {
        if (forked())  // before the lock, which a parent's thread may have held at the fork
            throw library_error{{errc::invalid_state, "the platform was opened by the parent of this forked process, whose "
                                                      "threads did not come along; open it again in this process"}};
        std::lock_guard lock(mutex_);
        if (!p_) throw library_error{{errc::invalid_state, "the platform is closed; open another with integration.open"}};
        return p_;
    }
    /** Refuses new calls, waits for the calls in flight (each holds the platform until it
     *  returns), then stops the workers (waiting for their sweeps) and closes the backends, all
     *  without the GIL: a worker may be waiting for it to log, and the platform must not stop
     *  with it held when a call in flight would otherwise drop the last reference. A second
     *  close() returns when the first has finished. */
    void close() {
        if (in_log_callback)
            throw library_error{{errc::invalid_state, "close() cannot be called from the log callback, which runs on one "
                                                      "of the threads it stops"}};
        // A forked child has the parent's memory but none of its threads: stopping would wait
        // for workers that are not there, the backends' files belong to the parent, and a lock
        // below may be held by a parent's thread (its own close()) that will never let it go.
        // The copy is left as it is, to go with the process; the lock is not taken (no other
        // thread of this process can hold it now but one of the parent's, gone for good).
        if (forked()) {
            if (p_) static_cast<void>(new std::shared_ptr<platform>(std::move(p_)));
            return;
        }
        std::optional<py::gil_scoped_release> nogil;
        if (PyGILState_Check()) nogil.emplace();
        std::lock_guard closing(closing_);
        std::shared_ptr<platform> p;
        {
            std::lock_guard lock(mutex_);
            p = std::move(p_);
        }
        if (!p) return;
        while (p.use_count() > 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        p.reset();
    }
    bool closed() const {
        std::lock_guard lock(mutex_);
        return !p_;
    }
    std::string const& data_dir() const noexcept { return data_dir_; }

private:
    bool forked() const noexcept { return ::getpid() != pid_; }

    mutable std::mutex mutex_;
    std::mutex closing_;
    std::shared_ptr<platform> p_;
    std::string data_dir_;
    pid_t pid_;
};

/** Every platform opened and not yet collected: closed at interpreter exit, before Python
 *  finalizes, so that no worker thread calls a `log` callable while Python is torn down. */
std::mutex open_platforms_mutex;
std::vector<std::weak_ptr<py_platform>> open_platforms;

void close_open_platforms() {
    std::vector<std::shared_ptr<py_platform>> live;
    {
        std::lock_guard lock(open_platforms_mutex);
        for (auto& w : open_platforms)
            if (auto p = w.lock()) live.push_back(std::move(p));
        open_platforms.clear();
    }
    for (auto& p : live) p->close();
}

struct py_tenant {
    std::shared_ptr<py_platform> owner;
    request_context ctx;

    /** The caller for one call: the tenant and actor, with a trace of its own. */
    request_context call() const {
        auto c = ctx;
        c.trace = trace_context::generate();
        return c;
    }
};

/** Runs `f` (which must not touch Python objects) with the GIL released. */
template <class F>
auto nogil(F&& f) {
    py::gil_scoped_release release;
    return f();
}

// ---- arguments ---------------------------------------------------------------------------------

/** The JSON names of a described struct's fields. */
template <class T>
std::vector<std::string_view> field_names() {
    std::vector<std::string_view> names;
    std::apply([&](auto const&... f) { (names.push_back(f.name), ...); }, T::json_fields());
    return names;
}

/** Keyword arguments (snake_case) as a spec struct; an unknown keyword is a `TypeError` as for
 *  any Python function, a bad value the library's `InvalidArgument`, `None` the default. */
template <class T>
T spec_from(py::dict const& kwargs, char const* function) {
    static auto const names = field_names<T>();
    // The struct's defaults fill what the caller leaves out, as its C++ initialisers do.
    auto o = to_json(T{}).as_object();
    for (auto [k, v] : kwargs) {
        std::string key(utf8_of(k, "a keyword argument's name"));
        auto wire = wire_name(key);
        if (!wire || std::find(names.begin(), names.end(), *wire) == names.end())
            throw py::type_error(std::string(function) + "() got an unexpected keyword argument '" + key + "'");
        if (v.is_none()) continue;
        o[*wire] = to_json_value(v, *wire != "configuration" && *wire != "filter", key);
    }
    return unwrap(value_from_json<T>(o, unknown_members::refuse));
}

/** An optional dict argument as a spec struct. */
template <class T>
std::optional<T> optional_spec(py::object const& v, char const* function) {
    if (v.is_none()) return std::nullopt;
    if (!py::isinstance<py::dict>(v)) throw py::type_error(std::string(function) + " must be a dict");
    return spec_from<T>(v.cast<py::dict>(), function);
}

/** Secret material from `bytes`, `bytearray` or `str`, copied straight into wiped memory. */
secret_bytes secret_from(py::handle h, char const* what) {
    auto* o = h.ptr();
    if (PyBytes_Check(o))
        return secret_bytes(reinterpret_cast<unsigned char const*>(PyBytes_AS_STRING(o)),
                            static_cast<std::size_t>(PyBytes_GET_SIZE(o)));
    if (PyByteArray_Check(o))
        return secret_bytes(reinterpret_cast<unsigned char const*>(PyByteArray_AS_STRING(o)),
                            static_cast<std::size_t>(PyByteArray_GET_SIZE(o)));
    if (PyUnicode_Check(o)) {
        auto s = utf8_of(h, what);
        return secret_bytes(reinterpret_cast<unsigned char const*>(s.data()), s.size());
    }
    throw py::type_error(std::string(what) + " must be bytes or str");
}

/** A `str` argument taken as an object and converted here: where pybind11 converts and fails,
 *  its TypeError lists every argument's repr (a secret's among them), and it takes `bytes` for
 *  `str` too. */
std::string text_from(py::handle h, char const* what) {
    if (!PyUnicode_Check(h.ptr())) throw py::type_error(std::string(what) + " must be str, not " + Py_TYPE(h.ptr())->tp_name);
    return std::string(utf8_of(h, what));
}

std::optional<std::string> optional_text_from(py::handle h, char const* what) {
    if (h.is_none()) return std::nullopt;
    return text_from(h, what);
}

/** `True` or `False` only, converted here for the same reason as `text_from`. */
bool bool_from(py::handle h, char const* what) {
    if (!PyBool_Check(h.ptr())) throw py::type_error(std::string(what) + " must be True or False, not " + Py_TYPE(h.ptr())->tp_name);
    return h.ptr() == Py_True;
}

/** An int (not a bool), or None. */
std::optional<int> optional_int_from(py::handle h, char const* what) {
    if (h.is_none()) return std::nullopt;
    if (PyBool_Check(h.ptr()) || !PyLong_Check(h.ptr()))
        throw py::type_error(std::string(what) + " must be an int, not " + Py_TYPE(h.ptr())->tp_name);
    int overflow = 0;
    long long n = PyLong_AsLongLongAndOverflow(h.ptr(), &overflow);
    if (overflow || n < std::numeric_limits<int>::min() || n > std::numeric_limits<int>::max())
        throw py::value_error(std::string(what) + " is out of range");
    return static_cast<int>(n);
}

/** An int or a float (not a bool), or None. */
std::optional<double> optional_number_from(py::handle h, char const* what) {
    if (h.is_none()) return std::nullopt;
    if (PyBool_Check(h.ptr()) || !(PyLong_Check(h.ptr()) || PyFloat_Check(h.ptr())))
        throw py::type_error(std::string(what) + " must be a number, not " + Py_TYPE(h.ptr())->tp_name);
    auto v = PyFloat_AsDouble(h.ptr());
    if (v == -1.0 && PyErr_Occurred()) throw py::error_already_set();
    return v;
}

/** A list or tuple of str. */
std::vector<std::string> strings_from(py::handle h, char const* what) {
    if (!PyList_Check(h.ptr()) && !PyTuple_Check(h.ptr()))
        throw py::type_error(std::string(what) + " must be a list of str, not " + Py_TYPE(h.ptr())->tp_name);
    std::vector<std::string> out;
    for (auto item : py::reinterpret_borrow<py::sequence>(h)) out.push_back(text_from(item, what));
    return out;
}

// `integration.SecretBytes`: the secrets the library generates (a subscription's signing secret),
// handed over once as `bytes` whose repr and str never show them.
PyObject* secret_bytes_type = nullptr;  // kept for the life of the process, as the error classes

void add_secret_bytes_class(py::module_& m) {
    py::dict ns;
    ns["__builtins__"] = py::module_::import("builtins");
    ns["__name__"] = "integration";
    py::exec(R"(
class SecretBytes(bytes):
    """A secret the library generated, as bytes (use it as any bytes); repr() and str() never show it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<integration.SecretBytes: {len(self)} bytes, redacted>"

    __str__ = __repr__
)", ns);
    py::object type = ns["SecretBytes"];
    m.attr("SecretBytes") = type;
    secret_bytes_type = type.release().ptr();
}

py::object secret_to_python(secret_bytes const& s) {
    return py::handle(secret_bytes_type)(py::bytes(reinterpret_cast<char const*>(s.data()), s.size()));
}

/** A raw request body from a bytes-like object (`bytes`, `bytearray`, `memoryview`), as received. */
std::string body_from(py::handle h) {
    auto* o = h.ptr();
    if (PyBytes_Check(o)) return std::string(PyBytes_AS_STRING(o), static_cast<std::size_t>(PyBytes_GET_SIZE(o)));
    if (PyObject_CheckBuffer(o)) {
        Py_buffer view{};
        if (PyObject_GetBuffer(o, &view, PyBUF_SIMPLE) != 0) throw py::error_already_set();
        std::string out(static_cast<char const*>(view.buf), static_cast<std::size_t>(view.len));
        PyBuffer_Release(&view);
        return out;
    }
    throw py::type_error(std::string("body must be bytes (the raw request body as received), not ") + Py_TYPE(o)->tp_name);
}

/** Request headers from a mapping (`dict`, `http.client.HTTPMessage`: anything with `items()`,
 *  repeated names kept) or a sequence of `(name, value)` pairs. */
std::vector<std::pair<std::string, std::string>> headers_from(py::handle h) {
    if (PyUnicode_Check(h.ptr()) || PyBytes_Check(h.ptr()))
        throw py::type_error("headers must be a mapping or a sequence of (name, value) pairs");
    py::object items = py::hasattr(h, "items") ? h.attr("items")() : py::reinterpret_borrow<py::object>(h);
    std::vector<std::pair<std::string, std::string>> out;
    for (auto item : py::iter(items)) {
        if (!PySequence_Check(item.ptr()) || PySequence_Size(item.ptr()) != 2)
            throw py::type_error("headers must be a mapping or a sequence of (name, value) pairs");
        auto pair = py::reinterpret_borrow<py::sequence>(item);
        py::object name = pair[0], value = pair[1];
        if (!PyUnicode_Check(name.ptr()) || !PyUnicode_Check(value.ptr()))
            throw py::type_error("header names and values must be str");
        out.emplace_back(utf8_of(name, "header name"), utf8_of(value, "header value"));
    }
    return out;
}

template <class E>
std::optional<E> optional_enum(std::optional<std::string> const& text, char const* field) {
    if (!text) return std::nullopt;
    return unwrap(parse_enum<E>(*text, field));
}

storage::page_request page_of(std::size_t limit, std::optional<std::string> cursor) {
    return {.limit = limit, .cursor = cursor.value_or("")};
}

// ---- results -----------------------------------------------------------------------------------

/** An aggregate as a dict: its fields and, under `metadata`, its audit fields. */
template <class A>
py::dict render(A const& a) {
    py::dict d;
    fields_to_python(d, a.data());
    d["metadata"] = typed_to_python(a.meta());
    return d;
}

py::object render_credential(credentials::integration_credential const& c) {
    auto d = render(c);
    if (auto const* v = c.active_version()) d["active_version"] = v->version;
    return d;
}

template <class T, class R>
py::dict render_page(storage::page<T> p, R const& render_one) {
    py::list items(p.items.size());
    for (std::size_t i = 0; i < p.items.size(); ++i) items[i] = render_one(std::move(p.items[i]));
    py::dict out;
    out["items"] = std::move(items);
    out["next_cursor"] = p.next_cursor.empty() ? py::object(py::none()) : py::object(py::str(p.next_cursor));
    return out;
}

py::object optional_text(std::string const& s) {
    return s.empty() ? py::object(py::none()) : py::object(py::str(s));
}

py::dict render_endpoint(webhooks::inbound_endpoint const& e) {
    py::dict d;
    d["connection_id"] = e.connection_id;
    d["scheme"] = py::str(std::string(webhooks::to_string(e.scheme)));
    return d;
}

py::dict render_inbound(webhooks::inbound_outcome const& out) {
    using kind = webhooks::inbound_outcome::kind;
    py::dict d;
    d["outcome"] = out.outcome == kind::accepted    ? "accepted"
                   : out.outcome == kind::duplicate ? "duplicate"
                   : out.outcome == kind::challenge ? "challenge"
                                                    : "rejected";
    d["delivery_id"] = optional_text(out.delivery_id);
    d["tenant_id"] = optional_text(out.tenant_id);
    auto const& id = out.identity;
    d["provider_delivery_id"] = id ? optional_text(id->provider_delivery_id) : py::object(py::none());
    d["event_type"] = id ? optional_text(id->event_type) : py::object(py::none());
    d["signed_at"] = id && id->timestamp ? to_datetime(from_unix_ms(*id->timestamp * 1000)) : py::object(py::none());
    d["challenge"] = id && id->challenge ? py::object(py::str(*id->challenge)) : py::object(py::none());
    auto const& refusal = out.refusal;
    d["reason"] = refusal ? py::object(py::str(std::string(webhooks::to_string(refusal->reason)))) : py::object(py::none());
    d["detail"] = refusal ? py::object(py::str(refusal->detail)) : py::object(py::none());
    return d;
}

// ---- the calls ---------------------------------------------------------------------------------

/** `f(p, ctx)` for the tenant's call, without the GIL: `p` the platform (kept open until it
 *  returns), `ctx` the tenant's context with a trace of its own; the result, unwrapped. */
template <class F>
auto call(py_tenant const& t, F&& f) {
    auto p = t.owner->get();
    auto ctx = t.call();
    return unwrap(nogil([&] { return f(p, ctx); }));
}

/** `f(unit_of_work&)` in a read of the tenant's data. */
template <class F>
auto read(py_tenant const& t, F&& f) {
    return call(t, [&](auto& p, auto& ctx) { return storage::read_for(p->store(), ctx, f); });
}

// ---- execute: parsed and answered without pybind11's dispatch ------------------------------------
//
// `Tenant.execute` is the module's hot call; pybind11 would build a dict of its keyword arguments,
// look each name up with a temporary str, convert the dicts to std::maps and the result keys
// per call. Here the keywords are matched against names made once (interned: the interpreter
// passes the same objects), the request is filled straight from the arguments, the result is an
// `integration.Run` that builds only what the caller reads, and the GIL is released once for the
// platform, the context and the run.

enum execute_arg : std::size_t {
    arg_connection_id, arg_operation, arg_path_params, arg_query, arg_headers, arg_body, arg_idempotency_key,
    arg_allow_degraded, execute_arg_count
};
constexpr std::array<char const*, execute_arg_count> execute_arg_names{
    "connection_id", "operation", "path_params", "query", "headers", "body", "idempotency_key", "allow_degraded"};

/** A str argument of execute as UTF-8 (owned by it); anything else a `TypeError` naming it. */
std::string_view execute_text(PyObject* o, char const* what) {
    if (!PyUnicode_Check(o))
        throw py::type_error(std::string("execute(): ") + what + " must be str, not " + Py_TYPE(o)->tp_name);
    return utf8_of(o, what);
}

/** A `Mapping[str, str]` argument (None: nothing), each pair handed to `add`. */
template <class F>
void for_each_str_pair(PyObject* o, char const* what, F&& add) {
    if (o == nullptr || o == Py_None) return;
    if (PyDict_Check(o)) {
        Py_ssize_t pos = 0;
        PyObject *k = nullptr, *v = nullptr;
        while (PyDict_Next(o, &pos, &k, &v)) add(execute_text(k, what), execute_text(v, what));
        return;
    }
    // A list, tuple or str passes PyMapping_Check too (they can be indexed), and has no items().
    if (!PyMapping_Check(o) || PyList_Check(o) || PyTuple_Check(o) || PyUnicode_Check(o) || PyBytes_Check(o) || PyByteArray_Check(o))
        throw py::type_error(std::string("execute(): ") + what + " must be a mapping of str to str, not " + Py_TYPE(o)->tp_name);
    auto items = py::reinterpret_steal<py::object>(PyMapping_Items(o));
    if (!items) throw py::error_already_set();
    for (auto item : items) {
        if (!PyTuple_Check(item.ptr()) || PyTuple_GET_SIZE(item.ptr()) != 2)
            throw py::type_error(std::string("execute(): ") + what + ".items() must give (str, str) pairs");
        auto pair = py::reinterpret_borrow<py::tuple>(item);
        add(execute_text(pair[0].ptr(), what), execute_text(pair[1].ptr(), what));
    }
}

runs::execute_request execute_request_from(std::array<PyObject*, execute_arg_count> const& a) {
    runs::execute_request r;
    r.connection_id = execute_text(a[arg_connection_id], "connection_id");
    r.operation = execute_text(a[arg_operation], "operation");
    for_each_str_pair(a[arg_path_params], "path_params", [&](std::string_view k, std::string_view v) {
        r.input.path_params.insert_or_assign(std::string(k), std::string(v));
    });
    for_each_str_pair(a[arg_query], "query", [&](std::string_view k, std::string_view v) { r.input.query.emplace_back(k, v); });
    for_each_str_pair(a[arg_headers], "headers", [&](std::string_view k, std::string_view v) { r.input.headers.emplace_back(k, v); });
    if (PyObject* body = a[arg_body]; body && body != Py_None) {
        if (PyBytes_Check(body)) {
            r.input.body.assign(PyBytes_AS_STRING(body), static_cast<std::size_t>(PyBytes_GET_SIZE(body)));
        } else if (PyUnicode_Check(body)) {
            r.input.body = utf8_of(body, "body");
        } else {
            r.input.body = boost::json::serialize(to_json_value(body, false, "body"));
            bool typed = false;
            for (auto const& [k, v] : r.input.headers) typed = typed || boost::algorithm::iequals(k, "Content-Type");
            if (!typed) r.input.headers.emplace_back("Content-Type", "application/json");
        }
    }
    if (PyObject* key = a[arg_idempotency_key]; key && key != Py_None)
        r.idempotency_key = std::string(execute_text(key, "idempotency_key"));
    if (PyObject* degraded = a[arg_allow_degraded]; degraded) {
        int truth = PyObject_IsTrue(degraded);
        if (truth < 0) throw py::error_already_set();
        r.allow_degraded = truth == 1;
    }
    return r;
}

/** `Tenant.execute(*, connection_id, operation, ...)`, a METH_FASTCALL | METH_KEYWORDS method. */
PyObject* tenant_execute(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    static auto const names = [] {
        std::array<PyObject*, execute_arg_count> out{};
        for (std::size_t i = 0; i < out.size(); ++i) out[i] = interned(execute_arg_names[i]);
        return out;
    }();
    return guarded([&]() -> PyObject* {
        if (nargs != 0)
            throw py::type_error("execute() takes no positional arguments (" + std::to_string(nargs) +
                                 " given); pass connection_id=..., operation=...");
        std::array<PyObject*, execute_arg_count> a{};
        Py_ssize_t const n = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
        for (Py_ssize_t i = 0; i < n; ++i) {
            PyObject* name = PyTuple_GET_ITEM(kwnames, i);
            std::size_t at = execute_arg_count;
            for (std::size_t j = 0; j < names.size() && at == execute_arg_count; ++j)
                if (name == names[j]) at = j;
            for (std::size_t j = 0; j < names.size() && at == execute_arg_count; ++j)  // a str made at run time
                if (PyUnicode_Compare(name, names[j]) == 0) at = j;
            if (at == execute_arg_count)
                throw py::type_error("execute() got an unexpected keyword argument '" + py::str(name).cast<std::string>() + "'");
            a[at] = args[i];
        }
        for (auto required : {arg_connection_id, arg_operation})
            if (!a[required])
                throw py::type_error(std::string("execute() missing required keyword argument '") +
                                     execute_arg_names[required] + "'");
        auto const& t = py::cast<py_tenant const&>(py::handle(self));
        auto request = execute_request_from(a);
        std::shared_ptr<platform> p;
        auto outcome = nogil([&] {
            p = t.owner->get();
            return p->runs().execute(t.call(), std::move(request));
        });
        return run_to_python(unwrap(std::move(outcome))).release().ptr();
    }, nullptr);
}

PyMethodDef tenant_execute_def{
    "execute", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&tenant_execute)), METH_FASTCALL | METH_KEYWORDS,
    "execute($self, /, *, connection_id, operation, path_params=None, query=None, headers=None, body=None, "
    "idempotency_key=None, allow_degraded=False)\n--\n\n"
    "Executes one governed run and returns it with the vendor's answer (`response`), or raises when the input "
    "is bad (nothing is recorded then). A vendor failure is a Failed run with its `failure_id`."};

/** Installs `execute` on the Tenant class. */
void add_tenant_execute(py::handle tenant_class) {
    auto descriptor = py::reinterpret_steal<py::object>(
        PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(tenant_class.ptr()), &tenant_execute_def));
    if (!descriptor) throw py::error_already_set();
    py::setattr(tenant_class, "execute", descriptor);
}

// Every argument an object converted here: pybind11's error for one it cannot convert repeats
// every argument (a backend URL may carry a password).
std::shared_ptr<py_platform> open_platform_for_python(py::object const& data_dir_arg, py::object const& store_arg,
                                  py::object const& secrets_arg, py::object const& blobs_arg, py::object const& source_arg,
                                  py::object const& egress_allow_arg, py::object const& start_workers_arg,
                                  py::object const& deliver_webhooks_arg, py::object const& max_attempts_arg,
                                  py::object const& attempt_timeout_arg, py::object const& deferred_retries_arg,
                                  py::object const& durable_arg, py::object const& write_behind_arg, py::object const& log,
                                  py::object const& managed_identity_tenants_arg,
                                  py::object const& managed_identity_allow_arg) {
    auto data_dir = text_from(data_dir_arg, "data_dir");
    auto store = text_from(store_arg, "store"), secrets = text_from(secrets_arg, "secrets"), blobs = text_from(blobs_arg, "blobs");
    auto source = text_from(source_arg, "source");
    auto const egress_allow = strings_from(egress_allow_arg, "egress_allow");
    auto const start_workers = bool_from(start_workers_arg, "start_workers");
    auto const deliver_webhooks = bool_from(deliver_webhooks_arg, "deliver_webhooks");
    auto const max_attempts = optional_int_from(max_attempts_arg, "max_attempts");
    auto const attempt_timeout = optional_number_from(attempt_timeout_arg, "attempt_timeout");
    auto const deferred_retries = optional_int_from(deferred_retries_arg, "deferred_retries");
    auto const durable = bool_from(durable_arg, "durable"), write_behind = bool_from(write_behind_arg, "write_behind");
    auto managed_identity_tenants = strings_from(managed_identity_tenants_arg, "managed_identity_tenants");
    auto const managed_identity_allow = strings_from(managed_identity_allow_arg, "managed_identity_allow");
    platform_options o{.data_dir = data_dir, .store = std::move(store), .secrets = std::move(secrets),
                       .blobs = std::move(blobs), .source = std::move(source)};
    for (auto const& c : egress_allow) o.egress.allow.push_back(unwrap(net::cidr::parse(c)));
    o.credentials.managed_identity_tenants = std::move(managed_identity_tenants);
    for (auto const& c : managed_identity_allow) o.credentials.managed_identity_allow.push_back(unwrap(net::cidr::parse(c)));
    o.workers.start = start_workers;
    o.webhooks.deliver = deliver_webhooks;
    if (max_attempts) {
        if (*max_attempts < 1 || *max_attempts > 100) throw py::value_error("max_attempts must be from 1 to 100");
        o.runs.retry.max_attempts = *max_attempts;
    }
    if (attempt_timeout) {
        // Below a millisecond would round to 0, which the transport reads as no timeout at all.
        if (!(*attempt_timeout >= 0.001 && *attempt_timeout <= 604800))
            throw py::value_error("attempt_timeout must be from 0.001 to 604800 seconds (7 days)");
        o.runs.attempt_timeout = std::chrono::milliseconds(std::llround(*attempt_timeout * 1000.0));
    }
    if (deferred_retries) {
        if (*deferred_retries < 0) throw py::value_error("deferred_retries must not be negative");
        o.runs.deferred_retries = *deferred_retries;
    }
    o.runs.recording = durable ? durability::immediate : durability::deferred;
    o.runs.write_behind = write_behind;
    if (!log.is_none()) {
        if (!PyCallable_Check(log.ptr())) throw py::type_error("log must be callable as log(level, message)");
        auto fn = std::shared_ptr<python_log>(new python_log{log});
        o.log = [fn](std::string_view level, std::string_view message) {
            if (!Py_IsInitialized()) return;
            py::gil_scoped_acquire gil;
            struct in_callback {
                in_callback() { in_log_callback = true; }
                ~in_callback() { in_log_callback = false; }  // whatever the call throws
            } scope;
            try {
                fn->fn(py::str(level.data(), level.size()), py::str(message.data(), message.size()));
            } catch (py::error_already_set& e) {
                e.discard_as_unraisable("integration log callback");
            }
        };
    }
    auto p = unwrap(nogil([&] { return open_platform(std::move(o)); }));
    auto opened = std::make_shared<py_platform>(std::move(p), std::move(data_dir));
    std::lock_guard lock(open_platforms_mutex);
    std::erase_if(open_platforms, [](auto const& w) { return w.expired(); });
    open_platforms.push_back(opened);
    return opened;
}

void define_module(py::module_& m) {
    m.doc() = "The integration platform: providers, credentials, connections, governed runs, failures and webhooks.";
    m.attr("__version__") = INTEGRATION_VERSION;
    init_convert();
    py::module_::import("atexit").attr("register")(py::cpp_function(&close_open_platforms));
    add_error_classes(m);
    add_secret_bytes_class(m);
    add_run_class(m);

    using namespace pybind11::literals;
    constexpr std::size_t default_limit = 50;

    py::class_<py_platform, std::shared_ptr<py_platform>>(m, "Platform",
        "The opened library (integration.open). Close it with close() or a with-statement.")
        // str only: pybind11 would take bytes too, and an actor that is not UTF-8 is written into
        // every record the tenant makes, each then unreadable.
        .def("tenant", [](std::shared_ptr<py_platform> const& self, py::object const& tenant, py::object const& actor_name,
                          bool admin) {
            auto tenant_id = text_from(tenant, "tenant_id");
            auto actor = text_from(actor_name, "actor");
            unwrap(validate_tenant_id(tenant_id));
            auto ctx = request_context::for_tenant(std::move(tenant_id), std::move(actor));
            ctx.admin = admin;
            return py_tenant{self, std::move(ctx)};
        }, "tenant_id"_a, "actor"_a = "system", py::kw_only(), "admin"_a = false,
           "The platform as seen by one tenant: every call reads and writes only that tenant's data.")
        // Every argument an object converted here: pybind11's error for one it cannot convert
        // repeats every argument (headers, a body with a vendor's token).
        .def("receive_webhook", [](std::shared_ptr<py_platform> const& self, py::object const& connection_arg,
                                   py::object const& headers, py::object const& body, py::object const& url_arg,
                                   py::object const& content_type_arg) {
            auto connection_id = text_from(connection_arg, "connection_id");
            auto url = text_from(url_arg, "url");
            auto content_type = optional_text_from(content_type_arg, "content_type");
            auto fields = headers_from(headers);
            auto raw = body_from(body);
            std::vector<webhooks::header_field> views;
            views.reserve(fields.size());
            for (auto const& [name, value] : fields) {
                views.push_back({name, value});
                if (!content_type && boost::algorithm::iequals(name, "Content-Type")) content_type = value;
            }
            auto p = self->get();
            return render_inbound(unwrap(nogil([&] {
                return p->inbound().receive(connection_id, {.headers = views, .body = raw, .url = url,
                                                            .content_type = content_type.value_or("")});
            })));
        }, "connection_id"_a, py::kw_only(), "headers"_a, "body"_a, "url"_a = "", "content_type"_a = py::none(),
           "Receives one vendor request on `connection_id` (unauthenticated: the connection names the tenant): "
           "`headers` as received, `body` the raw bytes, `url` the full URL the vendor called (Twilio signs it). "
           "Returns the outcome: accepted, duplicate, or rejected with its `reason`; raises only when the store "
           "or the vault failed.")
        .def("close", &py_platform::close, "Stops the workers and closes the backends; further calls raise InvalidState.")
        .def_property_readonly("closed", &py_platform::closed)
        .def_property_readonly("data_dir", &py_platform::data_dir)
        .def("__enter__", [](std::shared_ptr<py_platform> const& self) { return self; })
        .def("__exit__", [](py_platform& self, py::args const&) { self.close(); })
        .def("__repr__", [](py_platform const& self) {
            return "<integration.Platform data_dir=" + py::repr(py::str(self.data_dir())).cast<std::string>() +
                   (self.closed() ? " closed>" : ">");
        });

    py::class_<py_tenant>(m, "Tenant", "One tenant's view of the platform (Platform.tenant).")
        .def_property_readonly("tenant_id", [](py_tenant const& t) { return t.ctx.tenant_id; })
        .def_property_readonly("actor", [](py_tenant const& t) { return t.ctx.actor; })
        .def("__repr__", [](py_tenant const& t) {
            return "<integration.Tenant " + py::repr(py::str(t.ctx.tenant_id)).cast<std::string>() +
                   " actor=" + py::repr(py::str(t.ctx.actor)).cast<std::string>() + ">";
        })

        // providers and API clients
        .def("register_provider", [](py_tenant const& t, py::kwargs const& kw) {
            auto spec = spec_from<providers::provider_spec>(kw, "register_provider");
            return render(call(t, [&](auto& p, auto& ctx) {
                return p->registry().register_provider(ctx, std::move(spec));
            }));
        })
        .def("get_provider", [](py_tenant const& t, std::string const& id) {
            return render(read(t, [&](storage::unit_of_work& u) { return u.providers().find(id); }));
        }, "provider_id"_a)
        .def("list_providers", [](py_tenant const& t, std::size_t limit, std::optional<std::string> cursor) {
            auto page = page_of(limit, std::move(cursor));
            return render_page(read(t, [&](storage::unit_of_work& u) { return u.providers().list(page); }),
                               render<providers::integration_provider>);
        }, py::kw_only(), "limit"_a = default_limit, "cursor"_a = py::none())
        .def("activate_provider", [](py_tenant const& t, std::string const& id) {
            return render(call(t, [&](auto& p, auto& ctx) { return p->registry().activate_provider(ctx, id); }));
        }, "provider_id"_a)
        .def("deprecate_provider", [](py_tenant const& t, std::string const& id, std::string reason) {
            return render(call(t, [&](auto& p, auto& ctx) {
                return p->registry().deprecate_provider(ctx, id, std::move(reason));
            }));
        }, "provider_id"_a, py::kw_only(), "reason"_a = "deprecated")
        .def("register_client", [](py_tenant const& t, std::string const& provider_id, py::kwargs const& kw) {
            auto spec = spec_from<providers::api_client_spec>(kw, "register_client");
            return render(call(t, [&](auto& p, auto& ctx) {
                return p->registry().register_client(ctx, provider_id, std::move(spec));
            }));
        }, "provider_id"_a)
        .def("list_clients", [](py_tenant const& t, std::string const& provider_id, std::size_t limit,
                                std::optional<std::string> cursor) {
            auto page = page_of(limit, std::move(cursor));
            return render_page(read(t, [&](storage::unit_of_work& u) { return u.api_clients().list_by_provider(provider_id, page); }),
                               render<providers::external_api_client>);
        }, "provider_id"_a, py::kw_only(), "limit"_a = default_limit, "cursor"_a = py::none())
        .def("activate_client", [](py_tenant const& t, std::string const& id) {
            return render(call(t, [&](auto& p, auto& ctx) { return p->registry().activate_client(ctx, id); }));
        }, "api_client_id"_a)
        .def("deprecate_client", [](py_tenant const& t, std::string const& id) {
            return render(call(t, [&](auto& p, auto& ctx) { return p->registry().deprecate_client(ctx, id); }));
        }, "api_client_id"_a)

        // credentials: the secret goes in, only its reference and fingerprint come out
        .def("create_credential", [](py_tenant const& t, py::object const& provider_id, py::object const& secret,
                                     py::object const& auth_mode, py::object const& connection_id,
                                     py::object const& api_key, py::object const& oauth2, py::object const& managed_identity,
                                     py::object const& rotation_policy, py::object const& expires_at,
                                     py::object const& scheme) {
            credentials::new_credential spec{.provider_id = text_from(provider_id, "provider_id"),
                                             .connection_id = optional_text_from(connection_id, "connection_id")};
            spec.auth_mode = unwrap(parse_enum<integration::auth_mode>(text_from(auth_mode, "auth_mode"), "auth_mode"));
            if (!secret.is_none()) spec.secret = secret_from(secret, "secret");
            spec.scheme = optional_text_from(scheme, "scheme");
            spec.api_key = optional_spec<credentials::api_key_placement>(api_key, "api_key");
            spec.oauth2 = optional_spec<credentials::oauth2_client_settings>(oauth2, "oauth2");
            spec.managed_identity = optional_spec<credentials::managed_identity_settings>(managed_identity, "managed_identity");
            spec.rotation_policy = optional_spec<credentials::rotation_policy>(rotation_policy, "rotation_policy");
            if (!expires_at.is_none()) spec.expires_at = from_datetime(expires_at, "expires_at");
            return render_credential(call(t, [&](auto& p, auto& ctx) {
                return p->credentials().create(ctx, std::move(spec));
            }));
        }, py::kw_only(), "provider_id"_a, "secret"_a = py::none(), "auth_mode"_a = "ApiKey",
           "connection_id"_a = py::none(), "api_key"_a = py::none(), "oauth2"_a = py::none(),
           "managed_identity"_a = py::none(), "rotation_policy"_a = py::none(), "expires_at"_a = py::none(),
           "scheme"_a = py::none())
        .def("rotate_credential", [](py_tenant const& t, py::object const& credential_id, py::object const& secret,
                                     py::object const& expires_at) {
            auto id = text_from(credential_id, "credential_id");
            auto material = secret_from(secret, "secret");
            std::optional<time_point> expires;
            if (!expires_at.is_none()) expires = from_datetime(expires_at, "expires_at");
            return render_credential(call(t, [&](auto& p, auto& ctx) {
                return p->credentials().rotate(ctx, id, std::move(material), p->prober().verifier_for(ctx, id), expires);
            }));
        }, "credential_id"_a, py::kw_only(), "secret"_a, "expires_at"_a = py::none())
        .def("revoke_credential", [](py_tenant const& t, std::string const& id, std::string reason) {
            return render_credential(call(t, [&](auto& p, auto& ctx) {
                return p->credentials().revoke(ctx, id, std::move(reason));
            }));
        }, "credential_id"_a, py::kw_only(), "reason"_a = "revoked")
        .def("get_credential", [](py_tenant const& t, std::string const& id) {
            return render_credential(read(t, [&](storage::unit_of_work& u) { return u.credentials().find(id); }));
        }, "credential_id"_a)
        .def("list_credentials", [](py_tenant const& t, std::optional<std::string> provider_id,
                                    std::optional<std::string> connection_id, std::size_t limit, std::optional<std::string> cursor) {
            storage::credential_query q{std::move(provider_id), std::move(connection_id)};
            auto page = page_of(limit, std::move(cursor));
            return render_page(read(t, [&](storage::unit_of_work& u) { return u.credentials().list(q, page); }),
                               render_credential);
        }, py::kw_only(), "provider_id"_a = py::none(), "connection_id"_a = py::none(), "limit"_a = default_limit,
           "cursor"_a = py::none())

        // connections
        .def("create_connection", [](py_tenant const& t, py::object const& provider_arg, py::object const& test_arg,
                                     py::kwargs const& kw) {
            auto provider_id = text_from(provider_arg, "provider_id");
            auto test = bool_from(test_arg, "test");
            auto spec = spec_from<connections::connection_spec>(kw, "create_connection");
            return render(call(t, [&](auto& p, auto& ctx) -> result<connections::integration_connection> {
                auto created = p->connections().create(ctx, provider_id, std::move(spec));
                if (!created || !test) return created;
                // As the host does: probed at once, Active when the health check passes; a probe
                // that cannot run leaves it Pending.
                auto tested = p->prober().test(ctx, created->id());
                return tested ? tested : created;
            }));
        }, py::kw_only(), "provider_id"_a, "test"_a = true)
        .def("get_connection", [](py_tenant const& t, std::string const& id) {
            return render(read(t, [&](storage::unit_of_work& u) { return u.connections().find(id); }));
        }, "connection_id"_a)
        .def("list_connections", [](py_tenant const& t, std::optional<std::string> project_id, std::optional<std::string> provider_id,
                                    std::optional<std::string> status, std::size_t limit, std::optional<std::string> cursor) {
            storage::connection_query q{std::move(project_id), std::move(provider_id),
                                        optional_enum<connections::connection_status>(status, "status")};
            auto page = page_of(limit, std::move(cursor));
            return render_page(read(t, [&](storage::unit_of_work& u) { return u.connections().list(q, page); }),
                               render<connections::integration_connection>);
        }, py::kw_only(), "project_id"_a = py::none(), "provider_id"_a = py::none(), "status"_a = py::none(),
           "limit"_a = default_limit, "cursor"_a = py::none())
        .def("test_connection", [](py_tenant const& t, std::string const& id) {
            return render(call(t, [&](auto& p, auto& ctx) { return p->prober().test(ctx, id); }));
        }, "connection_id"_a)
        .def("retire_connection", [](py_tenant const& t, std::string const& id, std::string reason) {
            return render(call(t, [&](auto& p, auto& ctx) {
                return p->connections().retire(ctx, id, std::move(reason));
            }));
        }, "connection_id"_a, py::kw_only(), "reason"_a = "retired")

        // runs
        .def("get_run", [](py_tenant const& t, std::string const& id) {
            return run_to_python(read(t, [&](storage::unit_of_work& u) { return u.runs().find(id); }));
        }, "run_id"_a)
        .def("list_runs", [](py_tenant const& t, std::optional<std::string> connection_id, std::optional<std::string> status,
                             std::size_t limit, std::optional<std::string> cursor) {
            storage::run_query q{std::move(connection_id), optional_enum<runs::run_status>(status, "status")};
            auto page = page_of(limit, std::move(cursor));
            return render_page(read(t, [&](storage::unit_of_work& u) { return u.runs().list(q, page); }),
                               [](runs::integration_run run) { return run_to_python(std::move(run)); });
        }, py::kw_only(), "connection_id"_a = py::none(), "status"_a = py::none(), "limit"_a = default_limit,
           "cursor"_a = py::none())

        // failures
        .def("get_failure", [](py_tenant const& t, std::string const& id) {
            return render(call(t, [&](auto& p, auto& ctx) { return p->failures().find(ctx, id); }));
        }, "failure_id"_a)
        .def("list_failures", [](py_tenant const& t, std::optional<std::string> run_id, std::optional<std::string> delivery_id,
                                 bool unresolved_only, std::size_t limit, std::optional<std::string> cursor) {
            storage::failure_query q{std::move(run_id), std::move(delivery_id), unresolved_only};
            auto page = page_of(limit, std::move(cursor));
            return render_page(call(t, [&](auto& p, auto& ctx) { return p->failures().list(ctx, q, page); }),
                               render<failures::integration_failure>);
        }, py::kw_only(), "run_id"_a = py::none(), "delivery_id"_a = py::none(), "unresolved_only"_a = false,
           "limit"_a = default_limit, "cursor"_a = py::none())
        .def("escalate_failure", [](py_tenant const& t, std::string const& id, std::string const& reason,
                                    std::optional<std::string> ticket_ref) {
            return render(call(t, [&](auto& p, auto& ctx) {
                return p->failures().escalate(ctx, id, reason, std::move(ticket_ref));
            }));
        }, "failure_id"_a, py::kw_only(), "reason"_a, "ticket_ref"_a = py::none())
        .def("resolve_failure", [](py_tenant const& t, std::string const& id, std::string const& outcome) {
            if (outcome != "Succeeded" && outcome != "DeadLettered")
                throw library_error{{errc::invalid_argument, "outcome must be 'Succeeded' or 'DeadLettered'"}};
            auto o = outcome == "Succeeded" ? failures::source_outcome::succeeded : failures::source_outcome::dead_lettered;
            return render(call(t, [&](auto& p, auto& ctx) { return p->failures().resolve(ctx, id, o); }));
        }, "failure_id"_a, py::kw_only(), "outcome"_a = "DeadLettered")
        .def("replay_failure", [](py_tenant const& t, std::string const& id) {
            return render(call(t, [&](auto& p, auto& ctx) { return p->failures().replay(ctx, id); }));
        }, "failure_id"_a)

        // outbound webhooks
        .def("subscribe", [](py_tenant const& t, py::kwargs const& kw) {
            auto spec = spec_from<webhooks::subscription_spec>(kw, "subscribe");
            auto s = call(t, [&](auto& p, auto& ctx) { return p->subscriptions().subscribe(ctx, std::move(spec)); });
            py::dict d = render(s.subscription);
            // Shown this once, for the receiver; no call returns it again.
            d["signing_secret"] = s.signing_secret ? secret_to_python(*s.signing_secret) : py::object(py::none());
            return d;
        })
        .def("get_subscription", [](py_tenant const& t, std::string const& id) {
            return render(call(t, [&](auto& p, auto& ctx) { return p->subscriptions().find(ctx, id); }));
        }, "subscription_id"_a)
        .def("list_subscriptions", [](py_tenant const& t, std::size_t limit, std::optional<std::string> cursor) {
            auto page = page_of(limit, std::move(cursor));
            return render_page(call(t, [&](auto& p, auto& ctx) { return p->subscriptions().list(ctx, page); }),
                               render<webhooks::webhook_subscription>);
        }, py::kw_only(), "limit"_a = default_limit, "cursor"_a = py::none())
        .def("deactivate_subscription", [](py_tenant const& t, std::string const& id, std::string reason) {
            return render(call(t, [&](auto& p, auto& ctx) {
                return p->subscriptions().deactivate(ctx, id, std::move(reason));
            }));
        }, "subscription_id"_a, py::kw_only(), "reason"_a = "deactivated by the caller")
        .def("reactivate_subscription", [](py_tenant const& t, std::string const& id) {
            return render(call(t, [&](auto& p, auto& ctx) { return p->subscriptions().reactivate(ctx, id); }));
        }, "subscription_id"_a)
        .def("rotate_subscription_secret", [](py_tenant const& t, std::string const& id) {
            auto r = call(t, [&](auto& p, auto& ctx) { return p->subscriptions().rotate_secret(ctx, id); });
            py::dict d = render(r.subscription);
            d["signing_secret"] = secret_to_python(r.signing_secret);
            return d;
        }, "subscription_id"_a)
        .def("recover_subscription", [](py_tenant const& t, std::string const& id, py::object const& since) {
            auto from = from_datetime(since, "since");
            return call(t, [&](auto& p, auto& ctx) { return p->subscriptions().recover(ctx, id, from); });
        }, "subscription_id"_a, py::kw_only(), "since"_a)
        .def("publish", [](py_tenant const& t, py::object const& event_type_arg, py::object const& payload,
                           py::object const& key_arg) {
            auto event_type = text_from(event_type_arg, "event_type");
            auto idempotency_key = optional_text_from(key_arg, "idempotency_key");
            auto json = to_json_value(payload, false, "payload");
            auto pub = call(t, [&](auto& p, auto& ctx) {
                return p->publisher().publish(ctx, event_type, json, std::move(idempotency_key));
            });
            py::dict d;
            d["event_id"] = pub.event_id;
            d["delivery_ids"] = pub.delivery_ids;
            d["repeated"] = pub.repeated;
            return d;
        }, "event_type"_a, "payload"_a, py::kw_only(), "idempotency_key"_a = py::none())
        .def("get_delivery", [](py_tenant const& t, std::string const& id) {
            return render(call(t, [&](auto& p, auto& ctx) { return p->publisher().find(ctx, id); }));
        }, "delivery_id"_a)
        .def("list_deliveries", [](py_tenant const& t, std::optional<std::string> direction,
                                   std::optional<std::string> subscription_id, std::optional<std::string> connection_id,
                                   std::optional<std::string> status, std::optional<std::string> event_id,
                                   py::object const& since, std::size_t limit, std::optional<std::string> cursor) {
            storage::delivery_query q;
            q.direction = optional_enum<webhooks::delivery_direction>(direction, "direction");
            q.subscription_id = std::move(subscription_id);
            q.connection_id = std::move(connection_id);
            q.status = optional_enum<webhooks::delivery_status>(status, "status");
            q.event_id = std::move(event_id);
            if (!since.is_none()) q.since = from_datetime(since, "since");
            auto page = page_of(limit, std::move(cursor));
            return render_page(call(t, [&](auto& p, auto& ctx) { return p->publisher().list(ctx, q, page); }),
                               render<webhooks::webhook_delivery>);
        }, py::kw_only(), "direction"_a = py::none(), "subscription_id"_a = py::none(), "connection_id"_a = py::none(),
           "status"_a = py::none(), "event_id"_a = py::none(), "since"_a = py::none(), "limit"_a = default_limit,
           "cursor"_a = py::none())
        .def("replay_delivery", [](py_tenant const& t, std::string const& id) {
            return render(call(t, [&](auto& p, auto& ctx) { return p->publisher().replay(ctx, id); }));
        }, "delivery_id"_a)

        // inbound webhooks: the secret goes in and never comes out; Platform.receive_webhook receives
        .def("register_inbound_endpoint", [](py_tenant const& t, py::object const& connection, py::object const& scheme,
                                             py::object const& secret) {
            auto connection_id = text_from(connection, "connection_id");
            auto s = unwrap(webhooks::parse_inbound_scheme(text_from(scheme, "scheme")));
            auto material = secret_from(secret, "secret");
            return render_endpoint(call(t, [&](auto& p, auto& ctx) {
                return p->inbound().register_endpoint(ctx, connection_id, s, std::move(material));
            }));
        }, "connection_id"_a, py::kw_only(), "scheme"_a, "secret"_a,
           "Lets the connection receive webhooks signed under `scheme` (standard, github, stripe, slack, twilio, "
           "shopify) with `secret`; registering again replaces both.")
        .def("rotate_inbound_secret", [](py_tenant const& t, py::object const& connection, py::object const& secret) {
            auto connection_id = text_from(connection, "connection_id");
            auto material = secret_from(secret, "secret");
            return render_endpoint(call(t, [&](auto& p, auto& ctx) {
                return p->inbound().rotate_secret(ctx, connection_id, std::move(material));
            }));
        }, "connection_id"_a, py::kw_only(), "secret"_a,
           "Replaces the connection's inbound secret; the previous one keeps verifying for a while (24 h by default).")
        .def("get_inbound_payload", [](py_tenant const& t, std::string const& delivery_id) {
            auto body = call(t, [&](auto& p, auto& ctx) { return p->inbound().payload(ctx, delivery_id); });
            return py::bytes(body);
        }, "delivery_id"_a, "The raw body of an inbound delivery, exactly as received.");
    add_tenant_execute(m.attr("Tenant"));
    // Neither class has a constructor: pybind11 makes their instances itself, through tp_alloc.
    // `Tenant.__new__(Tenant)` would make one whose C++ object was never constructed, and any
    // method would then read it.
    for (char const* name : {"Platform", "Tenant"}) {
        auto* type = reinterpret_cast<PyTypeObject*>(m.attr(name).ptr());
        type->tp_new = [](PyTypeObject* t, PyObject*, PyObject*) -> PyObject* {
            PyErr_Format(PyExc_TypeError, "%s instances come from integration.open() and Platform.tenant()", t->tp_name);
            return nullptr;
        };
        PyType_Modified(type);
    }

    m.def("open", &open_platform_for_python, py::kw_only(), "data_dir"_a = "./data", "store"_a = "", "secrets"_a = "", "blobs"_a = "",
          "source"_a = "integration", "egress_allow"_a = py::list(), "start_workers"_a = true,
          "deliver_webhooks"_a = true, "max_attempts"_a = py::none(), "attempt_timeout"_a = py::none(),
          "deferred_retries"_a = py::none(), "durable"_a = true, "write_behind"_a = false, "log"_a = py::none(),
          "managed_identity_tenants"_a = py::list(), "managed_identity_allow"_a = py::list(),
          "Opens the platform: the embedded default under data_dir (SQLite, local secret store, file blobs), or the "
          "backends that store/secrets/blobs name by URL.");

    // For bench/python_bench.py: the calls the binding makes, `iterations` times from C++ in this
    // process, on this platform, each with a request context of its own as every call from Python
    // has, reading from each result what the bench's Python side reads (so that work the binding
    // defers to a read is still counted); the bench times them as it times the same calls from
    // Python, so the difference is what the binding adds (arguments in, the GIL released and taken
    // back, the result and the reads). Each returns how many results passed the check it reads.
    m.def("_execute_from_cpp", [](py_tenant const& t, std::string const& connection_id, std::string const& operation,
                                  std::size_t iterations) {
        auto p = t.owner->get();
        return nogil([&] {
            std::size_t ok = 0;
            for (std::size_t i = 0; i < iterations; ++i) {
                auto out = unwrap(p->runs().execute(t.call(), {.connection_id = connection_id, .operation = operation}));
                ok += out.run.status() == runs::run_status::completed && out.response && out.response->status == 200;
            }
            return ok;
        });
    }, "tenant"_a, "connection_id"_a, "operation"_a, "iterations"_a);
    m.def("_get_run_from_cpp", [](py_tenant const& t, std::string const& run_id, std::size_t iterations) {
        auto p = t.owner->get();
        return nogil([&] {
            std::size_t ok = 0;
            for (std::size_t i = 0; i < iterations; ++i) {
                auto run = unwrap(storage::read_for(p->store(), t.call(), [&](storage::unit_of_work& u) { return u.runs().find(run_id); }));
                ok += run.status() == runs::run_status::completed && !run.data().run_attempts.empty();
            }
            return ok;
        });
    }, "tenant"_a, "run_id"_a, "iterations"_a);

    // For the tests: a stored run as a dict rendered as every other aggregate is (`render`), the
    // way get_run returned it before integration.Run; tests/test_run.py compares Run with it.
    m.def("_run_as_dict", [](py_tenant const& t, std::string const& run_id) {
        return render(read(t, [&](storage::unit_of_work& u) { return u.runs().find(run_id); }));
    }, "tenant"_a, "run_id"_a);
}

}  // namespace
}  // namespace integration::python

PYBIND11_MODULE(_native, m) { integration::python::define_module(m); }
