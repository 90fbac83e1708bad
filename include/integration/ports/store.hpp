#ifndef INTEGRATION_PORTS_STORE_HPP
#define INTEGRATION_PORTS_STORE_HPP

/** @file
 *  The storage port: a store runs units of work; a unit of work exposes one repository per
 *  aggregate, every method scoped to the unit's tenant. Saving an aggregate writes its pending
 *  events to the transactional outbox in the same transaction.
 */

#include <integration/domain/connection.hpp>
#include <integration/core/durability.hpp>
#include <integration/domain/credential.hpp>
#include <integration/domain/event.hpp>
#include <integration/domain/failure.hpp>
#include <integration/domain/inbound_body.hpp>
#include <integration/domain/api_client.hpp>
#include <integration/domain/provider.hpp>
#include <integration/domain/run.hpp>
#include <integration/domain/delivery.hpp>
#include <integration/domain/subscription.hpp>
#include <integration/export.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace integration::storage {

/** Keyset pagination: at most `limit` items after `cursor` (empty for the first page, else a
 *  `next_cursor` of the same list; any other value is `errc::invalid_argument`). */
struct page_request {
    std::size_t limit = 50;  ///< 1-500.
    std::string cursor;
};

/** One page of a list, ordered by id (creation time); `next_cursor` is empty on the last page. */
template <class T>
struct page {
    std::vector<T> items;
    std::string next_cursor;
};

/** IntegrationProviderRepository. Lookups see the tenant's own providers and global ones. */
class INTEGRATION_EXPORT integration_provider_repository {
public:
    virtual ~integration_provider_repository() = default;
    virtual result<providers::integration_provider> find(std::string const& provider_id) = 0;
    virtual result<providers::integration_provider> find_by_key(std::string const& key,
                                                                providers::provider_scope scope) = 0;
    virtual result<page<providers::integration_provider>> list(page_request const& p) = 0;
    /** Inserts (version 0) or updates (stored version must match); global rows need an admin context. */
    virtual result<void> save(providers::integration_provider& p) = 0;
};

/** ExternalApiClientRepository. */
class INTEGRATION_EXPORT external_api_client_repository {
public:
    virtual ~external_api_client_repository() = default;
    virtual result<providers::external_api_client> find(std::string const& api_client_id) = 0;
    virtual result<page<providers::external_api_client>> list_by_provider(std::string const& provider_id,
                                                                          page_request const& p) = 0;
    /** Number of Active clients of a provider. */
    virtual result<std::size_t> count_active(std::string const& provider_id) = 0;
    /** Inserts or updates a client. Every assemblyName + version of its history must be free among
     *  global clients and, for a tenant's client, among that tenant's own (`errc::already_exists`,
     *  naming neither another tenant nor its client); other tenants' clients never conflict. */
    virtual result<void> save(providers::external_api_client& c) = 0;
};

/** Filters for listing connections; unset members match everything. */
struct connection_query {
    std::optional<std::string> project_id;
    std::optional<std::string> provider_id;
    std::optional<connections::connection_status> status;
};

/** IntegrationConnectionRepository. */
class INTEGRATION_EXPORT integration_connection_repository {
public:
    virtual ~integration_connection_repository() = default;
    virtual result<connections::integration_connection> find(std::string const& connection_id) = 0;
    virtual result<page<connections::integration_connection>> list(connection_query const& q,
                                                                   page_request const& p) = 0;
    virtual result<void> save(connections::integration_connection& c) = 0;
    /** Retired connections last changed (retired) before `before`, oldest first. */
    virtual result<std::vector<connections::integration_connection>> retired_before(time_point before,
                                                                                    std::size_t limit) = 0;
    /** Deletes the connection with its inbound webhook registration; not found is not an error. */
    virtual result<void> remove(std::string const& connection_id) = 0;
};

/** Filters for listing credentials. */
struct credential_query {
    std::optional<std::string> provider_id;
    std::optional<std::string> connection_id;
};

/** IntegrationCredentialRepository. */
class INTEGRATION_EXPORT integration_credential_repository {
public:
    virtual ~integration_credential_repository() = default;
    virtual result<credentials::integration_credential> find(std::string const& credential_id) = 0;
    virtual result<page<credentials::integration_credential>> list(credential_query const& q,
                                                                   page_request const& p) = 0;
    /** Non-revoked credentials expiring before `before`, soonest first. */
    virtual result<std::vector<credentials::integration_credential>> expiring_before(time_point before,
                                                                                     std::size_t limit) = 0;
    virtual result<void> save(credentials::integration_credential& c) = 0;
    /** Revoked credentials last changed (revoked) before `before` that no connection but a
     *  Retired one names, oldest first. */
    virtual result<std::vector<credentials::integration_credential>> revoked_before(time_point before,
                                                                                    std::size_t limit) = 0;
    /** Deletes the credential and its refresh lease; not found is not an error. */
    virtual result<void> remove(std::string const& credential_id) = 0;
    /** Takes the lease on refreshing credential `credential_id` for `owner` until `until`: true
     *  when no other owner holds it at `now` (a lease past its `until` counts as none; `owner`'s
     *  own is extended). A provider takes a refresh token once, so the processes sharing a store
     *  refresh a credential one at a time. */
    virtual result<bool> lease_refresh(std::string const& credential_id, std::string const& owner, time_point now,
                                       time_point until) = 0;
    /** Gives up `owner`'s refresh lease of the credential; none held is not an error. */
    virtual result<void> end_refresh_lease(std::string const& credential_id, std::string const& owner) = 0;
};

