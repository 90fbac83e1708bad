#ifndef INTEGRATION_SERVICES_RETENTION_WORKER_HPP
#define INTEGRATION_SERVICES_RETENTION_WORKER_HPP

/** @file
 *  Retention per storage.md: finished runs and resolved failures leave the relational store after
 *  180 days, finished webhook deliveries after 90, Retired connections 90 days after their
 *  retirement and Revoked credentials after an audit window, archived to the blob store as JSON
 *  lines first; request and response bodies and raw webhook payloads are purged after 30 days;
 *  the outbox (not a store of record) forgets published events after 7 days; secrets soft-deleted
 *  longer ago than the secret store keeps them recoverable are destroyed.
 */

#include <integration/export.hpp>
#include <integration/ports/blob_store.hpp>
#include <integration/ports/secret_store.hpp>
#include <integration/ports/store.hpp>

#include <chrono>

namespace integration::retention {

/** How long each class of data is kept. */
struct retention_options {
    std::chrono::hours runs{180 * 24};      ///< Completed and Failed runs, by completedAt.
    /** Resolved failures, by resolvedAt, and dead-lettered ones left open, by their last change;
     *  an open OutboxEvent failure takes its dead event with it (never published: its aggregate's
     *  later events go on). */
    std::chrono::hours failures{180 * 24};
    std::chrono::hours bodies{30 * 24};     ///< Run bodies (blob keys under `runs/`), by write time.
    /** Delivered and DeadLettered outbound (Accepted and Failed inbound) deliveries, by their
     *  last attempt; published events, by publication. */
    std::chrono::hours deliveries{90 * 24};
    /** Raw webhook payloads, by the delivery's creation (and blobs under `webhooks/` by write time). */
    std::chrono::hours payloads{30 * 24};
    /** Published outbox rows, by publication (pending rows are kept, dead ones while their
     *  failure is; a dropped dead row counts as published when it is dropped). */
    std::chrono::hours outbox{7 * 24};
    /** Retired connections, by retirement ("lifetime + 90 days"), with their inbound webhook
     *  registration, whose secrets are soft-deleted first. */
    std::chrono::hours connections{90 * 24};
    /** Revoked credentials, by revocation: the audit window ("lifetime + audit window"), as long
     *  as the failures that name them. One a connection other than a Retired one names stays. */
    std::chrono::hours credentials{180 * 24};
    std::size_t batch = 500;  ///< Rows per archive file and per step: 1 to 500.
};

/** Refuses options no sweep can run with: a `batch` of 0 (every step would take no rows and
 *  never finish) or over 500 (the store's most per step), and an age under an hour or over 100
 *  years (its cut-off would overflow into the future and take every row). `open_platform` and
 *  `retention_worker::sweep` call it. */
INTEGRATION_EXPORT result<void> validate(retention_options const& options);

/** What one sweep did. */
struct retention_sweep {
    std::size_t runs_archived = 0;
    std::size_t failures_archived = 0;
    std::size_t deliveries_archived = 0;
    std::size_t events_removed = 0;   ///< Published webhook events forgotten.
    std::size_t keys_removed = 0;     ///< Idempotency-Keys forgotten (kept as long as runs).
    std::size_t outbox_removed = 0;   ///< Published outbox rows deleted.
    std::size_t payloads_purged = 0;  ///< Deliveries whose payload blob was deleted and payloadRef cleared.
    std::size_t blobs_purged = 0;     ///< Run bodies and unreferenced webhook payloads.
    std::size_t connections_archived = 0;
    std::size_t credentials_archived = 0;
    std::size_t secrets_purged = 0;  ///< Soft-deleted secrets and disabled versions destroyed (`secret_store::purge_expired`).
    std::size_t authorizations_purged = 0;  ///< Expired OAuth2 flows forgotten, their secrets soft-deleted.
};

/** Applies retention; call `sweep` periodically (the host does, on its own thread). */
class INTEGRATION_EXPORT retention_worker {
public:
    retention_worker(storage::store& store, blobs::blob_store& blobs, credentials::secret_store& secrets,
                     clock const& clock, retention_options options = {});

    /** For every tenant: writes expired runs, failures, deliveries, connections and credentials
     *  to `archive/runs/<first>_<last>.<digest>.jsonl` (`archive/failures/...`, ...) in the
     *  tenant's blob partition, then deletes them from the store (the secrets of a connection's
     *  inbound webhook and of a credential are soft-deleted before); forgets old published events
     *  and deletes old published outbox rows; deletes old webhook payloads and clears their
     *  deliveries' `payloadRef`; forgets expired OAuth2 authorization flows (their secrets
     *  soft-deleted); then purges old blobs and destroys expired soft-deleted secrets. An archive file is written before
     *  its rows are deleted and is named by its first and last ids and the first 16 hex digits
     *  of its content's SHA-256 (none is written over by other rows), and a payload is deleted before its
     *  reference, so a sweep cut short does the same work again next time. Refuses options
     *  `validate` refuses, before touching anything. */
    result<retention_sweep> sweep();

private:
    template <class A, class Select, class Remove, class Release>
    result<std::size_t> archive(request_context const& ctx, std::string const& kind, Select select, Remove remove,
                                Release release);
    result<std::size_t> purge_payloads(request_context const& ctx, time_point before);

    storage::store& store_;
    blobs::blob_store& blobs_;
    credentials::secret_store& secrets_;
    clock const& clock_;
    retention_options options_;
};

}  // namespace integration::retention

#endif
