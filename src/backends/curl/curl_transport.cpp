#include <integration/backends/curl/curl_transport.hpp>
#include <integration/ports/transport.hpp>

#include "../../detail/thread_name.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

namespace integration::http {

namespace {

struct easy_deleter {
    void operator()(CURL* c) const noexcept { curl_easy_cleanup(c); }
};
struct slist_deleter {
    void operator()(curl_slist* l) const noexcept { curl_slist_free_all(l); }
};

/** The most header and trailer bytes an answer may carry (libcurl caps a header section, not
 *  the trailers after a chunked body, which it and `res.headers` would keep without end). */
constexpr std::size_t max_header_bytes = 256 * 1024;

struct transfer {
    response res;
    std::size_t cap;
    bool too_big = false;
    cancellation const* cancel = nullptr;
    std::size_t excerpt = 0;  // non-zero: keep this much of the body and stop reading there
    bool cut = false;         // the body was cut at `excerpt`: the transfer stopped on purpose
    std::size_t header_bytes = 0;
    bool headers_too_big = false;
    bool once = false;            // not repeatable: libcurl must not send it a second time
    int sends = 0;                // requests libcurl began for this call
    bool resend_refused = false;  // libcurl wanted to send it again, and was stopped
};

// Called before each request libcurl sends for a call, its own re-sends included: when the reused
// connection a request went out on dies before any answer, libcurl sends it again on a new one.
int on_request(void* user, char*, char*, int, int) {
    auto* t = static_cast<transfer*>(user);
    if (++t->sends > 1 && t->once) {
        t->resend_refused = true;
        return CURL_PREREQFUNC_ABORT;
    }
    return CURL_PREREQFUNC_OK;
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    auto const* t = static_cast<transfer const*>(user);
    return t->cancel && t->cancel->cancelled() ? 1 : 0;  // non-zero aborts the transfer
}

// A TLS failure, explained; nullopt for other failures.
std::optional<std::string> tls_failure(CURLcode rc, std::string const& why) {
    switch (rc) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        return "TLS refused the server: " + why +
               "; the server must present a certificate for its host name that chains to a trusted authority "
               "(curl_options::ca_file trusts a private one)";
    case CURLE_SSL_CACERT_BADFILE:
        return "TLS could not load the trusted certificates (" + why + "); check curl_options::ca_file";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
        return "TLS handshake failed: " + why;
    default:
        return std::nullopt;
    }
}

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
    auto* t = static_cast<transfer*>(user);
    if (t->excerpt > 0 && t->res.body.size() + size * n >= t->excerpt) {
        t->res.body.append(data, t->excerpt - t->res.body.size());
        t->cut = true;
        return 0;  // stops the transfer: the rest is not wanted
    }
    if (t->res.body.size() + size * n > t->cap) {
        t->too_big = true;
        return 0;  // aborts the transfer
    }
    t->res.body.append(data, size * n);
    return size * n;
}

std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
    auto* t = static_cast<transfer*>(user);
    std::string_view line(data, size * n);
    t->header_bytes += line.size();  // every section's, interim answers' included: none is free
    if (t->header_bytes > max_header_bytes) {
        t->headers_too_big = true;
        return 0;  // aborts the transfer
    }
    if (line.starts_with("HTTP/")) t->res.headers.clear();  // a new response (e.g. after 100 Continue)
    auto colon = line.find(':');
    if (colon != std::string_view::npos) {
        auto value = line.substr(colon + 1);
        while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
        while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) value.remove_suffix(1);
        t->res.headers.emplace_back(std::string(line.substr(0, colon)), std::string(value));
    }
    return size * n;
}

/** Once libcurl has decoded a compressed body, its `Content-Encoding` and `Content-Length`
 *  describe bytes nobody holds: both go, so a kept answer describes the body kept with it. */
void drop_decoded_framing(headers& fields) {
    auto encoded = std::any_of(fields.begin(), fields.end(), [](auto const& h) {
        return same_field_name(h.first, "Content-Encoding") && !same_field_name(h.second, "identity");
    });
    if (!encoded) return;
    std::erase_if(fields, [](auto const& h) {
        return same_field_name(h.first, "Content-Encoding") || same_field_name(h.first, "Content-Length");
    });
}