/** Filters for listing runs. */
struct run_query {
    std::optional<std::string> connection_id;
    std::optional<runs::run_status> status;
};

/** Which body of a run: what was sent to the vendor, or its last answer. */
enum class run_body { request, response };

struct prepared_run;

/** IntegrationRunRepository. */
class INTEGRATION_EXPORT integration_run_repository {
public:
    virtual ~integration_run_repository() = default;
    virtual result<runs::integration_run> find(std::string const& run_id) = 0;
    /** The run created with this Idempotency-Key in this tenant. */
    virtual result<runs::integration_run> find_by_idempotency_key(std::string const& key) = 0;
    virtual result<page<runs::integration_run>> list(run_query const& q, page_request const& p) = 0;
    virtual result<void> save(runs::integration_run& r) = 0;
    /** `save` of `p.run`, whose events `prepare_run` built off the store's writer: they are
     *  written as they are. `errc::invalid_argument` when they are not the run's, in this tenant,
     *  at the version this save makes. */
    virtual result<void> save_prepared(prepared_run& p) = 0;
    /** Completed or Failed runs that ended before `before`, oldest id first (for retention). A
     *  run ends after it is made, so only runs whose id was made before `before` are looked at:
     *  a sweep costs what is old, not what the tenant holds. */
    virtual result<std::vector<runs::integration_run>> ended_before(time_point before, std::size_t limit) = 0;
    /** Deletes a run with its attempts and stored bodies (retention, after archiving); a missing run
     *  is not an error. */
    virtual result<void> remove(std::string const& run_id) = 0;
    /** Keeps one of a run's bodies in the store, committed with the unit (small bodies: no blob
     *  write and no fsync of their own); the run must be saved first. Its reference is
     *  `stored_run_body_ref`. */
    virtual result<void> put_body(std::string const& run_id, run_body part, std::string_view bytes) = 0;
    /** The body `put_body` kept (`errc::not_found` when there is none, e.g. after retention). */
    virtual result<std::string> body(std::string const& run_id, run_body part) = 0;
    /** Deletes the bodies `put_body` kept of up to `limit` runs created before `before` (retention;
     *  a body is as old as its run); returns how many runs lost theirs. */
    virtual result<std::size_t> purge_bodies(time_point before, std::size_t limit) = 0;
};

/** Filters for listing failures. */
struct failure_query {
    std::optional<std::string> run_id;
    std::optional<std::string> delivery_id;
    bool unresolved_only = false;
    std::optional<std::string> credential_id;  ///< A credential's rotation and refresh failures.
    std::optional<std::string> connection_id;  ///< A connection's health-probe failures.
};

/** A run failure leased to a retry worker by `claim_due`. */
struct leased_failure {
    failures::integration_failure failure;
    /** An earlier lease of it ran out without being given back: the worker that held it stopped,
     *  perhaps while its resume was calling the vendor. */
    bool lease_lapsed = false;
};

/** IntegrationFailureRepository. */
class INTEGRATION_EXPORT integration_failure_repository {
public:
    virtual ~integration_failure_repository() = default;
    virtual result<failures::integration_failure> find(std::string const& failure_id) = 0;
    virtual result<page<failures::integration_failure>> list(failure_query const& q, page_request const& p) = 0;
    /** Unresolved failures whose next action is Retry and whose nextAttemptAt is at or before `now`,
     *  earliest first. */
    virtual result<std::vector<failures::integration_failure>> due_for_retry(time_point now,
                                                                            std::size_t limit) = 0;
    /** Leases up to `limit` of the run failures `due_for_retry` would return (the ones a retry
     *  resumes: deliveries and connections have workers of their own) that no other worker holds
     *  (or whose lease expired) to `owner` until `until`. Two workers never hold the same failure. */
    virtual result<std::vector<leased_failure>> claim_due(time_point now, std::string const& owner, time_point until,
                                                          std::size_t limit) = 0;
    /** Gives up `owner`'s lease of a failure (after a retry was recorded). With `not_before`, the
     *  failure is due no earlier than that: a resume that could not start (its input unreadable
     *  now) lets the failures behind it go first. Saving a failure ends any lease on it too. */
    virtual result<void> release(std::string const& failure_id, std::string const& owner,
                                 std::optional<time_point> not_before) = 0;
    /** Whether a retry worker holds the failure's lease at `now` (its resume may be calling the
     *  vendor): an escalation then would be followed by that call. */
    virtual result<bool> leased(std::string const& failure_id, time_point now) = 0;
    /** Failures that ended before `before`, oldest id first (for retention): resolved then, or
     *  dead letters (next action DeadLetter, which nothing resolves) unchanged since; an
     *  escalated one stays until it is resolved. Like `run_repository::ended_before`, only
     *  failures whose id was made before `before`. */
    virtual result<std::vector<failures::integration_failure>> ended_before(time_point before, std::size_t limit) = 0;
    /** Deletes a failure with its history (retention, after archiving). */
    virtual result<void> remove(std::string const& failure_id) = 0;
    virtual result<void> save(failures::integration_failure& f) = 0;
};

