#include <integration/services/run_service.hpp>

#include "../detail/fair_pool.hpp"
#include "../detail/cache_margin.hpp"
#include "../detail/crypto.hpp"
#include "../detail/thread_name.hpp"
#include "../detail/validate.hpp"

#include <integration/core/utf8.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <random>

namespace integration::runs {

using namespace std::chrono;

namespace {

/** The error code of a run whose process stopped while it may have been calling the vendor. */
constexpr std::string_view interrupted = "interrupted";

/** Whether sending the request twice acts once: an idempotent method (RFC 9110 9.2.2), or a key
 *  the vendor dedupes by (the operation's header, or an `Idempotency-Key` the caller put in;
 *  `prepare` refused a blank one). */
bool repeatable(providers::client_operation const& op, http::headers const& h) {
    return http::is_idempotent_method(op.method) || op.idempotency_header || !http::find_header(h, "Idempotency-Key").empty();
}

/** Headers that carry a caller's own credential in HTTP's usual places: a retry with a refreshed
 *  one is the same request, so the idempotency digest leaves them out. */
bool is_credential_header(std::string_view name) {
    static constexpr std::string_view names[] = {"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key"};
    std::string lower(name);
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return std::find(std::begin(names), std::end(names), lower) != std::end(names);
}

/** Header or query parameter names that may carry a credential, those above and the many other
 *  ways vendors name them (`X-Auth-Token`, `Private-Token`, `Ocp-Apim-Subscription-Key`,
 *  `?api_key=`, an Azure Function's `?code=`, a signed URL's `&sig=`): a run's input holding one
 *  is never written to the blob store for a later retry. */
bool names_credential(std::string_view name) {
    std::string key;
    for (unsigned char c : name)
        if (c != '-' && c != '_') key += static_cast<char>(std::tolower(c));
    static constexpr std::string_view exact[] = {"authorization", "proxyauthorization", "cookie", "auth", "code", "sig", "key"};
    static constexpr std::string_view part[] = {"token", "secret", "password", "passwd", "apikey", "signature", "credential",
                                                "privatekey", "accesskey", "subscriptionkey", "functionskey", "sessionid"};
    if (std::find(std::begin(exact), std::end(exact), key) != std::end(exact)) return true;
    return std::any_of(std::begin(part), std::end(part), [&](std::string_view p) { return key.find(p) != std::string::npos; });
}

/** What an Idempotency-Key is claimed for: every part of the request, each length-prefixed so
 *  that no two requests run together into the same bytes. Headers count in name order (their
 *  order means nothing), and a caller's own credential headers not at all: a retry with a
 *  refreshed token is the same request, and no hash of a credential is kept. */
std::string request_digest(execute_request const& r) {
    std::string canon;
    auto put = [&](std::string_view text) {
        canon += std::to_string(text.size());
        canon += ':';
        canon += text;
    };
    auto put_pairs = [&](auto const& pairs) {
        canon += std::to_string(pairs.size());
        canon += ';';
        for (auto const& [k, v] : pairs) {
            put(k);
            put(v);
        }
    };
    put(r.connection_id);
    put(r.operation);
    put_pairs(r.input.path_params);
    put_pairs(r.input.query);
    auto headers = r.input.headers;
    std::erase_if(headers, [](auto const& h) { return is_credential_header(h.first); });
    for (auto& h : headers)
        std::transform(h.first.begin(), h.first.end(), h.first.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    std::sort(headers.begin(), headers.end());
    put_pairs(headers);
    canon += std::to_string(r.input.body.size());
    canon += ':';
    return crypto::sha256_hex({canon, r.input.body});
}


boost::json::array pairs_to_json(std::vector<std::pair<std::string, std::string>> const& items) {
    boost::json::array out;
    for (auto const& [k, v] : items) out.push_back(boost::json::array{boost::json::string(k), boost::json::string(v)});
    return out;
}

// The worker's escalation reason, made of a vendor's or a store's words: an escalation takes
// at most 2,000 characters of text without control characters, and refused, the run would be
// resumed again at every sweep.
std::string escalation_reason(std::string const& why) {
    auto out = utf8_excerpt(why, 2000);
    for (auto& c : out)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
    return out;
}

std::vector<std::pair<std::string, std::string>> pairs_from_json(boost::json::value const* v) {
    std::vector<std::pair<std::string, std::string>> out;
    if (v == nullptr || !v->is_array()) return out;
    for (auto const& item : v->as_array())
        if (item.is_array() && item.as_array().size() == 2 && item.as_array()[0].is_string() && item.as_array()[1].is_string())
            out.emplace_back(std::string(item.as_array()[0].as_string()), std::string(item.as_array()[1].as_string()));
    return out;
}

/** The vendor's id of what the call created, from its `X-Resource-Id` answer header. */
std::optional<std::string> external_ref(std::optional<http::response> const& last) {
    if (!last) return std::nullopt;
    auto id = http::find_header(last->headers, "X-Resource-Id");
    // The vendor's text, shown in answers and events: valid UTF-8, and bounded.
    return id.empty() ? std::nullopt : std::optional<std::string>(utf8_excerpt(id, 256));
}

run_service_options with_defaults(run_service_options o) {
    // No default sleep: without one, the policies wait on a timer (pipeline::start) or sleep the
    // calling thread (send) themselves; a sleep given here would hold the transport's thread.
    if (!o.random)
        o.random = [] {
            thread_local std::mt19937_64 rng{std::random_device{}()};
            return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
        };
    return o;
}

// Retry wraps the per-attempt policies, as in Azure SDK core: each attempt is checked, limited,
// admitted by the breaker and authenticated again; trace context is once per call.
std::vector<std::unique_ptr<http::policy>> run_policies(run_service_options const& o, credentials::credential_service& credentials,
                                                        net::egress_policy egress, net::resolver& resolver, clock const& clock,
                                                        resilience::rate_limit_store& limits) {
    auto hops = http::egress_hop_check(std::move(egress), resolver);
    std::vector<std::unique_ptr<http::policy>> policies;
    policies.push_back(std::make_unique<http::trace_context_policy>());
    policies.push_back(std::make_unique<http::retry_policy>(clock, http::retry_policy_options{o.retry, o.sleep, o.random}));
    policies.push_back(std::make_unique<http::egress_policy_step>(hops));
    policies.push_back(std::make_unique<http::rate_limit_policy>(limits, http::rate_limit_policy_options{o.max_rate_limit_wait, o.sleep}));
    policies.push_back(std::make_unique<http::circuit_breaker_policy>());
    policies.push_back(std::make_unique<credentials::authentication_policy>(credentials));
    policies.push_back(std::make_unique<http::redirect_policy>(std::move(hops), o.redirects));
    return policies;
}

}  // namespace

result<void> validate(run_service_options const& o) {
    auto refuse = [](std::string_view name, std::string const& is, std::string_view want) -> result<void> {
        return error{errc::invalid_argument, "run_service_options." + std::string(name) + " is " + is + "; " + std::string(want)};
    };
    auto ms = [](milliseconds d) { return std::to_string(d.count()) + " ms"; };
    // A call's deadline: the transport refuses none, and a day is longer than any vendor call.
    if (o.attempt_timeout <= 0ms || o.attempt_timeout > hours(24))
        return refuse("attempt_timeout", ms(o.attempt_timeout), "each attempt needs a deadline between 1 ms and 24 hours");
    if (o.retry.max_attempts < 1 || o.retry.max_attempts > 100)
        return refuse("retry.max_attempts", std::to_string(o.retry.max_attempts), "count the first attempt too: 1 to 100");
    for (auto [name, d] : {std::pair{"retry.base_delay", o.retry.base_delay}, std::pair{"retry.max_delay", o.retry.max_delay},
                           std::pair{"retry.total_deadline", o.retry.total_deadline},
                           std::pair{"max_rate_limit_wait", o.max_rate_limit_wait},
                           std::pair{"binding_cache_ttl", o.binding_cache_ttl}, std::pair{"idempotency_wait", o.idempotency_wait},
                           std::pair{"orphan_margin", o.orphan_margin}})
        // A shorter orphan margin would let another process end a run still executing here.
        if (d < 0ms || d > hours(24 * 7)) return refuse(name, ms(d), "a wait is between 0 and a week");
    if (o.deferred_retries < 0 || o.deferred_retries > 100)
        return refuse("deferred_retries", std::to_string(o.deferred_retries), "the retry worker's executions: 0 to 100");
    if (o.write_behind_queue == 0)  // `execute` would wait for room for ever
        return refuse("write_behind_queue", "0", "let at least one run wait for its record");
    return {};
}

run_service::run_service(storage::store& store, credentials::credential_service& credentials, blobs::blob_store& blobs,
                         http::transport& transport, net::egress_policy egress, net::resolver& resolver,
                         clock const& clock, run_service_options options)
    : store_(store),
      credentials_(credentials),
      blobs_(blobs),
      egress_(egress),
      clock_(clock),
      options_(with_defaults(std::move(options))),
      own_limiter_(clock),
      outbound_(transport, run_policies(options_, credentials, std::move(egress), resolver, clock,
                                        options_.rate_limits ? *options_.rate_limits : own_limiter_)) {
    // One tenant's jobs (a retry's next attempt, which may resolve a slow name or fetch a token)
    // take at most half of the threads.
    pool_ = std::make_unique<detail::fair_pool>(options_.async_threads, 0, "integ-run-async");
    if (auto valid = validate(options_); !valid) invalid_ = valid.error();
}

run_service::~run_service() {
    // Started runs come back on the transport's thread and records behind on the store's writer,
    // both calling into this service; either may start another flight (a twin retried), so wait
    // until both are idle at once.
    auto idle = [this] {
        for (;;) {
            {
                std::unique_lock lock(jobs_mutex_);
                idle_cv_.wait(lock, [&] { return in_flight_ == 0; });
            }
            {
                std::unique_lock lock(records_mutex_);
                records_cv_.wait(lock, [&] { return recording_ == 0; });
            }
            std::lock_guard lock(jobs_mutex_);
            if (in_flight_ == 0) return;
        }
    };
    idle();
    // Every queued job runs first (an execute_async run, a twin executing itself); what they
    // start ends before the pool goes, their own posts running where they are made.
    pool_->join();
    idle();
}

std::future<result<run_outcome>> run_service::execute_async(request_context ctx, execute_request request) {
    auto tenant = ctx.tenant_id;
    auto task = std::make_shared<std::packaged_task<result<run_outcome>()>>(
        [this, ctx = std::move(ctx), request = std::move(request)]() mutable { return execute(ctx, std::move(request)); });
    auto f = task->get_future();
    pool_->post(tenant, [task] { (*task)(); });
    return f;
}

std::vector<std::pair<std::string, resilience::breaker_state>> run_service::breaker_states() {
    std::lock_guard lock(breakers_mutex_);
    std::vector<std::pair<std::string, resilience::breaker_state>> out;
    for (auto const& [id, b] : breakers_) out.emplace_back(id, b->state());
    return out;
}

std::shared_ptr<resilience::circuit_breaker> run_service::breaker(std::string const& connection_id) {
    std::lock_guard lock(breakers_mutex_);
    auto& b = breakers_[connection_id];
    if (!b) b = std::make_shared<resilience::circuit_breaker>(clock_, options_.breaker);
    return b;
}

std::string run_service::binding_key(request_context const& ctx, execute_request const& r) {
    return ctx.tenant_id + '\n' + r.connection_id + '\n' + r.operation + (r.allow_degraded ? "\n1" : "\n0");
}

std::shared_ptr<run_service::bound const> run_service::cached_binding(std::string const& key, time_point now) {
    if (options_.binding_cache_ttl.count() <= 0) return nullptr;
    std::lock_guard lock(bindings_mutex_);
    auto it = bindings_.find(key);
    return it != bindings_.end() && it->second.expires > now ? it->second.b : nullptr;
}

void run_service::forget(std::string const& connection_id) {
    auto const part = '\n' + connection_id + '\n';  // binding keys are tenant, connection, operation, flag
    {
        std::lock_guard lock(bindings_mutex_);
        std::erase_if(bindings_, [&](auto const& kv) { return kv.first.find(part) != std::string::npos; });
    }
    // A retired connection is never called again: its breaker (and its series in the metrics)
    // would otherwise stay for the life of the process, one per connection ever retired.
    std::lock_guard lock(breakers_mutex_);
    breakers_.erase(connection_id);
}

bool run_service::starts_without_blocking(request_context const& ctx, execute_request const& r) {
    // A keyed run reads and writes the store before its call; a body not kept with the record
    // goes to the blob store (an fsync); a `sleep` or another rate-limit store may wait here;
    // redirects are followed with blocking sends.
    if (r.idempotency_key || !options_.write_behind || options_.sleep || options_.rate_limits ||
        options_.redirects.max_hops > 0 || r.input.body.size() > options_.inline_body_bytes)
        return false;
    // Still cached a moment from now: the `bind` that follows must not be the one that expires it.
    auto b = cached_binding(binding_key(ctx, r), clock_.now() + integration::detail::cache_margin);
    if (!b) return false;
    if (auto const& id = b->connection.data().credential_id; id && !credentials_.resolves_without_blocking(ctx, *id))
        return false;
    // A name would be resolved by the egress check (getaddrinfo): only a literal address is called at once.
    return b->literal_address;
}

result<std::shared_ptr<run_service::bound const>> run_service::bind(request_context const& ctx, execute_request const& r) {
    auto key = binding_key(ctx, r);
    auto now = clock_.now();
    if (auto b = cached_binding(key, now)) return b;
    std::shared_ptr<bound const> out;
    auto read = store_.read(ctx, [&](storage::unit_of_work& uow) -> result<void> {
        auto conn = uow.connections().find(r.connection_id);
        if (!conn) return conn.error();
        if (auto ok = conn->ensure_can_execute(r.allow_degraded); !ok) return ok;
        auto provider = uow.providers().find(conn->data().provider_id);
        if (!provider) return provider.error();
        credentials::material_placement placement;
        if (auto const& id = conn->data().credential_id) {
            // Checked at every binding, not only when the connection was made: a store written
            // before that check, or a credential revoked since, must not send its secret.
            auto cred = uow.credentials().find(*id);
            if (!cred) return error{errc::invalid_state, "connection " + conn->id() + "'s credential " + *id + " is gone"};
            if (auto ok = cred->ensure_usable_by(conn->data().provider_id, conn->id()); !ok)
                return error{ok.error().code(), "runs cannot execute on connection " + conn->id() + ": " + ok.error().detail()};
            placement = credentials::placement_of(*cred);
        }
        // The Active client of the highest version that offers the operation (a later
        // registration breaks a tie), whatever the order they were registered in: a new version
        // of a client takes over its operations once it is activated.
        std::optional<providers::external_api_client> chosen;
        std::optional<providers::semantic_version> chosen_version;
        storage::page_request page{.limit = 500};
        do {
            auto clients = uow.api_clients().list_by_provider(provider->id(), page);
            if (!clients) return clients.error();
            for (auto& c : clients->items) {
                if (c.status() != providers::client_status::active || !c.find_operation(r.operation)) continue;
                auto v = providers::semantic_version::parse(c.data().version);
                auto version = v ? std::optional(std::move(*v)) : std::nullopt;
                bool newer = !chosen || (version && (!chosen_version || *version >= *chosen_version));
                if (!newer) continue;
                chosen = std::move(c);
                chosen_version = std::move(version);
            }
            page.cursor = clients->next_cursor;
        } while (!page.cursor.empty());
        if (chosen) {
            auto const* op = chosen->find_operation(r.operation);
            if (auto ok = conn->ensure_scope_granted(op->operation); !ok) return ok;
            std::optional<rate_limit_profile> limit = conn->data().rate_limit_budget;
            if (!limit) limit = chosen->data().rate_limit_profile ? chosen->data().rate_limit_profile : provider->data().rate_limit_profile;
            auto limit_key = ctx.tenant_id + "/" + provider->id() + "/" + conn->id();
            auto cb = breaker(conn->id());
            auto retry = options_.retry;
            if (auto const& own = conn->data().retry_policy) {
                retry.max_attempts = static_cast<int>(own->max_attempts);
                retry.base_delay = milliseconds(own->initial_delay_ms);
                retry.max_delay = milliseconds(own->max_delay_ms);
            }
            auto base = conn->base_url(provider->data(), op->operation_class.value_or("default"));
            auto static_check = egress_.check_static(base);
            bool literal = static_check && static_check->literal;
            out = std::make_shared<bound const>(bound{std::move(*conn), std::move(*provider), *op, std::move(placement),
                                                      limit, std::move(limit_key), std::move(cb), retry, std::move(base), literal});
            return {};
        }
        return error{errc::invalid_argument, "operation \"" + r.operation + "\" is not offered by an Active API client of provider " +
                                                 provider->id()};
    });
    if (!read) return read.error();
    if (options_.binding_cache_ttl.count() > 0) {
        std::lock_guard lock(bindings_mutex_);
        if (bindings_.size() > 10'000) bindings_.clear();
        bindings_.insert_or_assign(key, binding{out, now + options_.binding_cache_ttl});
    }
    return out;
}

result<run_service::plan> run_service::prepare(request_context const& ctx, execute_request const& r) {
    if (invalid_) return *invalid_;
    auto b = bind(ctx, r);
    if (!b) return b.error();
    plan out{std::move(*b), {}};
    auto const& placement = out.b->credential;
    // RFC 9110 9.3.1: a GET's content has no meaning, and servers and proxies on the way may
    // frame it differently (request smuggling); it is refused rather than sent.
    if (out.b->op.method == "GET" && !r.input.body.empty())
        return error{errc::invalid_argument, "input.body: " + r.operation + " is a GET, which carries no body; remove it"};
    for (auto const& [name, value] : r.input.headers) {
        if (auto ok = http::check_header_field(name, value); !ok)
            return error{errc::invalid_argument, "input.headers: " + ok.error().detail()};
        // An empty key would count as one (the request retried) but not go out as one.
        if ((http::same_field_name(name, "Idempotency-Key") ||
             (out.b->op.idempotency_header && http::same_field_name(name, *out.b->op.idempotency_header))) &&
            value.find_first_not_of(" \t") == std::string::npos)
            return error{errc::invalid_argument, "input.headers: header \"" + name +
                                                     "\" is an idempotency key and is empty; give it a value or leave it out"};
        // The transport asks for the answer in plain text (and decodes one compressed anyway), so
        // that what is kept and searched for an echoed credential is the text itself.
        if (http::same_field_name(name, "Accept-Encoding"))
            return error{errc::invalid_argument, "input.headers: header \"" + name +
                                                     "\" is set by the library, which asks vendors for uncompressed "
                                                     "answers; remove it"};
        for (auto const& own : placement.headers)
            if (http::same_field_name(name, own))
                return error{errc::invalid_argument,
                             "input.headers: header \"" + name +
                                 "\" is where the connection's credential goes, and the credential "
                                 "is added on each call; remove it"};
    }
    if (auto const& key = out.b->op.idempotency_header)
        for (auto const& own : placement.headers)
            if (http::same_field_name(*key, own))
                return error{errc::invalid_state, "the idempotencyHeader \"" + *key + "\" of operation " + r.operation +
                                                      " is where the connection's credential goes; register the "
                                                      "operation with the header its vendor reads the key from"};
    for (auto const& [name, value] : r.input.query)
        if (std::find(placement.query.begin(), placement.query.end(), name) != placement.query.end())
            return error{errc::invalid_argument, "input.query: parameter \"" + name +
                                                     "\" is where the connection's credential goes, and the credential "
                                                     "is added on each call; remove it"};
    std::string path;
    auto const& tpl = out.b->op.path;
    bool in_query = false;  // past the template's '?': a parameter there is a query value, not a segment
    for (std::size_t i = 0; i < tpl.size();) {
        if (tpl[i] != '{') {
            in_query = in_query || tpl[i] == '?';
            path += tpl[i++];
            continue;
        }
        auto close = tpl.find('}', i);
        auto name = tpl.substr(i + 1, close - i - 1);
        auto it = r.input.path_params.find(name);
        if (close == std::string::npos || it == r.input.path_params.end())
            return error{errc::invalid_argument, "input.pathParams." + name + " is required by " + r.operation + " (" + tpl + ")"};
        if (it->second.empty())
            return error{errc::invalid_argument, "input.pathParams." + name + " is empty: a path parameter is one segment of " +
                                                     tpl + ", and an empty one would call another resource"};
        // Encoded into one segment below, but a vendor's server (or a proxy before it) may read
        // `%2F` or `\` as a separator: no piece of the value between them is a dot segment (a `?`
        // or `#` in it is data, sent encoded).
        if (!in_query && detail::has_dot_piece(it->second, true))
            return error{errc::invalid_argument, "input.pathParams." + name + " has a '.' or '..' segment (between '/' or '\\'" +
                                                     "): a path parameter is one segment of " + tpl + ", never a step out of it"};
        path += http::form_encode(it->second);  // one segment: '/', '\' and '%' are encoded too
        i = close + 1;
    }
    // A template registered before dot segments were refused, or a literal dot next to a
    // parameter, must not step out of the operation's path either (curl would squash it).
    if (detail::has_dot_segment(path, false))
        return error{errc::invalid_argument, "the path " + path + " of " + r.operation +
                                                 " has a '.' or '..' segment; fix the operation's path template"};
    out.url = out.b->base_url + path;
    char sep = out.url.find('?') == std::string::npos ? '?' : '&';
    for (auto const& [k, v] : r.input.query) {
        out.url += sep + http::form_encode(k) + "=" + http::form_encode(v);
        sep = '&';
    }
    return out;
}

result<run_outcome> run_service::replay(request_context const& ctx, integration_run run, std::optional<std::string> failure_id) {
    run_outcome out{std::move(run), std::nullopt, true, std::move(failure_id)};
    auto const& d = out.run.data();
    if (d.response_ref && !d.run_attempts.empty() && d.run_attempts.back().http_status) {
        auto body = read_body(ctx, out.run, *d.response_ref, storage::run_body::response);
        out.response = http::response{static_cast<int>(*d.run_attempts.back().http_status), {}, body ? *body : std::string()};
    }
    return out;
}

// Points the execution's request and call at its run: each attempt is recorded on `e.run`.
void run_service::arm(execution& e) {
    auto const& b = *e.p.b;
    e.req = http::request{.method = b.op.method, .url = e.p.url, .headers = e.r.input.headers, .body = e.r.input.body,
                          .timeout = options_.attempt_timeout, .cancel = e.r.cancel};
    if (!e.r.input.body.empty() && http::find_header(e.req.headers, "Content-Type").empty())
        e.req.headers.emplace_back("Content-Type", "application/json");
    // The run's id is the same at each attempt and each execution, so the vendor sees one request.
    if (auto const& key = b.op.idempotency_header; key && http::find_header(e.req.headers, *key).empty())
        e.req.headers.emplace_back(*key, e.run.id());
    e.req.repeatable = repeatable(b.op, e.req.headers);
    e.call = http::call_context{.ctx = &e.ctx,
                                .credential_id = b.connection.data().credential_id,
                                .rate_limit_key = b.limit_key,
                                .rate_limit = b.limit,
                                .breaker = b.breaker.get(),  // the plan holds `b` until the run ends
                                .retry = b.retry,
                                // The execution outlives its call's steps; a pointer keeps the
                                // function in std::function's own buffer (no allocation per run).
                                .offload = [this, tenant = &e.ctx.tenant_id](std::function<void()> step) {
                                    post(*tenant, std::move(step));
                                }};
    // Written after the egress check and the wait for a token: a refused or limited call claims nothing.
    if (e.claim && e.run.meta().version == 0 /* not written yet */)
        e.call.before_first_send = [&e] {
            auto claimed = e.claim(e.run);
            if (!claimed) e.out.claim_failed = claimed.error();
            return claimed.has_value();
        };
    e.call.on_attempt = [&e](http::attempt_report const& a) {
        auto const& res = *a.outcome;
        run_attempt ra{e.run.data().attempts + 1, a.failure ? attempt_status::failed : attempt_status::succeeded,
                       a.failure ? std::optional(a.failure->category) : std::nullopt,
                       res ? std::optional<std::int64_t>(res->status) : std::nullopt,
                       // On the wall clock, which may step back during the call (NTP): never below 0.
                       std::max<std::int64_t>(0, duration_cast<milliseconds>(a.ended - a.started).count()), a.started};
        (void)e.run.record_attempt(ra);  // the number is the next one by construction
        if (res && a.sent && a.failure) e.out.last = *res;  // a success ends the call: taken below without a copy
    };
}

void run_service::collect(execution& e, result<http::response> res) {
    if (e.call.stopped) return;
    if (res && e.call.sent) e.out.last = std::move(*res);
    e.out.failure = std::move(e.call.failure);
}

// Up to retry.max_attempts attempts through the pipeline, each recorded on `run`.
run_service::attempts_result run_service::attempt(request_context const& ctx, plan const& p, execute_request const& r,
                                                  integration_run& run) {
    execution e{ctx, r, p, std::move(run)};
    arm(e);
    collect(e, outbound_.send(e.req, e.call));
    run = std::move(e.run);
    return std::move(e.out);
}

bool run_service::retryable(failures::classification const& c) {
    // One escalated (the vendor may have acted on a request that must not be repeated) waits for
    // a person, not for the retry worker.
    return (c.category == failures::failure_category::transient || c.category == failures::failure_category::rate_limited) &&
           c.next_action != failures::next_action::escalate;
}

// The next execution continues the backoff where this one's attempts stopped; a server's
// Retry-After (capped) wins when longer.
void run_service::defer(failures::classification& c, integration_run const& run, std::optional<http::response> const& last,
                        resilience::retry_options const& retry) {
    auto now = clock_.now();
    auto delay = resilience::backoff_delay(retry, static_cast<int>(run.data().attempts) + 1, options_.random());
    if (last)
        if (auto asked = resilience::server_requested_delay(last->headers, now))
            delay = std::max(delay, std::min(*asked, retry.max_delay));
    c.next_action = failures::next_action::retry;
    c.next_attempt_at = now + delay;
}

std::optional<std::string> run_service::store_response(request_context const& ctx, integration_run const& run,
                                                       std::optional<http::response> const& last) {
    if (!last || last->body.empty()) return std::nullopt;
    auto ref = blobs_.put(ctx.tenant_id, "runs/" + run.id() + "/response", last->body, options_.recording);
    if (ref) return *ref;
    // The blob store refused it: the body commits with its run instead of being lost (a stored
    // body's reference, which the unit that saves the run fills: `keep_stored_response`).
    return storage::stored_run_body_ref(ctx.tenant_id, run.id(), storage::run_body::response);
}

result<void> run_service::keep_stored_response(storage::unit_of_work& uow, integration_run const& run,
                                               std::optional<std::string> const& ref, std::optional<http::response> const& last) {
    if (!ref || !storage::is_stored_payload_ref(*ref) || !last) return {};
    return uow.runs().put_body(run.id(), storage::run_body::response, last->body);
}

result<std::string> run_service::read_body(request_context const& ctx, integration_run const& run, std::string const& ref,
                                           storage::run_body part) {
    if (!storage::is_stored_payload_ref(ref)) return blobs_.get(ctx.tenant_id, ref);
    return storage::read_for(store_, ctx, [&](storage::unit_of_work& uow) { return uow.runs().body(run.id(), part); });
}

bool run_service::keep_input(request_context const& ctx, integration_run const& run, execute_request const& r) {
    auto const& input = r.input;
    // A credential the caller put in (the connection's own goes elsewhere: `prepare` refused it
    // at that name) is kept nowhere, so a later retry could only go without it: the run ends now.
    auto named = [](auto const& pairs) {
        return std::any_of(pairs.begin(), pairs.end(), [](auto const& p) { return names_credential(p.first); });
    };
    if (named(input.headers) || named(input.query)) return false;
    boost::json::object params;
    for (auto const& [k, v] : input.path_params) params[k] = v;
    boost::json::object j{{"pathParams", std::move(params)},
                          {"query", pairs_to_json(input.query)},
                          {"headers", pairs_to_json(input.headers)}};
    // A retry runs under the same terms: permitted on a Degraded connection if the caller permitted it.
    if (r.allow_degraded) j["allowDegraded"] = true;
    return blobs_.put(ctx.tenant_id, "runs/" + run.id() + "/input", boost::json::serialize(j), options_.recording).has_value();
}

result<execute_request> run_service::stored_input(request_context const& ctx, integration_run const& run) {
    execute_request r{run.data().connection_id, run.data().operation, {}, std::nullopt, false, nullptr};
    auto text = blobs_.get(ctx.tenant_id, "blob://" + ctx.tenant_id + "/runs/" + run.id() + "/input");
    if (!text && text.error() != errc::not_found) return text.error();  // an outage: the resume is tried again
    if (!text) return error{errc::not_found, "run " + run.id() + " has no stored input to execute again: " + text.error().detail()};
    boost::system::error_code ec;
    auto j = boost::json::parse(*text, ec);
    if (ec || !j.is_object()) return error{errc::integrity_failure, "the stored input of run " + run.id() + " is corrupt"};
    auto const& o = j.as_object();
    if (auto const* p = o.if_contains("pathParams"); p && p->is_object())
        for (auto const& [k, v] : p->as_object())
            if (v.is_string()) r.input.path_params[std::string(k)] = std::string(v.as_string());
    r.input.query = pairs_from_json(o.if_contains("query"));
    r.input.headers = pairs_from_json(o.if_contains("headers"));
    if (auto const* d = o.if_contains("allowDegraded"); d && d->is_bool()) r.allow_degraded = d->as_bool();
    if (run.data().request_ref) {
        auto body = read_body(ctx, run, *run.data().request_ref, storage::run_body::request);
        if (!body) return body.error();
        r.input.body = std::move(*body);
    }
    return r;
}

std::pair<std::shared_ptr<run_service::flight>, bool> run_service::join_flight(std::string const& key, std::string const& digest) {
    std::lock_guard lock(flights_mutex_);
    auto& slot = flights_[key];
    if (slot) return {slot, false};
    slot = std::make_shared<flight>();
    slot->digest = digest;
    return {slot, true};
}

error run_service::key_reused(std::string const& key) {
    return error{errc::idempotency_key_reused,
                 "Idempotency-Key '" + key + "' was already used with a different request; use a new key"};
}

result<void> run_service::claim_key(request_context const& ctx, std::string const& key, std::string const& digest) {
    return store_.transact(ctx, [&](storage::unit_of_work& uow) { return uow.idempotency().claim(key, digest); });
}

result<run_outcome> run_service::execute(request_context const& ctx, execute_request r) {
    return execute_keyed(ctx, r, nullptr);
}

void run_service::execute(request_context const& ctx, execute_request request, outcome_handler done) {
    if (!request.idempotency_key) return start_once(ctx, std::move(request), {}, std::move(done));
    auto wait_until = steady_clock::now() + options_.idempotency_wait;
    auto key = ctx.tenant_id + '\n' + *request.idempotency_key;
    auto const digest = request_digest(request);
    auto [f, owner] = join_flight(key, digest);
    if (!owner && f->digest != digest) return done(key_reused(*request.idempotency_key));
    if (!owner) {
        // A twin executes this key here: wait for its outcome without a thread, told when it
        // lands or when the wait runs out.
        auto t = std::make_shared<twin>();
        t->ctx = ctx;
        t->request = std::move(request);
        t->done = std::move(done);
        bool landed = false;
        {
            std::lock_guard lock(f->mutex);
            landed = f->done;
            if (!landed) f->twins.push_back(t);
        }
        if (landed) return retry_twin(std::move(t));  // it landed meanwhile: its run is in the store
        twin_timer_(duration_cast<milliseconds>(wait_until - steady_clock::now()), [t] {
            if (t->told.exchange(true)) return;
            t->done(error{errc::in_progress, "the run of Idempotency-Key '" + *t->request.idempotency_key +
                                                 "' is still executing; send the request again shortly to get its outcome"});
        });
        return;
    }
    start_once(ctx, std::move(request), wait_until,
               [this, key = std::move(key), f, done = std::move(done)](result<run_outcome> out) {
                   land(key, *f, out);
                   done(std::move(out));
               });
}

void run_service::land(std::string const& key, flight& f, result<run_outcome> const& out) {
    {
        std::lock_guard lock(flights_mutex_);
        flights_.erase(key);
    }
    std::vector<std::shared_ptr<twin>> twins;
    {
        std::lock_guard lock(f.mutex);
        f.done = true;
        if (out) f.outcome = *out;
        twins.swap(f.twins);
    }
    f.done_cv.notify_all();
    for (auto& t : twins) {
        if (!out) {
            retry_twin(std::move(t));
            continue;
        }
        if (t->told.exchange(true)) continue;  // its wait ran out
        auto copy = *out;
        copy.replayed = true;
        t->done(std::move(copy));
    }
}

void run_service::retry_twin(std::shared_ptr<twin> t) {
    if (t->told.exchange(true)) return;
    // The run it waited for recorded nothing (bad input, a store error), or ended before it
    // waited: it executes itself, as a request of its own. It counts as in flight from now, so
    // that the destructor waits for the flight it starts.
    {
        std::lock_guard lock(jobs_mutex_);
        ++in_flight_;
    }
    post(t->ctx.tenant_id, [this, t] {
        execute(t->ctx, std::move(t->request), std::move(t->done));
        landed();
    });
}

result<run_outcome> run_service::execute_keyed(request_context const& ctx, execute_request& r, outcome_handler* done) {
    if (!r.idempotency_key) return execute_once(ctx, r, {}, done);
    auto wait_until = steady_clock::now() + options_.idempotency_wait;
    auto key = ctx.tenant_id + '\n' + *r.idempotency_key;
    auto const digest = request_digest(r);
    for (;;) {
        auto [f, owner] = join_flight(key, digest);
        if (!owner && f->digest != digest) return key_reused(*r.idempotency_key);
        if (owner) {
            auto out = execute_once(ctx, r, wait_until, done);
            land(key, *f, out);
            return out;
        }
        std::unique_lock lock(f->mutex);
        if (!f->done_cv.wait_until(lock, wait_until, [&] { return f->done; }))
            return error{errc::in_progress, "the run of Idempotency-Key '" + *r.idempotency_key +
                                                "' is still executing; send the request again shortly to get its outcome"};
        if (f->outcome) {
            auto out = *f->outcome;
            out.replayed = true;
            return out;
        }
        // The twin recorded no run (bad input, a store error): execute this request itself.
    }
}

std::optional<integration_run> run_service::find_by_key(request_context const& ctx, std::string const& key) {
    std::optional<integration_run> found;
    (void)store_.read(ctx, [&](storage::unit_of_work& uow) -> result<void> {
        if (auto run = uow.runs().find_by_idempotency_key(key); run) found = std::move(*run);
        return {};
    });
    return found;
}

result<run_outcome> run_service::execute_once(request_context const& ctx, execute_request const& r, steady_time wait_until,
                                              outcome_handler* done) {
    std::optional<run_outcome> settled;
    auto opened = open(ctx, r, wait_until, done != nullptr && *done, settled);
    if (!opened) return opened.error();
    if (settled) return std::move(*settled);
    auto& e = **opened;
    arm(e);
    collect(e, outbound_.send(e.req, e.call));
    if (done && *done && e.behind) {
        e.done = std::move(*done);
        *done = nullptr;
    }
    return close(e);
}

void run_service::start_once(request_context const& ctx, execute_request r, steady_time wait_until, outcome_handler done) {
    std::optional<run_outcome> settled;
    auto opened = open(ctx, std::move(r), wait_until, true, settled);
    if (!opened) return done(opened.error());
    if (settled) return done(std::move(*settled));
    auto e = std::move(*opened);
    e->done = std::move(done);
    arm(*e);
    {
        std::lock_guard lock(jobs_mutex_);
        ++in_flight_;
    }
    // The vendor call holds no thread: its outcome comes back on the transport's thread, which
    // hands the run to the store's writer; a run recorded here (an Idempotency-Key, no
    // write-behind) waits for a commit, and a blob write waits for its fsync, so those go to the
    // service's threads instead. So does a call that ended before it started (refused by the
    // egress policy, the breaker or the rate limit): the calling thread may be an event loop
    // (`starts_without_blocking`), and a record may wait for room in the write-behind queue.
    outbound_.start(
        e->req, e->call, [this, e, caller = std::this_thread::get_id()](result<http::response> res) mutable {
            collect(*e, std::move(res));
            bool keeps_input = e->out.failure && retryable(*e->out.failure);
            bool large = e->out.last && e->out.last->body.size() > options_.inline_body_bytes;
            if (e->behind && !e->out.claim_failed && !keeps_input && !large && std::this_thread::get_id() != caller) {
                report(*e, close(*e));
                return landed();
            }
            // Ahead of every tenant's turn and cap: twins of this run (execute_async jobs) may
            // hold its tenant's threads waiting for this very report.
            pool_->post_first([this, e] {
                report(*e, close(*e));
                landed();
            });
        });
}

void run_service::landed() {
    std::lock_guard lock(jobs_mutex_);
    if (--in_flight_ == 0) idle_cv_.notify_all();
}

void run_service::report(execution& e, result<run_outcome> out) {
    if (!e.done) return;  // reported once its record behind committed
    auto done = std::move(e.done);
    done(std::move(out));
}

void run_service::post(std::string const& tenant, std::function<void()> job) { pool_->post(tenant, std::move(job)); }

result<std::shared_ptr<run_service::execution>> run_service::open(request_context const& ctx, execute_request r,
                                                                  steady_time wait_until, bool handler,
                                                                  std::optional<run_outcome>& settled) {
    // A keyed run is recorded here, not behind: a twin waits for its outcome, which must be
    // recorded when it gets it, and its key is claimed in the unit that records it.
    (void)handler;
    bool behind = options_.write_behind && !r.idempotency_key;
    // Kept in the store with the run's record when the run is not written before the call.
    bool body_behind = behind && r.input.body.size() <= options_.inline_body_bytes;
    std::string digest = r.idempotency_key ? request_digest(r) : std::string();
    if (r.idempotency_key)
        if (auto ok = detail::require_text(*r.idempotency_key, "Idempotency-Key", 255); !ok) return ok.error();
    if (r.idempotency_key)
        if (auto existing = find_by_key(ctx, *r.idempotency_key)) {
            // Its run is the answer only to the request the key was claimed for.
            if (auto claimed = claim_key(ctx, *r.idempotency_key, digest); !claimed) return claimed.error();
            auto out = settle(ctx, std::move(*existing), wait_until);
            if (!out) return out.error();
            settled = std::move(*out);
            return std::shared_ptr<execution>();
        }
    auto p = prepare(ctx, r);
    if (!p) return p.error();

    auto draft = integration_run::create(ctx, clock_.now(), p->b->connection, r.operation, r.idempotency_key);
    if (!draft) return draft.error();
    if (auto s = draft->start(p->b->connection, r.allow_degraded, clock_.now()); !s) return s.error();
    if (!r.input.body.empty()) {
        auto key = "runs/" + draft->id() + "/request";
        auto ref = body_behind ? result<std::string>(storage::stored_run_body_ref(ctx.tenant_id, draft->id(), storage::run_body::request))
                               : blobs_.put(ctx.tenant_id, key, r.input.body, options_.recording);
        if (!ref) return ref.error();
        if (auto s = draft->set_request_ref(*ref); !s) return s.error();
    }
    auto e = std::make_shared<execution>(execution{ctx, std::move(r), std::move(*p), std::move(*draft)});
    e->wait_until = wait_until;
    e->digest = std::move(digest);
    e->behind = behind;
    e->body_behind = body_behind;

    // Running is written right before the first call goes out, after the egress check and the wait
    // for a rate-limit token: a process that stops before then leaves no run, so the key stays
    // free, and a Running run in the store is one the vendor may have received. Deferred recording
    // writes a run without an idempotency key once, when it ends.
    if (e->r.idempotency_key || (options_.recording == durability::immediate && !options_.write_behind))
        e->claim = [this, x = e.get()](integration_run& current) -> result<void> {
            auto saved = storage::transact_for(store_, x->ctx, [&](storage::unit_of_work& uow) -> result<integration_run> {
                // The key is claimed for this request in the unit that writes its run: a request
                // refused before (bad input, a store error) leaves the key free.
                if (auto const& key = x->r.idempotency_key)
                    if (auto c = uow.idempotency().claim(*key, x->digest); !c) return c.error();
                auto copy = current;
                if (auto s = uow.runs().save(copy); !s) return s.error();
                return copy;
            }, options_.recording);
            if (!saved) return saved.error();
            current = std::move(*saved);
            std::lock_guard lock(flights_mutex_);
            executing_.insert(x->executing = current.id());
            return {};
        };
    return e;
}

result<run_outcome> run_service::close(execution& x) {
    struct forget_on_exit {
        run_service& s;
        std::string const& id;
        ~forget_on_exit() {
            if (id.empty()) return;
            std::lock_guard lock(s.flights_mutex_);
            s.executing_.erase(id);
        }
    } executing{*this, x.executing};
    auto const& ctx = x.ctx;
    auto const& r = x.r;
    auto& [last, failure, claim_failed] = x.out;
    if (claim_failed) {
        if (*claim_failed == errc::already_exists && r.idempotency_key)  // another process claimed the key first
            if (auto existing = find_by_key(ctx, *r.idempotency_key)) return settle(ctx, std::move(*existing), x.wait_until);
        return *claim_failed;
    }
    auto& run = x.run;
    bool wait_for_worker = failure && retryable(*failure) && options_.deferred_retries > 0 && keep_input(ctx, run, r);
    if (wait_for_worker) defer(*failure, run, last, x.p.b->retry);
    ending e{ctx, std::move(run), std::move(failure), std::move(last), wait_for_worker, clock_.now()};
    if (x.behind) {
        // Everything of the record is built here; the store's writer only saves it, in a commit
        // shared with every concurrent unit. The caller gets the outcome now, or its handler once
        // the commit is done.
        std::optional<std::string> response_ref;
        if (e.last && !e.last->body.empty())
            response_ref = e.last->body.size() <= options_.inline_body_bytes
                               ? std::optional(storage::stored_run_body_ref(ctx.tenant_id, e.run.id(), storage::run_body::response))
                               : store_response(ctx, e.run, e.last);  // synced before the commit that refers to it
        auto f = finalize(e, e.run, std::move(response_ref));
        if (!f) return f.error();
        auto prepared = storage::prepare_run(std::move(e.run), ctx, e.now, store_.event_source());
        run_outcome out{prepared.run, std::nullopt, false, *f ? std::optional((*f)->id()) : std::nullopt};
        auto rec = std::make_shared<record>(record{std::move(prepared), std::move(*f), std::move(e.last),
                                                   x.body_behind ? std::move(x.r.input.body) : std::string(), nullptr});
        if (x.done) rec->done = std::move(x.done);
        else out.response = rec->response;
        record_behind(ctx, std::move(rec));
        return out;
    }
    auto response_ref = store_response(ctx, e.run, e.last);
    std::optional<std::string> failure_id;
    auto saved = storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<integration_run> {
        auto fresh = e.run;  // the in-memory copy carries every attempt
        // A keyed run refused before its first send (egress, the rate limit) was never written:
        // its key is claimed here. One written before its call claimed it then (`executing`).
        if (auto const& key = r.idempotency_key; key && x.executing.empty())
            if (auto c = uow.idempotency().claim(*key, x.digest); !c) return c.error();
        auto f = finalize(e, fresh, response_ref);
        if (!f) return f.error();
        if (*f) {
            if (auto s = uow.failures().save(**f); !s) return s.error();
            failure_id = (*f)->id();
        }
        if (auto s = uow.runs().save(fresh); !s) return s.error();
        // After the save: a run recorded only as it ends has no row before it.
        if (auto s = keep_stored_response(uow, fresh, response_ref, e.last); !s) return s.error();
        return fresh;
    }, options_.recording);
    if (!saved) return saved.error();
    return run_outcome{std::move(*saved), std::move(e.last), false, std::move(failure_id)};
}

result<run_outcome> run_service::settle(request_context const& ctx, integration_run run, steady_time wait_until) {
    for (;;) {
        if (run.status() != run_status::running) return replay(ctx, std::move(run));
        auto open = storage::read_for(store_, ctx, [&](storage::unit_of_work& uow) {
            return uow.failures().list({.run_id = run.id(), .unresolved_only = true}, {.limit = 1});
        });
        if (!open) return open.error();
        if (!open->items.empty()) return replay(ctx, std::move(run), open->items.front().id());  // the retry worker has it
        if (lease_expired(run)) {
            auto failed = fail_interrupted(ctx, run);
            if (!failed && failed.error() != errc::conflict) return failed.error();
            if (failed && *failed) return replay(ctx, std::move(**failed));
        } else if (steady_clock::now() >= wait_until) {
            return error{errc::in_progress, "run " + run.id() + " of Idempotency-Key '" + run.data().idempotency_key.value_or("") +
                                                "' is still executing; send the request again shortly to get its outcome"};
        } else {
            // Executing in another process: its outcome appears in the store.
            std::this_thread::sleep_for(std::min<steady_clock::duration>(50ms, wait_until - steady_clock::now()));
        }
        auto again = storage::read_for(store_, ctx, [&](storage::unit_of_work& uow) { return uow.runs().find(run.id()); });
        if (!again) return again.error();
        run = std::move(*again);
    }
}

bool run_service::lease_expired(integration_run const& run) {
    auto started = run.data().started_at.value_or(run.meta().created_at);
    if (started + run_lease() > clock_.now()) return false;
    std::lock_guard lock(flights_mutex_);
    return !executing_.contains(run.id());
}

std::chrono::milliseconds run_service::run_lease() const noexcept {
    return options_.retry.total_deadline + options_.max_rate_limit_wait + 2 * options_.attempt_timeout + options_.orphan_margin;
}

result<std::optional<integration_run>> run_service::fail_interrupted(request_context const& ctx, integration_run const& run) {
    failures::classification c{failures::failure_category::transient, std::string(interrupted),
                               "the process executing this run stopped after calling the vendor, which may or may not have "
                               "acted on the call: check with the vendor before running it again",
                               failures::next_action::escalate, std::nullopt};
    auto now = clock_.now();
    return storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<std::optional<integration_run>> {
        auto fresh = uow.runs().find(run.id());
        if (!fresh) return fresh.error();
        if (fresh->status() != run_status::running) return std::optional<integration_run>();
        auto open = uow.failures().list({.run_id = run.id(), .unresolved_only = true}, {.limit = 1});
        if (!open) return open.error();
        if (!open->items.empty()) return std::optional<integration_run>();
        if (auto s = fresh->fail(now, c, std::nullopt); !s) return s.error();
        auto f = failures::integration_failure::record(ctx, now, failures::failure_source::run, fresh->id(), fresh->data().provider_id, c);
        if (!f) return f.error();
        if (auto s = uow.failures().save(*f); !s) return s.error();
        if (auto s = uow.runs().save(*fresh); !s) return s.error();
        return std::optional(std::move(*fresh));
    }, options_.recording);
}

result<std::size_t> run_service::recover_interrupted(request_context const& ctx) {
    std::size_t ended = 0;
    storage::page_request page{.limit = 500};
    for (;;) {
        // A run waiting for the worker (an open failure) is Running past its lease too: found
        // in the read, it costs no write unit at each sweep (a deferred backlog would queue a
        // unit per run, every sweep, beside the requests' commits).
        std::vector<integration_run> orphans;
        auto running = storage::read_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<storage::page<integration_run>> {
            auto listed = uow.runs().list({.status = run_status::running}, page);
            if (!listed) return listed.error();
            for (auto& run : listed->items) {
                if (!lease_expired(run)) continue;
                auto open = uow.failures().list({.run_id = run.id(), .unresolved_only = true}, {.limit = 1});
                if (!open) return open.error();
                if (open->items.empty()) orphans.push_back(std::move(run));
            }
            return listed;
        });
        if (!running) return running.error();
        for (auto const& run : orphans) {
            auto failed = fail_interrupted(ctx, run);
            if (!failed && failed.error() != errc::conflict) return failed.error();  // conflict: another process ended it
            if (failed && *failed) ++ended;
        }
        if (running->next_cursor.empty()) return ended;
        page.cursor = running->next_cursor;
    }
}

