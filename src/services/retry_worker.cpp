#include <integration/services/retry_worker.hpp>

#include "../detail/fair_pool.hpp"

#include <integration/core/id.hpp>

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <set>

namespace integration::runs {

retry_worker::retry_worker(storage::store& store, run_service& runs, clock const& clock, retry_worker_options options)
    : store_(store), runs_(runs), clock_(clock), options_(std::move(options)) {
    if (options_.owner.empty()) options_.owner = new_id("wrk", clock_.now());
    // A lease that lapsed while its run's call was still in flight would let another worker
    // resume the run and call the vendor a second time.
    options_.lease = std::max(options_.lease, runs_.run_lease());
    pool_ = std::make_unique<detail::fair_pool>(options_.threads, 1, "integ-retry");
}

retry_worker::~retry_worker() = default;

result<std::size_t> retry_worker::sweep() {
    auto tenants = store_.tenants();
    if (!tenants) return tenants.error();
    // Waited for whole, as one sweep: a stop waits for it (bounded by the platform's deadline),
    // and what it resumes runs before the worker goes.
    std::mutex mutex;
    std::condition_variable cv;
    std::size_t pending = tenants->size(), handled = 0;
    std::optional<error> first_error;  // one tenant's trouble stops no other tenant's retries
    for (auto const& tenant : *tenants)
        pool_->post(tenant, [&, tenant] {
            std::pair<std::size_t, std::optional<error>> out;
            try {
                out = sweep_tenant(tenant, std::chrono::steady_clock::now() + options_.sweep_budget);
            } catch (std::exception const& e) {
                out.second = error{errc::storage_failure, "sweeping tenant " + tenant + " threw: " + e.what()};
            } catch (...) {
                out.second = error{errc::storage_failure, "sweeping tenant " + tenant + " threw"};
            }
            std::lock_guard lock(mutex);
            handled += out.first;
            if (out.second && !first_error) first_error = std::move(out.second);
            if (--pending == 0) cv.notify_all();
        });
    std::unique_lock lock(mutex);
    cv.wait(lock, [&] { return pending == 0; });
    if (first_error) return *first_error;
    return handled;
}

std::pair<std::size_t, std::optional<error>> retry_worker::sweep_tenant(std::string const& tenant,
                                                                        std::chrono::steady_clock::time_point budget_end) {
    std::size_t handled = 0;
    std::optional<error> first_error;
    auto ctx = request_context::for_tenant(tenant, "retry-worker");
    auto recovered = runs_.recover_interrupted(ctx);
    if (recovered) handled += *recovered;
    else first_error = recovered.error();
    // One failure at a time, each leased when its run is resumed: a lease taken for a whole
    // batch could lapse before the batch's last run, which another worker would then resume too.
    std::set<std::string> taken;
    for (std::size_t n = 0; n < options_.batch; ++n) {
        if (n > 0 && std::chrono::steady_clock::now() >= budget_end) break;
        auto now = clock_.now();
        auto claimed = storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) {
            return uow.failures().claim_due(now, options_.owner, now + options_.lease, 1);
        });
        if (!claimed) {
            if (!first_error) first_error = claimed.error();
            break;
        }
        if (claimed->empty()) break;
        auto const& f = claimed->front().failure;
        std::optional<time_point> not_before;  // when its resume could not start
        bool again = !taken.insert(f.id()).second;  // still due after its resume: the next sweep tries again
        // Deliveries, connections and credentials have their own workers; a run is ours.
        if (!again && f.data().source == failures::failure_source::run && f.data().run_id) {
            auto why = claimed->front().lease_lapsed ? resume_reason::interrupted : resume_reason::due;
            bool called = false;
            auto r = runs_.resume(ctx, *f.data().run_id, why, &called);
            if (r) {
                ++handled;
            } else {
                if (!first_error) first_error = r.error();
                // Its call's outcome unrecorded, the resume keeps the lease: when it lapses, the
                // next worker knows that the vendor may have acted.
                if (called) continue;
                // It could not start (its input unreadable now): tried again after a lease's
                // time, while the failures due behind it, which it would hold up, go first.
                not_before = clock_.now() + options_.lease;
            }
        }
        (void)store_.transact(ctx, [&](storage::unit_of_work& uow) {
            return uow.failures().release(f.id(), options_.owner, not_before);
        });
        if (again) break;
    }
    return {handled, std::move(first_error)};
}

}  // namespace integration::runs