/** WebhookSubscriptionRepository. */
class INTEGRATION_EXPORT webhook_subscription_repository {
public:
    virtual ~webhook_subscription_repository() = default;
    virtual result<webhooks::webhook_subscription> find(std::string const& subscription_id) = 0;
    virtual result<page<webhooks::webhook_subscription>> list(page_request const& p) = 0;
    /** Active subscriptions whose pattern matches `event_type`. */
    virtual result<std::vector<webhooks::webhook_subscription>> active_for_event(std::string const& event_type) = 0;
    virtual result<void> save(webhooks::webhook_subscription& s) = 0;
};

/** Filters for listing deliveries; unset members match everything. */
struct delivery_query {
    std::optional<webhooks::delivery_direction> direction;
    std::optional<std::string> subscription_id;
    std::optional<std::string> connection_id;
    std::optional<webhooks::delivery_status> status;
    std::optional<std::string> event_id;
    std::optional<time_point> since;  ///< Created at or after.
};

/** An event wrapped and serialized for the outbox before its unit of work runs. */
struct serialized_event {
    events::event_envelope envelope;  ///< Its columns; `data` is left empty (`json` holds it).
    /** `events::serialize_envelope` of the envelope without its identity fields
     *  (`envelope_fields::without_identity`), which the outbox keeps as the row's columns. */
    std::string json;
    /** Set when `json` leaves out `data.body`: the body is the payload the store keeps for the
     *  event's delivery, read in this format (`webhooks::parse_body`), and the store puts it
     *  back when the event is read (`store::pending_events`). */
    std::optional<webhooks::body_format> body_from_payload{};
};

/** A new, accepted inbound delivery with everything its commit writes already built, so that
 *  the store's writer only inserts rows (`webhook_delivery_repository::add_inbound`). */
struct prepared_inbound {
    webhooks::webhook_delivery delivery;   ///< Not yet saved; its events are in `events`.
    std::vector<serialized_event> events;  ///< Its outbox rows (aggregate version 1).
    std::optional<std::string> payload;    ///< The raw body, when it is kept in the store.
};

/** Makes `d` (a new inbound delivery, its events still pending) ready for `add_inbound`: its
 *  events wrapped for `ctx` at `now` with `source` (the store's `event_source()`) and serialized.
 *  With `body_format`, the canonical event's `body` is `parse_body(*payload, *body_format)`
 *  (the caller's promise), so it is stored once, as the payload: the event's envelope leaves it
 *  out (`serialized_event::body_from_payload`). A body holding a floating-point number stays in
 *  the envelope, whose text of that number, read back, may differ from the vendor's in the
 *  last bit: the event read back is the same either way. */
INTEGRATION_EXPORT prepared_inbound prepare_inbound(webhooks::webhook_delivery d, request_context const& ctx,
                                                   time_point now, std::string_view source,
                                                   std::optional<std::string> payload,
                                                   std::optional<webhooks::body_format> body_format = std::nullopt);

/** An outbound delivery with one attempt recorded (`record_success`, `record_failure` or
 *  `record_gone`) and that attempt's events already built, so that the store's writer only binds
 *  them (`webhook_delivery_repository::record_prepared_attempt`). */
struct prepared_attempt {
    webhooks::webhook_delivery delivery;   ///< As loaded or leased, the attempt applied; no pending events.
    std::vector<serialized_event> events;  ///< Its outbox rows, at the version its save makes.
    bool recorded = false;                 ///< Set by `record_prepared_attempts`: false when it conflicted.
};

/** Makes `d` ready for `record_prepared_attempt`: its pending events wrapped for `ctx` at `now`
 *  with `source` (the store's `event_source()`) and the version after its save, and serialized. */
INTEGRATION_EXPORT prepared_attempt prepare_attempt(webhooks::webhook_delivery d, request_context const& ctx,
                                                   time_point now, std::string_view source);