result<std::optional<failures::integration_failure>> run_service::finalize(ending const& e, integration_run& run,
                                                                           std::optional<std::string> response_ref) {
    if (!e.failure) {
        if (auto s = run.complete(e.now, external_ref(e.last), std::move(response_ref)); !s) return s.error();
        return std::optional<failures::integration_failure>();
    }
    if (!e.wait_for_worker)
        if (auto s = run.fail(e.now, *e.failure, std::move(response_ref)); !s) return s.error();
    auto f = failures::integration_failure::record(e.ctx, e.now, failures::failure_source::run, run.id(), run.data().provider_id,
                                                   *e.failure);
    if (!f) return f.error();
    return std::optional(std::move(*f));
}

void run_service::record_behind(request_context const& ctx, std::shared_ptr<record> r) {
    {
        std::unique_lock lock(records_mutex_);
        records_cv_.wait(lock, [&] { return recording_ < options_.write_behind_queue; });
        ++recording_;
    }
    auto unit = [r](storage::unit_of_work& uow) -> result<void> {
        if (r->failure)
            if (auto s = uow.failures().save(*r->failure); !s) return s;
        auto const& d = r->run.run.data();
        if (!r->request_body.empty()) r->run.request_body = r->request_body;
        if (r->response && d.response_ref && storage::is_stored_payload_ref(*d.response_ref))
            r->run.response_body = r->response->body;
        return uow.runs().save_prepared(r->run);
    };
    // A new run (no Idempotency-Key: not written before) with a new failure only inserts rows
    // once it writes; a keyed run's update may find the run changed after the failure's insert.
    bool checks_first = r->run.run.meta().version == 0 && (!r->failure || r->failure->meta().version == 0);
    auto record = checks_first ? &storage::store::transact_async_checks_first : &storage::store::transact_async;
    (store_.*record)(ctx, std::move(unit), options_.recording, [this, r](result<void> saved) {
        if (r->done) {
            auto failure_id = r->failure ? std::optional(r->failure->id()) : std::nullopt;
            if (saved) r->done(run_outcome{std::move(r->run.run), std::move(r->response), false, std::move(failure_id)});
            else r->done(saved.error());
        }
        std::lock_guard lock(records_mutex_);
        if (!saved) {
            ++record_errors_;
            last_record_error_ = saved.error().detail();
        }
        --recording_;
        records_cv_.notify_all();  // under the lock: the destructor may be waiting for the last one
    });
}

