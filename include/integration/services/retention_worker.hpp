#ifndef INTEGRATION_SERVICES_RETENTION_WORKER_HPP
#define INTEGRATION_SERVICES_RETENTION_WORKER_HPP

/** @file
 *  Retention per storage.md: finished runs and resolved failures leave the relational store after
 *  180 days, archived to the blob store as JSON lines first; request and response bodies are
 *  purged after 30 days.
 */

#include <integration/ports/blob_store.hpp>
#include <integration/ports/store.hpp>

#include <chrono>

namespace integration::retention {

/** How long each class of data is kept. */
struct retention_options {
    std::chrono::hours runs{180 * 24};      ///< Completed and Failed runs, by completedAt.
    std::chrono::hours failures{180 * 24};  ///< Resolved failures, by resolvedAt.
    std::chrono::hours bodies{30 * 24};     ///< Run bodies (blob keys under `runs/`), by write time.
    std::size_t batch = 500;                ///< Rows per archive file.
};

/** What one sweep did. */
struct retention_sweep {
    std::size_t runs_archived = 0;
    std::size_t failures_archived = 0;
    std::size_t blobs_purged = 0;
};

/** Applies retention; call `sweep` periodically (the host does, on its own thread). */
class retention_worker {
public:
    retention_worker(storage::store& store, blobs::blob_store& blobs, clock const& clock, retention_options options = {});

    /** For every tenant: writes expired runs and failures to `archive/runs/<first>_<last>.jsonl`
     *  (and `archive/failures/...`) in the tenant's blob partition, then deletes them from the
     *  store; then purges old blobs. An archive file is written before its rows are deleted and
     *  is named by its rows, so a sweep cut short writes the same file again next time. */
    result<retention_sweep> sweep();

private:
    template <class A, class Select, class Remove>
    result<std::size_t> archive(request_context const& ctx, std::string const& kind, Select select, Remove remove);

    storage::store& store_;
    blobs::blob_store& blobs_;
    clock const& clock_;
    retention_options options_;
};

}  // namespace integration::retention

#endif