/** A run to save with its pending events already built, so that the store's writer only binds
 *  them (`integration_run_repository::save_prepared`). */
struct prepared_run {
    runs::integration_run run;             ///< As it will be saved; no pending events.
    std::vector<serialized_event> events;  ///< Its outbox rows, at the version its save makes.
    /** Bodies kept with the run as `put_body` keeps them, written by the same `save_prepared`
     *  (which needs no lookup of the run it has just written); unset: none (an empty view keeps
     *  an empty body). They view the caller's bytes, which must live until the unit is done. */
    std::optional<std::string_view> request_body, response_body;
};

/** Makes `r` ready for `save_prepared`: its pending events wrapped for `ctx` at `now` with
 *  `source` (the store's `event_source()`) and the version after its save, and serialized. */
INTEGRATION_EXPORT prepared_run prepare_run(runs::integration_run r, request_context const& ctx, time_point now,
                                           std::string_view source);

/** The inbound delivery that already holds a vendor delivery id (`add_inbound`). */
struct inbound_match {
    std::string delivery_id;
    std::optional<std::string> payload_hash;
};

/** WebhookDeliveryRepository. */
class INTEGRATION_EXPORT webhook_delivery_repository {
public:
    virtual ~webhook_delivery_repository() = default;
    virtual result<webhooks::webhook_delivery> find(std::string const& delivery_id) = 0;
    /** The inbound delivery received on `connection_id` with the vendor's delivery id. */
    virtual result<webhooks::webhook_delivery> find_inbound(std::string const& connection_id,
                                                            std::string const& provider_delivery_id) = 0;
    virtual result<page<webhooks::webhook_delivery>> list(delivery_query const& q, page_request const& p) = 0;
    /** Outbound Pending or Failed deliveries with nextAttemptAt at or before `now`, earliest first. */
    virtual result<std::vector<webhooks::webhook_delivery>> due(time_point now, std::size_t limit) = 0;
    /** Inserts or updates a delivery; saving also gives up any worker's lease on it. An outbound
     *  delivery of a subscription and event that already has one is `errc::already_exists`
     *  (fan-out is idempotent per subscription and event). */
    virtual result<void> save(webhooks::webhook_delivery& d) = 0;
    /** Saves an outbound delivery loaded (or leased) at its stored version, to which one attempt
     *  was since recorded (`record_success`, `record_failure` or `record_gone`): the same outcome
     *  as `save`, which it falls back to, but a store may write only what an attempt changes
     *  (the state columns, the new attempt, the events). `errc::conflict` when the stored
     *  delivery changed meanwhile (e.g. another worker took its lease over). */
    virtual result<void> record_attempt(webhooks::webhook_delivery& d) { return save(d); }
    /** `record_attempt` of `p.delivery`, whose events `prepare_attempt` built off the store's
     *  writer: they are written as they are. `errc::invalid_argument` when they are not the
     *  delivery's, in this tenant, at the version this save makes. */
    virtual result<void> record_prepared_attempt(prepared_attempt& p) = 0;
    /** `record_prepared_attempt` of every element, in one go (a store may write the whole batch
     *  with a few statements). An element whose delivery changed meanwhile is skipped with
     *  `recorded` false, as a conflict; every other error fails the whole call. */
    virtual result<void> record_prepared_attempts(std::span<prepared_attempt> batch);
    /** Deliveries in a final state (Delivered, DeadLettered; inbound Accepted or Failed) whose
     *  last attempt was before `before`, oldest first (retention); not one whose stored payload
     *  is still the body of an event not yet published (`serialized_event::body_from_payload`). */
    virtual result<std::vector<webhooks::webhook_delivery>> ended_before(time_point before, std::size_t limit) = 0;
    /** Deliveries created before `before` that still reference a payload blob, oldest first;
     *  not one whose stored payload is still the body of an event not yet published, nor one a
     *  delivery worker holds the lease of (it may be sending it). */
    virtual result<std::vector<webhooks::webhook_delivery>> with_payload_before(time_point before,
                                                                               std::size_t limit) = 0;
    /** Deletes a delivery with its attempts and stored payload (retention, after archiving); a
     *  missing one is not an error. */
    virtual result<void> remove(std::string const& delivery_id) = 0;
    /** Whether a delivery worker holds the delivery's lease at `now` (it may be sending it):
     *  saving it then would take the lease away and send it twice. */
    virtual result<bool> leased(std::string const& delivery_id, time_point now) = 0;
    /** Keeps a delivery's raw payload in the store, committed with the unit (small inbound
     *  payloads: no file and no fsync of their own); its `payloadRef` is `stored_payload_ref`. */
    virtual result<void> put_payload(std::string const& delivery_id, std::string_view bytes) = 0;
    /** The payload `put_payload` kept (`errc::not_found` when there is none, e.g. after retention). */
    virtual result<std::string> payload(std::string const& delivery_id) = 0;
    /** Deletes the payload `put_payload` kept (retention); a missing one is not an error. */
    virtual result<void> remove_payload(std::string const& delivery_id) = 0;
    /** Records `p` (its delivery row, payload and outbox rows) unless its connection already has
     *  an inbound delivery with its vendor delivery id: then nothing is written and that one is
     *  returned. The check reads the unique index only; the earlier delivery is not loaded. A
     *  connection retired since the gateway read it is `errc::not_found`, nothing written. */
    virtual result<std::optional<inbound_match>> add_inbound(prepared_inbound& p) = 0;
};