/** TLS sessions shared by every pooled handle: a handle that opens a new connection resumes a
 *  session another handle negotiated instead of a full handshake. DNS is not shared: a pinned
 *  call's address comes from `request::pin` (checked by the egress policy), never from a lookup
 *  or a cache another call filled. Connections are not shared either: libcurl does not support that across
 *  threads. */
class tls_session_share {
public:
    tls_session_share() : share_(curl_share_init()) {
        if (!share_) return;
        curl_share_setopt(share_, CURLSHOPT_LOCKFUNC, lock);
        curl_share_setopt(share_, CURLSHOPT_UNLOCKFUNC, unlock);
        curl_share_setopt(share_, CURLSHOPT_USERDATA, this);
        curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    }
    ~tls_session_share() {
        if (share_) curl_share_cleanup(share_);
    }
    tls_session_share(tls_session_share const&) = delete;
    tls_session_share& operator=(tls_session_share const&) = delete;
    CURLSH* get() const noexcept { return share_; }

private:
    static void lock(CURL*, curl_lock_data data, curl_lock_access, void* self) {
        static_cast<tls_session_share*>(self)->mutex_for(data).lock();
    }
    static void unlock(CURL*, curl_lock_data data, void* self) { static_cast<tls_session_share*>(self)->mutex_for(data).unlock(); }
    std::mutex& mutex_for(curl_lock_data data) { return mutexes_[static_cast<std::size_t>(data) % mutexes_.size()]; }

    CURLSH* share_;
    std::array<std::mutex, CURL_LOCK_DATA_LAST> mutexes_;
};

/** One call's buffers, alive until libcurl is done with the transfer (its options point into them). */
struct call_state {
    transfer t;
    std::unique_ptr<curl_slist, slist_deleter> headers;
    std::unique_ptr<curl_slist, slist_deleter> connect_to;
    char detail[CURL_ERROR_SIZE] = {};
};

/** A started call: the request (owning the URL and body libcurl reads), its buffers and handle. */
struct flight {
    request req;
    transport::completion done;
    call_state state;
    std::unique_ptr<CURL, easy_deleter> handle;
};

result<void> check_request(request const& r) {
    if (r.cancel && r.cancel->cancelled()) return error{errc::cancelled, "the call was cancelled before it was sent"};
    // libcurl reads a deadline of 0 as none: a call that could hang for ever is refused instead.
    if (r.timeout <= std::chrono::milliseconds::zero())
        return error{errc::invalid_argument, "a call needs a deadline: its timeout must be at least 1 ms"};
    for (auto const& [name, value] : r.headers)
        if (auto ok = check_header_field(name, value); !ok) return ok.error();
    return {};
}

// A completion that throws must not end the event loop (or the destructor).
void complete(flight& f, result<response> r) noexcept {
    try {
        f.done(std::move(r));
    } catch (...) {
    }
}

class curl_transport;

/** The event loop of `start`: one thread driving a libcurl multi handle, whose connection cache
 *  keeps connections alive across calls. Other threads only queue calls and wake it. */
class event_loop {
public:
    explicit event_loop(curl_transport& owner);
    ~event_loop();
    event_loop(event_loop const&) = delete;
    event_loop& operator=(event_loop const&) = delete;

    void submit(std::unique_ptr<flight> f);

private:
    void run();
    void add(std::unique_ptr<flight> f);
    void finish(CURL* h, CURLcode rc);
    void cancel(CURL* h, char const* why);
    std::unique_ptr<CURL, easy_deleter> handle();

    curl_transport& owner_;
    CURLM* multi_;
    std::mutex mutex_;
    std::vector<std::unique_ptr<flight>> queue_;
    bool stopping_ = false;
    std::unordered_map<CURL*, std::unique_ptr<flight>> active_;  // the loop thread's own
    // Finished handles with the transport's constant options still set (the loop thread's own):
    // a call sets only its own options on one, instead of curl_easy_reset and all of them.
    std::vector<std::unique_ptr<CURL, easy_deleter>> idle_;
    std::thread thread_;
};

class curl_transport final : public transport {
public:
    explicit curl_transport(curl_options o) : o_(std::move(o)) {
        static std::once_flag once;
        std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    }

