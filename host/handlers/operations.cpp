#include "handlers/handlers.hpp"

#include "openapi_document.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <filesystem>

namespace integration::host {

void add_operation_routes(router& r, services& s) {
    r.add("GET", "/healthz", [](call&) -> result<reply> {
        return json_reply(200, boost::json::object{{"status", "ok"}});
    }, {.who = access::open});

    // Each backend is touched with a read that cannot change anything.
    r.add("GET", "/readyz", [&s](call&) -> result<reply> {
        boost::json::object checks;
        bool ready = true;
        auto ctx = request_context::for_tenant("readyz", "readyz");
        auto store = s.store->read(ctx, [](storage::unit_of_work& uow) -> result<void> {
            auto l = uow.providers().list({.limit = 1});
            if (!l) return l.error();
            return {};
        });
        checks["store"] = store ? "ok" : "unavailable";
        ready = ready && store;
        // Reachable, and its master key opens what it holds (a replaced key opens nothing).
        bool secrets_ok = s.secrets->verify_master_key().has_value();
        checks["secretStore"] = secrets_ok ? "ok" : "unavailable";
        ready = ready && secrets_ok;
        auto blob = s.blobs->get("readyz", "blob://readyz/readyz-probe");
        std::error_code ec;
        bool blobs_ok = (blob || blob.error() == errc::not_found) &&
                        std::filesystem::is_directory(std::filesystem::path(s.config.data) / "blobs", ec);
        checks["blobStore"] = blobs_ok ? "ok" : "unavailable";
        ready = ready && blobs_ok;
        boost::json::object o{{"status", ready ? "ready" : "unavailable"}, {"checks", checks}};
        return json_reply(ready ? 200 : 503, o);
    }, {.who = access::open});

    // Admin only: the exposition is process-wide and its breaker series name every tenant's
    // connections. Prometheus sends the key with `authorization: {credentials: ...}`.
    r.add("GET", "/metrics", [&s](call&) -> result<reply> {
        reply rep{200, nullptr, "text/plain; version=0.0.4; charset=utf-8", {}, s.metrics.render(s.runs->breaker_states())};
        return rep;
    }, {.who = access::admin});

    // host/openapi.json, embedded at build time. `servers` names this host's own base URL, read at
    // request time because `--listen` port 0 is known only once bound.
    r.add("GET", "/openapi.json", [&s, doc = boost::json::parse(openapi_document()).as_object()](call&) -> result<reply> {
        auto served = doc;
        served["servers"] = boost::json::array{boost::json::object{{"url", public_base_url(s.config)}, {"description", "this host"}}};
        return reply{200, nullptr, "application/json", {}, boost::json::serialize(served)};
    });
}

}  // namespace integration::host
