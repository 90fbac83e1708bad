#ifndef INTEGRATION_SERVICES_ROTATION_WORKER_HPP
#define INTEGRATION_SERVICES_ROTATION_WORKER_HPP

/** @file
 *  CredentialRotationWorker: rotates credentials ahead of `expiresAt` or on their
 *  `rotationPolicy` schedule, or raises an IntegrationFailure when nothing can rotate them.
 */

#include <integration/export.hpp>
#include <integration/services/credential_service.hpp>

#include <functional>
#include <optional>

namespace integration::credentials {

/** New material for a credential, minted by the vendor-specific code that can do so. */
struct minted_secret {
    secret_bytes secret;
    std::optional<time_point> expires_at;
};

/** Options of the rotation worker. */
struct rotation_worker_options {
    /** Mints new material for a credential, or returns nullopt when it cannot (a human must act). */
    std::function<std::optional<minted_secret>(integration_credential const&)> mint;
    /** Builds the verifier (usually the connection's health check) for a credential. */
    std::function<verifier(request_context const&, integration_credential const&)> verifier_for;
    std::chrono::hours default_notice{24 * 7};  ///< Notice when a credential has no rotationPolicy.
    std::size_t batch = 100;                    ///< Credentials read per page; a sweep reads every page of each tenant.
    /** A rotation still unfinished this long after it began was left by a process that stopped:
     *  the sweep ends it (`credential_service::abandon_rotation`), and the credential is due again. */
    std::chrono::minutes abandoned_after{10};
};

/** What one sweep did. */
struct rotation_sweep {
    std::size_t rotated = 0;
    /** Due credentials left to a person, with one open failure each (raised once): nothing could
     *  mint new material, or new material failed its verification. Not minted again until that
     *  failure is resolved. */
    std::size_t escalated = 0;
    std::size_t failed = 0;      ///< Rotations that failed (an outage: retried next sweep; a verification: escalated).
    std::size_t abandoned = 0;   ///< Rotations a stopped process left unfinished, ended.
};

/** Sweeps every tenant's due credentials; state lives in the store, so a restart loses nothing. */
class INTEGRATION_EXPORT rotation_worker {
public:
    rotation_worker(storage::store& store, credential_service& credentials, clock const& clock,
                    rotation_worker_options options);
    /** One pass over every tenant. */
    result<rotation_sweep> sweep();

private:
    bool due(integration_credential const& c, time_point now) const;
    result<void> escalate(request_context const& ctx, integration_credential const& c, time_point now, std::string const& why);

    storage::store& store_;
    credential_service& credentials_;
    clock const& clock_;
    rotation_worker_options options_;
};

}  // namespace integration::credentials

#endif
