#include <integration/backends/sqlite/sqlite_store.hpp>

#include "../../detail/sql/mapping.hpp"
#include "../../detail/sqlite/connection.hpp"
#include "schema.hpp"
#include "wal_sync.hpp"

#include "../../detail/thread_name.hpp"

#include <integration/core/id.hpp>

#include <boost/json.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <filesystem>
#include <array>
#include <atomic>
#include <bit>
#include <condition_variable>
#include <deque>
#include <future>
#include <iterator>
#include <mutex>
#include <optional>
#include <span>
#include <unordered_map>
#include <thread>
#include <tuple>

// A run's attempts live in its row: recording a run is one row write, and listing runs needs no
// query per run for its attempts.
template <>
struct integration::storage::sql::vectors_as_json<integration::runs::run_data> : std::true_type {};

// Recording a delivery's attempt changes its state columns and appends one attempt row: its
// identity columns (and so the unique and per-subscription indexes over them) stay untouched.
template <>
struct integration::storage::sql::fixed_columns<integration::webhooks::delivery_data> {
    static constexpr std::array<std::string_view, 9> names{"deliveryId",         "direction", "subscriptionId",
                                                           "providerId",         "connectionId",
                                                           "providerDeliveryId", "eventType", "eventId",
                                                           "payloadHash"};
};
template <>
struct integration::storage::sql::append_only_children<integration::webhooks::delivery_data> : std::true_type {};

namespace integration::storage {
namespace {

namespace mapping = sql;

using sqlite::database;
using sqlite::statement;
using sqlite::value;

// ---- per-aggregate table facts ----------------------------------------------------------------

/** Columns of `A`'s table outside its data that only its insert writes (`repo::save`), read
 *  and changed on their own: a run's small bodies, an inbound delivery's payload kept in the
 *  store. In the row, not a table of their own, so that recording one writes one row. */
template <class A>
constexpr std::array<char const*, 0> blob_columns{};
template <>
constexpr std::array<char const*, 2> blob_columns<runs::integration_run>{"request_body", "response_body"};
template <>
constexpr std::array<char const*, 1> blob_columns<webhooks::webhook_delivery>{"payload"};

/** Where an aggregate lives; `shared` tables also hold global rows (tenant_id '') that every
 *  tenant may read. */
struct table_info {
    char const* name;
    char const* key;
    char const* aggregate_type;
    bool shared;
    std::string_view id_prefix;
};
template <class A>
constexpr table_info table_of{};
template <>
constexpr table_info table_of<providers::integration_provider>{"providers", "provider_id", "IntegrationProvider", true, id_prefix::provider};
template <>
constexpr table_info table_of<providers::external_api_client>{"api_clients", "api_client_id", "ExternalApiClient", true, id_prefix::api_client};
template <>
constexpr table_info table_of<connections::integration_connection>{"connections", "connection_id", "IntegrationConnection", false, id_prefix::connection};
template <>
constexpr table_info table_of<credentials::integration_credential>{"credentials", "credential_id", "IntegrationCredential", false, id_prefix::credential};
template <>
constexpr table_info table_of<runs::integration_run>{"runs", "run_id", "IntegrationRun", false, id_prefix::run};
template <>
constexpr table_info table_of<failures::integration_failure>{"failures", "failure_id", "IntegrationFailure", false, id_prefix::failure};
template <>
constexpr table_info table_of<webhooks::webhook_subscription>{"subscriptions", "subscription_id", "WebhookSubscription", false, id_prefix::subscription};
template <>
constexpr table_info table_of<webhooks::webhook_delivery>{"deliveries", "delivery_id", "WebhookDelivery", false, id_prefix::delivery};

using mapping::meta_columns;
using mapping::meta_count;

result<metadata> read_meta(statement const& s) {
    metadata m;
    m.tenant_id = s.text(0);
    m.created_at = from_unix_ms(s.int64(1));
    m.created_by = s.text(2);
    m.updated_at = from_unix_ms(s.int64(3));
    m.updated_by = s.text(4);
    m.version = s.int64(5);
    return m;
}

std::size_t clamp_limit(std::size_t limit) { return limit == 0 ? 1 : limit > 500 ? 500 : limit; }

std::string const outbox_insert_sql =
    "INSERT INTO outbox (event_id, tenant_id, aggregate_type, aggregate_id, aggregate_version, event_type, "
    "occurred_at, envelope, body_from_payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";

// One outbox row: the envelope's columns and its serialized `json` (bound as views: the caller
// resets `s` before they go). `body_from_payload`: `json` leaves out `data.body`, which is the
// payload of delivery `aggregate_id` in this format.
result<void> insert_outbox_row(statement& s, events::event_envelope const& env, std::string_view json,
                               std::optional<webhooks::body_format> body_from_payload = std::nullopt) {
    s.reset();
    s.bind_view(1, env.event_id);
    s.bind_view(2, env.tenant_id);
    s.bind_view(3, env.aggregate_type);
    s.bind_view(4, env.aggregate_id);
    s.bind_int(5, env.aggregate_version);
    s.bind_view(6, env.event_type);
    s.bind_int(7, to_unix_ms(env.occurred_at));
    s.bind_view(8, json);
    if (body_from_payload)
        s.bind_view(9, to_string(*body_from_payload));
    else
        s.bind_null(9);
    return s.run();
}

// Outbox rows built off the writer (`prepare_inbound`, `prepare_attempt`, `prepare_run`).
result<void> insert_events(database& db, std::span<serialized_event const> events) {
    if (events.empty()) return {};
    auto ins = db.prepare_static(outbox_insert_sql);
    if (!ins) return ins.error();
    auto& s = **ins;
    for (auto const& e : events)
        if (auto r = insert_outbox_row(s, e.envelope, e.json, e.body_from_payload); !r) return r;
    s.reset();  // unbinds the caller's strings
    return {};
}

// A delivery whose payload is still the body of an event not yet published: retention keeps
// the payload (and the delivery it cascades from) until the event is out. An event parked as
// dead is published only if a person replays it: its payload goes by age like any other (a raw
// payload is kept 30 days, storage.md), and a replay after that is refused.
constexpr char const* payload_not_pending_sql =
    "delivery_id NOT IN (SELECT aggregate_id FROM outbox WHERE published_at IS NULL AND dead_at IS NULL AND "
    "body_from_payload IS NOT NULL)";

// ---- shared state of one unit of work ----------------------------------------------------------

struct work_state {
    database& db;
    request_context const& ctx;
    clock const& clk;
    std::string const& source;
    bool read_only;
};

/** Whether the row `sql` selects (`lease_until > ?` of one id in the unit's tenant) is leased at `now`. */
result<bool> lease_held(work_state& w, char const* sql, std::string const& id, time_point now) {
    auto st = w.db.prepare(sql);
    if (!st) return st.error();
    (*st)->bind_all({to_unix_ms(now), id, w.ctx.tenant_id});
    auto row = (*st)->step();
    if (!row) return row.error();
    bool held = *row && !(*st)->is_null(0) && (*st)->int64(0) != 0;
    (*st)->reset();
    return held;
}

/** A repository of aggregate A over one connection; every query is scoped to the unit's tenant. */
template <class A>
class repo {
public:
    using data_t = typename A::data_type;
    static constexpr table_info T = table_of<A>;

    explicit repo(work_state& w) : w_(w) {}
    friend class delivery_repo;  // record_attempt writes events as save does

    /** The main table's select of every column, scoped to the tenant: `select`'s and `list_merged`'s head. */
    std::string const& select_head() {
        static std::string const head = mapping::select_sql<data_t>(T.name, scope_sql());
        return head;
    }

    /** `where` is extra SQL over the main table (alias-free), `binds` its parameters. */
    result<std::vector<A>> select(std::string const& where, std::vector<value> binds, std::string const& order,
                                  std::size_t limit) {
        std::string sql = select_head();
        if (!where.empty()) sql += " AND (" + where + ")";
        // The limit is bound, never written in: every SQL text is kept prepared for the
        // connection's life, and a caller's page sizes would each add one.
        sql += " ORDER BY " + order + " LIMIT ?";
        std::vector<value> all = scope_binds();
        for (auto& b : binds) all.push_back(std::move(b));
        all.push_back(value{static_cast<std::int64_t>(limit)});
        auto st = w_.db.prepare(sql);
        if (!st) return st.error();
        (*st)->bind_all(all);
        return read_rows(**st);
    }

    using row = std::pair<metadata, data_t>;

    /** Steps `st` to its end, reading each row's metadata then its columns (`select_sql`'s
     *  order), then loads the children of the rows `has_children` names (all when unset). */
    result<std::vector<A>> read_rows(statement& st, bool (*has_children)(data_t const&) = nullptr) {
        auto rows = read_data(st, has_children);
        if (!rows) return rows.error();
        return restore_all(std::move(*rows));
    }

    /** `read_rows` without the aggregates' validation, which needs no connection: `restore_all`
     *  may run after the unit, on another thread. */
    result<std::vector<row>> read_data(statement& st, bool (*has_children)(data_t const&) = nullptr) {
        std::vector<row> rows;
        while (true) {
            auto more = st.step();
            if (!more) return more.error();
            if (!*more) break;
            auto m = read_meta(st);
            data_t d{};
            auto next = mapping::read_row(st, meta_count, d);
            if (!next) return next.error();
            rows.emplace_back(std::move(*m), std::move(d));
        }
        st.reset();
        std::vector<data_t*> owners;
        for (auto& [m, d] : rows)
            if (!has_children || has_children(d)) owners.push_back(&d);
        if (auto r = load_children(owners); !r) return r.error();
        return rows;
    }

    static result<std::vector<A>> restore_all(std::vector<row> rows) {
        std::vector<A> out;
        out.reserve(rows.size());
        for (auto& [m, d] : rows) {
            auto a = A::restore(std::move(m), std::move(d));
            if (!a) return error{errc::storage_failure, "stored row is invalid: " + a.error().detail()};
            out.push_back(std::move(*a));
        }
        return out;
    }

    result<A> find_one(std::string const& where, std::vector<value> binds, std::string_view what) {
        auto rows = select(where, std::move(binds), T.key, 1);
        if (!rows) return rows.error();
        if (rows->empty()) return error{errc::not_found, std::string(what) + " was not found in this tenant"};
        return std::move(rows->front());
    }

    result<A> find(std::string const& id) {
        return find_one(std::string(T.key) + " = ?", {id}, std::string(T.aggregate_type) + " " + id);
    }

    /** A cursor is the last id of the page before: anything else would silently page from
     *  wherever it sorts. */
    static result<void> check_cursor(page_request const& p) {
        if (!p.cursor.empty() && !is_valid_id(p.cursor, T.id_prefix))
            return error{errc::invalid_argument, "cursor must be a nextCursor of this list, an id starting `" +
                                                     std::string(T.id_prefix) + "-`"};
        return {};
    }

    result<page<A>> list(std::string where, std::vector<value> binds, page_request const& p) {
        if (auto c = check_cursor(p); !c) return c.error();
        auto limit = clamp_limit(p.limit);
        if (!p.cursor.empty()) {
            where = where.empty() ? std::string(T.key) + " > ?" : "(" + where + ") AND " + T.key + " > ?";
            binds.push_back(p.cursor);
        }
        return page_of(select(where, std::move(binds), T.key, limit + 1), limit);
    }

    /** `list` of the rows matching `where` and any one of `arms`, each a range of an index in key
     *  order: SQLite merges the arms' ranges and stops at the page's end, where one condition
     *  joining them with OR reads and sorts every matching row of the tenant for each page. */
    result<page<A>> list_merged(std::span<std::string const> arms, std::string const& where, std::vector<value> const& binds,
                                page_request const& p) {
        if (auto c = check_cursor(p); !c) return c.error();
        auto limit = clamp_limit(p.limit);
        std::string sql;
        std::vector<value> all;
        for (auto const& arm : arms) {
            if (!sql.empty()) sql += " UNION ALL ";
            sql += select_head() + " AND (" + arm + ")";
            if (!where.empty()) sql += " AND (" + where + ")";
            for (auto& b : scope_binds()) all.push_back(std::move(b));
            all.insert(all.end(), binds.begin(), binds.end());
            if (!p.cursor.empty()) {
                sql += std::string(" AND ") + T.key + " > ?";
                all.push_back(p.cursor);
            }
        }
        sql += std::string(" ORDER BY ") + T.key + " LIMIT ?";  // bound, as in `select`
        all.push_back(value{static_cast<std::int64_t>(limit + 1)});
        auto st = w_.db.prepare(sql);
        if (!st) return st.error();
        (*st)->bind_all(all);
        return page_of(read_rows(**st), limit);
    }

    /** A page of at most `limit` of `rows` (read with one more, which only says there is a next page). */
    static result<page<A>> page_of(result<std::vector<A>> rows, std::size_t limit) {
        if (!rows) return rows.error();
        page<A> out;
        if (rows->size() > limit) {
            rows->pop_back();
            out.next_cursor = rows->back().id();
        }
        out.items = std::move(*rows);
        return out;
    }

    result<std::int64_t> count(std::string const& where, std::vector<value> binds) {
        std::string sql = std::string("SELECT COUNT(*) FROM ") + T.name + " WHERE " + scope_sql() + " AND (" + where + ")";
        std::vector<value> all = scope_binds();
        for (auto& b : binds) all.push_back(std::move(b));
        auto st = w_.db.prepare(sql);
        if (!st) return st.error();
        (*st)->bind_all(all);
        auto row = (*st)->step();
        if (!row) return row.error();
        auto n = (*st)->int64(0);
        (*st)->reset();
        return n;
    }

    /** Inserts or updates `a`. A new row also gets `blobs`, the values of `blob_columns<A>` (a
     *  run's small bodies, an inbound delivery's payload), unset ones NULL; they view the
     *  caller's bytes. */
    result<void> save(A& a, std::span<std::optional<std::string_view> const> blobs = {}) {
        if (w_.read_only) return error{errc::invalid_state, "save called inside a read-only unit of work"};
        auto const& m = a.meta();
        bool global = m.tenant_id.empty();
        if (global && !(T.shared && w_.ctx.admin))
            return error{errc::forbidden, "global " + std::string(T.aggregate_type) + " rows can be changed only with an admin key"};
        if (!global && m.tenant_id != w_.ctx.tenant_id)
            return error{errc::not_found, std::string(T.aggregate_type) + " " + a.id() + " was not found in this tenant"};
        auto now = w_.clk.now();
        std::int64_t next_version = m.version + 1;
        if (auto r = m.version == 0 ? insert(a, now, blobs) : update(a, now); !r) return r;
        if (auto r = save_children(a.data(), m.version == 0); !r) return r;
        if constexpr (std::is_same_v<A, providers::external_api_client>)
            if (auto r = claim_assembly_versions(a); !r) return r;
        a.mark_saved(w_.ctx.actor, now, next_version);
        return write_events(a);
    }

    /** Deletes the row (children cascade) in this tenant. */
    result<void> remove(std::string const& id) {
        if (w_.read_only) return error{errc::invalid_state, "remove called inside a read-only unit of work"};
        static std::string const sql = std::string("DELETE FROM ") + T.name + " WHERE " + T.key + " = ? AND tenant_id = ?";
        auto st = w_.db.prepare(sql);
        if (!st) return st.error();
        (*st)->bind_all({id, w_.ctx.tenant_id});
        return (*st)->run();
    }

private:
    std::string scope_sql() const {
        if constexpr (T.shared) return "(tenant_id = ? OR tenant_id = '')";
        return "tenant_id = ?";
    }
    std::vector<value> scope_binds() const { return {w_.ctx.tenant_id}; }

    result<void> insert(A const& a, time_point now, std::span<std::optional<std::string_view> const> blobs) {
        static std::string const sql = [] {
            auto q = mapping::insert_sql<data_t>(T.name);
            for (auto const* column : blob_columns<A>) {
                q.insert(q.find(") VALUES"), std::string(", ") + column);
                q.insert(q.size() - 1, ", ?");
            }
            return q;
        }();
        if (blobs.size() > blob_columns<A>.size())
            return error{errc::invalid_argument, std::string(T.aggregate_type) + " rows have no such column"};
        auto const& m = a.meta();
        auto st = w_.db.prepare_static(sql);
        if (!st) return st.error();
        auto& s = **st;
        s.bind_view(1, m.tenant_id);
        s.bind_int(2, to_unix_ms(now));
        s.bind_view(3, w_.ctx.actor);
        s.bind_int(4, to_unix_ms(now));
        s.bind_view(5, w_.ctx.actor);
        s.bind_int(6, 1);
        int next = mapping::bind_columns(a.data(), s, meta_count + 1);
        for (std::size_t i = 0; i < blobs.size(); ++i)
            if (blobs[i]) s.bind_blob_view(next + static_cast<int>(i), *blobs[i]);
        auto r = s.run();
        s.reset();  // unbinds the caller's bytes before they go
        if (!r && r.error() == errc::already_exists)
            return error{errc::already_exists, std::string(T.aggregate_type) + " violates a uniqueness rule (" +
                                                   r.error().detail() + ")"};
        return r;
    }

