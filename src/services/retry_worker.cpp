#include <integration/services/retry_worker.hpp>

#include "../detail/fair_pool.hpp"

#include <integration/core/id.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <functional>
#include <map>
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
    std::atomic<bool> never{false};
    return sweep(never);
}

result<std::size_t> retry_worker::sweep(std::atomic<bool> const& stop) {
    auto tenants = store_.tenants();
    if (!tenants) return tenants.error();
    // Waited for whole, as one sweep: a stop waits for it (bounded by the platform's deadline),
    // and what it resumes runs before the worker goes. A tenant whose part ended with failures
    // still due (its batch or budget spent) takes another turn while any other tenant's part is
    // still running: one tenant's resume hanging on its vendor until the timeout would
    // otherwise hold every other tenant to one batch per sweep.
    std::mutex mutex;
    std::condition_variable cv;
    std::size_t running = 0, handled = 0;
    std::optional<error> first_error;  // one tenant's trouble stops no other tenant's retries
    // The failures each tenant's turns resumed in this sweep (each used by its own tenant's
    // turns only, which run one at a time): one still due after its resume waits for the next sweep.
    std::map<std::string, std::set<std::string>> taken;
    auto const turns_end = std::chrono::steady_clock::now() + 10 * options_.sweep_budget;
    for (auto const& tenant : *tenants) taken[tenant];
    std::function<void(std::string const&, bool)> turn = [&](std::string const& tenant, bool first) {
        ++running;  // under `mutex`
        pool_->post(tenant, [&, tenant, first] {
            tenant_sweep out;
            try {
                out = sweep_tenant(tenant, std::chrono::steady_clock::now() + options_.sweep_budget, first, taken.at(tenant), stop);
            } catch (std::exception const& e) {
                out.failed = error{errc::storage_failure, "sweeping tenant " + tenant + " threw: " + e.what()};
            } catch (...) {
                out.failed = error{errc::storage_failure, "sweeping tenant " + tenant + " threw"};
            }
            std::lock_guard lock(mutex);
            handled += out.handled;
            if (out.failed && !first_error) first_error = std::move(out.failed);
            // Bounded: two tenants with backlogs, each other's reason for another turn, would
            // otherwise keep the sweep (and the next tenants' first look) going for ever.
            if (out.more && running > 1 && !stop.load() && std::chrono::steady_clock::now() < turns_end) turn(tenant, false);
            if (--running == 0) cv.notify_all();
        });
    };
    std::unique_lock lock(mutex);
    for (auto const& tenant : *tenants) turn(tenant, true);
    cv.wait(lock, [&] { return running == 0; });
    if (first_error) return *first_error;
    return handled;
}

retry_worker::tenant_sweep retry_worker::sweep_tenant(std::string const& tenant, std::chrono::steady_clock::time_point budget_end,
                                                      bool first, std::set<std::string>& taken, std::atomic<bool> const& stop) {
    tenant_sweep out;
    if (stop.load()) return out;
    auto& handled = out.handled;
    auto& first_error = out.failed;
    auto ctx = request_context::for_tenant(tenant, "retry-worker");
    if (first) {
        auto recovered = runs_.recover_interrupted(ctx);
        if (recovered) handled += *recovered;
        else first_error = recovered.error();
    }
    // One failure at a time, each leased when its run is resumed: a lease taken for a whole
    // batch could lapse before the batch's last run, which another worker would then resume too.
    for (std::size_t n = 0;; ++n) {
        if (stop.load()) break;
        if (n == options_.batch || (n > 0 && std::chrono::steady_clock::now() >= budget_end)) {
            out.more = true;
            break;
        }
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
    return out;
}

}  // namespace integration::runs
