#include <integration/backends/curl/curl_transport.hpp>
#include <integration/ports/transport.hpp>

#include <curl/curl.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace integration::http {

namespace {

struct easy_deleter {
    void operator()(CURL* c) const noexcept { curl_easy_cleanup(c); }
};
struct slist_deleter {
    void operator()(curl_slist* l) const noexcept { curl_slist_free_all(l); }
};

struct transfer {
    response res;
    std::size_t cap;
    bool too_big = false;
    cancellation const* cancel = nullptr;
};

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

class curl_transport final : public transport {
public:
    explicit curl_transport(curl_options o) : o_(std::move(o)) {
        static std::once_flag once;
        std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    }

    result<response> send(request const& r) override {
        if (r.cancel && r.cancel->cancelled()) return error{errc::cancelled, "the call was cancelled before it was sent"};
        for (auto const& [name, value] : r.headers)
            if (auto ok = check_header_field(name, value); !ok) return ok.error();
        // Handles are pooled: each keeps its live connections, DNS and TLS session caches across
        // curl_easy_reset, so consecutive calls to one host reuse a keep-alive connection.
        auto c = acquire();
        if (!c) return error{errc::unavailable, "libcurl could not start a transfer"};
        auto res = perform(c.get(), r);
        // A failed call may have left its connection with an answer half-read (cut at the cap,
        // cancelled, timed out): the handle and its connections go, so nothing reuses them.
        if (res) release(std::move(c));
        return res;
    }

private:
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
        std::unique_ptr<CURL, easy_deleter> c(curl_easy_init());
        // curl_easy_reset keeps a handle's share, so it is attached once.
        if (c && share_.get()) curl_easy_setopt(c.get(), CURLOPT_SHARE, share_.get());
        return c;
    }

    void release(std::unique_ptr<CURL, easy_deleter> c) {
        std::lock_guard lock(pool_mutex_);
        if (pool_.size() < 64) pool_.push_back(std::move(c));
    }

    result<response> perform(CURL* handle, request const& r) {
        transfer t{{}, o_.max_response_bytes, false, r.cancel.get()};
        std::unique_ptr<curl_slist, slist_deleter> list;
        for (auto const& [k, v] : r.headers) {
            auto line = k + ": " + v;
            list.reset(curl_slist_append(list.release(), line.c_str()));
        }
        // "::ADDRESS:PORT" connects any host and port of this call to the checked address, so
        // curl never resolves the URL's name, whatever its spelling; Host, SNI and the
        // certificate check keep that name.
        std::unique_ptr<curl_slist, slist_deleter> connect_to;
        if (r.pin) {
            auto const& a = r.pin->address;
            auto entry =
                "::" + (a.find(':') != std::string::npos ? "[" + a + "]" : a) + ":" + std::to_string(r.pin->port);
            connect_to.reset(curl_slist_append(nullptr, entry.c_str()));
        }
        auto* h = handle;
        if (connect_to) curl_easy_setopt(h, CURLOPT_CONNECT_TO, connect_to.get());
        curl_easy_setopt(h, CURLOPT_URL, r.url.c_str());
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r.method.c_str());
        if (r.method == "HEAD") curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
        if (!r.body.empty() || r.method == "POST" || r.method == "PUT" || r.method == "PATCH") {
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, r.body.data());
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
        }
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, list.get());
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(r.timeout.count()));
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(o_.connect_timeout.count()));
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, o_.verify_tls ? 1L : 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, o_.verify_tls ? 2L : 0L);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, &t);
        if (!o_.ca_file.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, o_.ca_file.c_str());
        // An empty proxy disables the http_proxy/https_proxy/all_proxy environment variables, so
        // whether calls go through a proxy is decided here, not by the process environment.
        curl_easy_setopt(h, CURLOPT_PROXY, o_.proxy.c_str());
        if (!o_.proxy.empty() && !o_.no_proxy.empty()) curl_easy_setopt(h, CURLOPT_NOPROXY, o_.no_proxy.c_str());
        if (r.cancel) {
            curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
            curl_easy_setopt(h, CURLOPT_XFERINFODATA, &t);
            curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
        }
        char detail[CURL_ERROR_SIZE] = {};
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, detail);
        auto rc = curl_easy_perform(h);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, nullptr);  // the buffer dies with this frame
        if (t.too_big)
            return error{errc::invalid_argument, "the response body exceeded " + std::to_string(o_.max_response_bytes) + " bytes"};
        if (rc == CURLE_ABORTED_BY_CALLBACK && r.cancel && r.cancel->cancelled())
            return error{errc::cancelled, "the call was cancelled while in flight"};
        if (rc == CURLE_OPERATION_TIMEDOUT) return error{errc::timeout, "no complete answer within the deadline"};
        std::string why = detail[0] != '\0' ? detail : curl_easy_strerror(rc);
        if (auto tls = tls_failure(rc, why)) return error{errc::unavailable, std::move(*tls)};
        if (rc != CURLE_OK) return error{errc::unavailable, "transport failure: " + why};
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        t.res.status = static_cast<int>(status);
        return std::move(t.res);
    }

    curl_options o_;
    tls_session_share share_;  // before the pool: outlives every handle attached to it
    std::mutex pool_mutex_;
    std::vector<std::unique_ptr<CURL, easy_deleter>> pool_;
};

}  // namespace

std::unique_ptr<transport> make_curl_transport(curl_options options) {
    return std::make_unique<curl_transport>(std::move(options));
}

}  // namespace integration::http