    result<void> update(A const& a, time_point now) {
        // Saving a delivery or a failure ends any worker's lease on it: what it leased is recorded
        // (a lease left by a worker that stopped after its commit would read as an interruption).
        static std::string const sql = mapping::update_sql<data_t>(
            T.name, T.key,
            std::is_same_v<A, webhooks::webhook_delivery> || std::is_same_v<A, failures::integration_failure>
                ? "lease_owner = NULL, lease_until = NULL"
                : "");
        auto const& m = a.meta();
        auto st = w_.db.prepare_static(sql);
        if (!st) return st.error();
        auto& s = **st;
        s.bind_int(1, to_unix_ms(now));
        s.bind_view(2, w_.ctx.actor);
        int next = mapping::bind_update_columns(a.data(), s, 3);
        s.bind_view(next, a.id());
        s.bind_view(next + 1, m.tenant_id);
        s.bind_int(next + 2, m.version);
        if (auto r = s.run(); !r) return r;
        if (w_.db.changes() == 1) return {};
        auto current = find(a.id());
        if (!current) return current.error();
        return error{errc::conflict, std::string(T.aggregate_type) + " " + a.id() + " was changed concurrently (saved version " +
                                         std::to_string(m.version) + ", stored version " +
                                         std::to_string(current->meta().version) + "); reload it and retry"};
    }

    // A new row has no children yet: nothing to delete first. Append-only lists keep the stored
    // elements (the version check proves they are the first ones of `items`) and add the rest.
    result<void> save_children(data_t const& d, bool fresh) {
        result<void> status;
        mapping::for_each_child<data_t>(d, [&](std::string_view field, auto const& items) {
            if (!status) return;
            using E = typename std::remove_cvref_t<decltype(items)>::value_type;
            std::size_t kept = 0;
            if (!fresh && mapping::append_only_children<data_t>::value) {
                auto count = w_.db.prepare(mapping::child_count_sql(T.name, field));
                if (!count) return void(status = count.error());
                (*count)->bind(1, value{std::string(d_id(d))});
                auto row = (*count)->step();
                if (!row) return void(status = row.error());
                kept = static_cast<std::size_t>((*count)->int64(0));
                (*count)->reset();
                if (kept > items.size())
                    return void(status = error{errc::conflict, std::string(T.aggregate_type) + " " + d_id(d) +
                                                                   " has fewer " + std::string(field) +
                                                                   " than stored; reload it and retry"});
            } else if (!fresh) {
                auto del = w_.db.prepare(mapping::child_delete_sql(T.name, field));
                if (!del) return void(status = del.error());
                (*del)->bind(1, value{std::string(d_id(d))});
                if (status = (*del)->run(); !status) return;
            }
            if (items.size() == kept) return;
            auto ins = w_.db.prepare(mapping::child_insert_sql<E>(T.name, field));
            if (!ins) return void(status = ins.error());
            auto pos = static_cast<std::int64_t>(kept);
            for (auto const& e : std::span(items).subspan(kept)) {
                std::vector<value> v{std::string(d_id(d)), pos++};
                mapping::append_child_values(e, v);
                (*ins)->reset();
                (*ins)->bind_all(v);
                if (status = (*ins)->run(); !status) return;
            }
        });
        return status;
    }

    // The children of `owners` (rows just read, whose child lists are empty): one query per child
    // list for up to `chunk` owners, instead of one per owner and list (a page of deliveries read
    // its 51 rows' attempts with 51 queries).
    result<void> load_children(std::span<data_t* const> owners) {
        constexpr std::size_t chunk = 32;
        result<void> status;
        bool lists = false;
        if (!owners.empty()) mapping::for_each_child<data_t>(*owners.front(), [&](std::string_view, auto&) { lists = true; });
        if (!lists) return status;
        std::unordered_map<std::string_view, data_t*> by_id;
        for (auto* d : owners) by_id.emplace(d_id(*d), d);
        mapping::for_each_child<data_t>(*owners.front(), [&](std::string_view field, auto& first) {
            using E = typename std::remove_cvref_t<decltype(first)>::value_type;
            // This list of `owner`: the same field of another object of the same type.
            auto list_of = [&](data_t& owner) -> std::vector<E>* {
                std::vector<E>* out = nullptr;
                mapping::for_each_child<data_t>(owner, [&](std::string_view f, auto& items) {
                    if constexpr (std::is_same_v<std::remove_cvref_t<decltype(items)>, std::vector<E>>)
                        if (f == field) out = &items;
                });
                return out;
            };
            if (!status) return;
            // One owner (a find) binds one id; a page binds `chunk`, a short last chunk repeating
            // its last owner, so that every chunk shares one statement.
            auto const n = owners.size() == 1 ? std::size_t{1} : chunk;
            auto st = w_.db.prepare(mapping::child_select_many_sql<E>(T.name, field, n));
            if (!st) return void(status = st.error());
            for (std::size_t at = 0; at < owners.size(); at += n) {
                for (std::size_t i = 0; i < n; ++i)
                    (*st)->bind(static_cast<int>(i + 1), value{d_id(*owners[std::min(at + i, owners.size() - 1)])});
                while (true) {
                    auto more = (*st)->step();
                    if (!more) return void(status = more.error());
                    if (!*more) break;
                    auto owner = by_id.find((*st)->text(0));
                    if (owner == by_id.end()) continue;
                    E e{};
                    if (status = mapping::read_child(**st, e, 1); !status) return;
                    if (auto* items = list_of(*owner->second)) items->push_back(std::move(e));
                }
                (*st)->reset();
            }
        });
        return status;
    }

    // The id is the first field of every data struct.
    static std::string const& d_id(data_t const& d) { return d.*(std::get<0>(data_t::json_fields()).member); }

    // assemblyName + version (every version in the history) is unique among global clients and
    // within the client's tenant's view: its own clients and the global ones. Another tenant's
    // claim is never looked at, so it neither conflicts nor shows. A tenant claim made before an
    // admin registered the same global name stays valid.
    result<void> claim_assembly_versions(providers::external_api_client const& c) {
        auto taken = w_.db.prepare(
            "SELECT tenant_id FROM assembly_versions WHERE tenant_id IN (?, '') AND assembly_name = ? AND version = ? "
            "AND api_client_id <> ? ORDER BY tenant_id LIMIT 1");
        if (!taken) return taken.error();
        auto ins = w_.db.prepare(
            "INSERT INTO assembly_versions (tenant_id, assembly_name, version, api_client_id) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(tenant_id, assembly_name, version) DO NOTHING");
        if (!ins) return ins.error();
        auto const& tenant = c.meta().tenant_id;
        for (auto const& v : c.data().versions) {
            (*taken)->reset();
            (*taken)->bind_all({tenant, c.data().assembly_name, v.version, c.id()});
            auto row = (*taken)->step();
            if (!row) return row.error();
            bool global = *row && (*taken)->text(0).empty();
            (*taken)->reset();
            if (*row)
                return error{errc::already_exists, "assemblyName " + c.data().assembly_name + " version " + v.version +
                                                       " is already registered by " +
                                                       (global ? "a global client" : "another client of this tenant") +
                                                       "; assemblyName + version must be unique"};
            (*ins)->reset();
            (*ins)->bind_all({tenant, c.data().assembly_name, v.version, c.id()});
            if (auto r = (*ins)->run(); !r) return r;
        }
        return {};
    }

    result<void> write_events(A& a) {
        auto events = a.take_events();
        if (events.empty()) return {};
        auto st = w_.db.prepare_static(outbox_insert_sql);
        if (!st) return st.error();
        auto& s = **st;
        auto now = w_.clk.now();
        for (auto& e : events) {
            auto env = events::make_envelope(std::move(e), w_.ctx, T.aggregate_type, a.id(), a.meta().tenant_id,
                                             a.meta().version, now);
            env.source = w_.source;
            auto text = events::serialize_envelope(env, events::envelope_fields::without_identity);
            if (auto r = insert_outbox_row(s, env, text); !r) return r;
        }
        s.reset();  // unbinds `env` and `text` before they go
        return {};
    }

    work_state& w_;
};

// ---- the eight repositories ----------------------------------------------------------------------

void add_filter(std::string& where, std::vector<value>& binds, char const* column, std::optional<std::string> const& v) {
    if (!v) return;
    if (!where.empty()) where += " AND ";
    where += column;
    where += " = ?";
    binds.push_back(*v);
}
template <named_enum E>
void add_filter(std::string& where, std::vector<value>& binds, char const* column, std::optional<E> const& v) {
    if (v) add_filter(where, binds, column, std::optional<std::string>(std::string(to_string(*v))));
}

class provider_repo final : public integration_provider_repository {
public:
    explicit provider_repo(work_state& w) : r_(w) {}
    result<providers::integration_provider> find(std::string const& id) override { return r_.find(id); }
    result<providers::integration_provider> find_by_key(std::string const& key, providers::provider_scope scope) override {
        return r_.find_one(scope == providers::provider_scope::global ? "key = ? AND tenant_id = ''" : "key = ? AND tenant_id <> ''",
                           {key}, "provider with key " + key);
    }
    result<page<providers::integration_provider>> list(page_request const& p) override { return r_.list("", {}, p); }
    result<void> save(providers::integration_provider& p) override { return r_.save(p); }

private:
    repo<providers::integration_provider> r_;
};

class api_client_repo final : public external_api_client_repository {
public:
    explicit api_client_repo(work_state& w) : r_(w) {}
    result<providers::external_api_client> find(std::string const& id) override { return r_.find(id); }
    result<page<providers::external_api_client>> list_by_provider(std::string const& provider_id,
                                                                  page_request const& p) override {
        return r_.list("provider_id = ?", {provider_id}, p);
    }
    result<std::size_t> count_active(std::string const& provider_id) override {
        auto n = r_.count("provider_id = ? AND status = 'Active'", {provider_id});
        if (!n) return n.error();
        return static_cast<std::size_t>(*n);
    }
    result<void> save(providers::external_api_client& c) override { return r_.save(c); }

private:
    repo<providers::external_api_client> r_;
};

class connection_repo final : public integration_connection_repository {
public:
    explicit connection_repo(work_state& w) : w_(w), r_(w) {}
    result<connections::integration_connection> find(std::string const& id) override { return r_.find(id); }
    result<page<connections::integration_connection>> list(connection_query const& q, page_request const& p) override {
        std::string where;
        std::vector<value> binds;
        add_filter(where, binds, "project_id", q.project_id);
        add_filter(where, binds, "provider_id", q.provider_id);
        add_filter(where, binds, "status", q.status);
        return r_.list(where, binds, p);
    }
    result<void> save(connections::integration_connection& c) override { return r_.save(c); }
    result<std::vector<connections::integration_connection>> retired_before(time_point before, std::size_t limit) override {
        // Retired is terminal: nothing saves the connection after its retirement.
        return r_.select("status = 'Retired' AND updated_at < ?", {to_unix_ms(before)}, "updated_at, connection_id",
                         clamp_limit(limit));
    }
    result<void> remove(std::string const& id) override;

private:
    work_state& w_;
    repo<connections::integration_connection> r_;
};

result<void> writable(work_state const& w, std::string_view what);
result<void> run_sql(database& db, std::string const& sql, std::vector<value> const& binds);

result<void> connection_repo::remove(std::string const& id) {
    if (auto r = writable(w_, "connections().remove"); !r) return r;
    if (auto r = run_sql(w_.db, "DELETE FROM inbound_webhooks WHERE tenant_id = ? AND connection_id = ?", {w_.ctx.tenant_id, id}); !r)
        return r;
    return r_.remove(id);
}

class credential_repo final : public integration_credential_repository {
public:
    explicit credential_repo(work_state& w) : w_(w), r_(w) {}
    result<credentials::integration_credential> find(std::string const& id) override { return r_.find(id); }
    result<page<credentials::integration_credential>> list(credential_query const& q, page_request const& p) override {
        std::string where;
        std::vector<value> binds;
        add_filter(where, binds, "provider_id", q.provider_id);
        add_filter(where, binds, "connection_id", q.connection_id);
        return r_.list(where, binds, p);
    }
    result<std::vector<credentials::integration_credential>> expiring_before(time_point before, std::size_t limit) override {
        return r_.select("status <> 'Revoked' AND expires_at IS NOT NULL AND expires_at < ?", {to_unix_ms(before)},
                         "expires_at, credential_id", clamp_limit(limit));
    }
    result<void> save(credentials::integration_credential& c) override { return r_.save(c); }
    result<std::vector<credentials::integration_credential>> revoked_before(time_point before, std::size_t limit) override {
        // Revoked is terminal; a connection still naming it (Unhealthy, waiting for another
        // credential) keeps it, so that what it names can be read.
        return r_.select("status = 'Revoked' AND updated_at < ? AND NOT EXISTS (SELECT 1 FROM connections c WHERE "
                         "c.tenant_id = credentials.tenant_id AND c.credential_id = credentials.credential_id AND "
                         "c.status <> 'Retired')",
                         {to_unix_ms(before)}, "updated_at, credential_id", clamp_limit(limit));
    }
    result<void> remove(std::string const& id) override {
        if (auto r = writable(w_, "credentials().remove"); !r) return r;
        if (auto r = run_sql(w_.db, "DELETE FROM credential_refresh_leases WHERE tenant_id = ? AND credential_id = ?",
                             {w_.ctx.tenant_id, id});
            !r)
            return r;
        return r_.remove(id);
    }
    result<bool> lease_refresh(std::string const& id, std::string const& owner, time_point now, time_point until) override {
        if (auto r = writable(w_, "credentials().lease_refresh"); !r) return r.error();
        // The upsert changes (and returns) the row only when it is free, lapsed or the owner's.
        auto st = w_.db.prepare(
            "INSERT INTO credential_refresh_leases (tenant_id, credential_id, owner, until) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (tenant_id, credential_id) DO UPDATE SET owner = excluded.owner, until = excluded.until "
            "WHERE credential_refresh_leases.until <= ? OR credential_refresh_leases.owner = excluded.owner "
            "RETURNING owner");
        if (!st) return st.error();
        (*st)->bind_all({w_.ctx.tenant_id, id, owner, to_unix_ms(until), to_unix_ms(now)});
        auto row = (*st)->step();
        (*st)->reset();
        if (!row) return row.error();
        return *row;
    }
    result<void> end_refresh_lease(std::string const& id, std::string const& owner) override {
        if (auto r = writable(w_, "credentials().end_refresh_lease"); !r) return r;
        return run_sql(w_.db, "DELETE FROM credential_refresh_leases WHERE tenant_id = ? AND credential_id = ? AND owner = ?",
                       {w_.ctx.tenant_id, id, owner});
    }

private:
    work_state& w_;
    repo<credentials::integration_credential> r_;
};

class run_repo final : public integration_run_repository {
public:
    explicit run_repo(work_state& w) : w_(w), r_(w) {}
    result<runs::integration_run> find(std::string const& id) override { return r_.find(id); }
    result<runs::integration_run> find_by_idempotency_key(std::string const& key) override {
        return r_.find_one("idempotency_key = ?", {key}, "run with this Idempotency-Key");
    }
    result<page<runs::integration_run>> list(run_query const& q, page_request const& p) override {
        std::string where;
        std::vector<value> binds;
        add_filter(where, binds, "connection_id", q.connection_id);
        add_filter(where, binds, "status", q.status);
        // The literal lets SQLite use runs_unfinished, whose condition a bound value cannot imply.
        if (q.status && *q.status != runs::run_status::completed) where += " AND status <> 'Completed'";
        return r_.list(where, binds, p);
    }
    result<void> save(runs::integration_run& r) override { return r_.save(r); }
    result<void> save_prepared(prepared_run& p) override {
        auto const& m = p.run.meta();
        for (auto const& e : p.events)
            if (e.envelope.tenant_id != w_.ctx.tenant_id || e.envelope.aggregate_id != p.run.id() ||
                e.envelope.aggregate_type != table_of<runs::integration_run>.aggregate_type ||
                e.envelope.aggregate_version != m.version + 1)
                return error{errc::invalid_argument, "save_prepared's events must be its run's, in this tenant, at its next version"};
        bool fresh = m.version == 0;  // read before the save counts it
        std::array<std::optional<std::string_view>, 2> const bodies{p.request_body, p.response_body};
        if (auto r = r_.save(p.run, bodies); !r) return r;
        if (auto r = insert_events(w_.db, p.events); !r) return r;
        return fresh ? result<void>() : put_bodies(p);
    }
    result<std::vector<runs::integration_run>> ended_before(time_point before, std::size_t limit) override {
        // A run ends after it is made, and its id is made with it: the walk in key order stops
        // at the first id made at `before`, instead of reading every younger run of the tenant.
        return r_.select("status IN ('Completed', 'Failed') AND completed_at < ? AND run_id < ?",
                         {to_unix_ms(before), first_id_at(id_prefix::run, before)}, "run_id", clamp_limit(limit));
    }
    result<void> remove(std::string const& id) override { return r_.remove(id); }
    result<void> put_body(std::string const& id, run_body part, std::string_view bytes) override {
        if (auto r = writable(w_, "runs().put_body"); !r) return r;
        static std::string const request = "UPDATE runs SET request_body = ? WHERE run_id = ? AND tenant_id = ?";
        static std::string const response = "UPDATE runs SET response_body = ? WHERE run_id = ? AND tenant_id = ?";
        auto st = w_.db.prepare_static(part == run_body::request ? request : response);
        if (!st) return st.error();
        auto& s = **st;
        s.bind_blob_view(1, bytes);
        s.bind_view(2, id);
        s.bind_view(3, w_.ctx.tenant_id);
        auto r = s.run();
        s.reset();  // unbinds the caller's bytes before they go
        if (!r) return r;
        if (w_.db.changes() != 1) return error{errc::not_found, "IntegrationRun " + id + " was not found in this tenant"};
        return {};
    }
    result<std::string> body(std::string const& id, run_body part) override {
        auto st = w_.db.prepare(part == run_body::request ? "SELECT request_body FROM runs WHERE run_id = ? AND tenant_id = ?"
                                                          : "SELECT response_body FROM runs WHERE run_id = ? AND tenant_id = ?");
        if (!st) return st.error();
        (*st)->bind_all({id, w_.ctx.tenant_id});
        auto row = (*st)->step();
        if (!row) return row.error();
        if (!*row || (*st)->is_null(0)) {
            (*st)->reset();
            return error{errc::not_found, "run " + id + " has no stored " + std::string(part_name(part)) + " body in this tenant"};
        }
        auto bytes = (*st)->blob(0);
        std::string out(bytes.begin(), bytes.end());
        (*st)->reset();
        return out;
    }
    result<std::size_t> purge_bodies(time_point before, std::size_t limit) override {
        if (auto r = writable(w_, "runs().purge_bodies"); !r) return r.error();
        // The inner WHERE repeats runs_with_bodies' condition, so that the index answers it.
        auto st = w_.db.prepare("UPDATE runs SET request_body = NULL, response_body = NULL WHERE rowid IN (SELECT rowid FROM runs "
                                "WHERE tenant_id = ? AND created_at < ? AND (request_body IS NOT NULL OR response_body IS NOT NULL) "
                                "ORDER BY created_at LIMIT ?)");
        if (!st) return st.error();
        (*st)->bind_all({w_.ctx.tenant_id, to_unix_ms(before), static_cast<std::int64_t>(clamp_limit(limit))});
        if (auto r = (*st)->run(); !r) return r.error();
        return static_cast<std::size_t>(w_.db.changes());
    }

private:
    static std::string_view part_name(run_body part) { return part == run_body::request ? "request" : "response"; }

