#ifndef INTEGRATION_HOST_SERVER_HPP
#define INTEGRATION_HOST_SERVER_HPP

// HTTP/1.1 over Beast: a listener, a session per connection, timeouts from tcp_stream, parser
// limits, a bounded pipelining queue.
//
// Threads: each of the `io_threads` runs its own io_context (sockets only), and a connection lives
// on one of them, so its handlers never run at once and need no strand, and no two I/O threads
// contend for one queue. Every request that calls the library is handled on a separate pool
// because those calls block; the answer is posted back to the connection's io_context. Requests
// whose handlers call vendors (runs, health probes) go to the `executions` pool, every other one
// to the `workers` pool, so that slow vendors never delay the routes that only use the stores. A
// connection handles its requests in order, so at most one thread per connection is busy.

#include "application.hpp"
#include "config.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

namespace integration::host {

class session;

/** What sessions share: limits, the application, the thread pools, the live-connection registry. */
struct server_state {
    /** A live connection, as the listener sees it when it decides whom to admit or close. */
    struct connection {
        std::weak_ptr<session> s;
        boost::asio::ip::address client;  // the client's address (an IPv6 client's /64)
        /** Set while it waits on keep-alive for its next request. */
        std::optional<std::chrono::steady_clock::time_point> idle_since;
        /** While the host waits for a request's header or body: since when, in steady-clock ticks
         *  (the session's own store, so no lock per request); 0 otherwise. */
        std::atomic<std::int64_t> request_since{0};
        bool evicted = false;  // told to close to make room; no longer counted as open
    };

    serve_config const& config;
    application& app;
    boost::asio::thread_pool& workers;
    boost::asio::thread_pool& executions;
    std::atomic<bool> stopping{false};
    std::mutex mutex;  // guards what follows
    std::uint64_t next_id = 0;
    std::map<std::uint64_t, connection> sessions;
    std::map<boost::asio::ip::address, std::size_t> per_client;
    std::size_t evicted = 0;
};

/** A bound, listening socket. The host binds before it opens its services, so that the egress
 *  policy knows the port to deny (`egress_policy::own_endpoints`) even when it was 0. */
struct listener {
    int fd = -1;
    boost::asio::ip::tcp::endpoint endpoint;
    /** `address:port` (IPv6 in brackets), as URLs and `--listen` spell it. */
    std::string address() const;
};
/** Binds `listen` (`HOST:PORT`, port 0 picks one) and listens. */
result<listener> listen_on(std::string const& listen);

class server {
public:
    server(serve_config const& config, application& app, boost::asio::thread_pool& workers,
           boost::asio::thread_pool& executions);

    /** Starts accepting on `l`, which the server then owns. */
    void start(listener l);
    /** Runs the I/O threads, the calling one included, until `stop()` and every connection closed. */
    void run();
    /** Stops accepting; idle connections close, busy ones close after their current answer. */
    void stop();
    /** The io_context of the listener, for the signal handler. */
    boost::asio::io_context& control() { return *contexts_.front(); }

private:
    using guard = boost::asio::executor_work_guard<boost::asio::io_context::executor_type>;
    void accept();
    void admit(boost::asio::ip::tcp::socket socket);
    void pause_accepting(boost::system::error_code ec);

    // First, so that it goes last: a handler still queued on a context when the server ends
    // holds a connection, whose end updates the state.
    server_state state_;
    std::vector<std::unique_ptr<boost::asio::io_context>> contexts_;
    std::vector<guard> guards_;  // keep idle contexts running until stop()
    std::size_t next_context_ = 0;
    boost::asio::ip::tcp::acceptor acceptor_;
    // Accepting paused while descriptors or memory ran out (on the listener's context only).
    boost::asio::steady_timer accept_pause_;
    std::chrono::milliseconds accept_delay_{0};
    std::size_t failed_accepts_ = 0;
    std::chrono::steady_clock::time_point failure_logged_;
};

}  // namespace integration::host

#endif
