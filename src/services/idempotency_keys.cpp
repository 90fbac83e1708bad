#include <integration/services/idempotency_keys.hpp>

#include "../detail/crypto.hpp"

namespace integration::runs {

result<void> idempotency_keys::claim(request_context const& ctx, std::string const& key, std::string_view request) {
    if (key.empty() || key.size() > 255) return error{errc::invalid_argument, "Idempotency-Key must be 1-255 characters"};
    auto hash = crypto::sha256_hex(request);
    return store_.transact(ctx, [&](storage::unit_of_work& uow) { return uow.idempotency().claim(key, hash); });
}

result<void> idempotency_keys::release(request_context const& ctx, std::string const& key) {
    return store_.transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
        // A run that holds the key (its request failed after the run was written, or a twin of
        // it is still executing) keeps it: freed, the key would hand that run to another request.
        auto held = uow.runs().find_by_idempotency_key(key);
        if (held) return {};
        if (held.error() != errc::not_found) return held.error();
        return uow.idempotency().release(key);
    });
}

}  // namespace integration::runs