    // The bodies of a stored run this unit has just saved again in this tenant (a new run's
    // insert writes them itself).
    result<void> put_bodies(prepared_run const& p) {
        if (p.request_body)
            if (auto r = put_body(p.run.id(), run_body::request, *p.request_body); !r) return r;
        if (p.response_body) return put_body(p.run.id(), run_body::response, *p.response_body);
        return {};
    }

    work_state& w_;
    repo<runs::integration_run> r_;
};

class failure_repo final : public integration_failure_repository {
public:
    explicit failure_repo(work_state& w) : w_(w), r_(w) {}
    result<failures::integration_failure> find(std::string const& id) override { return r_.find(id); }
    result<page<failures::integration_failure>> list(failure_query const& q, page_request const& p) override {
        std::string where;
        std::vector<value> binds;
        add_filter(where, binds, "run_id", q.run_id);
        add_filter(where, binds, "delivery_id", q.delivery_id);
        add_filter(where, binds, "credential_id", q.credential_id);
        add_filter(where, binds, "connection_id", q.connection_id);
        if (q.unresolved_only) where += where.empty() ? "resolved_at IS NULL" : " AND resolved_at IS NULL";
        return r_.list(where, binds, p);
    }
    result<std::vector<failures::integration_failure>> due_for_retry(time_point now, std::size_t limit) override {
        return r_.select("resolved_at IS NULL AND next_action = 'Retry' AND next_attempt_at <= ?", {to_unix_ms(now)},
                         "next_attempt_at, failure_id", clamp_limit(limit));
    }
    result<std::vector<leased_failure>> claim_due(time_point now, std::string const& owner, time_point until,
                                                  std::size_t limit) override {
        if (w_.read_only) return error{errc::invalid_state, "claim_due called inside a read-only unit of work"};
        // The unit runs under the database's write lock, so select-then-update is atomic.
        auto due = r_.select("resolved_at IS NULL AND next_action = 'Retry' AND next_attempt_at <= ? AND "
                             "source = 'Run' AND (lease_until IS NULL OR lease_until <= ?)",
                             {to_unix_ms(now), to_unix_ms(now)}, "next_attempt_at, failure_id", clamp_limit(limit));
        if (!due) return due.error();
        // `release` clears the lease: one still set here ran out in a worker that stopped.
        auto held = w_.db.prepare("SELECT lease_until IS NOT NULL FROM failures WHERE failure_id = ? AND tenant_id = ?");
        if (!held) return held.error();
        auto st = w_.db.prepare("UPDATE failures SET lease_owner = ?, lease_until = ? WHERE failure_id = ? AND tenant_id = ?");
        if (!st) return st.error();
        std::vector<leased_failure> out;
        out.reserve(due->size());
        for (auto& f : *due) {
            (*held)->reset();
            (*held)->bind_all({f.id(), w_.ctx.tenant_id});
            auto row = (*held)->step();
            if (!row) return row.error();
            bool lapsed = *row && (*held)->int64(0) != 0;
            (*held)->reset();  // a cached statement left on its row would keep a read open after the commit
            (*st)->reset();
            (*st)->bind_all({owner, to_unix_ms(until), f.id(), w_.ctx.tenant_id});
            if (auto r = (*st)->run(); !r) return r.error();
            out.push_back({std::move(f), lapsed});
        }
        return out;
    }
    result<void> release(std::string const& failure_id, std::string const& owner, std::optional<time_point> not_before) override {
        if (w_.read_only) return error{errc::invalid_state, "release called inside a read-only unit of work"};
        auto st = w_.db.prepare("UPDATE failures SET lease_owner = NULL, lease_until = NULL, "
                                "next_attempt_at = max(next_attempt_at, coalesce(?, 0)) "
                                "WHERE failure_id = ? AND tenant_id = ? AND lease_owner = ?");
        if (!st) return st.error();
        (*st)->bind_all({not_before ? sql::value(to_unix_ms(*not_before)) : sql::value(), failure_id, w_.ctx.tenant_id, owner});
        return (*st)->run();
    }
    result<bool> leased(std::string const& failure_id, time_point now) override {
        return lease_held(w_, "SELECT lease_until > ? FROM failures WHERE failure_id = ? AND tenant_id = ?", failure_id, now);
    }
    result<void> save(failures::integration_failure& f) override { return r_.save(f); }
    result<std::vector<failures::integration_failure>> ended_before(time_point before, std::size_t limit) override {
        // Ended after it is recorded, as a run ends after it is made (`runs().ended_before`). A
        // dead letter left open (a run that failed for good) is for a person to escalate while
        // the window lasts; nothing else would ever end it.
        return r_.select("((resolved_at IS NOT NULL AND resolved_at < ?) OR (resolved_at IS NULL AND "
                         "next_action = 'DeadLetter' AND updated_at < ?)) AND failure_id < ?",
                         {to_unix_ms(before), to_unix_ms(before), first_id_at(id_prefix::failure, before)}, "failure_id",
                         clamp_limit(limit));
    }
    result<void> remove(std::string const& id) override { return r_.remove(id); }

private:
    work_state& w_;
    repo<failures::integration_failure> r_;
};

class subscription_repo final : public webhook_subscription_repository {
public:
    explicit subscription_repo(work_state& w) : w_(w), r_(w) {}
    result<webhooks::webhook_subscription> find(std::string const& id) override { return r_.find(id); }
    result<page<webhooks::webhook_subscription>> list(page_request const& p) override { return r_.list("", {}, p); }
    result<std::vector<webhooks::webhook_subscription>> active_for_event(std::string const& event_type) override {
        // Patterns are exact names, "prefix.*" or "*": the ones that match `event_type` are its
        // name, "*" and "prefix.*" for each dot with more after it, so only matching rows are
        // read (a tenant's other prefixes, however many, cannot crowd a match out of a page).
        std::string in = "?, ?";
        std::vector<value> binds{value{event_type}, value{std::string("*")}};
        for (auto dot = event_type.find('.'); dot != std::string::npos && dot + 1 < event_type.size();
             dot = event_type.find('.', dot + 1)) {
            in += ", ?";
            binds.push_back(value{event_type.substr(0, dot + 1) + "*"});
        }
        std::vector<webhooks::webhook_subscription> out;
        std::string after;
        constexpr std::size_t page = 1'000;
        while (true) {
            auto b = binds;
            b.push_back(value{after});
            auto rows = r_.select("active = 1 AND event_type IN (" + in + ") AND subscription_id > ?", std::move(b),
                                  "subscription_id", page);
            if (!rows) return rows.error();
            if (!rows->empty()) after = rows->back().id();
            std::move(rows->begin(), rows->end(), std::back_inserter(out));
            if (rows->size() < page) return out;
        }
    }
    result<void> save(webhooks::webhook_subscription& s) override {
        // Whether this save deactivates or reactivates it: the last of its unsaved events says
        // (the save takes them into the outbox).
        bool switched = false;
        for (auto const& e : s.pending_events())
            if (e.event_type == events::event_type::webhook_subscription_deactivated ||
                e.event_type == events::event_type::webhook_subscription_reactivated)
                switched = true;
        if (auto r = r_.save(s); !r) return r;
        if (!switched) return {};
        // A deactivated subscription's waiting deliveries leave the claims' order (nextAttemptAt
        // cleared): every claim of every worker walked past them, oldest due first, for as long
        // as they stayed. Reactivated, they are due at once. One a worker holds keeps its time.
        auto const now = to_unix_ms(w_.clk.now());
        static std::string const hold =
            "UPDATE deliveries SET next_attempt_at = NULL, row_version = row_version + 1 "
            "WHERE tenant_id = ?1 AND subscription_id = ?2 AND direction = 'Outbound' AND status IN ('Pending', 'Failed') "
            "AND next_attempt_at IS NOT NULL AND (lease_until IS NULL OR lease_until <= ?3)";
        static std::string const resume =
            "UPDATE deliveries SET next_attempt_at = ?3, row_version = row_version + 1 "
            "WHERE tenant_id = ?1 AND subscription_id = ?2 AND direction = 'Outbound' AND status IN ('Pending', 'Failed') "
            "AND next_attempt_at IS NULL";
        auto st = w_.db.prepare_static(s.active() ? resume : hold);
        if (!st) return st.error();
        (*st)->bind_all({w_.ctx.tenant_id, s.id(), now});
        auto done = (*st)->step();
        (*st)->reset();
        if (!done) return done.error();
        return {};
    }

private:
    work_state& w_;
    repo<webhooks::webhook_subscription> r_;
};

/** Prepares `sql`, binds `binds` and runs it to completion. */
result<void> run_sql(database& db, std::string const& sql, std::vector<value> const& binds) {
    auto st = db.prepare(sql);
    if (!st) return st.error();
    (*st)->bind_all(binds);
    return (*st)->run();
}

result<void> writable(work_state const& w, std::string_view what) {
    if (w.read_only) return error{errc::invalid_state, std::string(what) + " called inside a read-only unit of work"};
    return {};
}

// One condition per delivery direction, literal so that each selects its own index range.
std::span<std::string const> direction_arms() {
    static auto const arms = [] {
        std::vector<std::string> out;
        for (auto name : enum_names<webhooks::delivery_direction>::values) out.push_back("direction = '" + std::string(name) + "'");
        return out;
    }();
    return arms;
}

class delivery_repo final : public webhook_delivery_repository {
public:
    explicit delivery_repo(work_state& w) : w_(w), r_(w) {}
    result<webhooks::webhook_delivery> find(std::string const& id) override { return r_.find(id); }
    result<webhooks::webhook_delivery> find_inbound(std::string const& connection_id,
                                                    std::string const& provider_delivery_id) override {
        // Every inbound receive looks its id up on the writer: nothing built or copied per call.
        static std::string const sql = mapping::select_sql<webhooks::delivery_data>("deliveries", "tenant_id = ?") +
                                       " AND connection_id = ? AND provider_delivery_id = ? LIMIT 1";
        auto st = w_.db.prepare_static(sql);
        if (!st) return st.error();
        (*st)->bind_view(1, w_.ctx.tenant_id);
        (*st)->bind_view(2, connection_id);
        (*st)->bind_view(3, provider_delivery_id);
        auto rows = r_.read_rows(**st);
        if (!rows) return rows.error();
        if (rows->empty()) return error{errc::not_found, "inbound delivery " + provider_delivery_id + " was not found in this tenant"};
        return std::move(rows->front());
    }
    result<page<webhooks::webhook_delivery>> list(delivery_query const& q, page_request const& p) override {
        std::string where;
        std::vector<value> binds;
        add_filter(where, binds, "direction", q.direction);
        add_filter(where, binds, "subscription_id", q.subscription_id);
        add_filter(where, binds, "connection_id", q.connection_id);
        add_filter(where, binds, "status", q.status);
        // The literal lets SQLite use deliveries_unsettled, whose condition a bound value cannot imply.
        if (q.status && *q.status != webhooks::delivery_status::accepted && *q.status != webhooks::delivery_status::delivered)
            where += " AND status NOT IN ('Accepted', 'Delivered')";
        add_filter(where, binds, "event_id", q.event_id);
        if (q.since) {
            if (!where.empty()) where += " AND ";
            where += "created_at >= ?";
            binds.push_back(to_unix_ms(*q.since));
        }
        // Without a direction or a subscription (whose index is in key order), each direction's
        // range of deliveries_by_direction, merged.
        if (!q.direction && !q.subscription_id) return r_.list_merged(direction_arms(), where, binds, p);
        return r_.list(where, binds, p);
    }
    result<std::vector<webhooks::webhook_delivery>> due(time_point now, std::size_t limit) override {
        return r_.select("status IN ('Pending', 'Failed') AND direction = 'Outbound' AND next_attempt_at <= ?",
                         {to_unix_ms(now)}, "next_attempt_at, delivery_id", clamp_limit(limit));
    }
    result<void> save(webhooks::webhook_delivery& d) override { return r_.save(d); }
    result<void> record_attempt(webhooks::webhook_delivery& d) override {
        if (auto r = write_attempt(d); !r) return r;
        return r_.write_events(d);
    }
    result<void> record_prepared_attempt(prepared_attempt& p) override {
        if (auto r = check_events(p); !r) return r;
        if (auto r = write_attempt(p.delivery); !r) return r;
        return insert_events(p.events);
    }
    // A batch of attempts is a few statements per chunk of up to 64 deliveries instead of two per
    // delivery: one UPDATE of their state columns (its RETURNING names the ones whose version
    // still matched), one INSERT of their attempt rows, then their outbox rows.
    result<void> record_prepared_attempts(std::span<prepared_attempt> batch) override {
        if (auto r = writable(w_, "deliveries().record_prepared_attempts"); !r) return r;
        std::vector<prepared_attempt*> rows;
        rows.reserve(batch.size());
        for (auto& p : batch) {
            p.recorded = false;
            if (auto r = check_events(p); !r) return r;
            if (attempt_only(p.delivery)) {
                rows.push_back(&p);
                continue;
            }
            auto r = record_prepared_attempt(p);  // `write_attempt` saves it whole
            if (!r && r.error() != errc::conflict) return r;
            p.recorded = r.has_value();
        }
        auto now = w_.clk.now();
        for (std::size_t at = 0; at < rows.size();) {
            auto n = chunk_of(rows.size() - at);
            if (auto r = update_states(std::span(rows).subspan(at, n), now); !r) return r;
            at += n;
        }
        std::erase_if(rows, [](prepared_attempt const* p) { return !p->recorded; });
        for (std::size_t at = 0; at < rows.size();) {
            auto n = chunk_of(rows.size() - at);
            if (auto r = insert_attempt_rows(std::span(rows).subspan(at, n)); !r) return r;
            at += n;
        }
        for (auto* p : rows) {
            if (auto r = insert_events(p->events); !r) return r;
            p->delivery.mark_saved(w_.ctx.actor, now, p->delivery.meta().version + 1);
        }
        return {};
    }
    result<std::vector<webhooks::webhook_delivery>> ended_before(time_point before, std::size_t limit) override {
        // Outbound ones by their last attempt (`deliveries_ended`); inbound ones, which end in
        // the unit that makes them (schema 19), by their id, which is not later than their end:
        // the walk of the direction's key stops at the first id of `before`.
        static std::string const outbound =
            std::string("direction = 'Outbound' AND status IN ('Delivered', 'DeadLettered') AND last_attempt_at < ? AND ") +
            payload_not_pending_sql;
        static std::string const inbound = std::string("direction = 'Inbound' AND delivery_id < ? AND "
                                                       "status IN ('Accepted', 'Failed') AND last_attempt_at < ? AND ") +
                                           payload_not_pending_sql;
        auto const n = clamp_limit(limit);
        auto out = r_.select(outbound, {to_unix_ms(before)}, "last_attempt_at, delivery_id", n);
        if (!out) return out;
        auto in = r_.select(inbound, {first_id_at(id_prefix::delivery, before), to_unix_ms(before)}, "delivery_id", n);
        if (!in) return in.error();
        // Oldest first, as one list.
        std::move(in->begin(), in->end(), std::back_inserter(*out));
        std::sort(out->begin(), out->end(), [](auto const& a, auto const& b) {
            return std::tie(a.data().last_attempt_at, a.id()) < std::tie(b.data().last_attempt_at, b.id());
        });
        if (out->size() > n) out->erase(out->begin() + static_cast<std::ptrdiff_t>(n), out->end());
        return out;
    }
    result<std::vector<webhooks::webhook_delivery>> with_payload_before(time_point before, std::size_t limit) override {
        // Not one a worker is sending: saving it would take the lease away, and the next claim
        // would send it again beside the attempt in flight.
        static std::string const where = std::string("payload_ref IS NOT NULL AND created_at < ? AND ") + payload_not_pending_sql +
                                         " AND (lease_until IS NULL OR lease_until <= ?)";
        return r_.select(where, {to_unix_ms(before), to_unix_ms(w_.clk.now())}, "created_at, delivery_id", clamp_limit(limit));
    }
    result<void> remove(std::string const& id) override { return r_.remove(id); }
    result<bool> leased(std::string const& id, time_point now) override {
        return lease_held(w_, "SELECT lease_until > ? FROM deliveries WHERE delivery_id = ? AND tenant_id = ?", id, now);
    }
    result<void> put_payload(std::string const& id, std::string_view bytes) override {
        if (auto r = writable(w_, "deliveries().put_payload"); !r) return r;
        // The delivery must be this tenant's, and saved first.
        static std::string const sql = "UPDATE deliveries SET payload = ? WHERE delivery_id = ? AND tenant_id = ?";
        auto st = w_.db.prepare_static(sql);
        if (!st) return st.error();
        (*st)->bind_blob_view(1, bytes);
        (*st)->bind_view(2, id);
        (*st)->bind_view(3, w_.ctx.tenant_id);
        auto r = (*st)->run();
        (*st)->reset();  // `bytes` is the caller's
        if (!r) return r;
        if (w_.db.changes() != 1) return error{errc::not_found, "WebhookDelivery " + id + " was not found in this tenant"};
        return {};
    }
    result<std::string> payload(std::string const& id) override {
        auto st = w_.db.prepare("SELECT payload FROM deliveries WHERE delivery_id = ? AND tenant_id = ? AND payload IS NOT NULL");
        if (!st) return st.error();
        (*st)->bind_all({id, w_.ctx.tenant_id});
        auto row = (*st)->step();
        if (!row) return row.error();
        if (!*row) return error{errc::not_found, "delivery " + id + " has no stored payload in this tenant"};
        auto bytes = (*st)->blob(0);
        (*st)->reset();
        return std::string(bytes.begin(), bytes.end());
    }
    result<void> remove_payload(std::string const& id) override {
        if (auto r = writable(w_, "deliveries().remove_payload"); !r) return r;
        return run_sql(w_.db, "UPDATE deliveries SET payload = NULL WHERE delivery_id = ? AND tenant_id = ? AND payload IS NOT NULL",
                       {id, w_.ctx.tenant_id});
    }
    result<std::optional<inbound_match>> add_inbound(prepared_inbound& p) override {
        if (auto r = writable(w_, "deliveries().add_inbound"); !r) return r.error();
        auto const& d = p.delivery.data();
        if (d.direction != webhooks::delivery_direction::inbound || !d.connection_id || !d.provider_delivery_id ||
            p.delivery.meta().version != 0)
            return error{errc::invalid_argument, "add_inbound takes a new inbound delivery with a vendor delivery id"};
        for (auto const& e : p.events) {
            if (e.envelope.tenant_id != w_.ctx.tenant_id || e.envelope.aggregate_id != p.delivery.id())
                return error{errc::invalid_argument, "add_inbound's events must be its delivery's, in this tenant"};
            if (e.body_from_payload && !p.payload)
                return error{errc::invalid_argument, "an event's body comes from the payload only when the payload is kept in the store"};
        }
        // Every statement here binds `p`'s strings in place (no copy per unit) and is reset before
        // returning, so that nothing stays bound to `p`.
        // The connection is looked at in the unit that writes: a retirement committed after the
        // gateway read it (its cache, the wait for a payload's blob) is seen here.
        static std::string const retired_sql =
            "SELECT 1 FROM connections WHERE connection_id = ? AND tenant_id = ? AND status = 'Retired'";
        auto retired = w_.db.prepare_static(retired_sql);
        if (!retired) return retired.error();
        (*retired)->bind_view(1, *d.connection_id);
        (*retired)->bind_view(2, w_.ctx.tenant_id);
        auto found = (*retired)->step();
        (*retired)->reset();
        if (!found) return found.error();
        if (*found) return error{errc::not_found, "connection " + *d.connection_id + " is retired"};
        // The unique index answers alone: nothing of the earlier delivery is read but its id and hash.
        static std::string const probe_sql = "SELECT delivery_id, payload_hash FROM deliveries "
                                             "WHERE tenant_id = ? AND connection_id = ? AND provider_delivery_id = ?";
        auto taken = w_.db.prepare_static(probe_sql);
        if (!taken) return taken.error();
        auto& probe = **taken;
        probe.bind_view(1, w_.ctx.tenant_id);
        probe.bind_view(2, *d.connection_id);
        probe.bind_view(3, *d.provider_delivery_id);
        auto row = probe.step();
        if (!row) return row.error();
        if (*row) {
            inbound_match m{probe.text(0), std::nullopt};
            if (!probe.is_null(1)) m.payload_hash = probe.text(1);
            probe.reset();
            return std::optional<inbound_match>(std::move(m));
        }
        probe.reset();
        // No pending events: only its row, with the payload when the store keeps it.
        std::array<std::optional<std::string_view>, 1> const payload{p.payload};
        if (auto r = r_.save(p.delivery, payload); !r) return r.error();
        if (auto r = insert_events(p.events); !r) return r.error();
        return std::optional<inbound_match>();
    }

private:
    result<void> check_events(prepared_attempt const& p) const {
        auto const& d = p.delivery;
        for (auto const& e : p.events)
            if (e.envelope.tenant_id != w_.ctx.tenant_id || e.envelope.aggregate_id != d.id() ||
                e.envelope.aggregate_version != d.meta().version + 1)
                return error{errc::invalid_argument,
                             "record_prepared_attempt's events must be its delivery's, in this tenant, at its next version"};
        return {};
    }
    // Whether `d`'s save only has to write its state columns and its last attempt (see below).
    bool attempt_only(webhooks::webhook_delivery const& d) const {
        auto const& m = d.meta();
        auto const& x = d.data();
        return m.version != 0 && m.tenant_id == w_.ctx.tenant_id && x.direction == webhooks::delivery_direction::outbound &&
               !x.delivery_attempts.empty() && static_cast<std::int64_t>(x.delivery_attempts.size()) == x.attempts;
    }
    static constexpr std::size_t max_chunk = 64;
    // Statements are prepared for chunks of 64, 32, ..., 1 rows: a batch is a few of them.
    static std::size_t chunk_of(std::size_t left) { return std::bit_floor(std::min(left, max_chunk)); }
    static std::size_t chunk_index(std::size_t n) { return static_cast<std::size_t>(std::countr_zero(n)); }

