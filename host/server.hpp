#ifndef INTEGRATION_HOST_SERVER_HPP
#define INTEGRATION_HOST_SERVER_HPP

// HTTP/1.1 over Beast, shaped like Beast's advanced server: a listener, a session per connection
// on its own strand, timeouts from tcp_stream, parser limits, a bounded pipelining queue.
//
// Threads: `io_threads` run the io_context (sockets only); every request is handled on a separate
// pool of `workers` threads because the library's calls block (SQLite commits, vendor calls). The
// answer is posted back to the session's strand. A connection handles its requests in order, so
// at most one worker per connection is busy.

#include "application.hpp"
#include "config.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>

namespace integration::host {

class session;

/** What sessions share: limits, the application, the worker pool, the live-session registry. */
struct server_state {
    serve_config const& config;
    application& app;
    boost::asio::thread_pool& workers;
    std::atomic<bool> stopping{false};
    std::mutex mutex;
    std::uint64_t next_id = 0;
    std::map<std::uint64_t, std::weak_ptr<session>> sessions;
};

class server {
public:
    server(boost::asio::io_context& ioc, serve_config const& config, application& app, boost::asio::thread_pool& workers);

    /** Binds and starts accepting; returns the bound endpoint (port 0 picks one). */
    result<boost::asio::ip::tcp::endpoint> start();
    /** Stops accepting; idle connections close, busy ones close after their current answer. */
    void stop();

private:
    void accept();

    boost::asio::io_context& ioc_;
    boost::asio::ip::tcp::acceptor acceptor_;
    server_state state_;
};

}  // namespace integration::host

#endif
