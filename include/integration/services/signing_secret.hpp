#ifndef INTEGRATION_SERVICES_SIGNING_SECRET_HPP
#define INTEGRATION_SERVICES_SIGNING_SECRET_HPP

/** @file
 *  Webhook signing secrets (Standard Webhooks `whsec_` form), generated and kept in the secret
 *  store; subscriptions hold only the reference.
 */

#include <integration/export.hpp>
#include <integration/ports/clock.hpp>
#include <integration/ports/secret_store.hpp>

#include <string>

namespace integration::webhooks {

/** A new signing secret: its reference, and the secret itself to show the subscriber once. */
struct new_signing_secret {
    std::string ref;       ///< The KeyVaultRef for `signingSecretRef`.
    secret_bytes secret;   ///< `whsec_` + base64 of 32 random bytes.
};

/** Generates a signing secret for `tenant` and stores it in `store`. */
INTEGRATION_EXPORT result<new_signing_secret> create_signing_secret(credentials::secret_store& store,
                                                                    std::string const& tenant, time_point now);

}  // namespace integration::webhooks

#endif