    // The state columns of `rows` (not yet written) as `write_attempt` writes them, for the rows
    // whose stored version is still theirs; those are marked `recorded`.
    result<void> update_states(std::span<prepared_attempt*> rows, time_point now) {
        constexpr int per_row = 6;
        static auto const sqls = [] {
            std::array<std::string, std::bit_width(max_chunk)> out;
            for (std::size_t k = 0; k < out.size(); ++k) {
                std::string values;
                for (std::size_t i = 0, p = 4; i < (std::size_t{1} << k); ++i) {
                    values += i ? ", (" : "(";
                    for (int c = 0; c < per_row; ++c, ++p) values += (c ? ", ?" : "?") + std::to_string(p);
                    values += ")";
                }
                out[k] = "UPDATE deliveries SET updated_at = ?1, updated_by = ?2, row_version = row_version + 1, "
                         "lease_owner = NULL, lease_until = NULL, deferred_reason = NULL, status = v.column2, attempts = v.column3, "
                         "next_attempt_at = v.column4, last_attempt_at = v.column5 FROM (VALUES " + values +
                         ") AS v WHERE deliveries.delivery_id = v.column1 AND deliveries.tenant_id = ?3 "
                         "AND deliveries.row_version = v.column6 RETURNING delivery_id";
            }
            return out;
        }();
        auto st = w_.db.prepare_static(sqls[chunk_index(rows.size())]);
        if (!st) return st.error();
        auto& s = **st;
        s.bind_int(1, to_unix_ms(now));
        s.bind_view(2, w_.ctx.actor);
        s.bind_view(3, w_.ctx.tenant_id);
        auto at = [&](int i, std::optional<time_point> const& t) { t ? s.bind_int(i, to_unix_ms(*t)) : s.bind_null(i); };
        int i = 4;
        for (auto* p : rows) {
            auto const& x = p->delivery.data();
            s.bind_view(i, x.delivery_id);
            s.bind_view(i + 1, integration::to_string(x.status));
            s.bind_int(i + 2, x.attempts);
            at(i + 3, x.next_attempt_at);
            at(i + 4, x.last_attempt_at);
            s.bind_int(i + 5, p->delivery.meta().version);
            i += per_row;
        }
        while (true) {
            auto row = s.step();
            if (!row) {
                s.reset();
                return row.error();
            }
            if (!*row) break;
            auto id = s.text(0);
            for (auto* p : rows)
                if (p->delivery.id() == id) p->recorded = true;
        }
        s.reset();  // unbinds the deliveries' strings
        return {};
    }

    // The last attempt of each of `rows`, at its position.
    result<void> insert_attempt_rows(std::span<prepared_attempt*> rows) {
        static auto const sqls = [] {
            std::array<std::string, std::bit_width(max_chunk)> out;
            auto columns = mapping::child_columns<webhooks::delivery_attempt>();
            auto one = "(" + mapping::placeholders(columns.size() + 2) + ")";
            for (std::size_t k = 0; k < out.size(); ++k) {
                out[k] = "INSERT INTO " + mapping::child_table(table_of<webhooks::webhook_delivery>.name, "deliveryAttempts") +
                         " (owner_id, position, " + mapping::join(columns) + ") VALUES " + one;
                for (std::size_t i = 1; i < (std::size_t{1} << k); ++i) out[k] += ", " + one;
            }
            return out;
        }();
        auto st = w_.db.prepare_static(sqls[chunk_index(rows.size())]);
        if (!st) return st.error();
        auto& s = **st;
        int i = 1;
        std::vector<value> v;
        for (auto* p : rows) {
            auto const& x = p->delivery.data();
            v.clear();
            v.emplace_back(x.delivery_id);
            v.emplace_back(x.attempts - 1);
            mapping::append_child_values(x.delivery_attempts.back(), v);
            for (auto const& one : v) s.bind(i++, one);
        }
        return s.run();
    }

    // An attempt changes four state columns and appends one attempt row: the row's other
    // columns, their indexes and the stored attempts stay as they are. The version check proves
    // the stored row is the one `d` was leased as, whose attempts are `d`'s but the new last one.
    // Its events are left to the caller.
    result<void> write_attempt(webhooks::webhook_delivery& d) {
        if (auto r = writable(w_, "deliveries().record_attempt"); !r) return r;
        auto const& m = d.meta();
        auto const& x = d.data();
        if (!attempt_only(d)) return r_.save(d);
        auto now = w_.clk.now();
        static std::string const update_sql =
            "UPDATE deliveries SET updated_at = ?, updated_by = ?, row_version = row_version + 1, lease_owner = NULL, "
            "lease_until = NULL, deferred_reason = NULL, status = ?, attempts = ?, next_attempt_at = ?, last_attempt_at = ? "
            "WHERE delivery_id = ? AND tenant_id = ? AND row_version = ?";
        auto update = w_.db.prepare_static(update_sql);
        if (!update) return update.error();
        auto at = [](std::optional<time_point> const& t) { return t ? value{to_unix_ms(*t)} : value{nullptr}; };
        (*update)->bind_all({to_unix_ms(now), w_.ctx.actor, mapping::to_value(x.status), x.attempts,
                             at(x.next_attempt_at), at(x.last_attempt_at), x.delivery_id, m.tenant_id, m.version});
        if (auto r = (*update)->run(); !r) return r;
        if (w_.db.changes() != 1)
            return error{errc::conflict, "WebhookDelivery " + x.delivery_id + " was changed concurrently (saved version " +
                                             std::to_string(m.version) + "); reload it and retry"};
        static std::string const insert_sql =
            mapping::child_insert_sql<webhooks::delivery_attempt>(table_of<webhooks::webhook_delivery>.name,
                                                                  "deliveryAttempts");
        auto insert = w_.db.prepare_static(insert_sql);
        if (!insert) return insert.error();
        std::vector<value> v{x.delivery_id, x.attempts - 1};
        mapping::append_child_values(x.delivery_attempts.back(), v);
        (*insert)->bind_all(v);
        if (auto r = (*insert)->run(); !r) return r;
        d.mark_saved(w_.ctx.actor, now, m.version + 1);
        return {};
    }
    result<void> insert_events(std::span<serialized_event const> events) {
        return storage::insert_events(w_.db, events);
    }

    work_state& w_;
    repo<webhooks::webhook_delivery> r_;
};

class published_event_repo final : public published_event_repository {
public:
    explicit published_event_repo(work_state& w) : w_(w) {}

    result<void> add(published_event const& e) override {
        if (auto r = writable(w_, "published_events().add"); !r) return r;
        auto r = run_sql(w_.db,
                         "INSERT INTO published_events (event_id, tenant_id, event_type, idempotency_key, payload_ref, "
                         "payload_hash, delivery_ids, published_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         {e.event_id, w_.ctx.tenant_id, e.event_type,
                          e.idempotency_key ? value{*e.idempotency_key} : value{nullptr}, e.payload_ref, e.payload_hash,
                          mapping::to_value(e.delivery_ids), to_unix_ms(e.published_at)});
        if (!r && r.error() == errc::already_exists)
            return error{errc::already_exists, "event " + e.event_id + " or its idempotency key was already published"};
        return r;
    }