    result<response> send(request const& r) override {
        if (auto ok = check_request(r); !ok) return ok.error();
        // Handles are pooled: each keeps its live connections, DNS and TLS session caches across
        // curl_easy_reset, so consecutive calls to one host reuse a keep-alive connection.
        auto c = acquire();
        if (!c) return error{errc::unavailable, "libcurl could not start a transfer"};
        call_state state;
        set_constants(c.get());
        set_call(c.get(), r, state);
        if (r.cancel) {
            curl_easy_setopt(c.get(), CURLOPT_XFERINFOFUNCTION, on_progress);
            curl_easy_setopt(c.get(), CURLOPT_XFERINFODATA, &state.t);
            curl_easy_setopt(c.get(), CURLOPT_NOPROGRESS, 0L);
        }
        auto rc = curl_easy_perform(c.get());
        auto res = outcome(c.get(), rc, r, state);
        // A failed call may have left its connection with an answer half-read (cut at the cap,
        // cancelled, timed out): the handle and its connections go, so nothing reuses them.
        if (res) release(std::move(c));
        return res;
    }

    void start(request r, completion done) override {
        if (auto ok = check_request(r); !ok) {
            done(ok.error());
            return;
        }
        std::call_once(loop_once_, [this] { loop_ = std::make_unique<event_loop>(*this); });
        loop_->submit(std::make_unique<flight>(flight{std::move(r), std::move(done), {}, {}}));
    }

    curl_options const& options() const noexcept { return o_; }

    /** A pooled handle of `send`, its options reset (`send` sets them all again). */
    std::unique_ptr<CURL, easy_deleter> acquire() {
        {
            std::lock_guard lock(pool_mutex_);
            if (!pool_.empty()) {
                auto c = std::move(pool_.back());
                pool_.pop_back();
                curl_easy_reset(c.get());
                return c;
            }
        }
        return create();
    }

    void release(std::unique_ptr<CURL, easy_deleter> c) {
        std::lock_guard lock(pool_mutex_);
        if (pool_.size() < 64) pool_.push_back(std::move(c));
    }

    /** A new handle attached to the TLS session share (curl_easy_reset keeps the share). */
    std::unique_ptr<CURL, easy_deleter> create() {
        std::unique_ptr<CURL, easy_deleter> c(curl_easy_init());
        if (c && share_.get()) curl_easy_setopt(c.get(), CURLOPT_SHARE, share_.get());
        return c;
    }