/** The `payloadRef` of a payload kept in the store with its delivery (`put_payload`), as opposed
 *  to a `blob://` reference of the blob store: `store://<tenant>/deliveries/<delivery id>`. */
inline std::string stored_payload_ref(std::string const& tenant, std::string const& delivery_id) {
    return "store://" + tenant + "/deliveries/" + delivery_id;
}
/** The `requestRef` or `responseRef` of a body kept in the store with its run (`put_body`):
 *  `store://<tenant>/runs/<run id>/request` or `.../response`. */
inline std::string stored_run_body_ref(std::string const& tenant, std::string const& run_id, run_body part) {
    return "store://" + tenant + "/runs/" + run_id + (part == run_body::request ? "/request" : "/response");
}
/** True when `ref` was made by `stored_payload_ref` or `stored_run_body_ref`. */
inline bool is_stored_payload_ref(std::string_view ref) noexcept { return ref.starts_with("store://"); }

/** An event published to the tenant's webhook subscriptions. */
struct published_event {
    std::string event_id;
    std::string event_type;
    std::optional<std::string> idempotency_key;
    std::string payload_ref;   ///< The payload blob, written once for every delivery.
    std::string payload_hash;  ///< Hex SHA-256 of the payload, to spot a key reused with another payload.
    std::vector<std::string> delivery_ids;
    time_point published_at{};
};

/** Published webhook events, so that publishing is idempotent on its key. */
class INTEGRATION_EXPORT published_event_repository {
public:
    virtual ~published_event_repository() = default;
    /** Records an event; `errc::already_exists` when its id or idempotency key is taken. */
    virtual result<void> add(published_event const& e) = 0;
    virtual result<published_event> find(std::string const& event_id) = 0;
    virtual result<published_event> find_by_idempotency_key(std::string const& key) = 0;
    /** Deletes up to `limit` events published before `before` (retention); returns how many. */
    virtual result<std::size_t> remove_before(time_point before, std::size_t limit) = 0;
};

/** An OAuth2 authorization-code flow started and awaiting its callback. The state itself is
 *  never stored, only its hash; the client secret and the PKCE verifier stay in the secret store. */
struct pending_authorization {
    std::string state_hash;  ///< Hex SHA-256 of the state sent to the authorization server.
    std::string provider_id;
    std::optional<std::string> connection_id;
    std::string actor;       ///< Who started the flow; the credential is created in their name.
    std::string settings;    ///< JSON of the authorization-code settings (URLs, client id, scopes).
    std::string secret_ref;  ///< The secret-store URI of the client secret and the PKCE verifier.
    time_point expires_at{};
};

/** Pending authorization-code flows, so a callback may reach another process or a restarted one. */
class INTEGRATION_EXPORT pending_authorization_repository {
public:
    virtual ~pending_authorization_repository() = default;
    /** Stores a started flow; `errc::already_exists` when its state hash is taken. */
    virtual result<void> add(pending_authorization const& p) = 0;
    /** Removes and returns the flow with this state hash (a state is used once). An unknown or
     *  already used state is `errc::not_found`; an expired one is removed and `errc::forbidden`. */
    virtual result<pending_authorization> take(std::string const& state_hash, time_point now) = 0;
    /** Removes the flows that expired at or before `now` and returns them (to delete their secrets). */
    virtual result<std::vector<pending_authorization>> purge_expired(time_point now) = 0;
};

/** Idempotency-Key records: which request a key was first used with (the run service claims a
 *  key in the unit that writes its run). */
class INTEGRATION_EXPORT idempotency_repository {
public:
    virtual ~idempotency_repository() = default;
    /** Claims `key` for the request with `request_hash`; the same hash again succeeds, another
     *  one is `errc::idempotency_key_reused`. */
    virtual result<void> claim(std::string const& key, std::string const& request_hash) = 0;
    /** Deletes at most `limit` claims made before `before` (retention), oldest first; how many. */
    virtual result<std::size_t> remove_before(time_point before, std::size_t limit) = 0;
};