    result<published_event> find(std::string const& event_id) override {
        return find_one("event_id = ?", event_id, "event " + event_id);
    }

    result<published_event> find_by_idempotency_key(std::string const& key) override {
        return find_one("idempotency_key = ?", key, "event with this idempotency key");
    }

    result<std::size_t> remove_before(time_point before, std::size_t limit) override {
        if (auto r = writable(w_, "published_events().remove_before"); !r) return r.error();
        if (auto r = run_sql(w_.db,
                             "DELETE FROM published_events WHERE rowid IN (SELECT rowid FROM published_events "
                             "WHERE tenant_id = ? AND published_at < ? ORDER BY published_at LIMIT ?)",
                             {w_.ctx.tenant_id, to_unix_ms(before), static_cast<std::int64_t>(clamp_limit(limit))});
            !r)
            return r.error();
        return static_cast<std::size_t>(w_.db.changes());
    }

private:
    result<published_event> find_one(char const* where, std::string const& arg, std::string const& what) {
        auto st = w_.db.prepare(std::string("SELECT event_id, event_type, idempotency_key, payload_ref, payload_hash, "
                                            "delivery_ids, published_at FROM published_events WHERE tenant_id = ? AND ") +
                                where);
        if (!st) return st.error();
        (*st)->bind_all({w_.ctx.tenant_id, arg});
        auto row = (*st)->step();
        if (!row) return row.error();
        if (!*row) return error{errc::not_found, what + " was not found in this tenant"};
        auto& q = **st;
        published_event e;
        e.event_id = q.text(0);
        e.event_type = q.text(1);
        if (!q.is_null(2)) e.idempotency_key = q.text(2);
        e.payload_ref = q.text(3);
        e.payload_hash = q.text(4);
        auto ids = mapping::read_column(q, 5, e.delivery_ids);
        e.published_at = from_unix_ms(q.int64(6));
        q.reset();
        if (!ids) return ids.error();
        return e;
    }

    work_state& w_;
};

class authorization_repo final : public pending_authorization_repository {
public:
    explicit authorization_repo(work_state& w) : w_(w) {}

    result<void> add(pending_authorization const& p) override {
        if (auto r = writable(w_, "authorizations().add"); !r) return r;
        std::optional<std::string> const& conn = p.connection_id;
        return run_sql(w_.db,
                       "INSERT INTO pending_authorizations (state_hash, tenant_id, provider_id, connection_id, actor, "
                       "settings, secret_ref, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       {p.state_hash, w_.ctx.tenant_id, p.provider_id, conn ? value{*conn} : value{nullptr}, p.actor,
                        p.settings, p.secret_ref, to_unix_ms(p.expires_at)});
    }

    result<pending_authorization> take(std::string const& state_hash, time_point now) override {
        if (auto r = writable(w_, "authorizations().take"); !r) return r.error();
        auto found = select("state_hash = ?", {state_hash});
        if (!found) return found.error();
        if (found->empty()) return error{errc::not_found, "unknown or already used authorization state"};
        if (auto r = run_sql(w_.db, "DELETE FROM pending_authorizations WHERE state_hash = ? AND tenant_id = ?",
                             {state_hash, w_.ctx.tenant_id});
            !r)
            return r.error();
        auto p = std::move(found->front());
        if (p.expires_at <= now) return error{errc::forbidden, "the authorization expired; start it again"};
        return p;
    }

    result<std::vector<pending_authorization>> purge_expired(time_point now) override {
        if (auto r = writable(w_, "authorizations().purge_expired"); !r) return r.error();
        auto expired = select("expires_at <= ?", {to_unix_ms(now)});
        if (!expired) return expired.error();
        if (auto r = run_sql(w_.db, "DELETE FROM pending_authorizations WHERE tenant_id = ? AND expires_at <= ?",
                             {w_.ctx.tenant_id, to_unix_ms(now)});
            !r)
            return r.error();
        return expired;
    }

private:
    result<std::vector<pending_authorization>> select(std::string const& where, std::vector<value> binds) {
        auto st = w_.db.prepare("SELECT state_hash, provider_id, connection_id, actor, settings, secret_ref, expires_at "
                                "FROM pending_authorizations WHERE tenant_id = ? AND " + where);
        if (!st) return st.error();
        binds.insert(binds.begin(), w_.ctx.tenant_id);
        (*st)->bind_all(binds);
        std::vector<pending_authorization> out;
        while (true) {
            auto more = (*st)->step();
            if (!more) return more.error();
            if (!*more) break;
            auto& s = **st;
            out.push_back({s.text(0), s.text(1), s.is_null(2) ? std::nullopt : std::optional(s.text(2)), s.text(3),
                           s.text(4), s.text(5), from_unix_ms(s.int64(6))});
        }
        (*st)->reset();
        return out;
    }

    work_state& w_;
};

class idempotency_repo final : public idempotency_repository {
public:
    explicit idempotency_repo(work_state& w) : w_(w) {}

    result<void> claim(std::string const& key, std::string const& request_hash) override {
        if (auto r = writable(w_, "idempotency().claim"); !r) return r;
        if (auto r = run_sql(w_.db,
                             "INSERT INTO idempotency_keys (tenant_id, key, request_hash, created_at) VALUES (?, ?, ?, ?) "
                             "ON CONFLICT (tenant_id, key) DO NOTHING",
                             {w_.ctx.tenant_id, key, request_hash, to_unix_ms(w_.clk.now())});
            !r)
            return r;
        auto st = w_.db.prepare("SELECT request_hash FROM idempotency_keys WHERE tenant_id = ? AND key = ?");
        if (!st) return st.error();
        (*st)->bind_all({w_.ctx.tenant_id, key});
        auto row = (*st)->step();
        auto stored = row && *row ? (*st)->text(0) : std::string();
        (*st)->reset();
        if (!row) return row.error();
        if (stored != request_hash)
            return error{errc::idempotency_key_reused, "Idempotency-Key '" + key + "' was already used with a different request; use a new key"};
        return {};
    }

    result<std::size_t> remove_before(time_point before, std::size_t limit) override {
        if (auto r = writable(w_, "idempotency().remove_before"); !r) return r.error();
        if (auto r = run_sql(w_.db,
                             // A claim whose run is still kept stays: freed, it would let another
                             // request have that run as its replay.
                             "DELETE FROM idempotency_keys WHERE rowid IN (SELECT rowid FROM idempotency_keys k "
                             "WHERE k.tenant_id = ? AND k.created_at < ? AND NOT EXISTS (SELECT 1 FROM runs r WHERE "
                             "r.tenant_id = k.tenant_id AND r.idempotency_key = k.key) ORDER BY k.created_at LIMIT ?)",
                             {w_.ctx.tenant_id, to_unix_ms(before), static_cast<std::int64_t>(clamp_limit(limit))});
            !r)
            return r.error();
        return static_cast<std::size_t>(w_.db.changes());
    }

private:
    work_state& w_;
};

// The columns of an inbound webhook registration, as `read_registration` reads them: the newest
// replaced secret in two columns (schema 4), any older ones as JSON (schema 25).
constexpr std::string_view registration_columns =
    "connection_id, scheme, secret_name, previous_secret_name, previous_until, earlier_secrets";

result<inbound_webhook_registration> read_registration(statement const& s, int first) {
    inbound_webhook_registration r{s.text(first), s.text(first + 1), s.text(first + 2)};
    if (!s.is_null(first + 3) && !s.is_null(first + 4))
        r.previous.push_back({s.text(first + 3), from_unix_ms(s.int64(first + 4))});
    if (!s.is_null(first + 5)) {
        boost::system::error_code ec;
        auto earlier = boost::json::parse(s.text(first + 5), ec);
        if (ec || !earlier.is_array()) return error{errc::storage_failure, "the earlier secrets of connection " + r.connection_id + " are not a JSON array"};
        for (auto const& e : earlier.get_array()) {
            auto const* o = e.if_object();
            auto const* name = o ? o->if_contains("name") : nullptr;
            auto const* until = o ? o->if_contains("until") : nullptr;
            if (!name || !name->is_string() || !until || !until->is_int64())
                return error{errc::storage_failure, "an earlier secret of connection " + r.connection_id + " is malformed"};
            r.previous.push_back({std::string(name->get_string()), from_unix_ms(until->get_int64())});
        }
    }
    return r;
}

class inbound_webhook_repo final : public inbound_webhook_repository {
public:
    explicit inbound_webhook_repo(work_state& w) : w_(w) {}

    result<inbound_webhook_registration> find(std::string const& connection_id) override {
        auto st = w_.db.prepare("SELECT " + std::string(registration_columns) +
                                " FROM inbound_webhooks WHERE tenant_id = ? AND connection_id = ?");
        if (!st) return st.error();
        (*st)->bind_all({w_.ctx.tenant_id, connection_id});
        auto row = (*st)->step();
        if (!row) return row.error();
        if (!*row) return error{errc::not_found, "connection " + connection_id + " has no inbound webhook in this tenant"};
        auto out = read_registration(**st, 0);
        (*st)->reset();
        return out;
    }

    result<void> save(inbound_webhook_registration const& r) override {
        if (auto w = writable(w_, "inbound_webhooks().save"); !w) return w;
        value newest_name = nullptr, newest_until = nullptr, earlier = nullptr;
        if (!r.previous.empty()) {
            newest_name = r.previous.front().name;
            newest_until = to_unix_ms(r.previous.front().until);
        }
        if (r.previous.size() > 1) {
            boost::json::array a;
            for (auto it = r.previous.begin() + 1; it != r.previous.end(); ++it)
                a.push_back(boost::json::object{{"name", it->name}, {"until", to_unix_ms(it->until)}});
            earlier = boost::json::serialize(a);
        }
        return run_sql(w_.db,
                       "INSERT INTO inbound_webhooks (tenant_id, connection_id, scheme, secret_name, previous_secret_name, "
                       "previous_until, earlier_secrets) VALUES (?, ?, ?, ?, ?, ?, ?) "
                       "ON CONFLICT (tenant_id, connection_id) DO UPDATE SET scheme = excluded.scheme, "
                       "secret_name = excluded.secret_name, previous_secret_name = excluded.previous_secret_name, "
                       "previous_until = excluded.previous_until, earlier_secrets = excluded.earlier_secrets",
                       {w_.ctx.tenant_id, r.connection_id, r.scheme, r.secret_name, newest_name, newest_until, earlier});
    }

private:
    work_state& w_;
};

class sqlite_unit_of_work final : public unit_of_work {
public:
    explicit sqlite_unit_of_work(work_state w)
        : w_(w), providers_(w_), clients_(w_), connections_(w_), credentials_(w_), runs_(w_), failures_(w_),
          subscriptions_(w_), deliveries_(w_), published_events_(w_), authorizations_(w_), idempotency_(w_),
          inbound_webhooks_(w_) {}
    request_context const& context() const noexcept override { return w_.ctx; }
    integration_provider_repository& providers() override { return providers_; }
    external_api_client_repository& api_clients() override { return clients_; }
    integration_connection_repository& connections() override { return connections_; }
    integration_credential_repository& credentials() override { return credentials_; }
    integration_run_repository& runs() override { return runs_; }
    integration_failure_repository& failures() override { return failures_; }
    webhook_subscription_repository& subscriptions() override { return subscriptions_; }
    webhook_delivery_repository& deliveries() override { return deliveries_; }
    published_event_repository& published_events() override { return published_events_; }
    pending_authorization_repository& authorizations() override { return authorizations_; }
    idempotency_repository& idempotency() override { return idempotency_; }
    inbound_webhook_repository& inbound_webhooks() override { return inbound_webhooks_; }
    result<void> release_dead_event(std::string const& event_id, bool republish) override {
        if (auto r = writable(w_, "release_dead_event"); !r) return r;
        // Read through the dead rows' index (a tenant has few): event ids are not indexed.
        auto st = w_.db.prepare(
            "SELECT o.sequence, o.body_from_payload IS NOT NULL AND p.payload IS NULL FROM outbox o "
            "LEFT JOIN deliveries p ON o.body_from_payload IS NOT NULL AND p.delivery_id = o.aggregate_id "
            "AND p.tenant_id = o.tenant_id "
            "WHERE o.tenant_id = ? AND o.event_id = ? AND o.dead_at IS NOT NULL AND o.published_at IS NULL");
        if (!st) return st.error();
        (*st)->bind_all({w_.ctx.tenant_id, event_id});
        auto row = (*st)->step();
        if (!row) return row.error();
        if (!*row) return error{errc::not_found, "no dead outbox event " + event_id};
        auto const sequence = (*st)->int64(0);
        bool const body_gone = (*st)->int64(1) != 0;
        (*st)->reset();
        if (republish && body_gone)
            return error{errc::invalid_state, "event " + event_id + " cannot be published again: its body, the raw "
                                                                    "webhook payload, was purged by retention"};
        // A dropped row counts as published now, so the retention sweep takes it with the others.
        return republish ? run_sql(w_.db, "UPDATE outbox SET dead_at = NULL, attempts = 0, retry_at = NULL WHERE sequence = ?",
                                   {sequence})
                         : run_sql(w_.db, "UPDATE outbox SET dead_at = NULL, published_at = ? WHERE sequence = ?",
                                   {to_unix_ms(w_.clk.now()), sequence});
    }

private:
    work_state w_;
    provider_repo providers_;
    api_client_repo clients_;
    connection_repo connections_;
    credential_repo credentials_;
    run_repo runs_;
    failure_repo failures_;
    subscription_repo subscriptions_;
    delivery_repo deliveries_;
    published_event_repo published_events_;
    authorization_repo authorizations_;
    idempotency_repo idempotency_;
    inbound_webhook_repo inbound_webhooks_;
};

// ---- the store ---------------------------------------------------------------------------------

struct file_identity {
    dev_t dev = 0;
    ino_t ino = 0;
};

// The writer looks at the database file and its WAL at every commit with `statx`, asking only
// for what it reads. A stat that asks for the file's times makes the kernel give the file's next
// write a fine-grained time (multigrain timestamps), so every commit would change the WAL's time
// and every fdatasync of the WAL would write its inode too: on ext4 without a journal, a second
// synchronous write per sync (bench/README, "Reference host under load", Session 21).
std::optional<struct statx> statx_of(std::string const& path, unsigned mask) {
    struct statx sx {};
    if (::statx(AT_FDCWD, path.c_str(), 0, mask, &sx) != 0 || (sx.stx_mask & mask) != mask) return std::nullopt;
    return sx;
}

std::optional<file_identity> identify(std::string const& path) {
    auto sx = statx_of(path, STATX_INO);
    if (!sx) return std::nullopt;
    return file_identity{makedev(sx->stx_dev_major, sx->stx_dev_minor), static_cast<ino_t>(sx->stx_ino)};
}

// With a memory map, a reader whose cache a commit invalidated re-reads pages without a pread
// system call per page; the mapped pages then count in the process's RSS.
std::string mmap_pragma(sqlite_options const& o) {
    return "PRAGMA mmap_size = " + std::to_string(o.mmap_bytes);
}

// The store whose writer or sync thread the calling thread is. A synchronous write from there
// (a `done` callback, a unit of work calling back) would wait for the very thread it runs on.
thread_local void const* store_thread_of = nullptr;
// The stores whose read this thread is inside (nested reads push again): the writer's forced
// checkpoint must not wait for a read whose thread is waiting for the store itself.
thread_local std::vector<void const*> reading_in;

// Two threads of its own commit a store's writes. The writer runs queued units in group commits,
// every commit with `synchronous=NORMAL` (no fsync inside COMMIT). The sync thread fdatasyncs the
// WAL and then reports the `durability::immediate` units committed before that sync began, in
// commit order; meanwhile the writer runs the next batch, so one batch's fsync overlaps the next
// batch's CPU, and batches committed during a sync share the next one. The same thread syncs
// `deferred` commits within `flush_interval`. In WAL mode a NORMAL commit followed by an fsync
// of the WAL is as durable as a FULL commit: NORMAL still syncs the WAL before a checkpoint
// copies it into the database file and the database file before the WAL is reused.
class sqlite_store final : public store {
public:
    sqlite_store(sqlite_options o, std::unique_ptr<database> writer, file_identity id, sqlite::wal_sync sync)
        : o_(std::move(o)), clock_(o_.clock ? *o_.clock : system_clock::instance()), writer_(std::move(writer)),
          identity_(id), sync_(std::move(sync)) {
        thread_ = std::thread([this] {
            integration::detail::name_this_thread("integ-sql-write");
            store_thread_of = this;
            writer_loop();
        });
        sync_thread_ = std::thread([this] {
            integration::detail::name_this_thread("integ-sql-sync");
            store_thread_of = this;
            sync_loop();
        });
    }

