#ifndef INTEGRATION_HOST_HANDLERS_HANDLERS_HPP
#define INTEGRATION_HOST_HANDLERS_HANDLERS_HPP

// Route tables per resource, and the few helpers every handler shares. Handlers stay thin:
// parse JSON, call the library service, render JSON.

#include "router.hpp"
#include "services.hpp"

#include <integration/core/aggregate.hpp>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <initializer_list>

namespace integration::host {

void add_provider_routes(router& r, services& s);
void add_credential_routes(router& r, services& s);
void add_connection_routes(router& r, services& s);
void add_run_routes(router& r, services& s);
void add_operation_routes(router& r, services& s);
void add_oauth2_routes(router& r, services& s);
void add_webhook_routes(router& r, services& s);
void add_inbound_routes(router& r, services& s);

inline reply json_reply(unsigned status, boost::json::value body) { return reply{status, std::move(body), "application/json", {}}; }

/** `{items, nextCursor}` from a store page. */
template <class T, class Render>
boost::json::object page_json(storage::page<T> const& p, Render render) {
    boost::json::array items;
    for (auto const& x : p.items) items.push_back(render(x));
    boost::json::object o;
    o["items"] = std::move(items);
    o["nextCursor"] = p.next_cursor.empty() ? boost::json::value(nullptr) : boost::json::value(p.next_cursor);
    return o;
}

template <class A>
boost::json::value render(A const& a) {
    return aggregate_to_json(a);
}


/** An optional string member of a request body; wrong types are named. */
result<std::optional<std::string>> optional_string(boost::json::object const& o, std::string_view name);

}  // namespace integration::host

#endif
