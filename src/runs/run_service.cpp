#include <integration/runs/run_service.hpp>

#include <random>
#include <thread>

namespace integration::runs {

using namespace std::chrono;

run_service::run_service(storage::store& store, credentials::credential_service& credentials, blobs::blob_store& blobs,
                         http::transport& transport, net::egress_policy egress, net::resolver& resolver,
                         clock const& clock, run_service_options options)
    : store_(store), credentials_(credentials), blobs_(blobs), transport_(transport), egress_(std::move(egress)),
      resolver_(resolver), clock_(clock), options_(std::move(options)), limiter_(clock) {
    if (!options_.sleep) options_.sleep = [](milliseconds d) { std::this_thread::sleep_for(d); };
    if (!options_.random)
        options_.random = [] {
            thread_local std::mt19937_64 rng{std::random_device{}()};
            return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
        };
}

resilience::circuit_breaker& run_service::breaker(std::string const& connection_id) {
    std::lock_guard lock(breakers_mutex_);
    auto& b = breakers_[connection_id];
    if (!b) b = std::make_unique<resilience::circuit_breaker>(clock_, options_.breaker);
    return *b;
}

result<run_service::plan> run_service::prepare(request_context const& ctx, execute_request const& r) {
    std::optional<plan> out;
    auto read = store_.read(ctx, [&](storage::unit_of_work& uow) -> result<void> {
        auto conn = uow.connections().find(r.connection_id);
        if (!conn) return conn.error();
        if (auto ok = conn->ensure_can_execute(r.allow_degraded); !ok) return ok;
        auto provider = uow.providers().find(conn->data().provider_id);
        if (!provider) return provider.error();
        storage::page_request page{.limit = 500};
        auto clients = uow.api_clients().list_by_provider(provider->id(), page);
        if (!clients) return clients.error();
        for (auto const& c : clients->items) {
            if (c.status() != providers::client_status::active) continue;
            if (auto const* op = c.find_operation(r.operation)) {
                std::optional<rate_limit_profile> limit = conn->data().rate_limit_budget;
                if (!limit) limit = c.data().rate_limit_profile ? c.data().rate_limit_profile : provider->data().rate_limit_profile;
                out.emplace(plan{std::move(*conn), std::move(*provider), *op, limit, {}});
                return {};
            }
        }
        return error{errc::invalid_argument, "operation \"" + r.operation + "\" is not offered by an Active API client of provider " +
                                                 provider->id()};
    });
    if (!read) return read.error();
    std::string path;
    auto const& tpl = out->op.path;
    for (std::size_t i = 0; i < tpl.size();) {
        if (tpl[i] != '{') {
            path += tpl[i++];
            continue;
        }
        auto close = tpl.find('}', i);
        auto name = tpl.substr(i + 1, close - i - 1);
        auto it = r.input.path_params.find(name);
        if (close == std::string::npos || it == r.input.path_params.end())
            return error{errc::invalid_argument, "input.pathParams." + name + " is required by " + r.operation + " (" + tpl + ")"};
        path += http::form_encode(it->second);
        i = close + 1;
    }
    out->url = out->connection.base_url(out->provider.data().base_url) + path;
    char sep = out->url.find('?') == std::string::npos ? '?' : '&';
    for (auto const& [k, v] : r.input.query) {
        out->url += sep + http::form_encode(k) + "=" + http::form_encode(v);
        sep = '&';
    }
    return std::move(*out);
}

std::optional<nanoseconds> run_service::take_token(std::string const& key, plan const& p) {
    if (!p.limit) return std::nullopt;
    auto a = limiter_.try_acquire(key, *p.limit);
    if (a.granted) return std::nullopt;
    if (a.retry_after > options_.max_rate_limit_wait) return a.retry_after;
    options_.sleep(ceil<milliseconds>(a.retry_after));
    a = limiter_.try_acquire(key, *p.limit);
    if (a.granted) return std::nullopt;
    return a.retry_after;
}

result<run_outcome> run_service::replay(request_context const& ctx, integration_run run) {
    run_outcome out{std::move(run), std::nullopt, true};
    auto const& d = out.run.data();
    if (d.response_ref && !d.run_attempts.empty() && d.run_attempts.back().http_status) {
        auto body = blobs_.get(ctx.tenant_id, *d.response_ref);
        out.response = http::response{static_cast<int>(*d.run_attempts.back().http_status), {}, body ? *body : std::string()};
    }
    return out;
}

result<run_outcome> run_service::execute(request_context const& ctx, execute_request r) {
    auto find_existing = [&]() -> std::optional<integration_run> {
        std::optional<integration_run> found;
        (void)store_.read(ctx, [&](storage::unit_of_work& uow) -> result<void> {
            if (auto run = uow.runs().find_by_idempotency_key(*r.idempotency_key); run) found = std::move(*run);
            return {};
        });
        return found;
    };
    if (r.idempotency_key)
        if (auto existing = find_existing()) return replay(ctx, std::move(*existing));
    auto p = prepare(ctx, r);
    if (!p) return p.error();

    // Pending → Running, durably, before the vendor sees anything. The body goes to the blob
    // store first, outside the transaction, so its fsync never holds up the store's writer.
    auto draft = integration_run::create(ctx, clock_.now(), p->connection, r.operation, r.idempotency_key);
    if (!draft) return draft.error();
    if (auto s = draft->start(p->connection, r.allow_degraded, clock_.now()); !s) return s.error();
    if (!r.input.body.empty()) {
        auto ref = blobs_.put(ctx.tenant_id, "runs/" + draft->id() + "/request", r.input.body, options_.recording);
        if (!ref) return ref.error();
        if (auto s = draft->set_request_ref(*ref); !s) return s.error();
    }
    auto created = storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<integration_run> {
        auto run = *draft;
        if (auto s = uow.runs().save(run); !s) return s.error();
        return run;
    }, options_.recording);
    if (!created && created.error() == errc::already_exists && r.idempotency_key)
        if (auto existing = find_existing()) return replay(ctx, std::move(*existing));  // a concurrent twin won
    if (!created) return created.error();
    auto run = std::move(*created);