/** A secret a rotation replaced, which still verifies until `until`. */
struct replaced_secret {
    std::string name;  ///< In the secret store.
    time_point until{};
    bool operator==(replaced_secret const&) const = default;
};

/** Where an inbound webhook of a connection is verified: the signature scheme and the name of
 *  its secret in the secret store; after rotations also the secrets they replaced, newest first,
 *  each verifying until its overlap ends. */
struct inbound_webhook_registration {
    std::string connection_id;
    std::string scheme;
    std::string secret_name;
    std::vector<replaced_secret> previous{};
};

/** An inbound webhook endpoint resolved from its connection id alone (the inbound route is
 *  unauthenticated: the connection names the tenant). */
struct inbound_endpoint_record {
    std::string tenant_id;
    std::string provider_id;
    inbound_webhook_registration registration;
};

/** Inbound webhook registrations, one per connection. */
class INTEGRATION_EXPORT inbound_webhook_repository {
public:
    virtual ~inbound_webhook_repository() = default;
    virtual result<inbound_webhook_registration> find(std::string const& connection_id) = 0;
    /** Inserts or replaces the connection's registration. */
    virtual result<void> save(inbound_webhook_registration const& r) = 0;
};

/** One transaction over every repository, scoped to `context().tenant_id`. */
class INTEGRATION_EXPORT unit_of_work {
public:
    virtual ~unit_of_work() = default;
    virtual request_context const& context() const noexcept = 0;
    virtual integration_provider_repository& providers() = 0;
    virtual external_api_client_repository& api_clients() = 0;
    virtual integration_connection_repository& connections() = 0;
    virtual integration_credential_repository& credentials() = 0;
    virtual integration_run_repository& runs() = 0;
    virtual integration_failure_repository& failures() = 0;
    virtual webhook_subscription_repository& subscriptions() = 0;
    virtual webhook_delivery_repository& deliveries() = 0;
    virtual published_event_repository& published_events() = 0;
    virtual pending_authorization_repository& authorizations() = 0;
    virtual idempotency_repository& idempotency() = 0;
    virtual inbound_webhook_repository& inbound_webhooks() = 0;
    /** Takes the outbox event `event_id` of this unit's tenant out of the dead (the relay parked
     *  it after `max_attempts` failed publications). With `republish` the relay offers it again,
     *  its failed publications counted from zero, before its aggregate's later events; without,
     *  it is never published and they go on. `errc::not_found` when the tenant has no dead event
     *  with that id (one published, released or removed since included); `errc::invalid_state`
     *  to republish an inbound event whose body, its delivery's payload, retention purged. */
    virtual result<void> release_dead_event(std::string const& event_id, bool republish) = 0;
};

/** An API key as stored: its hash, never the key. */
struct api_key_record {
    std::string key_hash;  ///< Hex SHA-256 of the whole key.
    std::string tenant_id;
    bool admin = false;
};

/** API keys. A lookup comes before any tenant is known, so this repository is the store's, not a
 *  unit of work's. */
class INTEGRATION_EXPORT api_key_repository {
public:
    virtual ~api_key_repository() = default;
    virtual result<void> add(api_key_record const& k) = 0;
    /** The key with this hash, or nothing. */
    virtual result<std::optional<api_key_record>> find(std::string const& key_hash) = 0;
};

/** An outbound delivery leased to a delivery worker, with its tenant. */
struct claimed_delivery {
    std::string tenant_id;
    webhooks::webhook_delivery delivery;
};

/** What one claim leased. */
struct delivery_claim {
    std::vector<claimed_delivery> deliveries;
    /** More may be due: the claim stopped at its limit, or before it had looked at every tenant. */
    bool more = false;
};

/** How many deliveries of each tenant one claim may lease: a tenant has at most `per_tenant`
 *  in flight, counting the ones it already holds (`held`, by tenant; a tenant not named holds
 *  none). */
struct delivery_share {
    std::size_t per_tenant = static_cast<std::size_t>(-1);
    std::vector<std::pair<std::string, std::size_t>> held;
};

/** What one `store::remove_published` call did. */
struct outbox_trim {
    std::size_t removed = 0;  ///< Rows deleted.
    std::int64_t next = 0;    ///< Where the next call starts (its `after`).
    bool done = true;         ///< Nothing more is old enough now.
};

/** An outbox row awaiting publication. */
struct outbox_record {
    std::int64_t sequence = 0;  ///< Commit order; publication follows it.
    std::int64_t attempts = 0;  ///< Failed publications so far.
    events::event_envelope envelope;
    /** The stored envelope text (without the identity fields its columns hold), when
     *  `pending_event_rows` read only the row's columns into `envelope`: `parse_outbox_envelope`
     *  makes it whole. Empty when `envelope` is whole. */
    std::string json;
    /** Not empty when `json` leaves out the event's `data.body` because the store kept it once,
     *  as its inbound delivery's payload: then `body` is that payload (none if it is gone), read
     *  in this `webhooks::body_format`. */
    std::string body_format;
    std::optional<std::string> body;
};

