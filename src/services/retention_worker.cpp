#include <integration/services/retention_worker.hpp>

#include <integration/core/aggregate.hpp>

#include <boost/json/serialize.hpp>

namespace integration::retention {

retention_worker::retention_worker(storage::store& store, blobs::blob_store& blobs, clock const& clock,
                                   retention_options options)
    : store_(store), blobs_(blobs), clock_(clock), options_(options) {}

template <class A, class Select, class Remove>
result<std::size_t> retention_worker::archive(request_context const& ctx, std::string const& kind, Select select, Remove remove) {
    std::size_t archived = 0;
    while (true) {
        auto rows = storage::read_for(store_, ctx, select);
        if (!rows) return rows.error();
        if (rows->empty()) return archived;
        std::string lines;
        for (auto const& a : *rows) lines += boost::json::serialize(aggregate_to_json(a)) + "\n";
        auto key = "archive/" + kind + "/" + rows->front().id() + "_" + rows->back().id() + ".jsonl";
        if (auto put = blobs_.put(ctx.tenant_id, key, lines); !put) return put.error();
        auto removed = store_.transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
            for (auto const& a : *rows)
                if (auto r = remove(uow, a.id()); !r) return r;
            return {};
        });
        if (!removed) return removed.error();
        archived += rows->size();
        if (rows->size() < options_.batch) return archived;
    }
}

result<retention_sweep> retention_worker::sweep() {
    retention_sweep out;
    auto now = clock_.now();
    auto tenants = store_.tenants();
    if (!tenants) return tenants.error();
    for (auto const& tenant : *tenants) {
        auto ctx = request_context::for_tenant(tenant, "retention-worker");
        auto runs = archive<runs::integration_run>(
            ctx, "runs", [&](storage::unit_of_work& uow) { return uow.runs().ended_before(now - options_.runs, options_.batch); },
            [](storage::unit_of_work& uow, std::string const& id) { return uow.runs().remove(id); });
        if (!runs) return runs.error();
        out.runs_archived += *runs;
        auto failures = archive<failures::integration_failure>(
            ctx, "failures",
            [&](storage::unit_of_work& uow) { return uow.failures().resolved_before(now - options_.failures, options_.batch); },
            [](storage::unit_of_work& uow, std::string const& id) { return uow.failures().remove(id); });
        if (!failures) return failures.error();
        out.failures_archived += *failures;
    }
    auto purged = blobs_.purge_older_than(now - options_.bodies, "runs/");  // bodies, not the archive
    if (!purged) return purged.error();
    out.blobs_purged = *purged;
    return out;
}

}  // namespace integration::retention