    http::request req{.method = p->op.method, .url = p->url, .headers = r.input.headers, .body = r.input.body,
                      .timeout = options_.attempt_timeout};
    req.headers.emplace_back("traceparent", ctx.trace.child().traceparent());
    if (!r.input.body.empty() && http::find_header(req.headers, "Content-Type").empty())
        req.headers.emplace_back("Content-Type", "application/json");
    auto key = ctx.tenant_id + "/" + p->provider.id() + "/" + p->connection.id();
    auto& cb = breaker(p->connection.id());
    auto first_start = clock_.now();
    std::optional<http::response> last;
    std::optional<failures::classification> failure;

    for (int attempt = 1;; ++attempt) {
        auto attempt_start = clock_.now();
        failures::attempt_outcome outcome;
        bool sent = false;
        if (auto d = egress_.check_destination(p->url, resolver_); !d) {
            outcome.transport_error = d.error();
        } else if (auto wait = take_token(key, *p); wait) {
            // Our own budget is spent: treat it as the vendor's 429 with the time to the next token.
            outcome.response = http::response{429, {{"Retry-After", std::to_string(duration_cast<seconds>(*wait).count() + 1)}}, ""};
        } else if (!cb.allow()) {
            outcome.transport_error = error{errc::unavailable, "circuit open for connection " + p->connection.id()};
        } else {
            req.pin = http::pinned_address{d->host, d->port, d->literal->to_string()};
            auto res = p->connection.data().credential_id
                           ? credentials_.send_authorized(ctx, *p->connection.data().credential_id, req, transport_)
                           : transport_.send(req);
            sent = true;
            if (res) outcome.response = std::move(*res);
            else outcome.transport_error = res.error();
            bool healthy = outcome.response && outcome.response->status < 500;
            cb.record(healthy);
        }
        auto now = clock_.now();
        auto latency = duration_cast<milliseconds>(now - attempt_start).count();
        auto elapsed = duration_cast<milliseconds>(now - first_start);
        failure = failures::classify(outcome, attempt, options_.retry, now, elapsed, options_.random());
        run_attempt a{attempt, failure ? attempt_status::failed : attempt_status::succeeded,
                      failure ? std::optional(failure->category) : std::nullopt,
                      outcome.response ? std::optional<std::int64_t>(outcome.response->status) : std::nullopt, latency,
                      attempt_start};
        if (auto s = run.record_attempt(a); !s) return s.error();
        if (outcome.response && sent) last = outcome.response;
        if (!failure || failure->next_action != failures::next_action::retry || attempt >= options_.retry.max_attempts) break;
        options_.sleep(duration_cast<milliseconds>(*failure->next_attempt_at - now));
    }
    // A run that ran out of attempts is finished; what remains is the failure's next action.
    if (failure && failure->next_action == failures::next_action::retry) failure->next_action = failures::next_action::dead_letter;

    std::optional<std::string> response_ref;
    if (last && !last->body.empty()) {
        auto ref = blobs_.put(ctx.tenant_id, "runs/" + run.id() + "/response", last->body, options_.recording);
        if (ref) response_ref = *ref;
    }
    auto now = clock_.now();
    auto saved = storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<integration_run> {
        auto fresh = run;  // the in-memory copy carries every attempt
        if (!failure) {
            std::optional<std::string> external;
            if (last) {
                auto id = http::find_header(last->headers, "X-Resource-Id");
                if (!id.empty()) external = std::string(id);
            }
            if (auto s = fresh.complete(now, external, response_ref); !s) return s.error();
        } else {
            if (auto s = fresh.fail(now, *failure, response_ref); !s) return s.error();
            auto f = failures::integration_failure::record(ctx, now, failures::failure_source::run, fresh.id(),
                                                           fresh.data().provider_id, *failure);
            if (!f) return f.error();
            if (auto s = uow.failures().save(*f); !s) return s.error();
        }
        if (auto s = uow.runs().save(fresh); !s) return s.error();
        return fresh;
    }, options_.recording);
    if (!saved) return saved.error();
    return run_outcome{std::move(*saved), std::move(last), false};
}

}  // namespace integration::runs
