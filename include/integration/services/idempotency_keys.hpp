#ifndef INTEGRATION_SERVICES_IDEMPOTENCY_KEYS_HPP
#define INTEGRATION_SERVICES_IDEMPOTENCY_KEYS_HPP

/** @file
 *  Idempotency-Key claims. The run service stores the key on the run and replays the run; this
 *  remembers which request a key was first used with, so the key reused for another request is
 *  refused instead of replaying an answer to a different question.
 */

#include <integration/export.hpp>
#include <integration/ports/store.hpp>

#include <string>
#include <string_view>

namespace integration::runs {

/** Claims Idempotency-Keys per tenant, each for one request (kept as a SHA-256 of its bytes). */
class INTEGRATION_EXPORT idempotency_keys {
public:
    explicit idempotency_keys(storage::store& store) : store_(store) {}

    /** Claims `key` (1-255 characters) for `request` in `ctx`'s tenant. The same request again
     *  succeeds; another one is `errc::idempotency_key_reused`. */
    result<void> claim(request_context const& ctx, std::string const& key, std::string_view request);
    /** Forgets a claim whose request recorded nothing, so a corrected request may use the key;
     *  a claim a run holds (by its Idempotency-Key) stays. */
    result<void> release(request_context const& ctx, std::string const& key);

private:
    storage::store& store_;
};

}  // namespace integration::runs

#endif
