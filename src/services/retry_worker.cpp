#include <integration/services/retry_worker.hpp>

#include <algorithm>

#include <integration/core/id.hpp>

#include <set>

namespace integration::runs {

retry_worker::retry_worker(storage::store& store, run_service& runs, clock const& clock, retry_worker_options options)
    : store_(store), runs_(runs), clock_(clock), options_(std::move(options)) {
    if (options_.owner.empty()) options_.owner = new_id("wrk", clock_.now());
    // A lease that lapsed while its run's call was still in flight would let another worker
    // resume the run and call the vendor a second time.
    options_.lease = std::max(options_.lease, runs_.run_lease());
}

result<std::size_t> retry_worker::sweep() {
    auto tenants = store_.tenants();
    if (!tenants) return tenants.error();
    std::size_t handled = 0;
    std::optional<error> first_error;  // one tenant's trouble stops no other tenant's retries
    for (auto const& tenant : *tenants) {
        auto ctx = request_context::for_tenant(tenant, "retry-worker");
        auto recovered = runs_.recover_interrupted(ctx);
        if (recovered) handled += *recovered;
        else if (!first_error) first_error = recovered.error();
        // One failure at a time, each leased when its run is resumed: a lease taken for a whole
        // batch could lapse before the batch's last run, which another worker would then resume too.
        std::set<std::string> taken;
        for (std::size_t n = 0; n < options_.batch; ++n) {
            auto now = clock_.now();
            auto claimed = storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) {
                return uow.failures().claim_due(now, options_.owner, now + options_.lease, 1);
            });
            if (!claimed) {
                if (!first_error) first_error = claimed.error();
                break;
            }
            if (claimed->empty()) break;
            auto const& f = claimed->front();
            bool again = !taken.insert(f.id()).second;  // still due after its resume: the next sweep tries again
            // Deliveries, connections and credentials have their own workers; a run is ours.
            if (!again && f.data().source == failures::failure_source::run && f.data().run_id) {
                if (auto r = runs_.resume(ctx, *f.data().run_id); r) ++handled;
            }
            (void)store_.transact(ctx, [&](storage::unit_of_work& uow) { return uow.failures().release(f.id(), options_.owner); });
            if (again) break;
        }
    }
    if (first_error) return *first_error;
    return handled;
}

}  // namespace integration::runs