    // Every queued unit is still committed, synced and reported; a `done` may queue more.
    ~sqlite_store() override {
        {
            std::lock_guard lock(queue_mutex_);
            stopping_ = true;
        }
        queue_cv_.notify_all();
        sync_cv_.notify_all();
        thread_.join();
        sync_thread_.join();
    }

    result<void> transact(request_context const& ctx, work fn, durability d) override {
        return submit(
            [&ctx, &fn, this](database& db) -> result<void> {
                sqlite_unit_of_work uow({db, ctx, clock_, o_.source, false});
                return fn(uow);
            },
            d);
    }

    void transact_async(request_context const& ctx, work fn, durability d, committed done) override {
        enqueue_async(ctx, std::move(fn), d, std::move(done), false);
    }

    void transact_async_checks_first(request_context const& ctx, work fn, durability d, committed done) override {
        enqueue_async(ctx, std::move(fn), d, std::move(done), true);
    }

    void enqueue_async(request_context const& ctx, work fn, durability d, committed done, bool checks_first) {
        auto* j = new job{[ctx, fn = std::move(fn), this](database& db) -> result<void> {
                              sqlite_unit_of_work uow({db, ctx, clock_, o_.source, false});
                              return fn(uow);
                          },
                          o_.synchronous_full ? d : durability::deferred,
                          [done = std::move(done)](result<void> r, std::exception_ptr thrown) {
                              done(thrown ? result<void>(error{errc::storage_failure, "unit of work threw"}) : std::move(r));
                          },
                          true, checks_first};
        enqueue(j);
    }

    result<void> read(request_context const& ctx, work fn) override {
        return with_reader([&](database& db) -> result<void> {
            sqlite_unit_of_work uow({db, ctx, clock_, o_.source, true});
            return fn(uow);
        });
    }

    result<std::vector<std::string>> tenants() override {
        std::vector<std::string> out;
        auto r = with_reader([&](database& db) -> result<void> {
            // Global providers (tenant '') are no tenant's: retention sweeps tenants only. A tenant
            // whose connections and credentials are gone may still have runs, failures, deliveries,
            // claims and authorizations for retention to end. Those tables are read by skipping
            // from one tenant to the next along an index that leads with tenant_id: a step per
            // tenant, not per row.
            static std::string const sql = [] {
                std::string with = "WITH RECURSIVE ", from;
                char const* big[] = {"runs", "failures", "deliveries", "idempotency_keys", "pending_authorizations"};
                for (std::size_t i = 0; i < std::size(big); ++i) {
                    auto const t = std::string(big[i]), cte = "t" + std::to_string(i);
                    with += (i ? ", " : "") + cte + "(t) AS (SELECT MIN(tenant_id) FROM " + t +
                            " UNION ALL SELECT (SELECT MIN(tenant_id) FROM " + t + " WHERE tenant_id > " + cte +
                            ".t) FROM " + cte + " WHERE " + cte + ".t IS NOT NULL)";
                    from += " UNION SELECT t FROM " + cte + " WHERE t IS NOT NULL AND t <> ''";
                }
                return with + " SELECT tenant_id FROM connections UNION SELECT tenant_id FROM credentials "
                              "UNION SELECT tenant_id FROM subscriptions UNION SELECT tenant_id FROM providers WHERE tenant_id <> ''" +
                       from + " ORDER BY 1";
            }();
            auto st = db.prepare(sql);
            if (!st) return st.error();
            while (true) {
                auto more = (*st)->step();
                if (!more) return more.error();
                if (!*more) break;
                out.push_back((*st)->text(0));
            }
            (*st)->reset();
            return {};
        });
        if (!r) return r.error();
        return out;
    }

    result<std::vector<outbox_record>> pending_events(std::size_t limit) override { return pending(limit, true); }
    result<std::vector<outbox_record>> pending_event_rows(std::size_t limit) override { return pending(limit, false); }

    // The rows' envelopes parsed (`whole`), or their columns and stored text only.
    result<std::vector<outbox_record>> pending(std::size_t limit, bool whole) {
        std::vector<outbox_record> out;
        auto r = with_reader([&](database& db) -> result<void> {
            // An inbound event whose body is its delivery's payload gets it back here.
            auto st = db.prepare(
                "SELECT o.sequence, o.envelope, o.attempts, o.body_from_payload, p.payload, o.event_id, o.event_type, "
                "o.tenant_id, o.aggregate_type, o.aggregate_id, o.aggregate_version, o.occurred_at FROM outbox o "
                "LEFT JOIN deliveries p ON o.body_from_payload IS NOT NULL AND p.delivery_id = o.aggregate_id "
                "AND p.tenant_id = o.tenant_id "
                // A wait that ends more than the relay's longest wait (a week) from now was set
                // before the clock stepped back: due now, not when the clock catches up.
                "WHERE o.published_at IS NULL AND o.dead_at IS NULL AND "
                "(o.retry_at IS NULL OR o.retry_at <= ?2 OR o.retry_at > ?2 + 604800000) "
                // A row dead and then marked published (by another process sharing the store)
                // holds nothing back.
                "AND NOT EXISTS (SELECT 1 FROM outbox d WHERE d.dead_at IS NOT NULL AND d.published_at IS NULL AND "
                "d.tenant_id = o.tenant_id AND d.aggregate_type = o.aggregate_type AND d.aggregate_id = o.aggregate_id "
                "AND d.sequence < o.sequence) "
                // An aggregate whose earlier event failed waits whole, also once its retry is due
                // (only that event is offered then): its later events neither overtake it nor
                // fill the batch while other aggregates wait.
                "AND NOT EXISTS (SELECT 1 FROM outbox w WHERE w.retry_at IS NOT NULL AND w.published_at IS NULL AND "
                "w.tenant_id = o.tenant_id AND w.aggregate_type = o.aggregate_type AND w.aggregate_id = o.aggregate_id "
                "AND w.sequence < o.sequence) "
                "ORDER BY o.sequence LIMIT ?1");
            if (!st) return st.error();
            auto& s = **st;
            s.bind(1, value{static_cast<std::int64_t>(clamp_limit(limit))});
            s.bind(2, value{to_unix_ms(clock_.now())});
            while (true) {
                auto more = s.step();
                if (!more) return more.error();
                if (!*more) break;
                outbox_record rec{s.int64(0), s.int64(2), {}, s.text(1), {}, {}};
                // An inbound event's body, kept once as its delivery's payload, comes with it.
                if (!s.is_null(3)) {
                    rec.body_format = s.text(3);
                    if (!s.is_null(4)) rec.body = s.text(4);  // the BLOB's bytes
                }
                auto& e = rec.envelope;
                e.event_id = s.text(5);
                e.event_type = s.text(6);
                e.tenant_id = s.text(7);
                e.aggregate_type = s.text(8);
                e.aggregate_id = s.text(9);
                e.aggregate_version = s.int64(10);
                e.occurred_at = from_unix_ms(s.int64(11));
                if (whole) {
                    auto env = parse_outbox_envelope(rec);
                    if (!env) return env.error();
                    rec = {rec.sequence, rec.attempts, std::move(*env), {}, {}, {}};
                }
                out.push_back(std::move(rec));
            }
            (*st)->reset();
            return {};
        });
        if (!r) return r.error();
        // A row is visible once committed, before the sync that makes it durable: publishing it
        // then could announce a write that a power loss takes back. Every row read here was
        // committed before the read's snapshot began, so one WAL sync begun now covers them all,
        // whichever connection or process committed them.
        if (!out.empty())
            if (auto synced = sync_begun_now(); !synced) return synced.error();
        return out;
    }

    sqlite_stats stats() const noexcept { return {commits_.load(), units_.load()}; }
    std::uint64_t syncs() const noexcept { return syncs_.load(); }

    result<void> mark_published(std::span<std::int64_t const> sequences, time_point at) override {
        std::vector<std::int64_t> seqs(sequences.begin(), sequences.end());
        return submit([&](database& db) -> result<void> {
            auto st = db.prepare("UPDATE outbox SET published_at = ? WHERE sequence = ? AND published_at IS NULL");
            if (!st) return st.error();
            for (auto s : seqs) {
                (*st)->reset();
                (*st)->bind_all({to_unix_ms(at), s});
                if (auto r = (*st)->run(); !r) return r;
            }
            return {};
        }, durability::deferred);  // lost marks only mean an event is published again (at least once)
    }

