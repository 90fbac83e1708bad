#include "server.hpp"

#include "access_log.hpp"
#include "problem.hpp"

#include <pthread.h>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>

#include <algorithm>
#include <cctype>
#include <deque>
#include <optional>
#include <thread>

namespace integration::host {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;

namespace {

void fail(beast::error_code ec, char const* what) {
    if (ec == asio::error::operation_aborted || ec == beast::error::timeout || ec == asio::error::eof ||
        ec == asio::error::connection_reset || ec == asio::error::broken_pipe || ec == beast_http::error::end_of_stream)
        return;  // ordinary ends of a connection
    log_event("warning", std::string(what) + ": " + ec.message());
}

// The answer as one buffer: every answer has a Content-Length (prepare_payload), and one
// contiguous write costs far less CPU than walking Beast's serializer buffer sequences. The
// answer to HEAD has the Content-Length of its body but not the body, which the client does
// not read: sent, it would be taken for the start of the next answer.
std::string wire_format(http_response const& res, bool head = false) {
    auto reason = res.reason();
    std::string out;
    out.reserve(256 + res.body().size());
    out += res.version() == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
    out += std::to_string(res.result_int());
    out += ' ';
    out.append(reason.data(), reason.size());
    out += "\r\n";
    for (auto const& f : res) {
        out.append(f.name_string().data(), f.name_string().size());
        out += ": ";
        out.append(f.value().data(), f.value().size());
        out += "\r\n";
    }
    out += "\r\n";
    if (!head) out += res.body();
    return out;
}

// After an answer given before its request was read to the end (413, 431, 400), what the client
// still sends is read and dropped for at most this long and this much before the socket closes.
// A body cut off by the bound still races the reset against the client reading its answer (Node's
// fetch lost that race about 1 run in 40 with 40 MB against 16 MiB), so the bound is well above
// the uploads a client plausibly retries with; draining loopback-fast costs a read per 64 KiB.
constexpr auto linger_time = std::chrono::seconds(5);
constexpr std::size_t linger_bytes = 64 * 1024 * 1024;

// Whom the per-client connection limit counts together: an IPv4 address, or an IPv6 /64 (one
// subscriber's usual share, so a client cannot step around the limit address by address).
asio::ip::address client_of(asio::ip::address const& a) {
    if (!a.is_v6()) return a;
    auto v6 = a.to_v6();
    if (v6.is_v4_mapped()) return asio::ip::make_address_v4(asio::ip::v4_mapped, v6);
    auto bytes = v6.to_bytes();
    std::fill(bytes.begin() + 8, bytes.end(), 0);
    return asio::ip::address_v6(bytes);
}

// Out of descriptors, buffers or memory: accepting again at once fails again at once.
// A Host value as RFC 9110 7.2 defines it: uri-host [":" port], where uri-host is a reg-name
// (unreserved, pct-encoded, sub-delims), a dotted IPv4 address (a reg-name's characters) or a
// bracketed IP literal. Empty is allowed: a target without an authority has one.
bool valid_host(std::string_view v) {
    auto port_ok = [](std::string_view p) {
        return p.size() <= 5 && std::all_of(p.begin(), p.end(), [](char c) { return c >= '0' && c <= '9'; });
    };
    if (!v.empty() && v.front() == '[') {
        auto close = v.find(']');
        if (close == std::string_view::npos || close < 3) return false;
        auto literal = v.substr(1, close - 1);
        if (!std::all_of(literal.begin(), literal.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.'; }))
            return false;
        auto rest = v.substr(close + 1);
        return rest.empty() || (rest.front() == ':' && port_ok(rest.substr(1)));
    }
    auto colon = v.rfind(':');
    auto name = v.substr(0, colon);
    if (colon != std::string_view::npos && !port_ok(v.substr(colon + 1))) return false;
    static constexpr std::string_view extra = "-._~%!$&'()*+,;=";
    return std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || extra.find(c) != std::string_view::npos;
    });
}

bool out_of_resources(beast::error_code ec) {
    namespace errc = boost::system::errc;
    return ec == errc::too_many_files_open || ec == errc::too_many_files_open_in_system ||
           ec == errc::no_buffer_space || ec == errc::not_enough_memory;
}

}  // namespace

class session : public std::enable_shared_from_this<session> {
public:
    // The read buffer holds bytes the parser has not taken yet: a header, or a chunk's size line,
    // extensions and trailer fields, which no body or header limit counts. Bounded, a request that
    // never ends such a line is refused instead of growing the buffer until the read timeout.
    session(tcp::socket&& socket, server_state& state, std::uint64_t id, std::atomic<std::int64_t>& request_since)
        : stream_(std::move(socket)), buffer_(state.config.header_limit + 64 * 1024), state_(state), id_(id),
          request_since_(request_since) {}