result<void> run_service::flush() {
    std::unique_lock lock(records_mutex_);
    records_cv_.wait(lock, [&] { return recording_ == 0; });
    if (record_errors_ == 0) return {};
    auto n = std::exchange(record_errors_, 0);
    return error{errc::storage_failure, std::to_string(n) + " runs could not be recorded: " + last_record_error_};
}

result<run_outcome> run_service::resume(request_context const& ctx, std::string const& run_id, resume_reason why,
                                        bool* called_vendor) {
    struct loaded {
        integration_run run;
        std::optional<failures::integration_failure> failure;
    };
    auto state = storage::read_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<loaded> {
        auto run = uow.runs().find(run_id);
        if (!run) return run.error();
        auto open = uow.failures().list({.run_id = run_id, .unresolved_only = true}, {.limit = 1});
        if (!open) return open.error();
        return loaded{std::move(*run), open->items.empty() ? std::nullopt : std::optional(std::move(open->items.front()))};
    });
    if (!state) return state.error();
    auto run = std::move(state->run);
    auto failure = std::move(state->failure);
    auto now = clock_.now();
    auto save = [&](std::optional<failures::classification> const& c, std::optional<http::response> const& last,
                    bool keep_waiting) -> result<run_outcome> {
        auto response_ref = store_response(ctx, run, last);
        now = clock_.now();
        auto saved = storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<integration_run> {
            auto fresh = run;
            auto f = failure;
            if (auto s = keep_stored_response(uow, fresh, response_ref, last); !s) return s.error();
            if (fresh.status() == run_status::running && !c) {
                if (auto s = fresh.complete(now, external_ref(last), response_ref); !s) return s.error();
            } else if (fresh.status() == run_status::running && !keep_waiting) {
                if (auto s = fresh.fail(now, *c, response_ref); !s) return s.error();
            }
            if (f) {
                if (c && fresh.status() != run_status::completed)
                    if (auto s = f->record_attempt(*c, now); !s) return s.error();
                if (fresh.status() == run_status::completed) {
                    if (auto s = f->resolve(failures::source_outcome::succeeded, now); !s) return s.error();
                } else if (fresh.status() == run_status::failed) {
                    // A run already Failed when loaded, its failure escalated (by a person, since
                    // the worker claimed it): escalated once is enough.
                    bool escalated = run.status() == run_status::failed && !f->data().escalations.empty();
                    if (f->data().next_action != failures::next_action::escalate) {
                        if (auto s = f->resolve(failures::source_outcome::dead_lettered, now); !s) return s.error();
                    } else if (!escalated) {
                        auto reason = !c                         ? std::string("the run failed")
                                      : c->error_code == interrupted ? c->message
                                                                     : "retries exhausted after " + std::to_string(fresh.data().attempts) +
                                                                           " attempts: " + c->error_code;
                        if (auto s = f->escalate({"retry-worker", escalation_reason(reason), now, std::nullopt}); !s) return s.error();
                    }
                }
                if (auto s = uow.failures().save(*f); !s) return s.error();
            }
            if (fresh.status() != run.status() || fresh.data().attempts != run.data().attempts || c || last)
                if (auto s = uow.runs().save(fresh); !s) return s.error();
            return fresh;
        }, options_.recording);
        if (!saved) return saved.error();
        return run_outcome{std::move(*saved), last, false, failure ? std::optional(failure->id()) : std::nullopt};
    };
    if (run.status() != run_status::running) return save(std::nullopt, std::nullopt, false);  // only resolves

    auto request = stored_input(ctx, run);
    // The blob store cannot be read now: nothing is decided (the lease goes back, and the next
    // sweep resumes the run again); only an input that is missing or corrupt ends it.
    if (!request && request.error() != errc::not_found && request.error() != errc::integrity_failure) return request.error();
    std::optional<plan> p;
    std::optional<failures::classification> blocked;
    if (request) {
        auto prepared = prepare(ctx, *request);
        // The store or the vault failing a moment decides nothing either: only a refusal (the
        // connection retired, the operation gone, the credential unusable) ends the run.
        if (!prepared)
            for (auto outage : {errc::storage_failure, errc::storage_busy, errc::database_missing, errc::unavailable,
                                errc::secret_store_failure, errc::timeout})
                if (prepared.error() == outage) return prepared.error();
        // Nor is a connection whose health probe failed (the vendor down, as when the run was
        // deferred): the run waits for the prober to find it healthy again, each refusal counted
        // as one of its deferred executions, so that one that stays down still escalates.
        if (!prepared && prepared.error() == errc::invalid_state && why == resume_reason::due) {
            auto conn = storage::read_for(store_, ctx, [&](storage::unit_of_work& uow) {
                return uow.connections().find(request->connection_id);
            });
            if (!conn && conn.error() != errc::not_found) return conn.error();
            if (conn && conn->waits_for_health(request->allow_degraded)) {
                failures::classification c{failures::failure_category::transient, "connection_unhealthy",
                                           prepared.error().detail(), failures::next_action::escalate, std::nullopt};
                bool keep_waiting = failure && failure->data().attempt < options_.deferred_retries;
                if (keep_waiting) {
                    // Minutes, doubling (2, 4, 8, ...): the prober looks at the connection again
                    // meanwhile; the run's own backoff (no call made) would spend them in seconds.
                    defer(c, run, std::nullopt, options_.retry);
                    auto const doublings = std::clamp<std::int64_t>(failure->data().attempt - 1, 0, 12);
                    c.next_attempt_at = clock_.now() + std::chrono::minutes(2) * (std::int64_t{1} << doublings);
                }
                return save(c, std::nullopt, keep_waiting);
            }
        }
        if (prepared) p = std::move(*prepared);
        else blocked = failures::classification{failures::failure_category::validation, "not_executable",
                                                prepared.error().detail(), failures::next_action::dead_letter, std::nullopt};
    } else {
        blocked = failures::classification{failures::failure_category::poison, "input_missing", request.error().detail(),
                                           failures::next_action::dead_letter, std::nullopt};
    }
    // After an interruption the vendor may have acted on the last call: a run that is not sent
    // again, for whatever reason, is for a person to check, not to dead-letter.
    auto const after_interruption = [&](std::string why_not) {
        return failures::classification{failures::failure_category::transient, std::string(interrupted),
                                        "the process resuming this run stopped before it recorded the outcome, perhaps during "
                                        "its call to the vendor, which may have acted on it; " + why_not +
                                            ": check with the vendor before running it again",
                                        failures::next_action::escalate, std::nullopt};
    };
    if (blocked && why == resume_reason::interrupted) blocked = after_interruption("it cannot run again (" + blocked->message + ")");
    if (blocked) return save(blocked, std::nullopt, false);
    if (why == resume_reason::interrupted && !repeatable(p->b->op, request->input.headers))
        return save(after_interruption("a request that could act twice is not sent again"), std::nullopt, false);

    if (called_vendor) *called_vendor = true;
    auto tried = attempt(ctx, *p, *request, run);  // no claim: the run is stored already
    auto& last = tried.last;
    auto& c = tried.failure;
    bool keep_waiting = false;
    if (c && retryable(*c)) {
        // failure->attempt counts the executions before this one: the first plus earlier retries.
        if (failure && failure->data().attempt < options_.deferred_retries) {
            keep_waiting = true;
            defer(*c, run, last, p->b->retry);
        } else {
            c->next_action = failures::next_action::escalate;
            c->next_attempt_at.reset();
        }
    }
    return save(c, last, keep_waiting);
}

}  // namespace integration::runs
