#ifndef INTEGRATION_CORE_AGGREGATE_HPP
#define INTEGRATION_CORE_AGGREGATE_HPP

/** @file
 *  What every aggregate root shares: standard metadata (tenant, audit stamps, optimistic
 *  concurrency version) and the list of domain events raised since it was loaded.
 */

#include <integration/core/time.hpp>
#include <integration/core/context.hpp>
#include <integration/core/json.hpp>
#include <integration/export.hpp>

#include <boost/json/object.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace integration {

/** Standard metadata on every aggregate. `version` is 0 until first saved, then 1, 2, ... */
struct INTEGRATION_EXPORT metadata {
    std::string tenant_id;  ///< Empty for global (shared) providers and clients.
    time_point created_at{};
    std::string created_by;
    time_point updated_at{};
    std::string updated_by;
    std::int64_t version = 0;

    static auto json_fields() {
        return std::make_tuple(field("tenantId", &metadata::tenant_id), field("createdAt", &metadata::created_at),
                               field("createdBy", &metadata::created_by), field("updatedAt", &metadata::updated_at),
                               field("updatedBy", &metadata::updated_by), field("version", &metadata::version));
    }
};

/** Metadata for a new aggregate created by `ctx` at `now`; `global` leaves the tenant empty. */
INTEGRATION_EXPORT metadata new_metadata(request_context const& ctx, time_point now, bool global = false);

/** A domain event as raised by an aggregate; the store wraps it in an `event_envelope`. */
struct domain_event {
    std::string event_type;     ///< e.g. "IntegrationConnectionEstablished".
    boost::json::object data;   ///< Event payload; never secret material.
};

/** Base of the eight aggregate roots. */
class INTEGRATION_EXPORT aggregate {
public:
    /** Standard metadata. */
    metadata const& meta() const noexcept { return meta_; }
    /** Events raised since load or since the store last took them. */
    std::vector<domain_event> const& pending_events() const noexcept { return events_; }

    /** For stores: takes the pending events to write them to the outbox. */
    std::vector<domain_event> take_events() noexcept { return std::exchange(events_, {}); }
    /** For stores: records a successful save by `actor` at `now` as `version`. */
    void mark_saved(std::string const& actor, time_point now, std::int64_t version);

protected:
    aggregate() = default;
    aggregate(metadata m) : meta_(std::move(m)) {}

    void raise(std::string event_type, boost::json::object data) {
        events_.push_back({std::move(event_type), std::move(data)});
    }

private:
    metadata meta_;
    std::vector<domain_event> events_;
};

/** Renders an aggregate as one JSON object: its fields, and the standard metadata under
 *  `metadata` (nested, because ExternalApiClient's own `version` is its semver). */
template <class A>
boost::json::object aggregate_to_json(A const& a) {
    boost::json::object o;
    write_fields(o, a.data());
    o["metadata"] = to_json(a.meta());
    return o;
}

/** Reads an aggregate written by `aggregate_to_json`. */
template <class A>
result<A> aggregate_from_json(boost::json::value const& j) {
    if (!j.is_object()) return error{errc::invalid_argument, "expected a JSON object"};
    typename A::data_type d{};
    metadata m{};
    if (auto r = read_fields(j.get_object(), d, ""); !r) return r.error();
    auto const* mj = j.get_object().if_contains("metadata");
    if (!mj) return error{errc::invalid_argument, "metadata is required"};
    if (auto r = from_json(*mj, m, "metadata"); !r) return r.error();
    return A::restore(std::move(m), std::move(d));
}

}  // namespace integration

#endif
