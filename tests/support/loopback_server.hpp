#ifndef INTEGRATION_TESTS_SUPPORT_LOOPBACK_SERVER_HPP
#define INTEGRATION_TESTS_SUPPORT_LOOPBACK_SERVER_HPP

// A tiny HTTP/1.1 server on 127.0.0.1 for transport tests: answers every request with a fixed
// response and records the request heads it saw. Real sockets, no framework.

#include "support/tcp_listener.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace integration::testing {

class loopback_server {
public:
    /** Writes the answer on the connection after the request head was read; it should return
     *  once `stopping()` is true. */
    using handler = std::function<void(int fd, loopback_server& self)>;

    explicit loopback_server(std::string response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        : loopback_server([response](int fd, loopback_server&) { (void)::write(fd, response.data(), response.size()); }) {}

    explicit loopback_server(handler h) : handler_(std::move(h)) {
        auto const l = listen_tcp("127.0.0.1", 0, 16);
        fd_ = l.fd;
        port_ = l.port;
        thread_ = std::thread([this] { serve(); });
    }
    ~loopback_server() {
        stop_ = true;
        thread_.join();
        ::close(fd_);
    }
    std::uint16_t port() const { return port_; }
    bool stopping() const { return stop_.load(); }
    /** How many TCP connections were accepted. */
    int accepted() const { return accepted_.load(); }
    std::vector<std::string> requests() {
        std::lock_guard lock(mutex_);
        return requests_;
    }

private:
    void serve() {
        while (!stop_) {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 50) <= 0) continue;
            int c = ::accept(fd_, nullptr, nullptr);
            if (c < 0) continue;
            ++accepted_;
            {
                std::lock_guard lock(mutex_);
                requests_.push_back(read_head(c));
            }
            handler_(c, *this);
            ::close(c);
        }
    }

    handler handler_;
    int fd_ = -1;
    std::uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::atomic<int> accepted_{0};
    std::mutex mutex_;
    std::vector<std::string> requests_;
    std::thread thread_;
};

}  // namespace integration::testing

#endif