    ~session() {
        std::lock_guard lock(state_.mutex);
        auto it = state_.sessions.find(id_);
        if (it->second.evicted) --state_.evicted;
        if (auto c = state_.per_client.find(it->second.client); --c->second == 0) state_.per_client.erase(c);
        state_.sessions.erase(it);
    }

    void run() {
        asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read(true); });
    }

    /** To make room at the connection limit for a connection stalled in a request's header
     *  since `since` (as it published): close now if it still is, else after answering, as `stop`. */
    void shed(std::int64_t since) {
        asio::dispatch(stream_.get_executor(), [self = shared_from_this(), since] {
            if (self->request_since_.load(std::memory_order_relaxed) != since) return self->stop();
            self->closing_ = true;
            self->close();
        });
    }

    /** On shutdown: close now when idle (waiting for a next request), else after answering the
     *  request being read or handled: a request the host has begun to take is answered. */
    void stop() {
        asio::dispatch(stream_.get_executor(), [self = shared_from_this()] {
            self->closing_ = true;
            if (!self->busy_ && self->queue_.empty() && (!self->reading_ || self->idle_)) self->close();
        });
    }

private:
    // One request read ahead, or an answer decided by the session itself (a protocol error).
    struct item {
        std::optional<http_request> req;
        router::match route;  // of `req`
        std::optional<http_response> ready;
        std::chrono::steady_clock::time_point started;
        bool head = false;  // answers a HEAD: its body is not sent
    };

    void read(bool first) {
        if (closing_ || reading_) return;
        // Requests are taken one at a time: the next (even one already buffered, pipelined) is
        // read once the answers before it are written. A read meanwhile would carry a deadline
        // (the idle timeout, or the header's) that closes the socket under an answer slower than
        // it, and a 100-continue it could not send. `on_write` reads again.
        if (!first && (busy_ || !queue_.empty())) return;
        // RFC 9112 2.2: empty lines before a request line are ignored (a client may end a body
        // with one).
        std::size_t blank = 0;
        for (auto const* c = static_cast<char const*>(buffer_.data().data()); blank < buffer_.size() && (c[blank] == '\r' || c[blank] == '\n');)
            ++blank;
        buffer_.consume(blank);
        reading_ = true;
        // Two deadlines per request, set once and never extended: its header within
        // --header-timeout-ms, header and body within --read-timeout-ms. They count on a new
        // connection from when its first byte is awaited, on a kept-alive one from when it
        // arrives (waiting for it is the idle timeout, and the listener may close it meanwhile).
        if (buffer_.size() == 0) {
            if (first) {
                begin_request();
            } else {
                stream_.expires_after(state_.config.idle_timeout);
                set_idle(true);
            }
            idle_ = true;
            stream_.async_read_some(buffer_.prepare(4096), [self = shared_from_this(), first](beast::error_code ec, std::size_t n) {
                self->idle_ = false;
                if (!first) self->set_idle(false);
                // Closed while idle: bytes that raced the close are never executed, so a client
                // that sees the connection end without an answer knows its request did not run.
                if (self->closed_) return;
                self->buffer_.commit(n);
                if (ec) return self->read_failed(ec);
                if (!first) self->begin_request();
                self->read_header();
            });
        } else {
            begin_request();  // its first bytes are here already
            read_header();
        }
    }

    void begin_request() {
        request_start_ = std::chrono::steady_clock::now();
        // Published only while nothing else of this connection is being answered: a pipelined
        // request's header is never a reason to close the connection.
        if (!busy_ && queue_.empty())
            request_since_.store(request_start_.time_since_epoch().count(), std::memory_order_relaxed);
        stream_.expires_at(request_start_ + std::min(state_.config.header_timeout, state_.config.read_timeout));
    }

    // Tells the listener whether this connection waits on keep-alive, so that near the
    // connection limit it can close the one idle the longest.
    void set_idle(bool idle) {
        std::lock_guard lock(state_.mutex);
        auto& c = state_.sessions.at(id_);
        c.idle_since = idle ? std::optional(std::chrono::steady_clock::now()) : std::nullopt;
    }

    void read_header() {
        started_ = std::chrono::steady_clock::now();
        parser_.emplace();
        route_ = {};
        parser_->header_limit(static_cast<std::uint32_t>(state_.config.header_limit));
        // The largest body any route takes; the route's own limit is applied once the header names it.
        parser_->body_limit(largest_body_limit());
        // A request usually arrives whole in one read: parse what is buffered at once and go back
        // to the io_context only for bytes still to come.
        if (buffer_.size() > 0) {
            beast::error_code ec;
            buffer_.consume(parser_->put(buffer_.data(), ec));
            if (parser_->is_header_done() || (ec && ec != beast_http::error::need_more)) return on_header(ec);
        }
        beast_http::async_read_header(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
            self->on_header(ec);
        });
    }

    void on_header(beast::error_code ec) {
        // A small body still to come, read before any key is checked, keeps the request's start
        // published: trickled, it stalls a slot as a trickled header does. (A larger one is read
        // only for a known key, and a refusal answered now is not a stall.)
        // (Beast knows a length only of a header it parsed whole.)
        auto const length = ec ? boost::optional<std::uint64_t>() : parser_->content_length();
        bool const key_first = !length || *length > state_.config.json_body_limit;  // see below
        if (ec || parser_->is_done() || key_first) request_since_.store(0, std::memory_order_relaxed);
        if (closed_) return;
        if (ec) return parse_failed(ec);
        auto const& h = parser_->get();
        route_ = state_.app.route(std::string_view(h.method_string().data(), h.method_string().size()),
                                  std::string_view(h.target().data(), h.target().size()));
        // A message framed two ways is how requests are smuggled past proxies: refuse it.
        if (h.count(beast_http::field::content_length) && h.count(beast_http::field::transfer_encoding))
            return answer_and_close(problem(400, "bad-request", "Ambiguous message framing",
                                            "send either Content-Length or Transfer-Encoding, not both"));
        // RFC 9112 3.2: an HTTP/1.1 request without Host, any request with two, or one whose
        // value is not a host[:port] is answered 400; a proxy in front may route on it.
        if (auto host = h.equal_range(beast_http::field::host);
            (host.first == host.second && h.version() == 11) ||
            (host.first != host.second && (std::next(host.first) != host.second || !valid_host(host.first->value()))))
            return answer_and_close(problem(400, "bad-request", "Missing or invalid Host",
                                            "send one Host header naming the host (and port) the request is for"));
        // The only transfer coding read is one `chunked` (RFC 9112 6.1, 6.3): any other list,
        // spelling or HTTP/1.0 would be framed another way by a server in front of this one.
        if (auto te = h.equal_range(beast_http::field::transfer_encoding); te.first != te.second) {
            if (std::next(te.first) != te.second || te.first->value() != "chunked" || h.version() != 11)
                return answer_and_close(problem(400, "bad-request", "Unsupported Transfer-Encoding",
                                                "Transfer-Encoding must be exactly `chunked`, once, on HTTP/1.1; "
                                                "or send the body with Content-Length"));
        }
        // Trailer fields would land among the header's (Beast keeps one list): counted now, so that
        // a field that arrives after the body (an Authorization) is refused, never acted on.
        header_fields_ = h.chunked() ? static_cast<std::size_t>(std::distance(h.begin(), h.end())) : 0;
        stream_.expires_at(request_start_ + state_.config.read_timeout);  // the header is in time
        // The header limit is global (it is read before routing); the body limit is the route's.
        if (!parser_->is_done()) {
            auto limit = route_body_limit();
            if (length && *length > limit) return parse_failed(beast_http::error::body_limit);
            parser_->body_limit(limit);
            // A large body is read only for a client whose key is known: without one, or with
            // one the store does not know, the answer is 401 before the body and the connection
            // closes. A key not cached is looked up on a worker first (it may read the store).
            if (key_first) {
                auto auth = h[beast_http::field::authorization];
                std::string authorization(auth.data(), auth.size());
                auto verdict = state_.app.check_before_body(route_, authorization, false);
                if (verdict.refusal) return answer_and_close(std::move(*verdict.refusal));
                if (verdict.undecided)
                    // The work guard keeps this connection's io_context running until the lookup
                    // is back, so that a shutdown meanwhile still answers it.
                    return asio::post(state_.workers, [self = shared_from_this(), route = route_, authorization = std::move(authorization),
                                                       work = asio::make_work_guard(stream_.get_executor())] {
                        auto looked_up = self->state_.app.check_before_body(route, authorization, true);
                        asio::dispatch(self->stream_.get_executor(), [self, looked_up = std::move(looked_up)]() mutable {
                            if (self->closed_) return;
                            if (looked_up.refusal) return self->answer_and_close(std::move(*looked_up.refusal));
                            self->start_body();
                        });
                    });
            }
        }
        start_body();
    }

    // The body of a request whose header passed every check: what is buffered, then the rest.
    void start_body() {
        auto const& h = parser_->get();
        if (!parser_->is_done() && buffer_.size() > 0) {
            parser_->eager(true);
            beast::error_code body_ec;
            buffer_.consume(parser_->put(buffer_.data(), body_ec));
            if (body_ec && body_ec != beast_http::error::need_more) return on_body(body_ec);
        }
        if (parser_->is_done()) return on_body({});
        // A client that sent `Expect: 100-continue` holds the body back until this interim answer
        // (curl waits a second for it). A body the route refuses was answered 413 above instead.
        // Sent only when nothing else is being written: it must not overtake earlier answers.
        // Never to an HTTP/1.0 client, which has no interim answers (RFC 9110 10.1.1).
        if (buffer_.size() == 0 && !busy_ && queue_.empty() && h.version() == 11 &&
            beast::iequals(h[beast_http::field::expect], "100-continue")) {
            static constexpr std::string_view interim = "HTTP/1.1 100 Continue\r\n\r\n";
            return asio::async_write(stream_, asio::buffer(interim.data(), interim.size()),
                                     [self = shared_from_this()](beast::error_code ec, std::size_t) {
                                         if (self->closed_) return;
                                         if (ec) return self->read_failed(ec);
                                         self->read_body();
                                     });
        }
        read_body();
    }

    void read_body() {
        beast_http::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
            self->on_body(ec);
        });
    }

    void on_body(beast::error_code ec) {
        request_since_.store(0, std::memory_order_relaxed);
        if (closed_) return;
        if (ec) return parse_failed(ec);
        if (auto const& h = parser_->get();
            h.chunked() && static_cast<std::size_t>(std::distance(h.begin(), h.end())) != header_fields_)
            return answer_and_close(problem(400, "bad-request", "Trailer fields are not accepted",
                                            "send every field in the header section, before the body"));
        reading_ = false;
        auto req = parser_->release();
        bool keep_alive = req.keep_alive();
        bool head = req.method() == beast_http::verb::head;
        queue_.push_back({std::move(req), std::move(route_), std::nullopt, started_, head});
        if (!keep_alive) closing_ = true;  // no more requests will be read
        next();
        read(false);
    }

    void read_failed(beast::error_code ec) {
        reading_ = false;
        fail(ec, "read");
        // A timed-out or closed reader ends the connection once queued answers are written.
        closing_ = true;
        if (!busy_ && queue_.empty()) close();
    }

    void parse_failed(beast::error_code ec) {
        reading_ = false;
        if (ec == beast_http::error::body_limit)
            return answer_and_close(problem(413, "payload-too-large", "Request body too large",
                                            "the body limit of this route is " + std::to_string(route_body_limit()) + " bytes"));
        if (ec == beast_http::error::header_limit)
            return answer_and_close(problem(431, "header-too-large", "Request header fields too large",
                                            "the header limit is " + std::to_string(state_.config.header_limit) + " bytes"));
        if (ec == beast_http::error::buffer_overflow)
            return answer_and_close(problem(400, "bad-request", "Malformed HTTP request",
                                            "a chunk-size line, its extensions or a trailer field is longer than " +
                                                std::to_string(buffer_.max_size()) + " bytes"));
        if (ec == beast::error::timeout || ec == beast_http::error::end_of_stream || ec == asio::error::eof ||
            ec == asio::error::connection_reset || ec == asio::error::operation_aborted)
            return read_failed(ec);
        answer_and_close(problem(400, "bad-request", "Malformed HTTP request", ec.message()));
    }

    // The body limit of the route the request line names (the largest when it names none yet):
    // a Content-Length over the largest is refused while the header is still being read.
    std::size_t route_body_limit() const {
        if (!parser_ || parser_->get().target().empty()) return largest_body_limit();
        if (parser_->is_header_done()) return state_.app.body_limit(route_);
        auto const& h = parser_->get();
        return state_.app.body_limit(state_.app.route(std::string_view(h.method_string().data(), h.method_string().size()),
                                                      std::string_view(h.target().data(), h.target().size())));
    }

    std::size_t largest_body_limit() const { return std::max(state_.config.body_limit, state_.config.inbound_body_limit); }

    void answer_and_close(reply r) {
        request_since_.store(0, std::memory_order_relaxed);  // being answered: not a stall to shed
        reading_ = false;
        closing_ = true;
        linger_ = true;  // the rest of the request may still be on its way
        std::string target;
        std::string method = "-";
        // The request line is parsed before any field, so it is known even when a field (a
        // Content-Length over the body limit) stopped the header.
        if (parser_ && !parser_->get().target().empty()) {
            target = std::string(parser_->get().target());
            method = std::string(parser_->get().method_string());
        }
        // A trace id for the log line and the answer, so a client can quote the refusal too.
        auto trace = parser_ && parser_->is_header_done() ? trace_of(parser_->get()) : trace_context::generate();
        r.headers.emplace_back("traceparent", trace.traceparent());
        auto latency = std::chrono::steady_clock::now() - started_;
        log_access({.method = method, .target = target, .status = r.status, .latency = latency, .trace_id = trace.trace_id, .tenant = ""});
        state_.app.observe(method, target, r.status, latency);
        queue_.push_back({std::nullopt, {}, to_response(r, 11, false), started_, method == "HEAD"});
        next();
    }

    // Handles the oldest queued request on a worker, then writes its answer on this connection's
    // io_context.
    void next() {
        if (busy_ || queue_.empty()) return;
        busy_ = true;
        auto& front = queue_.front();
        if (front.ready) return write(std::move(*front.ready));
        auto guard = asio::make_work_guard(stream_.get_executor());
        // A deque keeps references valid while the session appends; the front is popped only
        // after its answer is written.
        http_request const* req = &*front.req;
        auto started = front.started;
        if (application::answers_inline(*req))
            return state_.app.handle(*req, std::move(front.route), started, stream_.get_executor(),
                                     [self = shared_from_this()](http_response res) { self->write(std::move(res)); });
        // The answer may come from another thread once the thread that handled the request is
        // free again (a run answers after the commit that records it).
        auto work = std::make_shared<decltype(guard)>(std::move(guard));
        auto answer = [self = shared_from_this(), work](http_response res) mutable {
            // Inline when the answer was rendered on this connection's thread already.
            asio::dispatch(self->stream_.get_executor(),
                           [self, res = std::move(res)]() mutable { self->write(std::move(res)); });
            work->reset();
        };
        auto& pool = front.route.h && front.route.options.calls_vendors ? state_.executions : state_.workers;
        // A run or an inbound webhook starts on this thread: a hop to a pool thread and back
        // costs more than checking it and starting it. What could block moves there (`call::offload`).
        if (front.route.h && front.route.options.starts_on_io_thread)
            return state_.app.handle(*req, std::move(front.route), started, stream_.get_executor(), std::move(answer),
                                     [&pool](std::function<void()> job) { asio::post(pool, std::move(job)); });
        asio::post(pool, [self = shared_from_this(), req, route = std::move(front.route), started,
                          answer = std::move(answer)]() mutable {
            self->state_.app.handle(*req, std::move(route), started, self->stream_.get_executor(), std::move(answer));
        });
    }

    void write(http_response res) {
        // Each answer keeps the keep-alive of its own request; a pipelined `Connection: close`
        // further back only stops reading. Shutting down closes after this answer.
        // Nor does a connection told to close (made room for another, or its reader ended): its
        // last answer says so, rather than the client finding out on its next request.
        if (state_.stopping || (closing_ && queue_.size() == 1 && !reading_)) res.keep_alive(false);
        bool keep_alive = res.keep_alive();
        auto wire = std::make_shared<std::string>(wire_format(res, queue_.front().head));
        stream_.expires_after(state_.config.read_timeout);
        asio::async_write(stream_, asio::buffer(*wire), [self = shared_from_this(), wire, keep_alive](beast::error_code ec, std::size_t) {
            self->on_write(ec, keep_alive);
        });
    }

    void on_write(beast::error_code ec, bool keep_alive) {
        busy_ = false;
        queue_.pop_front();
        if (ec) {
            fail(ec, "write");
            return close();
        }
        if (!keep_alive) return linger_ ? linger() : close();
        next();
        if (!busy_ && queue_.empty() && (closing_ || state_.stopping)) return close();
        read(false);
    }

    void close() {
        closing_ = true;
        closed_ = true;
        request_since_.store(0, std::memory_order_relaxed);
        beast::error_code ec;
        stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
        stream_.close();
    }

    // nginx's lingering close: closing a socket with unread data resets the connection, and a
    // client still sending its body (Node's fetch) sees the reset instead of the answer it was
    // sent. So end the answer with a FIN, read and drop what still comes until the client closes
    // or the bounds pass, then close.
    void linger() {
        closing_ = true;
        beast::error_code ec;
        stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
        buffer_.clear();
        stream_.expires_after(linger_time);
        drain(linger_bytes);
    }

    void drain(std::size_t left) {
        stream_.async_read_some(buffer_.prepare(std::min<std::size_t>(left, 64 * 1024)),
                                [self = shared_from_this(), left](beast::error_code ec, std::size_t n) {
                                    if (self->closed_) return;
                                    if (ec || n >= left) return self->close();
                                    self->drain(left - n);
                                });
    }

    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
    server_state& state_;
    std::uint64_t id_;
    std::atomic<std::int64_t>& request_since_;  // its entry's in state_.sessions, which outlives it
    std::optional<beast_http::request_parser<beast_http::string_body>> parser_;
    std::size_t header_fields_ = 0;  // fields of a chunked request's header section
    router::match route_;  // of the request being read, once its header is parsed
    std::deque<item> queue_;
    std::chrono::steady_clock::time_point started_;
    std::chrono::steady_clock::time_point request_start_;  // what its read deadlines count from
    bool reading_ = false;
    bool idle_ = false;  // reading, with no byte of the next request yet
    bool busy_ = false;
    bool closing_ = false;
    bool closed_ = false;
    bool linger_ = false;  // answered before the request was read to its end
};