    /** The options that are the same for every call of this transport. */
    void set_constants(CURL* h) {
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(o_.connect_timeout.count()));
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, o_.verify_tls ? 1L : 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, o_.verify_tls ? 2L : 0L);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h, CURLOPT_PREREQFUNCTION, on_request);
        // Asks for an uncompressed answer, and has libcurl decode one compressed anyway: what the
        // library keeps, returns and searches for an echoed credential is the plain text.
        curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "identity");
        if (!o_.ca_file.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, o_.ca_file.c_str());
        // An empty proxy disables the http_proxy/https_proxy/all_proxy environment variables, and
        // an explicit no-proxy list (empty: none) the no_proxy/NO_PROXY ones, so whether calls go
        // through a proxy is decided here, not by the process environment.
        curl_easy_setopt(h, CURLOPT_PROXY, o_.proxy.c_str());
        curl_easy_setopt(h, CURLOPT_NOPROXY, o_.no_proxy.c_str());
    }

    /** Sets every option that belongs to call `r` on `h`, over whatever an earlier call on the
     *  same handle set (the event loop reuses its handles without curl_easy_reset); the options
     *  point into `r` and `s`, which must outlive the transfer. */
    void set_call(CURL* h, request const& r, call_state& s) {
        s.t = transfer{{}, o_.max_response_bytes, false, r.cancel.get(), std::min(r.body_excerpt, o_.max_response_bytes)};
        s.t.once = !r.repeatable;
        curl_easy_setopt(h, CURLOPT_PREREQDATA, &s.t);
        std::string line;  // one buffer for every header: curl_slist_append copies it
        for (auto const& [k, v] : r.headers) {
            line.assign(k).append(": ").append(v);
            s.headers.reset(curl_slist_append(s.headers.release(), line.c_str()));
        }
        // No `Expect: 100-continue` for a large body: a server's 417 would have libcurl send the
        // request a second time (and each body goes out whole at once anyway).
        if (r.body.size() > 1024) s.headers.reset(curl_slist_append(s.headers.release(), "Expect:"));
        // "::ADDRESS:PORT" connects any host and port of this call to the checked address, so
        // curl never resolves the URL's name, whatever its spelling; Host, SNI and the
        // certificate check keep that name.
        if (r.pin) {
            auto const& a = r.pin->address;
            auto entry =
                "::" + (a.find(':') != std::string::npos ? "[" + a + "]" : a) + ":" + std::to_string(r.pin->port);
            s.connect_to.reset(curl_slist_append(nullptr, entry.c_str()));
        }
        curl_easy_setopt(h, CURLOPT_CONNECT_TO, s.connect_to.get());  // none: an earlier call's pin goes
        curl_easy_setopt(h, CURLOPT_URL, r.url.c_str());
        // Back to a bodiless GET first (an earlier call's body pointer is dangling by now, its
        // HEAD would drop this answer's body), then this call's method and body.
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, nullptr);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(-1));
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        if (r.method == "HEAD") curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
        if (!r.body.empty() || r.method == "POST" || r.method == "PUT" || r.method == "PATCH") {
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, r.body.data());
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
        }
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r.method.c_str());
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, s.headers.get());
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(r.timeout.count()));
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &s.t);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, &s.t);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, s.detail);
    }

    /** The outcome of a finished transfer on `h`. */
    result<response> outcome(CURL* h, CURLcode rc, request const& r, call_state& s) {
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, nullptr);  // the buffer may die before the handle
        if (s.t.too_big)
            return error{errc::invalid_argument, "the response body exceeded " + std::to_string(o_.max_response_bytes) + " bytes"};
        if (s.t.headers_too_big)
            return error{errc::invalid_argument,
                         "the response's header and trailer fields exceeded " + std::to_string(max_header_bytes) + " bytes"};
        if (s.t.cut) rc = CURLE_OK;  // the answer is here up to the excerpt wanted
        if (rc == CURLE_ABORTED_BY_CALLBACK && r.cancel && r.cancel->cancelled())
            return error{errc::cancelled, "the call was cancelled while in flight"};
        if (s.t.resend_refused)
            return error{errc::connection_lost, "the connection the request went out on ended without an answer"};
        if (rc != CURLE_OK && rc != CURLE_BAD_CONTENT_ENCODING) {
            // Whether the vendor may have seen the request (the port's rule): libcurl began none
            // while it had no connection to the vendor (refused, DNS, TLS, a proxy's CONNECT).
            std::string why = s.detail[0] != '\0' ? s.detail : curl_easy_strerror(rc);
            if (s.t.sends == 0) {
                if (auto tls = tls_failure(rc, why)) return error{errc::unavailable, std::move(*tls)};
                return error{errc::unavailable, rc == CURLE_OPERATION_TIMEDOUT ? "no connection within the deadline"
                                                                               : "transport failure, nothing sent: " + why};
            }
            if (rc == CURLE_OPERATION_TIMEDOUT) return error{errc::timeout, "no complete answer within the deadline"};
            return error{errc::connection_lost, "the connection ended without a complete answer: " + why};
        }
        if (rc == CURLE_BAD_CONTENT_ENCODING)  // answered, in a coding libcurl cannot decode: asking again will not help
            return error{errc::invalid_argument, "the answer's Content-Encoding cannot be decoded: " +
                                                     std::string(s.detail[0] != '\0' ? s.detail : curl_easy_strerror(rc))};
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        s.t.res.status = static_cast<int>(status);
        drop_decoded_framing(s.t.res.headers);
        return std::move(s.t.res);
    }

private:
    curl_options o_;
    tls_session_share share_;  // before the pool and the loop: outlives every handle attached to it
    std::mutex pool_mutex_;
    std::vector<std::unique_ptr<CURL, easy_deleter>> pool_;
    std::once_flag loop_once_;
    std::unique_ptr<event_loop> loop_;  // last: stopped (its calls cancelled) before anything above goes
};

event_loop::event_loop(curl_transport& owner) : owner_(owner), multi_(curl_multi_init()) {
    if (multi_ && owner.options().connection_cache > 0)
        curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, static_cast<long>(owner.options().connection_cache));
    thread_ = std::thread([this] {
        integration::detail::name_this_thread("integ-curl");
        run();
    });
}