/** The whole envelope of a row read as columns: `outbox_record::json` with the identity fields of
 *  `envelope` and its `body` (into `data.body`) put back; `errc::storage_failure` when the stored
 *  text is not an envelope, or its body is gone or no longer reads in its format. */
INTEGRATION_EXPORT result<events::event_envelope> parse_outbox_envelope(outbox_record const& row);

/** The storage port. */
class INTEGRATION_EXPORT store {
public:
    using work = std::function<result<void>(unit_of_work&)>;

    virtual ~store() = default;

    /** Runs `fn` in one transaction for `ctx`'s tenant: committed if it returns success, rolled back
     *  (with every event it raised) if it returns an error or throws. A backend may commit several
     *  concurrent units together; each still commits or rolls back alone. `fn` must not call back
     *  into the store. `d` says whether the commit is on disk on return or within the backend's
     *  flush interval.
     *
     *  @par Example
     *  @code
     *  store.transact(ctx, [&](unit_of_work& uow) -> result<void> {
     *      auto c = uow.connections().find(id);
     *      if (!c) return c.error();
     *      if (auto r = c->retire("customer left"); !r) return r;
     *      return uow.connections().save(*c);
     *  });
     *  @endcode
     */
    virtual result<void> transact(request_context const& ctx, work fn, durability d = durability::immediate) = 0;
    /** Called once a unit of `transact_async` committed (or failed) and is as durable as it
     *  asked, on one of the store's own threads (the SQLite store: its writer, or for an
     *  `immediate` unit its sync thread, after the WAL fsync that covers the unit). Keep it
     *  short. It may read (`read`, `pending_events`, ...) and queue more work with
     *  `transact_async`, but a synchronous write (`transact`, `mark_published`, ...) from it
     *  would wait for the thread it runs on: the SQLite store refuses that at once with
     *  `errc::invalid_argument` ("use transact_async"). Units of one durability are reported in
     *  commit order; a unit that failed, or a `deferred` one, may be reported before an earlier
     *  `immediate` unit that still waits for its fsync. */
    using committed = std::function<void(result<void>)>;
    /** Like `transact`, but returns at once: `fn` runs on the store's writer, and `done` is told
     *  the outcome once the commit holding the unit is as durable as `d` asks. No thread waits
     *  meanwhile, so any number of callers share group commits (a server answers from `done`).
     *  `fn` and `ctx` are copied; an exception thrown by `fn` becomes `errc::storage_failure`.
     *  Units queued when the store is destroyed are still committed and reported. */
    virtual void transact_async(request_context const& ctx, work fn, durability d, committed done) = 0;
    /** `transact_async` for a unit that makes every read and check before its first write (it
     *  only inserts new rows once it starts writing), so that after that write only the engine (a
     *  full disk, an I/O error) can fail it. A backend that commits units together may run such
     *  units without a rollback point each, which is cheaper. A failure before the unit's first
     *  write still fails it alone. One after a write (which should not happen) commits none of it,
     *  and may also fail the other such units grouped with it (`errc::storage_failure`, nothing
     *  of them committed; run them again); a unit made with `transact_async` never shares that
     *  fate. By default, `transact_async`. */
    virtual void transact_async_checks_first(request_context const& ctx, work fn, durability d, committed done) {
        transact_async(ctx, std::move(fn), d, std::move(done));
    }
    /** Runs `fn` on a consistent read-only snapshot; `save` fails inside it. */
    virtual result<void> read(request_context const& ctx, work fn) = 0;

