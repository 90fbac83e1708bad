#ifndef INTEGRATION_SERVICES_RETRY_WORKER_HPP
#define INTEGRATION_SERVICES_RETRY_WORKER_HPP

/** @file
 *  IntegrationRetryWorker: executes runs again when their failures come due, and ends the runs a
 *  stopped process left Running. Its state is the store's: a failure is leased to one worker at a
 *  time, and a lease that expires (its worker died) makes the failure due again, so any number of
 *  workers on one store survive restarts.
 */

#include <integration/export.hpp>
#include <integration/services/run_service.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <set>
#include <optional>
#include <string>
#include <utility>

namespace integration::detail {
class fair_pool;
}

namespace integration::runs {

/** Options of the retry worker. */
struct retry_worker_options {
    std::string owner;                     ///< This worker's lease name; a random one when empty.
    /** How long a resumed run's failure stays this worker's; at least `run_service::run_lease()`
     *  (the longest one execution can take), to which a shorter one is raised. */
    std::chrono::milliseconds lease{120'000};
    std::size_t batch = 50;                ///< Failures resumed per tenant per sweep, each leased as it is taken.
    /** Threads that sweep tenants side by side, one per tenant at a time: a tenant whose resumed
     *  runs wait on a hanging vendor holds one of them, not the others' retries. */
    std::size_t threads = 4;
    /** A tenant takes no further failure once its part of a sweep has run this long (one is
     *  always taken), so that the next sweep comes soon. */
    std::chrono::milliseconds sweep_budget{1'000};
};

/** Sweeps due failures of runs. Call `sweep` periodically (the host does, on its own thread). */
class INTEGRATION_EXPORT retry_worker {
public:
    retry_worker(storage::store& store, run_service& runs, clock const& clock, retry_worker_options options = {});
    ~retry_worker();
    retry_worker(retry_worker const&) = delete;
    retry_worker& operator=(retry_worker const&) = delete;

    /** For every tenant, tenants side by side: ends the runs a stopped process left Running
     *  (`run_service::recover_interrupted`), then leases the failures due now, resumes each failed
     *  run (more attempts, then complete and resolve, wait again, or fail and escalate) and gives
     *  the lease back. A tenant that spent its batch or budget takes another turn while another
     *  tenant's part is still running (a resume waiting on a hanging vendor), for up to ten
     *  `sweep_budget`s from the sweep's start. Returns, once every
     *  tenant is done, how many runs were ended or resumed. */
    result<std::size_t> sweep();
    /** The same, ending early once `stop` is set: no further failure is taken, and a tenant not
     *  started yet is passed over (its failures stay due for the next worker). */
    result<std::size_t> sweep(std::atomic<bool> const& stop);

    std::string const& owner() const noexcept { return options_.owner; }

private:
    /** One turn of a tenant in a sweep: how many runs it ended or resumed, its first error, and
     *  whether it stopped with failures still due (its batch or budget spent). */
    struct tenant_sweep {
        std::size_t handled = 0;
        std::optional<integration::error> failed;
        bool more = false;
    };
    /** `first`: the tenant's first turn of the sweep, which also ends orphaned runs; `taken`:
     *  the failures its turns of this sweep resumed. */
    tenant_sweep sweep_tenant(std::string const& tenant, std::chrono::steady_clock::time_point budget_end, bool first,
                              std::set<std::string>& taken, std::atomic<bool> const& stop);

    storage::store& store_;
    run_service& runs_;
    clock const& clock_;
    retry_worker_options options_;
    std::unique_ptr<detail::fair_pool> pool_;
};

}  // namespace integration::runs

#endif