event_loop::~event_loop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    if (multi_) curl_multi_wakeup(multi_);
    thread_.join();
    for (auto& [h, f] : active_) {
        curl_multi_remove_handle(multi_, h);
        complete(*f, error{errc::cancelled, "the transport closed with the call in flight"});
    }
    active_.clear();
    for (auto& f : queue_) complete(*f, error{errc::cancelled, "the transport closed before the call was sent"});
    if (multi_) curl_multi_cleanup(multi_);
}

void event_loop::submit(std::unique_ptr<flight> f) {
    bool wake = false;
    {
        std::lock_guard lock(mutex_);
        if (!stopping_) {
            // Calls queued before this one have woken the loop already, and it takes the whole
            // queue at once: one wake-up (a write, and a poll returning) per batch, not per call.
            wake = queue_.empty();
            queue_.push_back(std::move(f));
            f = nullptr;
        }
    }
    if (f) return complete(*f, error{errc::cancelled, "the transport is closing"});
    if (wake) curl_multi_wakeup(multi_);
}

void event_loop::add(std::unique_ptr<flight> f) {
    if (f->req.cancel && f->req.cancel->cancelled()) {
        complete(*f, error{errc::cancelled, "the call was cancelled before it was sent"});
        return;
    }
    f->handle = handle();
    if (!f->handle || !multi_) {
        complete(*f, error{errc::unavailable, "libcurl could not start a transfer"});
        return;
    }
    auto* h = f->handle.get();
    // No progress callback: `run` looks at every call's cancellation at each wake-up (50 ms apart
    // at most while one can be cancelled), instead of libcurl calling back at every step of each.
    owner_.set_call(h, f->req, f->state);
    if (curl_multi_add_handle(multi_, h) != CURLM_OK) {
        complete(*f, error{errc::unavailable, "libcurl could not start a transfer"});
        return;
    }
    active_.emplace(h, std::move(f));
}

void event_loop::finish(CURL* h, CURLcode rc) {
    auto it = active_.find(h);
    if (it == active_.end()) return;
    auto f = std::move(it->second);
    active_.erase(it);
    curl_multi_remove_handle(multi_, h);
    auto res = owner_.outcome(h, rc, f->req, f->state);
    // The multi handle owns the connections; a failed transfer's connection was closed by libcurl,
    // so the easy handle itself can be kept either way. At least as many as a delivery worker
    // keeps in flight (256 by default), so that a busy loop does not create one per call.
    if (idle_.size() < 1024) idle_.push_back(std::move(f->handle));
    complete(*f, std::move(res));
}

std::unique_ptr<CURL, easy_deleter> event_loop::handle() {
    if (!idle_.empty()) {
        auto c = std::move(idle_.back());
        idle_.pop_back();
        return c;
    }
    auto c = owner_.create();
    if (c) owner_.set_constants(c.get());
    return c;
}

void event_loop::cancel(CURL* h, char const* why) {
    auto it = active_.find(h);
    auto f = std::move(it->second);
    active_.erase(it);
    curl_multi_remove_handle(multi_, h);  // closes the connection mid-answer: it is never reused
    complete(*f, error{errc::cancelled, why});
}

void event_loop::run() {
    std::vector<std::unique_ptr<flight>> incoming;
    std::vector<CURL*> cancelled;
    for (;;) {
        {
            std::lock_guard lock(mutex_);
            if (stopping_) return;
            incoming.swap(queue_);
        }
        for (auto& f : incoming) add(std::move(f));
        incoming.clear();
        int running = 0;
        curl_multi_perform(multi_, &running);
        int left = 0;
        while (CURLMsg* m = curl_multi_info_read(multi_, &left))
            if (m->msg == CURLMSG_DONE) finish(m->easy_handle, m->data.result);  // read before the handle goes
        // A cancelled call ends at once, not at libcurl's next progress callback.
        bool watching = false;
        for (auto const& [h, f] : active_) {
            if (!f->req.cancel) continue;
            watching = true;
            if (f->req.cancel->cancelled()) cancelled.push_back(h);
        }
        for (auto* h : cancelled) cancel(h, "the call was cancelled while in flight");
        cancelled.clear();
        curl_multi_poll(multi_, nullptr, 0, watching ? 50 : 1000, nullptr);
    }
}

}  // namespace

std::unique_ptr<transport> make_curl_transport(curl_options options) {
    return std::make_unique<curl_transport>(std::move(options));
}

}  // namespace integration::http