namespace {
std::vector<std::unique_ptr<asio::io_context>> make_contexts(std::size_t n) {
    std::vector<std::unique_ptr<asio::io_context>> out;
    for (std::size_t i = 0; i < std::max<std::size_t>(n, 1); ++i) out.push_back(std::make_unique<asio::io_context>(1));
    return out;
}
}  // namespace

server::server(serve_config const& config, application& app, asio::thread_pool& workers, asio::thread_pool& executions)
    : state_{config, app, workers, executions},
      contexts_(make_contexts(config.io_threads)),
      acceptor_(*contexts_.front()),
      accept_pause_(*contexts_.front()) {
    for (auto& c : contexts_) guards_.push_back(asio::make_work_guard(*c));
}

void server::run() {
    std::vector<std::thread> threads;
    // The first I/O thread is the process's main thread, whose name is the process's.
    for (std::size_t i = 1; i < contexts_.size(); ++i)
        threads.emplace_back([c = contexts_[i].get()] {
            (void)pthread_setname_np(pthread_self(), "host-io");
            c->run();
        });
    contexts_.front()->run();
    for (auto& t : threads) t.join();
}

result<listener> listen_on(std::string const& listen) {
    auto colon = listen.rfind(':');
    if (colon == std::string::npos) return error{errc::invalid_argument, "--listen must be HOST:PORT, got '" + listen + "'"};
    auto host = listen.substr(0, colon);
    if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
    beast::error_code ec;
    auto address = asio::ip::make_address(host, ec);
    if (ec) return error{errc::invalid_argument, "--listen host must be an IP address, got '" + host + "'"};
    unsigned long port = 0;
    try {
        port = std::stoul(listen.substr(colon + 1));
    } catch (...) {
        port = 70000;
    }
    if (port > 65535) return error{errc::invalid_argument, "--listen port must be 0-65535"};
    tcp::endpoint endpoint{address, static_cast<unsigned short>(port)};
    asio::io_context ioc;
    tcp::acceptor acceptor(ioc);
    acceptor.open(endpoint.protocol(), ec);
    if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor.bind(endpoint, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return error{errc::unavailable, "cannot listen on " + listen + ": " + ec.message()};
    auto bound = acceptor.local_endpoint(ec);
    if (ec) return error{errc::unavailable, "cannot listen on " + listen + ": " + ec.message()};
    return listener{acceptor.release(), bound};
}

std::string listener::address() const {
    auto a = endpoint.address().to_string();
    if (endpoint.address().is_v6()) a = "[" + a + "]";
    return a + ":" + std::to_string(endpoint.port());
}

void server::start(listener l) {
    acceptor_.assign(l.endpoint.protocol(), l.fd);
    accept();
}

void server::accept() {
    // Connections are spread over the io_contexts in turn.
    auto& context = *contexts_[next_context_++ % contexts_.size()];
    acceptor_.async_accept(context, [this](beast::error_code ec, tcp::socket socket) {
        if (ec) {
            if (!acceptor_.is_open() || state_.stopping) return;
            if (out_of_resources(ec)) return pause_accepting(ec);
            if (ec != asio::error::operation_aborted) fail(ec, "accept");
            return accept();
        }
        if (failed_accepts_ > 0) {
            log_event("info", "accepting again after " + std::to_string(failed_accepts_) + " failed accepts");
            failed_accepts_ = 0;
            accept_delay_ = {};
        }
        admit(std::move(socket));
        if (!state_.stopping) accept();
    });
}

// The connection waits in the listen queue meanwhile, and the open ones are served as usual.
// Retrying at once would spin on a queue that stays readable, and log each failure.
void server::pause_accepting(beast::error_code ec) {
    using namespace std::chrono_literals;
    auto now = std::chrono::steady_clock::now();
    if (++failed_accepts_ == 1 || now - failure_logged_ >= 10s) {
        log_event("warning", "accept: " + ec.message() + "; pausing accepts (" + std::to_string(failed_accepts_) +
                                 " failed so far; logged at most every 10 s)");
        failure_logged_ = now;
    }
    accept_delay_ = std::clamp(accept_delay_ * 2, std::chrono::milliseconds(10), std::chrono::milliseconds(1000));
    accept_pause_.expires_after(accept_delay_);
    accept_pause_.async_wait([this](beast::error_code e) {
        if (!e && acceptor_.is_open() && !state_.stopping) accept();
    });
}

// At the connection limit a connection that has waited this long for its request's header or
// body (a silent client, or one sending its request byte by byte) gives its slot to a new one. A
// client sends its request as it connects; clients that send nothing, or a small body a byte at
// a time (read before any key is checked), must not hold every slot until --header-timeout-ms or
// --read-timeout-ms, whatever number of addresses they come from.
constexpr auto stalled_request_after = std::chrono::seconds(1);

// Admits a connection, or answers why not and closes it: past --max-connections-per-address from
// its client, or past --max-connections when no idle or stalled connection can make room. From
// 15/16 of --max-connections on, each new connection closes the connection idle on keep-alive the
// longest, and at the limit, when none is idle, the one stalled in its header the longest, so
// idle clients cannot hold every slot until their idle timeout, nor silent ones until their
// header deadline. (A stalled pick may be a client whose header this host was slow to read; it
// is closed without an answer, so it knows its request did not run.)
void server::admit(tcp::socket socket) {
    auto const& c = state_.config;
    beast::error_code ec;
    auto client = client_of(socket.remote_endpoint(ec).address());
    if (ec) return;  // already gone
    std::shared_ptr<session> s, evict;
    std::int64_t stalled_since = 0;  // of `evict`, when it is stalled in a header rather than idle
    std::optional<reply> refusal;
    {
        std::lock_guard lock(state_.mutex);
        auto open = [&] { return state_.sessions.size() - state_.evicted; };
        if (auto it = state_.per_client.find(client);
            it != state_.per_client.end() && it->second >= c.max_connections_per_address) {
            refusal = problem(429, "too-many-connections-per-address", "Too many connections from this address",
                              "the host serves at most " + std::to_string(c.max_connections_per_address) +
                                  " connections per client address; reuse a kept-alive connection or retry shortly");
        } else {
            if (open() >= c.max_connections - c.max_connections / 16) {
                server_state::connection* oldest = nullptr;
                for (auto& [id, conn] : state_.sessions)
                    if (conn.idle_since && !conn.evicted && (!oldest || *conn.idle_since < *oldest->idle_since))
                        oldest = &conn;
                if (!oldest && open() >= c.max_connections) {
                    auto stalled = (std::chrono::steady_clock::now() - stalled_request_after).time_since_epoch().count();
                    for (auto& [id, conn] : state_.sessions) {
                        auto t = conn.request_since.load(std::memory_order_relaxed);
                        if (t != 0 && t <= stalled && !conn.evicted && (!oldest || t < stalled_since)) {
                            oldest = &conn;
                            stalled_since = t;
                        }
                    }
                }
                if (oldest && (evict = oldest->s.lock())) {
                    oldest->evicted = true;
                    ++state_.evicted;
                }
            }
            if (open() >= c.max_connections) {
                refusal = problem(
                    503, "too-many-connections", "Too many connections",
                    "the host serves at most " + std::to_string(c.max_connections) + " connections; retry shortly");
            } else {
                auto id = state_.next_id++;
                auto& conn = state_.sessions[id];
                try {
                    s = std::make_shared<session>(std::move(socket), state_, id, conn.request_since);
                } catch (...) {
                    state_.sessions.erase(id);
                    throw;
                }
                conn.s = s;
                conn.client = client;
                ++state_.per_client[client];
            }
        }
    }
    if (evict) stalled_since ? evict->shed(stalled_since) : evict->stop();
    if (s) return s->run();
    auto answer = to_response(*refusal, 11, false);
    answer.set("Retry-After", "1");
    state_.app.refused_connection(refusal->status == 429
                                      ? "--max-connections-per-address (" +
                                            std::to_string(c.max_connections_per_address) + ") are open from one client"
                                      : "--max-connections (" + std::to_string(c.max_connections) + ") are open");
    asio::write(socket, asio::buffer(wire_format(answer)), ec);
    socket.close(ec);
}

void server::stop() {
    state_.stopping = true;
    asio::dispatch(acceptor_.get_executor(), [this] {
        beast::error_code ec;
        acceptor_.close(ec);
        accept_pause_.cancel();
    });
    std::vector<std::shared_ptr<session>> live;
    {
        std::lock_guard lock(state_.mutex);
        for (auto& [id, c] : state_.sessions)
            if (auto s = c.s.lock()) live.push_back(std::move(s));
    }
    for (auto& s : live) s->stop();
    // An io_context returns from run() once its last connection closed.
    asio::post(control(), [this] { guards_.clear(); });
}

}  // namespace integration::host