    result<outbox_trim> remove_published(time_point before, std::size_t limit, std::int64_t after) override {
        outbox_trim out;
        auto const batch = std::clamp<std::size_t>(limit, 1, 100'000);
        auto const window = static_cast<std::int64_t>(4 * batch);
        auto r = submit([&](database& db) -> result<void> {
            // Walked in sequence order from `after`, a window at a time: a sweep reads each
            // expired row once (and each row kept before the first one not yet old enough), where
            // one pass per tenant read every other tenant's expired rows again. No index on
            // published_at: the relay's marking would write it for every row. The newest row
            // stays, so its rowid is never reused (the outbox has no AUTOINCREMENT): a sequence
            // always names one row, and a new row sorts last.
            auto st = db.prepare("SELECT sequence, published_at, occurred_at FROM outbox WHERE sequence > ?1 AND "
                                 "sequence < (SELECT MAX(sequence) FROM outbox) ORDER BY sequence LIMIT ?2");
            if (!st) return st.error();
            (*st)->bind_all({after, window});
            auto const cutoff = to_unix_ms(before);
            std::size_t old_enough = 0;
            std::int64_t seen = 0;
            out = {0, after, false};
            while (true) {
                auto more = (*st)->step();
                if (!more) return more.error();
                if (!*more) break;
                ++seen;
                out.next = (*st)->int64(0);
                // The walk ends at the first event that occurred since the cutoff (none after it
                // was published before it). An older one published since (replayed or dropped
                // after it was dead, published late) is passed over, not waited for.
                if ((*st)->int64(2) >= cutoff) {
                    out.done = true;
                    break;
                }
                if ((*st)->is_null(1) || (*st)->int64(1) >= cutoff) continue;  // pending, dead or young
                if (++old_enough == batch) break;
            }
            (*st)->reset();
            if (!out.done && old_enough < batch && seen < window) out.done = true;  // the end of the outbox
            // The rows walked that are old enough: the rest of the range is pending, dead or young.
            if (auto d = run_sql(db, "DELETE FROM outbox WHERE sequence > ?1 AND sequence <= ?2 AND published_at < ?3",
                                 {after, out.next, cutoff});
                !d)
                return d;
            out.removed = static_cast<std::size_t>(db.changes());
            return {};
        }, durability::deferred);  // a lost delete only means the next sweep deletes the row
        if (!r) return r.error();
        return out;
    }

    result<std::int64_t> count_failed_publication(std::int64_t sequence, std::chrono::milliseconds wait) override {
        std::int64_t attempts = 0;
        auto r = submit([&](database& db) -> result<void> {
            auto st = db.prepare("UPDATE outbox SET attempts = attempts + 1, retry_at = ? WHERE sequence = ? RETURNING attempts");
            if (!st) return st.error();
            // On the clock `pending` compares it with, and a week at most (longer, `pending`
            // would take it for a wait set before the clock stepped back).
            constexpr std::int64_t week_ms = 7LL * 24 * 3600 * 1000;
            (*st)->bind_all({to_unix_ms(clock_.now()) + std::clamp<std::int64_t>(wait.count(), 0, week_ms), sequence});
            auto row = (*st)->step();
            if (!row) return row.error();
            if (!*row) return error{errc::not_found, "outbox row " + std::to_string(sequence) + " does not exist"};
            attempts = (*st)->int64(0);
            (*st)->reset();
            return {};
        }, durability::deferred);  // a lost count only means one more attempt
        if (!r) return r.error();
        return attempts;
    }

    result<void> park_dead(std::int64_t sequence, time_point at, request_context const& ctx, work const& also) override {
        return submit([&](database& db) -> result<void> {
            // Another relay on the same file (they claim no rows) may have parked it already:
            // once, with one failure.
            if (auto r = run_sql(db, "UPDATE outbox SET dead_at = ? WHERE sequence = ? AND published_at IS NULL "
                                     "AND dead_at IS NULL",
                                 {to_unix_ms(at), sequence});
                !r)
                return r;
            if (db.changes() != 1)
                return error{errc::not_found, "outbox row " + std::to_string(sequence) + " is not pending"};
            if (!also) return {};
            sqlite_unit_of_work uow({db, ctx, clock_, o_.source, false});
            return also(uow);  // a failure rolls the unit back, the parking with it
        }, durability::immediate);
    }

    api_key_repository& api_keys() override { return keys_; }

    result<delivery_claim> claim_deliveries(time_point now, std::string const& owner, time_point until,
                                            std::size_t limit, delivery_share const& share) override {
        if (owner.empty()) return error{errc::invalid_argument, "a delivery lease needs an owner"};
        // A lease over before it starts would leave what one claim took claimable by the same claim.
        if (until <= now) return error{errc::invalid_argument, "a delivery lease must end after now"};
        using delivery_repo_t = repo<webhooks::webhook_delivery>;
        limit = clamp_limit(limit);
        std::unordered_map<std::string, std::size_t> left;  // what each tenant's share has left
        bool full = false;  // a tenant holds its whole share
        for (auto const& [tenant, n] : share.held) {
            left[tenant] = share.per_tenant - std::min(n, share.per_tenant);
            full = full || n >= share.per_tenant;
        }
        auto take = [&](std::string tenant) -> std::size_t& {
            return left.try_emplace(std::move(tenant), share.per_tenant).first->second;
        };
        std::vector<delivery_repo_t::row> rows;
        bool more = false;
        auto r = submit([&](database& db) -> result<void> {
            // Selected, then leased in one statement that returns the leased rows, all under the
            // write lock. Any unexpired lease excludes a delivery, also the caller's own (it may
            // still be sending it). Of an ordered subscription only the oldest unfinished delivery
            // may go, and only when it is due and free; insertion order (rowid) breaks ties within a
            // millisecond.
#define INTEGRATION_CLAIMABLE                                                                                      \
    "JOIN subscriptions s ON s.subscription_id = d.subscription_id AND s.tenant_id = d.tenant_id "                \
    "WHERE d.status IN ('Pending', 'Failed') AND d.direction = 'Outbound' AND d.next_attempt_at <= ?1 "           \
    "AND s.active = 1 AND (d.lease_until IS NULL OR d.lease_until <= ?1) "                                        \
    "AND (s.ordered = 0 OR d.rowid = (SELECT o.rowid FROM deliveries o INDEXED BY deliveries_ordered_head "        \
    "WHERE o.tenant_id = d.tenant_id "                                                                             \
    "AND o.subscription_id = d.subscription_id AND o.direction = 'Outbound' "                                     \
    "AND o.status IN ('Pending', 'Failed') ORDER BY o.created_at, o.rowid LIMIT 1)) "
            // Every tenant's, earliest due first: `deliveries_claim` (next_attempt_at, rowid) gives
            // the order, so this reads the due rows it takes, not the whole backlog.
            static std::string const due_sql = "SELECT d.rowid, d.tenant_id FROM deliveries d INDEXED BY deliveries_claim "
                                               INTEGRATION_CLAIMABLE "ORDER BY d.next_attempt_at, d.rowid LIMIT ?2";
            // One tenant's, earliest due first, and the next tenant with deliveries to send.
            static std::string const tenant_sql = "SELECT d.rowid FROM deliveries d INDEXED BY deliveries_claim_by_tenant "
                                                  INTEGRATION_CLAIMABLE "AND d.tenant_id = ?3 "
                                                  "ORDER BY d.next_attempt_at, d.rowid LIMIT ?2";
#undef INTEGRATION_CLAIMABLE
            static std::string const first_sql =
                "SELECT tenant_id FROM deliveries INDEXED BY deliveries_claim_by_tenant "
                "WHERE status IN ('Pending', 'Failed') AND direction = 'Outbound' ORDER BY tenant_id LIMIT 1";
            static std::string const next_sql =
                "SELECT tenant_id FROM deliveries INDEXED BY deliveries_claim_by_tenant "
                "WHERE status IN ('Pending', 'Failed') AND direction = 'Outbound' AND tenant_id > ?1 "
                "ORDER BY tenant_id LIMIT 1";
            static std::string const lease_sql =
                "UPDATE deliveries SET lease_owner = ?1, lease_until = ?2, row_version = row_version + 1 "
                "WHERE rowid IN (SELECT value FROM json_each(?3)) RETURNING " +
                std::string(mapping::meta_columns) + ", " + mapping::join(mapping::column_names<webhooks::delivery_data>());
            std::string picked;
            std::size_t count = 0;
            auto pick = [&](std::int64_t rowid) {
                picked += (picked.empty() ? "[" : ",") + std::to_string(rowid);
                ++count;
            };
            // Leases what was picked: leased, it is no longer claimable in this unit either.
            auto ctx = request_context::for_tenant("", owner);
            work_state w{db, ctx, clock_, o_.source, true};
            auto lease = [&]() -> result<void> {
                if (picked.empty()) return {};
                auto st = db.prepare_static(lease_sql);
                if (!st) return st.error();
                (*st)->bind_all({owner, to_unix_ms(until), picked + "]"});
                picked.clear();
                // The rows are read across tenants (the lease is the worker's, not a tenant's);
                // only deliveries that were attempted before have attempt rows to load.
                auto leased = delivery_repo_t(w).read_data(
                    **st, [](webhooks::delivery_data const& d) { return d.attempts > 0; });
                if (!leased) return leased.error();
                rows.insert(rows.end(), std::make_move_iterator(leased->begin()), std::make_move_iterator(leased->end()));
                return {};
            };
            bool turns = full;
            if (!full) {
                auto st = db.prepare_static(due_sql);
                if (!st) return st.error();
                (*st)->bind_int(1, to_unix_ms(now));
                (*st)->bind_int(2, static_cast<std::int64_t>(limit));
                std::size_t seen = 0;
                bool filled = false;
                while (true) {
                    auto row = (*st)->step();
                    if (!row) return row.error();
                    if (!*row) break;
                    ++seen;
                    auto& n = take((*st)->text(1));
                    if (n == 0) continue;
                    filled = --n == 0 || filled;
                    pick((*st)->int64(0));
                }
                (*st)->reset();
                // A tenant's share filled within a full page of due rows: other tenants' due rows
                // may be behind its, so the rest of the claim steps past it.
                turns = filled && seen == limit && count < limit;
                if (turns)
                    if (auto l = lease(); !l) return l;
            }
            if (turns) {
                // Tenants in turn from where the last such claim ended, each up to what its share
                // has left; a tenant holding its whole share, or with nothing due, costs one step of
                // the tenant index. At most `claim_turn_visits` steps per claim: the next claim goes
                // on from the last tenant this one looked at, in the same round of every tenant,
                // and only a claim that ends a round can say nothing more is due.
                auto first = db.prepare_static(first_sql);
                if (!first) return first.error();
                auto next = db.prepare_static(next_sql);
                if (!next) return next.error();
                auto one = db.prepare_static(tenant_sql);
                if (!one) return one.error();
                // A copy, kept only if the claim succeeds: a failed one leaves the turns as they were.
                auto round = turn_round_;
                if (!round.active) round = {true, claim_turn_, false, false};
                std::optional<std::string> cursor = claim_turn_, last;  // none: from the first tenant
                bool round_over = false;
                // A round that took deliveries is followed by another at once (more may be due where
                // it began); one that took none has seen that nothing else is due.
                auto end_round = [&] {
                    round_over = !round.took;
                    round = {!round_over, cursor, false, false};
                    return round_over;
                };
                for (std::size_t visits = 0; count < limit && visits < claim_turn_visits;) {
                    auto* st = cursor ? *next : *first;
                    st->reset();
                    if (cursor) st->bind_copy(1, *cursor);
                    auto row = st->step();
                    if (!row) return row.error();
                    if (!*row) {
                        if (round.wrapped || !round.start) {
                            if (end_round()) break;
                            if (!round.start) continue;  // the new round begins at the first tenant
                        }
                        round.wrapped = true;
                        cursor.reset();
                        continue;
                    }
                    auto tenant = st->text(0);
                    st->reset();
                    if (round.wrapped && tenant > *round.start) {  // back where it began
                        cursor = *round.start;
                        if (end_round()) break;
                        continue;
                    }
                    cursor = last = tenant;
                    ++visits;
                    if (auto& n = take(tenant); n > 0) {
                        (*one)->reset();
                        (*one)->bind_int(1, to_unix_ms(now));
                        (*one)->bind_int(2, static_cast<std::int64_t>(std::min(n, limit - count)));
                        (*one)->bind_copy(3, tenant);
                        while (true) {
                            auto got = (*one)->step();
                            if (!got) return got.error();
                            if (!*got) break;
                            --n;
                            pick((*one)->int64(0));
                            round.took = true;
                        }
                        (*one)->reset();
                    }
                    if (round.wrapped && tenant == *round.start && end_round()) break;
                }
                turn_round_ = std::move(round);
                if (last) claim_turn_ = std::move(last);
                more = !round_over;
            } else {
                // Claims in due order between turns: the next turns begin a round of their own
                // instead of ending one that saw the tenants before them.
                turn_round_.active = false;
            }
            more = more || count == limit;
            return lease();
        }, durability::deferred);  // a lease lost in a crash only means the delivery is claimed again
        if (!r) return r.error();
        // A delivery is visible once committed, before the sync that makes it durable: sent
        // then, a power loss could take back the event it announces (as for the outbox's rows,
        // `pending_events`). One WAL sync begun now covers every row leased.
        if (!rows.empty())
            if (auto synced = sync_begun_now(); !synced) return synced.error();
        // Validated and ordered on the caller's thread: the writer only reads the columns.
        auto leased = delivery_repo_t::restore_all(std::move(rows));
        if (!leased) return leased.error();
        // RETURNING gives the rows in no particular order: earliest due first, as selected.
        std::sort(leased->begin(), leased->end(), [](auto const& a, auto const& b) {
            auto key = [](webhooks::webhook_delivery const& d) {
                return std::tie(d.data().next_attempt_at, d.meta().created_at, d.id());
            };
            return key(a) < key(b);
        });
        delivery_claim out{.deliveries = {}, .more = more};
        out.deliveries.reserve(leased->size());
        for (auto& d : *leased) out.deliveries.push_back({d.meta().tenant_id, std::move(d)});
        return out;
    }

    result<std::optional<time_point>> oldest_due_delivery() override {
        std::optional<time_point> out;
        auto r = with_reader([&](database& db) -> result<void> {
            auto st = db.prepare(
                "SELECT d.next_attempt_at FROM deliveries d INDEXED BY deliveries_claim "
                "JOIN subscriptions s ON s.subscription_id = d.subscription_id AND s.tenant_id = d.tenant_id "
                "WHERE d.status IN ('Pending', 'Failed') AND d.direction = 'Outbound' AND s.active = 1 "
                "AND d.next_attempt_at IS NOT NULL ORDER BY d.next_attempt_at LIMIT 1");
            if (!st) return st.error();
            auto row = (*st)->step();
            if (!row) return row.error();
            if (*row) out = from_unix_ms((*st)->int64(0));
            (*st)->reset();
            return {};
        });
        if (!r) return r.error();
        return out;
    }

    std::string const& event_source() const noexcept override { return o_.source; }

    result<std::optional<inbound_endpoint_record>> find_inbound_endpoint(std::string const& connection_id) override {
        std::optional<inbound_endpoint_record> out;
        auto r = with_reader([&](database& db) -> result<void> {
            // The registration and its connection must be the same tenant's; a Retired connection
            // answers nothing, like an unknown one.
            // (`registration_columns` starts with connection_id, the one name both tables have.)
            static std::string const sql = "SELECT w.tenant_id, c.provider_id, w." + std::string(registration_columns) +
                                           " FROM inbound_webhooks w JOIN connections c ON c.connection_id = w.connection_id "
                                           "AND c.tenant_id = w.tenant_id WHERE w.connection_id = ? AND c.status <> 'Retired'";
            auto st = db.prepare(sql);
            if (!st) return st.error();
            (*st)->bind(1, value{connection_id});
            auto row = (*st)->step();
            if (!row) return row.error();
            if (!*row) return {};
            auto reg = read_registration(**st, 2);
            if (reg) out = inbound_endpoint_record{(*st)->text(0), (*st)->text(1), std::move(*reg)};
            (*st)->reset();
            if (!reg) return reg.error();
            return {};
        });
        if (!r) return r.error();
        return out;
    }

private:
    class key_repo final : public api_key_repository {
    public:
        explicit key_repo(sqlite_store& s) : s_(s) {}
        result<void> add(api_key_record const& k) override {
            if (auto v = validate_tenant_id(k.tenant_id); !v) return v;
            return s_.submit([&](database& db) {
                return run_sql(db, "INSERT INTO api_keys (key_hash, tenant_id, admin, created_at) VALUES (?, ?, ?, ?)",
                               {k.key_hash, k.tenant_id, std::int64_t{k.admin ? 1 : 0}, to_unix_ms(s_.clock_.now())});
            }, durability::immediate);
        }
        result<std::optional<api_key_record>> find(std::string const& key_hash) override {
            std::optional<api_key_record> out;
            auto r = s_.with_reader([&](database& db) -> result<void> {
                auto st = db.prepare("SELECT tenant_id, admin FROM api_keys WHERE key_hash = ?");
                if (!st) return st.error();
                (*st)->bind(1, value{key_hash});
                auto row = (*st)->step();
                if (!row) return row.error();
                if (*row) out = api_key_record{key_hash, (*st)->text(0), (*st)->int64(1) != 0};
                (*st)->reset();
                return {};
            });
            if (!r) return r.error();
            return out;
        }

    private:
        sqlite_store& s_;
    };

    using job_fn = std::function<result<void>(database&)>;
    struct job {
        job_fn fn;
        durability d;
        std::function<void(result<void>, std::exception_ptr)> done;  // called once, on the writer thread
        bool owned = false;                                          // an async job: deleted after `done`
        bool checks_first = false;  // `transact_async_checks_first`: no savepoint of its own (see `run_batch`)
    };

    result<void> check_file() {
        if (broken_.load()) return broken_error();
        if (sync_failed_.load(std::memory_order_acquire)) return sync_failed_error();
        auto now = identify(o_.path);
        if (!now || now->dev != identity_.dev || now->ino != identity_.ino) {
            broken_ = true;
            return broken_error();
        }
        return {};
    }

    // After a failed fsync the kernel may have dropped the WAL pages it could not write and
    // marked them clean (reporting the error once): a later sync that succeeds says nothing of
    // them, and a commit after them is lost with them at a power loss (recovery stops at the
    // first bad frame). Nothing is reported durable again until the store is reopened, when
    // SQLite's recovery decides what survived.
    error sync_failed_error() const {
        return {errc::storage_failure, "a sync of the database's write-ahead log failed (" + sync_failure_ +
                                           "): what was committed since cannot be made durable; reopen the store"};
    }
    void fail_syncs(std::string const& why) {  // on the sync thread only
        if (sync_failed_.load()) return;
        sync_failure_ = why;
        sync_failed_.store(true, std::memory_order_release);
    }

    error broken_error() const {
        return {errc::database_missing, "database file " + o_.path +
                                            " was deleted or replaced while the store was open; refusing to continue "
                                            "on an empty database. Restore the file and restart"};
    }

    result<void> submit(job_fn fn, durability d) {
        if (store_thread_of == this)
            return error{errc::invalid_argument,
                         "a synchronous store write cannot be made from a store callback (a transact_async `done`, "
                         "or a unit of work): it would wait for the store thread it runs on; use transact_async"};
        // A write from inside a read: the writer's forced checkpoint, if it is waiting for the
        // running reads, would wait for this one until busy_timeout; it gives up at once instead.
        struct awaited_by_reader {
            sqlite_store* self;
            explicit awaited_by_reader(sqlite_store* s) : self(s) {
                if (!self) return;
                std::lock_guard lock(self->readers_mutex_);
                ++self->writes_from_reads_;
                self->readers_cv_.notify_all();
            }
            ~awaited_by_reader() {
                if (!self) return;
                std::lock_guard lock(self->readers_mutex_);
                --self->writes_from_reads_;
            }
        } awaited(reads_here() ? this : nullptr);
        std::promise<result<void>> p;
        auto f = p.get_future();
        job j{std::move(fn), o_.synchronous_full ? d : durability::deferred,
              [&p](result<void> r, std::exception_ptr thrown) {
                  if (thrown)
                      p.set_exception(thrown);
                  else
                      p.set_value(std::move(r));
              }};
        enqueue(&j);
        return f.get();
    }

    void enqueue(job* j) {
        {
            std::lock_guard lock(queue_mutex_);
            queue_.push_back(j);
        }
        queue_cv_.notify_one();
    }

    static void finish(job* j, result<void> r, std::exception_ptr thrown = {}) {
        bool owned = j->owned;
        j->done(std::move(r), thrown);  // a synchronous job's frame may be gone once this returns
        if (owned) delete j;
    }

    // Takes every queued job (up to max_batch), runs each in its own savepoint (or a stretch of
    // checks-first ones in one, see `run_batch`) inside one transaction, and commits once:
    // concurrent callers share one fsync.
    // On stop it drains the queue, then waits for the sync thread's reports, which may queue more.
    void writer_loop() {
        std::vector<job*> batch;
        while (true) {
            {
                std::unique_lock lock(queue_mutex_);
                queue_cv_.wait(lock, [&] { return !queue_.empty() || (stopping_ && !syncing_ && to_sync_.empty()); });
                if (queue_.empty()) {
                    writer_done_ = true;
                    sync_cv_.notify_all();
                    return;
                }
                std::size_t n = o_.group_commit ? std::min(queue_.size(), o_.max_batch) : 1;
                batch.assign(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
                queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
            }
            run_batch(batch);
            bound_wal();
        }
    }

    // The automatic checkpoint after a commit is PASSIVE: it copies only the frames no reader
    // still needs, and the WAL starts over only when it copied them all and no reader uses it.
    // With reads running all the time some read always holds an older snapshot, so the WAL
    // would grow with every commit (and SQLite's own waiting checkpoint polls between sleeps,
    // so it never finds the gap between two reads). Past twice `checkpoint_bytes` the writer
    // holds this store's new reads back, waits (up to `busy_timeout`) for the running ones to
    // end, and checkpoints with TRUNCATE, which empties the WAL. If that fails (another process
    // reading, a read outlasting the wait), it tries again one `checkpoint_bytes` later, so a
    // long read cannot stall every commit.
    void bound_wal() {
        auto wal = statx_of(wal_path_, STATX_SIZE);
        if (!wal || wal->stx_size <= force_checkpoint_at_) return;
        auto const size = wal->stx_size;
        bool idle = false;
        {
            std::unique_lock lock(readers_mutex_);
            reads_held_ = true;
            readers_cv_.wait_for(lock, o_.busy_timeout,
                                 [&] { return idle_readers_.size() == open_readers_ || writes_from_reads_ > 0; });
            idle = idle_readers_.size() == open_readers_;
        }
        bool done = false;
        if (idle) {
            if (auto st = writer_->prepare("PRAGMA wal_checkpoint(TRUNCATE)")) {
                auto row = (*st)->step();
                done = row && *row && (*st)->int64(0) == 0;  // the first column is 1 when it was blocked
                (*st)->reset();
            }
        }
        {
            std::lock_guard lock(readers_mutex_);
            reads_held_ = false;
        }
        readers_cv_.notify_all();
        force_checkpoint_at_ = done ? 2 * o_.checkpoint_bytes : size + o_.checkpoint_bytes;
    }

    result<sqlite::transaction> begin_immediate() {
        for (int attempt = 0;; ++attempt) {
            auto t = sqlite::transaction::begin(*writer_);
            if (t || t.error() != errc::storage_busy || attempt >= 50) return t;
            std::this_thread::sleep_for(std::chrono::milliseconds(1 + attempt * 2));
        }
    }

    // Waits for a WAL sync that begins after this call (the sync thread's, shared with the
    // commits it syncs and with other reads waiting at the same time), instead of a sync of its
    // own; from the store's own threads, or once the sync thread has stopped, syncs here.
    result<void> sync_begun_now() {
        if (store_thread_of == this) return sync_wal();
        std::unique_lock lock(queue_mutex_);
        if (sync_stopped_) {
            lock.unlock();
            if (auto r = check_file(); !r) return r;
            return sync_wal();
        }
        auto const needed = syncs_begun_ + 1;
        sync_wanted_ = std::max(sync_wanted_, needed);
        sync_cv_.notify_one();
        synced_cv_.wait(lock, [&] { return syncs_done_ >= needed || sync_stopped_; });
        if (syncs_done_ < needed) {
            lock.unlock();
            if (auto r = check_file(); !r) return r;
            return sync_wal();
        }
        // A sync that began after this call and succeeded makes what it read durable, whichever
        // one it was: a later one failing says nothing about it.
        // (Once one fails, none succeeds again: `good_sync_` stays behind every later read.)
        if (good_sync_ < needed) return error{errc::storage_failure, failed_sync_error_};
        return {};
    }

    // Syncs the WAL whenever an immediate unit or a read waits (everything committed before the
    // sync began), or `flush_interval` after a deferred commit; then reports the units it covered.
    void sync_loop() {
        std::unique_lock lock(queue_mutex_);
        auto read_waits = [&] { return sync_wanted_ > syncs_begun_; };
        while (true) {
            sync_cv_.wait(lock, [&] { return !to_sync_.empty() || dirty_since_ || read_waits() || writer_done_; });
            if (to_sync_.empty() && !dirty_since_ && !read_waits()) {  // the writer has stopped: nothing is left
                sync_stopped_ = true;
                synced_cv_.notify_all();
                return;
            }
            if (to_sync_.empty() && !read_waits())
                sync_cv_.wait_until(lock, *dirty_since_ + o_.flush_interval,
                                    [&] { return !to_sync_.empty() || read_waits() || stopping_; });
            std::vector<job*> covered;
            covered.swap(to_sync_);
            dirty_since_.reset();
            syncing_ = true;
            auto const number = ++syncs_begun_;
            lock.unlock();
            auto synced = sync_failed_.load(std::memory_order_acquire) ? result<void>(sync_failed_error()) : sync_wal();
            if (!synced) fail_syncs(synced.error().detail());
            for (auto* j : covered)
                finish(j, synced ? result<void>() : result<void>(error{errc::storage_failure,
                                                                      "the unit was committed but not made durable: " +
                                                                          synced.error().detail()}));
            lock.lock();
            syncs_done_ = number;
            if (synced)
                good_sync_ = number;
            else
                failed_sync_error_ = synced.error().detail();
            syncing_ = false;
            queue_cv_.notify_all();  // a stopping writer waits for the last reports
            synced_cv_.notify_all();
        }
    }

    result<void> sync_wal() {
        ++syncs_;
        return sync_(o_.path);
    }

    void run_batch(std::vector<job*>& batch) {
        std::vector<result<void>> results(batch.size());
        std::vector<std::exception_ptr> thrown(batch.size());
        auto fail_all = [&](error const& e) {
            for (auto* j : batch) finish(j, e);
        };
        if (auto r = check_file(); !r) return fail_all(r.error());
        auto tx = begin_immediate();
        if (!tx) return fail_all(tx.error());
        auto run = [&](std::size_t i) {
            try {
                results[i] = batch[i]->fn(*writer_);
            } catch (...) {
                thrown[i] = std::current_exception();
                results[i] = error{errc::storage_failure, "unit of work threw"};
            }
        };
        // A savepoint per unit copies every page the unit changes into its sub-journal, which is
        // a tenth of the writer's CPU per inbound receive. Consecutive `checks_first` units share
        // one instead: one that fails before its first write (the engine counted no change) just
        // fails; one that fails after a write takes the units of its stretch down with it.
        std::optional<sqlite::savepoint> shared;  // declared after `tx`: rolls back before it
        std::size_t shared_from = 0;
        auto end_shared = [&](std::size_t end, bool undo) {
            if (!shared) return;
            if (!undo && !shared->release()) undo = true;
            if (undo)
                for (std::size_t k = shared_from; k < end; ++k)
                    if (results[k])  // another tenant's unit may have failed: its error is not told
                        results[k] = error{errc::storage_failure,
                                           "the unit was rolled back with another unit of its group commit that failed "
                                           "after writing; nothing of it was committed: run it again"};
            shared.reset();  // rolls back to it unless released
        };
        for (std::size_t i = 0; i < batch.size(); ++i) {
            // An engine error (I/O, disk full) can end the whole transaction: then every unit of
            // the batch is lost, and running the rest in autocommit would break atomicity.
            if (!writer_->in_transaction())
                return fail_all(error{errc::storage_failure, "the database engine aborted the transaction; nothing was committed"});
            if (batch[i]->checks_first) {
                if (!shared) {
                    auto sp = sqlite::savepoint::begin(*writer_, "units");
                    if (!sp) {
                        results[i] = sp.error();
                        continue;
                    }
                    shared.emplace(std::move(*sp));
                    shared_from = i;
                }
                auto before = writer_->total_changes();
                run(i);
                if (!results[i] && writer_->total_changes() != before) end_shared(i + 1, true);
                continue;
            }
            end_shared(i, false);
            auto unit = sqlite::savepoint::begin(*writer_, "unit");
            if (!unit) {
                results[i] = unit.error();
                continue;
            }
            run(i);
            if (results[i]) (void)unit->release();  // a failed unit rolls back alone when `unit` ends
        }
        if (writer_->in_transaction()) end_shared(batch.size(), false);
        if (!writer_->in_transaction())
            return fail_all(error{errc::storage_failure, "the database engine aborted the transaction; nothing was committed"});
        result<void> commit = tx->commit();
        for (int attempt = 0; !commit && commit.error() == errc::storage_busy && attempt < 50; ++attempt) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1 + attempt * 2));
            commit = tx->commit();
        }
        if (!commit) return fail_all(commit.error());  // `tx` rolls back
        // A file swapped under us between the check and the commit must not look like success.
        if (auto r = check_file(); !r) return fail_all(r.error());
        ++commits_;
        units_ += static_cast<std::uint64_t>(
            std::count_if(results.begin(), results.end(), [](result<void> const& r) { return r.has_value(); }));
        // Each unit is reported once it is as durable as it asked: a committed immediate unit
        // after the sync thread's next WAL sync, every other one now.
        std::vector<job*> wait_for_sync;
        bool deferred = false;
        for (std::size_t i = 0; i < batch.size(); ++i) {
            if (results[i] && batch[i]->d == durability::immediate) {
                wait_for_sync.push_back(batch[i]);
                continue;
            }
            deferred = deferred || results[i].has_value();
            finish(batch[i], std::move(results[i]), thrown[i]);
        }
        if (wait_for_sync.empty() && !deferred) return;
        {
            std::lock_guard lock(queue_mutex_);
            to_sync_.insert(to_sync_.end(), wait_for_sync.begin(), wait_for_sync.end());
            if (deferred && !dirty_since_) dirty_since_ = std::chrono::steady_clock::now();
        }
        sync_cv_.notify_one();
    }

    result<std::unique_ptr<database>> open_reader() {
        auto db = database::open(o_.path, false, static_cast<int>(o_.busy_timeout.count()));
        if (!db) return db.error();
        if (auto r = (*db)->exec(std::string("PRAGMA foreign_keys = ON; PRAGMA query_only = ON; ").append(mmap_pragma(o_))); !r) return r.error();
        return db;
    }

    result<void> with_reader(std::function<result<void>(database&)> const& fn) {
        if (auto r = check_file(); !r) return r;
        std::unique_ptr<database> db;
        // A read nested in a running read of this thread is not held back: the writer waits for
        // the outer one, which would wait for it.
        bool const nested = reads_here();
        {
            std::unique_lock lock(readers_mutex_);
            readers_cv_.wait(lock, [&] {
                return (nested || !reads_held_) && (!idle_readers_.empty() || open_readers_ < o_.readers);
            });
            if (!idle_readers_.empty()) {
                db = std::move(idle_readers_.back());
                idle_readers_.pop_back();
            } else {
                ++open_readers_;
            }
        }
        if (!db) {
            auto opened = open_reader();
            if (!opened) {
                std::lock_guard lock(readers_mutex_);
                --open_readers_;
                readers_cv_.notify_all();
                return opened.error();
            }
            db = std::move(*opened);
        }
        // A read transaction is never committed: it ends (rolls back) when `tx` does, also when
        // `fn` throws; then the reader goes back to the pool.
        reading_in.push_back(this);
        struct give_back {
            sqlite_store* self;
            std::unique_ptr<database>& db;
            ~give_back() {
                reading_in.pop_back();
                self->release_reader(std::move(db));
            }
        } returned{this, db};
        auto tx = sqlite::transaction::begin_read(*db);
        if (!tx) return tx.error();
        return fn(*db);
    }

    bool reads_here() const { return std::find(reading_in.begin(), reading_in.end(), this) != reading_in.end(); }

    void release_reader(std::unique_ptr<database> db) {
        {
            std::lock_guard lock(readers_mutex_);
            idle_readers_.push_back(std::move(db));
        }
        readers_cv_.notify_all();  // a reader or the writer's forced checkpoint
    }

    sqlite_options o_;
    clock const& clock_;
    std::unique_ptr<database> writer_;
    // The writer's alone: the tenant the last claim in turns looked at last (none: start at the
    // first), and the round of every tenant those claims are going through.
    std::optional<std::string> claim_turn_;
    struct {
        bool active = false;
        std::optional<std::string> start;  // where it began (exclusive; none: at the first tenant)
        bool wrapped = false;              // it went past the last tenant to the first
        bool took = false;                 // it leased deliveries
    } turn_round_;
    static constexpr std::size_t claim_turn_visits = 256;  // tenants one claim in turns steps through at most
    file_identity identity_;
    std::atomic<bool> broken_{false};
    std::atomic<bool> sync_failed_{false};  // set once `sync_failure_` is written, never unset
    std::string sync_failure_;
    std::atomic<std::uint64_t> commits_{0};
    std::atomic<std::uint64_t> units_{0};
    std::atomic<std::uint64_t> syncs_{0};
    sqlite::wal_sync sync_;
    std::uintmax_t force_checkpoint_at_ = 2 * o_.checkpoint_bytes;  // WAL bytes; the writer's alone
    std::string const wal_path_{o_.path + "-wal"};  // made once, not at every commit

    // The writer's queue and the sync thread's state, under one mutex.
    std::mutex queue_mutex_;
    std::condition_variable queue_cv_;  // the writer waits on it
    std::condition_variable sync_cv_;   // the sync thread waits on it
    std::deque<job*> queue_;
    std::vector<job*> to_sync_;  // committed immediate units, in commit order, awaiting a sync
    std::optional<std::chrono::steady_clock::time_point> dirty_since_;  // first deferred commit not yet synced
    bool syncing_ = false;       // the sync thread is syncing or reporting
    std::condition_variable synced_cv_;  // reads waiting for a sync (`sync_begun_now`) wait on it
    std::uint64_t syncs_begun_ = 0;      // by the sync thread, numbered from 1
    std::uint64_t syncs_done_ = 0;       // the number of the last one that ended
    std::uint64_t sync_wanted_ = 0;      // a read waits for the sync of this number
    std::uint64_t good_sync_ = 0;        // the number of the last one that succeeded
    std::string failed_sync_error_;
    bool sync_stopped_ = false;
    bool stopping_ = false;
    bool writer_done_ = false;
    std::thread thread_;
    std::thread sync_thread_;

    std::mutex readers_mutex_;
    std::condition_variable readers_cv_;
    std::vector<std::unique_ptr<database>> idle_readers_;
    std::size_t open_readers_ = 0;
    bool reads_held_ = false;  // the writer's forced checkpoint waits for the running reads
    std::size_t writes_from_reads_ = 0;  // threads inside a read waiting for a synchronous write
    key_repo keys_{*this};
};

}  // namespace

