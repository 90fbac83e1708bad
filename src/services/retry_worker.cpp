#include <integration/services/retry_worker.hpp>

#include <integration/core/id.hpp>

namespace integration::runs {

retry_worker::retry_worker(storage::store& store, run_service& runs, clock const& clock, retry_worker_options options)
    : store_(store), runs_(runs), clock_(clock), options_(std::move(options)) {
    if (options_.owner.empty()) options_.owner = new_id("wrk", clock_.now());
}

result<std::size_t> retry_worker::sweep() {
    auto tenants = store_.tenants();
    if (!tenants) return tenants.error();
    std::size_t handled = 0;
    for (auto const& tenant : *tenants) {
        auto ctx = request_context::for_tenant(tenant, "retry-worker");
        auto recovered = runs_.recover_interrupted(ctx);
        if (!recovered) return recovered.error();
        handled += *recovered;
        auto now = clock_.now();
        auto claimed = storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) {
            return uow.failures().claim_due(now, options_.owner, now + options_.lease, options_.batch);
        });
        if (!claimed) return claimed.error();
        for (auto const& f : *claimed) {
            // Deliveries, connections and credentials have their own workers; a run is ours.
            if (f.data().source == failures::failure_source::run && f.data().run_id) {
                if (auto r = runs_.resume(ctx, *f.data().run_id); r) ++handled;
            }
            (void)store_.transact(ctx, [&](storage::unit_of_work& uow) { return uow.failures().release(f.id(), options_.owner); });
        }
    }
    return handled;
}

}  // namespace integration::runs
