#ifndef INTEGRATION_DOMAIN_RUN_HPP
#define INTEGRATION_DOMAIN_RUN_HPP

/** @file
 *  IntegrationRun: the operational record of one governed outbound operation and its attempts.
 */

#include <integration/domain/connection.hpp>
#include <integration/core/aggregate.hpp>
#include <integration/domain/failure.hpp>
#include <integration/export.hpp>

#include <optional>
#include <string>
#include <vector>

namespace integration::runs {

/** Pending → Running → Completed | Failed; never backwards. */
enum class run_status { pending, running, completed, failed };
/** The outcome of one RunAttempt. */
enum class attempt_status { succeeded, failed };

}  // namespace integration::runs

template <>
struct integration::enum_names<integration::runs::run_status> {
    static constexpr std::array<std::string_view, 4> values{"Pending", "Running", "Completed", "Failed"};
};
template <>
struct integration::enum_names<integration::runs::attempt_status> {
    static constexpr std::array<std::string_view, 2> values{"Succeeded", "Failed"};
};

namespace integration::runs {

/** RunAttempt: one try at the vendor. */
struct INTEGRATION_EXPORT run_attempt {
    std::int64_t attempt = 0;
    attempt_status status = attempt_status::failed;
    std::optional<failures::failure_category> error_class;
    std::optional<std::int64_t> http_status;
    std::int64_t latency_ms = 0;
    time_point started_at{};

    static auto json_fields() {
        return std::make_tuple(field("attempt", &run_attempt::attempt), field("status", &run_attempt::status),
                               field("errorClass", &run_attempt::error_class),
                               field("httpStatus", &run_attempt::http_status),
                               field("latencyMs", &run_attempt::latency_ms),
                               field("startedAt", &run_attempt::started_at));
    }
};

/** The stored state of a run. */
struct INTEGRATION_EXPORT run_data {
    std::string run_id;
    std::string project_id;
    std::string connection_id;
    std::string provider_id;
    std::string operation;
    std::optional<std::string> idempotency_key;
    std::optional<std::string> request_ref;   ///< Blob holding the request body.
    std::optional<std::string> response_ref;  ///< Blob holding the response body.
    run_status status = run_status::pending;
    std::int64_t attempts = 0;
    std::optional<std::string> external_ref;  ///< The vendor's id for what was created.
    std::optional<time_point> started_at;
    std::optional<time_point> completed_at;
    std::optional<std::int64_t> latency_ms;
    std::vector<run_attempt> run_attempts;

    static auto json_fields() {
        return std::make_tuple(
            field("runId", &run_data::run_id), field("projectId", &run_data::project_id),
            field("connectionId", &run_data::connection_id), field("providerId", &run_data::provider_id),
            field("operation", &run_data::operation), field("idempotencyKey", &run_data::idempotency_key),
            field("requestRef", &run_data::request_ref), field("responseRef", &run_data::response_ref),
            field("status", &run_data::status), field("attempts", &run_data::attempts),
            field("externalRef", &run_data::external_ref), field("startedAt", &run_data::started_at),
            field("completedAt", &run_data::completed_at), field("latencyMs", &run_data::latency_ms),
            field("runAttempts", &run_data::run_attempts));
    }
};

/** IntegrationRun aggregate root. */
class INTEGRATION_EXPORT integration_run : public aggregate {
public:
    using data_type = run_data;

    /** Creates a Pending run of `operation` on `connection`. */
    static result<integration_run> create(request_context const& ctx, time_point now,
                                          connections::integration_connection const& connection,
                                          std::string operation, std::optional<std::string> idempotency_key = {});
    /** Rebuilds a stored run (stores only). */
    static result<integration_run> restore(metadata m, run_data d);

    std::string const& id() const noexcept { return d_.run_id; }
    run_data const& data() const noexcept { return d_; }
    run_status status() const noexcept { return d_.status; }

    /** Pending → Running; the connection must allow execution (Active and Healthy, or Degraded
     *  when `allow_degraded`; never Retired). */
    result<void> start(connections::integration_connection const& connection, bool allow_degraded, time_point now);
    /** Appends an attempt while Running; its number must be the next one. */
    result<void> record_attempt(run_attempt a);
    /** Sets where the request body was stored. */
    result<void> set_request_ref(std::string ref);
    /** Running → Completed (raises IntegrationRunCompleted). */
    result<void> complete(time_point now, std::optional<std::string> external_ref,
                          std::optional<std::string> response_ref);
    /** Running → Failed (raises IntegrationFailed with the classification). */
    result<void> fail(time_point now, failures::classification const& c, std::optional<std::string> response_ref);
    /** For recorders that name the response blob before writing it: the write failed, so the run
     *  does not reference it. */
    void forget_response_ref() noexcept { d_.response_ref.reset(); }
    /** The same for the request body. */
    void forget_request_ref() noexcept { d_.request_ref.reset(); }

private:
    integration_run(metadata m, run_data d) : aggregate(std::move(m)), d_(std::move(d)) {}
    void finish(time_point now);
    run_data d_;
};

}  // namespace integration::runs

#endif
