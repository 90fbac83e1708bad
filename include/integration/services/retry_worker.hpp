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

#include <chrono>
#include <string>

namespace integration::runs {

/** Options of the retry worker. */
struct retry_worker_options {
    std::string owner;                     ///< This worker's lease name; a random one when empty.
    /** How long a resumed run's failure stays this worker's; at least `run_service::run_lease()`
     *  (the longest one execution can take), to which a shorter one is raised. */
    std::chrono::milliseconds lease{120'000};
    std::size_t batch = 50;                ///< Failures resumed per tenant per sweep, each leased as it is taken.
};

/** Sweeps due failures of runs. Call `sweep` periodically (the host does, on its own thread). */
class INTEGRATION_EXPORT retry_worker {
public:
    retry_worker(storage::store& store, run_service& runs, clock const& clock, retry_worker_options options = {});

    /** For every tenant: ends the runs a stopped process left Running
     *  (`run_service::recover_interrupted`), then leases the failures due now, resumes each failed
     *  run (more attempts, then complete and resolve, wait again, or fail and escalate) and gives
     *  the lease back. Returns how many runs were ended or resumed. */
    result<std::size_t> sweep();

    std::string const& owner() const noexcept { return options_.owner; }

private:
    storage::store& store_;
    run_service& runs_;
    clock const& clock_;
    retry_worker_options options_;
};

}  // namespace integration::runs

#endif
