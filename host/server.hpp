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
#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

namespace integration::host {

class session;

/** What sessions share: limits, the application, the thread pools, the live-session registry. */
struct server_state {
    serve_config const& config;
    application& app;
    boost::asio::thread_pool& workers;
    boost::asio::thread_pool& executions;
    std::atomic<bool> stopping{false};
    std::mutex mutex;
    std::uint64_t next_id = 0;
    std::map<std::uint64_t, std::weak_ptr<session>> sessions;
};

class server {
public:
    server(serve_config const& config, application& app, boost::asio::thread_pool& workers,
           boost::asio::thread_pool& executions);

    /** Binds and starts accepting; returns the bound endpoint (port 0 picks one). */
    result<boost::asio::ip::tcp::endpoint> start();
    /** Runs the I/O threads, the calling one included, until `stop()` and every connection closed. */
    void run();
    /** Stops accepting; idle connections close, busy ones close after their current answer. */
    void stop();
    /** The io_context of the listener, for the signal handler. */
    boost::asio::io_context& control() { return *contexts_.front(); }

private:
    using guard = boost::asio::executor_work_guard<boost::asio::io_context::executor_type>;
    void accept();

    std::vector<std::unique_ptr<boost::asio::io_context>> contexts_;
    std::vector<guard> guards_;  // keep idle contexts running until stop()
    std::size_t next_context_ = 0;
    boost::asio::ip::tcp::acceptor acceptor_;
    server_state state_;
};

}  // namespace integration::host

#endif
