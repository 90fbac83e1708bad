#ifndef INTEGRATION_SRC_DETAIL_SQL_MAPPING_HPP
#define INTEGRATION_SRC_DETAIL_SQL_MAPPING_HPP

// Maps the JSON field lists of the domain's data structs onto relational rows, for every SQL
// backend: scalar fields are columns (snake_case of the JSON name), vectors are child tables,
// nested value objects and JSON documents are JSON text columns. It writes the SQL text of each
// aggregate table and turns values into `sql::value`s and back; binding and stepping are the
// backend's. Statement parameters are written `?`; a backend with numbered parameters ($1, $2)
// renumbers them when it prepares a statement.
//
// A backend's row type `Row` needs `text(c)`, `int64(c)`, `real(c)` and `is_null(c)`; its
// statement type `Params`, for binding fields in place, `bind_null(i)`, `bind_int(i, int64)`,
// `bind_real(i, double)`, `bind_view(i, string_view)` (text that stays valid until the statement
// has run: a field of the object being written) and `bind_copy(i, string_view)`.

#include "value.hpp"

#include <integration/core/json.hpp>
#include <integration/core/time.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <array>
#include <string>
#include <string_view>
#include <vector>

namespace integration::storage::sql {

template <class T>
struct is_vector : std::false_type {};
template <class T>
struct is_vector<std::vector<T>> : std::true_type {};

/** True for a type whose vector fields are stored as JSON array columns instead of child tables:
 *  one row write and one row read per aggregate, for short lists always read whole. */
template <class T>
struct vectors_as_json : std::false_type {};

/** The JSON names of `T`'s fields that no change after the insert touches. An update leaves
 *  their columns out of its SET, so the database leaves the indexes over them alone. */
template <class T>
struct fixed_columns {
    static constexpr std::array<std::string_view, 0> names{};
};

/** True for a type whose child lists only ever grow at the end: a save inserts the new elements
 *  instead of deleting and inserting them all. */
template <class T>
struct append_only_children : std::false_type {};

template <class T>
bool is_fixed(std::string_view json_name) {
    auto const& names = fixed_columns<T>::names;
    return std::find(names.begin(), names.end(), json_name) != names.end();
}

/** `providerId` → `provider_id`. */
inline std::string snake(std::string_view camel) {
    std::string out;
    for (char c : camel) {
        if (c >= 'A' && c <= 'Z') {
            out += '_';
            out += static_cast<char>(c - 'A' + 'a');
        } else {
            out += c;
        }
    }
    return out;
}

// ---- scalar values ---------------------------------------------------------------------------

inline value to_value(std::string const& v) { return v; }
inline value to_value(std::int64_t v) { return v; }
inline value to_value(int v) { return std::int64_t{v}; }
inline value to_value(double v) { return v; }
inline value to_value(bool v) { return std::int64_t{v ? 1 : 0}; }
inline value to_value(time_point v) { return to_unix_ms(v); }
inline value to_value(boost::json::object const& v) { return boost::json::serialize(v); }
inline value to_value(boost::json::value const& v) { return boost::json::serialize(v); }
template <named_enum E>
value to_value(E e) {
    return std::string(to_string(e));
}
template <json_described T>
value to_value(T const& v) {
    return boost::json::serialize(to_json(v));
}
template <class T>
value to_value(std::optional<T> const& v) {
    return v ? to_value(*v) : value{nullptr};
}
template <class E>
value to_value(std::vector<E> const& v) {
    return boost::json::serialize(to_json(v));
}

template <class Row>
result<void> read_column(Row const& s, int c, std::string& out) {
    out = s.text(c);
    return {};
}
template <class Row>
result<void> read_column(Row const& s, int c, std::int64_t& out) {
    out = s.int64(c);
    return {};
}
template <class Row>
result<void> read_column(Row const& s, int c, int& out) {
    out = static_cast<int>(s.int64(c));
    return {};
}
template <class Row>
result<void> read_column(Row const& s, int c, double& out) {
    out = s.real(c);
    return {};
}
template <class Row>
result<void> read_column(Row const& s, int c, bool& out) {
    out = s.int64(c) != 0;
    return {};
}
template <class Row>
result<void> read_column(Row const& s, int c, time_point& out) {
    out = from_unix_ms(s.int64(c));
    return {};
}
template <class Row>
result<boost::json::value> parse_column(Row const& s, int c) {
    boost::system::error_code ec;
    auto v = boost::json::parse(s.text(c), ec);
    if (ec) return error{errc::storage_failure, "a stored JSON column is corrupt: " + ec.message()};
    return v;
}
template <class Row>
result<void> read_column(Row const& s, int c, boost::json::value& out) {
    auto v = parse_column(s, c);
    if (!v) return v.error();
    out = std::move(*v);
    return {};
}
template <class Row>
result<void> read_column(Row const& s, int c, boost::json::object& out) {
    auto v = parse_column(s, c);
    if (!v) return v.error();
    if (!v->is_object()) return error{errc::storage_failure, "a stored JSON object column holds something else"};
    out = std::move(v->get_object());
    return {};
}
template <class Row, named_enum E>
result<void> read_column(Row const& s, int c, E& out) {
    auto e = parse_enum<E>(s.text(c), "stored value");
    if (!e) return error{errc::storage_failure, e.error().detail()};
    out = *e;
    return {};
}
template <class Row, json_described T>
result<void> read_column(Row const& s, int c, T& out) {
    auto v = parse_column(s, c);
    if (!v) return v.error();
    return from_json(*v, out, "");
}
template <class Row, class E>
result<void> read_column(Row const& s, int c, std::vector<E>& out) {
    auto v = parse_column(s, c);
    if (!v) return v.error();
    if (auto r = from_json(*v, out, ""); !r) return error{errc::storage_failure, "a stored JSON array column is corrupt: " + r.error().detail()};
    return {};
}
template <class Row, class T>
result<void> read_column(Row const& s, int c, std::optional<T>& out) {
    if (s.is_null(c)) {
        out.reset();
        return {};
    }
    T inner{};
    if (auto r = read_column(s, c, inner); !r) return r;
    out = std::move(inner);
    return {};
}

// ---- rows ------------------------------------------------------------------------------------

/** Calls `f(json_name, member_ref)` for each field of `T` that is a column (not a vector, unless
 *  `vectors_as_json<T>`). */
template <json_described T, class Obj, class F>
void for_each_column(Obj& obj, F&& f) {
    std::apply(
        [&](auto const&... fld) {
            (
                [&] {
                    using M = std::remove_cvref_t<decltype(obj.*(fld.member))>;
                    if constexpr (!is_vector<M>::value || vectors_as_json<T>::value) f(fld.name, obj.*(fld.member));
                }(),
                ...);
        },
        T::json_fields());
}

/** Calls `f(json_name, vector_ref)` for each vector field of `T` (a child table). */
template <json_described T, class Obj, class F>
void for_each_child(Obj& obj, F&& f) {
    std::apply(
        [&](auto const&... fld) {
            (
                [&] {
                    using M = std::remove_cvref_t<decltype(obj.*(fld.member))>;
                    if constexpr (is_vector<M>::value && !vectors_as_json<T>::value) f(fld.name, obj.*(fld.member));
                }(),
                ...);
        },
        T::json_fields());
}

/** The column names of `T`, in field order. */
template <json_described T>
std::vector<std::string> column_names() {
    std::vector<std::string> names;
    T probe{};
    for_each_column<T>(probe, [&](std::string_view n, auto const&) { names.push_back(snake(n)); });
    return names;
}

/** The values of `v`'s columns, in field order. */
template <json_described T>
void append_values(T const& v, std::vector<value>& out) {
    for_each_column<T>(v, [&](std::string_view, auto const& m) { out.push_back(to_value(m)); });
}

/** The values of `v`'s columns an update sets (all but `fixed_columns<T>`), in field order. */
template <json_described T>
void append_update_values(T const& v, std::vector<value>& out) {
    for_each_column<T>(v, [&](std::string_view n, auto const& m) {
        if (!is_fixed<T>(n)) out.push_back(to_value(m));
    });
}

// Binding fields in place (the write path: no `value` per column).
template <class Params>
void bind_column(Params& p, int i, std::string const& v) {
    p.bind_view(i, v);
}
template <class Params>
void bind_column(Params& p, int i, std::int64_t v) {
    p.bind_int(i, v);
}
template <class Params>
void bind_column(Params& p, int i, int v) {
    p.bind_int(i, v);
}
template <class Params>
void bind_column(Params& p, int i, double v) {
    p.bind_real(i, v);
}
template <class Params>
void bind_column(Params& p, int i, bool v) {
    p.bind_int(i, v ? 1 : 0);
}
template <class Params>
void bind_column(Params& p, int i, time_point v) {
    p.bind_int(i, to_unix_ms(v));
}
template <class Params, named_enum E>
void bind_column(Params& p, int i, E e) {
    p.bind_view(i, to_string(e));  // a static name
}
// JSON columns: serialised for the bind, so copied.
template <class Params, class T>
void bind_column(Params& p, int i, T const& v)
    requires(!std::is_arithmetic_v<T> && !std::is_enum_v<T>)
{
    auto text = std::get<std::string>(to_value(v));
    p.bind_copy(i, text);
}
template <class Params, class T>
void bind_column(Params& p, int i, std::optional<T> const& v) {
    if (v)
        bind_column(p, i, *v);
    else
        p.bind_null(i);
}

/** Binds `v`'s columns in field order to parameters `first`, `first + 1`, ...; returns the next
 *  parameter index. `v` must outlive the statement's step (text fields are bound in place). */
template <json_described T, class Params>
int bind_columns(T const& v, Params& p, int first) {
    int i = first;
    for_each_column<T>(v, [&](std::string_view, auto const& m) { bind_column(p, i++, m); });
    return i;
}

/** `bind_columns` for an update: every column but `fixed_columns<T>` (`append_update_values`). */
template <json_described T, class Params>
int bind_update_columns(T const& v, Params& p, int first) {
    int i = first;
    for_each_column<T>(v, [&](std::string_view n, auto const& m) {
        if (!is_fixed<T>(n)) bind_column(p, i++, m);
    });
    return i;
}

/** Reads `v`'s columns from `s` starting at column `first`; returns the next column index. */
template <json_described T, class Row>
result<int> read_row(Row const& s, int first, T& v) {
    int c = first;
    result<void> status;
    for_each_column<T>(v, [&](std::string_view, auto& m) {
        if (status) status = read_column(s, c, m);
        ++c;
    });
    if (!status) return status.error();
    return c;
}

/** Column list of a child element type: `value` for plain strings. */
template <class E>
std::vector<std::string> child_columns() {
    if constexpr (json_described<E>)
        return column_names<E>();
    else
        return {"value"};
}

template <class E>
void append_child_values(E const& e, std::vector<value>& out) {
    if constexpr (json_described<E>)
        append_values(e, out);
    else
        out.push_back(to_value(e));
}

/** Reads one child element from `s`, its columns starting at column `first`. */
template <class E, class Row>
result<void> read_child(Row const& s, E& e, int first) {
    if constexpr (json_described<E>) {
        auto r = read_row(s, first, e);
        if (!r) return r.error();
        return {};
    } else {
        return read_column(s, first, e);
    }
}

/** "a, b, c" */
inline std::string join(std::vector<std::string> const& names, std::string_view prefix = "") {
    std::string out;
    for (auto const& n : names) {
        if (!out.empty()) out += ", ";
        out += prefix;
        out += n;
    }
    return out;
}

/** "?, ?, ?" */
inline std::string placeholders(std::size_t n) {
    std::string out;
    for (std::size_t i = 0; i < n; ++i) out += i ? ", ?" : "?";
    return out;
}

// ---- the SQL text of an aggregate table -------------------------------------------------------

/** The metadata columns every aggregate table starts with (`metadata` of core/aggregate.hpp). */
inline constexpr char const* meta_columns = "tenant_id, created_at, created_by, updated_at, updated_by, row_version";
inline constexpr int meta_count = 6;

/** `SELECT <meta>, <columns of D> FROM table WHERE scope`: the caller appends its filters. */
template <json_described D>
std::string select_sql(std::string_view table, std::string_view scope) {
    return "SELECT " + std::string(meta_columns) + ", " + join(column_names<D>()) + " FROM " + std::string(table) +
           " WHERE " + std::string(scope);
}

/** Inserts a row: the metadata values, then `D`'s columns (`append_values`). */
template <json_described D>
std::string insert_sql(std::string_view table) {
    auto cols = column_names<D>();
    return "INSERT INTO " + std::string(table) + " (" + meta_columns + ", " + join(cols) + ") VALUES (" +
           placeholders(cols.size() + meta_count) + ")";
}

/** Updates a row if its version is unchanged: updated_at, updated_by, `D`'s columns but the
 *  fixed ones (`append_update_values`), then the key, the tenant and the expected row_version.
 *  `also_set` adds fixed assignments. */
template <json_described D>
std::string update_sql(std::string_view table, std::string_view key, std::string_view also_set = "") {
    std::string set = "updated_at = ?, updated_by = ?, row_version = row_version + 1";
    if (!also_set.empty()) set += ", " + std::string(also_set);
    D probe{};
    for_each_column<D>(probe, [&](std::string_view n, auto const&) {
        if (!is_fixed<D>(n)) set += ", " + snake(n) + " = ?";
    });
    return "UPDATE " + std::string(table) + " SET " + set + " WHERE " + std::string(key) +
           " = ? AND tenant_id = ? AND row_version = ?";
}

/** The child table of vector field `field` of `table`'s rows. */
inline std::string child_table(std::string_view table, std::string_view field) {
    return std::string(table) + "_" + snake(field);
}

/** Inserts one child element: owner id, position, then its columns. */
template <class E>
std::string child_insert_sql(std::string_view table, std::string_view field) {
    auto cols = child_columns<E>();
    return "INSERT INTO " + child_table(table, field) + " (owner_id, position, " + join(cols) + ") VALUES (" +
           placeholders(cols.size() + 2) + ")";
}

/** The children of `owners` owners (`owner_id IN` that many parameters), each owner's in order,
 *  after their `owner_id`. */
template <class E>
std::string child_select_many_sql(std::string_view table, std::string_view field, std::size_t owners) {
    return "SELECT owner_id, " + join(child_columns<E>()) + " FROM " + child_table(table, field) + " WHERE owner_id IN (" +
           placeholders(owners) + ") ORDER BY owner_id, position";
}

/** The number of children of one owner (their positions are 0..n-1). */
inline std::string child_count_sql(std::string_view table, std::string_view field) {
    return "SELECT COUNT(*) FROM " + child_table(table, field) + " WHERE owner_id = ?";
}

/** Deletes the children of one owner. */
inline std::string child_delete_sql(std::string_view table, std::string_view field) {
    return "DELETE FROM " + child_table(table, field) + " WHERE owner_id = ?";
}

}  // namespace integration::storage::sql

#endif