    /** Every tenant that owns a provider, connection, credential, webhook subscription, run,
     *  failure, delivery, idempotency claim or pending authorization (for background workers
     *  that sweep each tenant in turn, retention among them). */
    virtual result<std::vector<std::string>> tenants() = 0;
    /** Unpublished outbox rows in commit order (all tenants; for the relay), without dead rows,
     *  rows held back until later (`count_failed_publication`), and the rows of an aggregate that
     *  come after a dead row or a row that failed; an event whose
     *  body the store kept once, as its delivery's payload, has it back in `data.body`, where
     *  it was when raised. Every row returned is durable (a store that shows commits before their fsync syncs first), so nothing is
     *  published that a power loss could take back. */
    virtual result<std::vector<outbox_record>> pending_events(std::size_t limit) = 0;
    /** `pending_events`, but a store may read only each row's columns into `envelope` (event id
     *  and type, tenant, aggregate and version, time; no data, trace or source) and leave the
     *  stored envelope in `json`: the relay parses only the events a listener needs whole. */
    virtual result<std::vector<outbox_record>> pending_event_rows(std::size_t limit) { return pending_events(limit); }
    /** Marks rows published at `at`. */
    virtual result<void> mark_published(std::span<std::int64_t const> sequences, time_point at) = 0;
    /** Deletes outbox rows published before `before`, every tenant's (retention), in commit order
     *  from the row after sequence `after`: at most `limit`, and looking at a bounded number of
     *  rows, so that a sweep reads each row once whatever the number of tenants. Never a pending
     *  or dead row, nor the newest row of the outbox (its sequence is never reused). A store may
     *  stop at the first event that occurred at or after `before`: an older row behind it goes
     *  once that one is old enough. */
    virtual result<outbox_trim> remove_published(time_point before, std::size_t limit, std::int64_t after = 0) = 0;
    /** Counts one failed publication of row `sequence` and holds it back from `pending_events`
     *  for `wait` (on the store's clock, a week at most); its aggregate's later rows wait until
     *  it is published or parked. A row held more than a week past now was held before the clock
     *  stepped back, and is offered at once. Returns its failed publications so far. */
    virtual result<std::int64_t> count_failed_publication(std::int64_t sequence, std::chrono::milliseconds wait) = 0;
    /** Parks row `sequence` as dead at `at`: it is no longer published, and its aggregate's later
     *  rows wait behind it (per-aggregate order is kept). `also`, when given, runs in the same
     *  transaction as a unit of work of `ctx`, so that what tells of the parked row (the relay's
     *  failure record) commits with it or not at all. `errc::not_found`, and nothing written,
     *  when the row is published or already dead. */
    virtual result<void> park_dead(std::int64_t sequence, time_point at, request_context const& ctx = {},
                                   work const& also = {}) = 0;
    /** The API keys of every tenant. */
    virtual api_key_repository& api_keys() = 0;
    /** Leases up to `limit` outbound deliveries of every tenant to `owner` until `until`: Pending or
     *  Failed, nextAttemptAt at or before `now`, of an active subscription, and not leased to
     *  another owner (an expired lease counts as none), earliest due first. Of an `ordered`
     *  subscription only its oldest delivery that is neither Delivered nor DeadLettered is
     *  eligible. The returned deliveries carry the version the lease wrote: a worker whose lease
     *  was taken over fails to save (`errc::conflict`). Two owners never hold one delivery.
     *  No tenant is leased more than its `share` allows. While a tenant holds its whole share, the
     *  claim leaves its due deliveries where they are (without reading them) and the other
     *  tenants take turns: each claim starts after the tenant the previous one ended with, and
     *  looks at a bounded number of tenants (`delivery_claim::more` says it stopped early). */
    virtual result<delivery_claim> claim_deliveries(time_point now, std::string const& owner, time_point until,
                                                    std::size_t limit, delivery_share const& share = {}) = 0;
    /** The earliest nextAttemptAt among outbound deliveries waiting to be sent (for the lag metric). */
    virtual result<std::optional<time_point>> oldest_due_delivery() = 0;
    /** The inbound webhook registration of `connection_id` with its tenant, looked up without a
     *  tenant (the inbound route has none). Nothing when no connection has this id, it has no
     *  registration or it is Retired. */
    virtual result<std::optional<inbound_endpoint_record>> find_inbound_endpoint(std::string const& connection_id) = 0;
    /** The `source` of the event envelopes this store writes (for `prepare_inbound`); by default
     *  "integration". */
    virtual std::string const& event_source() const noexcept;
};

namespace detail {
template <class F>
auto unit_for(store& s, request_context const& ctx, F&& fn, bool read_only, durability d)
    -> std::invoke_result_t<F&, unit_of_work&> {
    using value_type = typename std::invoke_result_t<F&, unit_of_work&>::value_type;
    std::optional<value_type> out;
    auto body = [&](unit_of_work& uow) -> result<void> {
        auto v = fn(uow);
        if (!v) return v.error();
        out.emplace(std::move(*v));
        return {};
    };
    auto r = read_only ? s.read(ctx, body) : s.transact(ctx, body, d);
    if (!r) return r.error();
    return std::move(*out);
}
}  // namespace detail

/** Runs `fn(unit_of_work&) -> result<T>` in one transaction of `s` and returns its value; the
 *  transaction commits only when `fn` succeeds. */
template <class F>
auto transact_for(store& s, request_context const& ctx, F&& fn, durability d = durability::immediate)
    -> std::invoke_result_t<F&, unit_of_work&> {
    return detail::unit_for(s, ctx, std::forward<F>(fn), false, d);
}

/** Runs `fn(unit_of_work&) -> result<T>` on a read-only snapshot of `s` and returns its value. */
template <class F>
auto read_for(store& s, request_context const& ctx, F&& fn) -> std::invoke_result_t<F&, unit_of_work&> {
    return detail::unit_for(s, ctx, std::forward<F>(fn), true, durability::immediate);
}

}  // namespace integration::storage

#endif