result<std::unique_ptr<store>> open_sqlite_store(sqlite_options o) {
    return sqlite::open_store(std::move(o), [](std::string const& path) { return sqlite::sync_wal(path); });
}

result<std::unique_ptr<store>> sqlite::open_store(sqlite_options o, wal_sync sync) {
    if (o.path.empty()) return error{errc::invalid_argument, "sqlite_options.path must name the database file"};
    // The store reopens the file by name (readers, the WAL's sync, the check that it is still
    // the same file): a relative name would mean another file after the process changes its
    // working directory.
    std::error_code ec;
    auto absolute = std::filesystem::absolute(o.path, ec);
    if (ec) return error{errc::invalid_argument, "cannot resolve the database path " + o.path + ": " + ec.message()};
    o.path = absolute.string();
    if (o.page_size < 512 || o.page_size > 65536 || (o.page_size & (o.page_size - 1)) != 0)
        return error{errc::invalid_argument, "sqlite_options.page_size must be a power of two from 512 to 65536, not " +
                                                 std::to_string(o.page_size)};
    auto db = database::open(o.path, false, static_cast<int>(o.busy_timeout.count()));
    if (!db) return db.error();
    auto& w = **db;
    // A new file takes its page size from its first write (the WAL switch below); an existing
    // one keeps its own, and SQLite ignores this.
    if (auto r = w.exec("PRAGMA page_size = " + std::to_string(o.page_size)); !r) return r.error();
    // WAL lets readers run beside the writer. Migrations commit with FULL; afterwards every commit
    // is NORMAL, and the store's sync thread makes it durable (see `sqlite_store`).
    if (auto r = w.exec("PRAGMA journal_mode = WAL"); !r) return r.error();
    if (auto r = w.exec("PRAGMA synchronous = FULL"); !r) return r.error();
    if (auto r = w.exec(std::string("PRAGMA foreign_keys = ON; ").append(mmap_pragma(o))); !r) return r.error();
    // Each unit of a group commit runs in its own savepoint, whose sub-journal holds the original
    // of every page the unit changes: kept in memory, not spilled to a temporary file (a write
    // system call per page) once it passes 64 KiB, as a batch of dozens of units does.
    if (auto r = w.exec("PRAGMA temp_store = MEMORY"); !r) return r.error();
    if (auto r = sqlite::migrate(w); !r) return r.error();
    if (auto r = w.exec("PRAGMA synchronous = NORMAL"); !r) return r.error();
    // The automatic checkpoint counts pages of this file, whose size may not be `o.page_size`.
    auto page = w.prepare("PRAGMA page_size");
    if (!page) return page.error();
    if (auto row = (*page)->step(); !row) return row.error();
    auto pages = std::max<std::int64_t>(1, static_cast<std::int64_t>(o.checkpoint_bytes) / (*page)->int64(0));
    (*page)->reset();
    if (auto r = w.exec("PRAGMA wal_autocheckpoint = " + std::to_string(pages)); !r) return r.error();
    auto id = identify(o.path);
    if (!id) return error{errc::database_missing, "database file " + o.path + " disappeared while opening"};
    return std::unique_ptr<store>(new sqlite_store(std::move(o), std::move(*db), *id, std::move(sync)));
}

result<std::size_t> import_host_database(std::string const& store_path, std::string const& host_db_path) {
    auto db = database::open(store_path, false, 5'000);
    if (!db) return db.error();
    auto& w = **db;
    auto attach = w.prepare("ATTACH DATABASE ? AS host");
    if (!attach) return attach.error();
    (*attach)->bind(1, value{host_db_path});
    if (auto r = (*attach)->run(); !r) return r.error();
    (*attach)->reset();
    std::size_t copied = 0;
    {
        auto tx = sqlite::transaction::begin(w);
        if (!tx) return tx.error();
        for (auto sql : {"INSERT OR IGNORE INTO main.api_keys (key_hash, tenant_id, admin, created_at) "
                         "SELECT key_hash, tenant_id, admin, CAST(strftime('%s', created_at) AS INTEGER) * 1000 FROM host.api_keys",
                         "INSERT OR IGNORE INTO main.inbound_webhooks (tenant_id, connection_id, scheme, secret_name) "
                         "SELECT tenant_id, connection_id, scheme, secret_name FROM host.inbound_webhooks"}) {
            if (auto r = w.exec(std::string(sql) + ";"); !r)
                return error{errc::storage_failure, "cannot import " + host_db_path + ": " + r.error().detail()};
            copied += static_cast<std::size_t>(w.changes());
        }
        if (auto r = tx->commit(); !r) return r.error();
    }
    if (auto r = w.exec("DETACH DATABASE host;"); !r) return r.error();
    return copied;
}

std::optional<sqlite_stats> sqlite_store_stats(store const& s) {
    if (auto const* sqlite = dynamic_cast<sqlite_store const*>(&s)) return sqlite->stats();
    return std::nullopt;
}

std::uint64_t sqlite::wal_syncs(store const& s) {
    auto const* sqlite = dynamic_cast<sqlite_store const*>(&s);
    return sqlite ? sqlite->syncs() : 0;
}

}  // namespace integration::storage
