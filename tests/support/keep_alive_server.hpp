#ifndef INTEGRATION_TESTS_SUPPORT_KEEP_ALIVE_SERVER_HPP
#define INTEGRATION_TESTS_SUPPORT_KEEP_ALIVE_SERVER_HPP

// An HTTP/1.1 server on a loopback address that behaves like a real keep-alive vendor: every
// connection is served on its own thread, requests are framed by Content-Length or chunked
// encoding, pipelined requests are answered in order, and the connection stays open. Whatever
// bytes a client sends are parsed as requests, so a body that holds a second request is answered
// twice, as a real server would. Real sockets, no framework.

#include "support/tcp_listener.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace integration::testing {

/** One request as the server parsed it. */
struct received_request {
    std::string method;
    std::string target;
    std::vector<std::pair<std::string, std::string>> headers;  ///< As sent (names not folded).
    std::string head;                                          ///< The raw request line and header fields.
    std::string body;

    /** The first value of `name` (case-insensitive), if any. */
    std::optional<std::string> header(std::string_view name) const {
        for (auto const& [k, v] : headers)
            if (std::equal(k.begin(), k.end(), name.begin(), name.end(), [](char a, char b) {
                    return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
                }))
                return v;
        return std::nullopt;
    }
};

/** Builds a keep-alive answer with a Content-Length. */
inline std::string http_answer_bytes(int status, std::string const& body, std::string const& extra_headers = "") {
    return "HTTP/1.1 " + std::to_string(status) +
           " X\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
           extra_headers + "\r\n" + body;
}

class keep_alive_server {
public:
    /** Returns the bytes of the answer to one request, or `hang_up`. */
    using handler = std::function<std::string(received_request const&)>;
    /** An answer that closes the connection instead (a server that read the request and died). */
    static constexpr std::string_view hang_up = "<hang up>";

    /** Listens on `address`:`port` (0: any free port); `delay` passes before each answer. */
    explicit keep_alive_server(handler h, std::string const& address = "127.0.0.1", std::uint16_t port = 0,
                               std::chrono::milliseconds delay = std::chrono::milliseconds(0))
        : handler_(std::move(h)), delay_(delay) {
        auto const l = listen_tcp(address, port, 64);
        fd_ = l.fd;
        port_ = l.port;
        acceptor_ = std::thread([this] { accept_loop(); });
    }
    ~keep_alive_server() {
        stop_ = true;
        acceptor_.join();
        std::vector<std::thread> sessions;
        {
            std::lock_guard lock(mutex_);
            sessions.swap(sessions_);
        }
        for (auto& t : sessions) t.join();
        ::close(fd_);
    }
    keep_alive_server(keep_alive_server const&) = delete;
    keep_alive_server& operator=(keep_alive_server const&) = delete;

    std::uint16_t port() const { return port_; }
    /** TCP connections accepted. */
    int accepted() const { return accepted_.load(); }
    /** Bytes received on every connection. */
    std::size_t bytes_received() const { return bytes_.load(); }
    std::vector<received_request> requests() {
        std::lock_guard lock(mutex_);
        return requests_;
    }

private:
    void accept_loop() {
        while (!stop_) {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 20) <= 0) continue;
            int c = ::accept(fd_, nullptr, nullptr);
            if (c < 0) continue;
            ++accepted_;
            std::lock_guard lock(mutex_);
            sessions_.emplace_back([this, c] {
                serve(c);
                ::close(c);
            });
        }
    }

    // Reads more bytes into `buffer`; false once the peer closed or the server stops.
    bool fill(int c, std::string& buffer) {
        while (!stop_) {
            pollfd p{c, POLLIN, 0};
            if (::poll(&p, 1, 20) <= 0) continue;
            char buf[8192];
            auto n = ::read(c, buf, sizeof buf);
            if (n <= 0) return false;
            bytes_ += static_cast<std::size_t>(n);
            buffer.append(buf, static_cast<std::size_t>(n));
            return true;
        }
        return false;
    }

    // One request from the front of `buffer`, reading more as needed; nullopt when the connection ends.
    std::optional<received_request> next(int c, std::string& buffer) {
        std::size_t end;
        while ((end = buffer.find("\r\n\r\n")) == std::string::npos)
            if (!fill(c, buffer)) return std::nullopt;
        received_request r;
        r.head = buffer.substr(0, end);
        buffer.erase(0, end + 4);
        auto line_end = r.head.find("\r\n");
        auto request_line = r.head.substr(0, line_end);
        auto sp1 = request_line.find(' ');
        auto sp2 = request_line.find(' ', sp1 + 1);
        r.method = request_line.substr(0, sp1);
        r.target = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
        for (auto pos = line_end; pos != std::string::npos && pos < r.head.size();) {
            auto start = pos + 2;
            auto eol = r.head.find("\r\n", start);
            auto field = r.head.substr(start, eol == std::string::npos ? std::string::npos : eol - start);
            if (auto colon = field.find(':'); colon != std::string::npos) {
                auto value = field.substr(colon + 1);
                value.erase(0, value.find_first_not_of(" \t"));
                r.headers.emplace_back(field.substr(0, colon), value);
            }
            pos = eol;
        }
        auto chunked = r.header("Transfer-Encoding");
        if (chunked && chunked->find("chunked") != std::string::npos) {
            for (;;) {
                std::size_t eol;
                while ((eol = buffer.find("\r\n")) == std::string::npos)
                    if (!fill(c, buffer)) return std::nullopt;
                auto size = std::stoul(buffer.substr(0, eol), nullptr, 16);
                while (buffer.size() < eol + 2 + size + 2)
                    if (!fill(c, buffer)) return std::nullopt;
                r.body += buffer.substr(eol + 2, size);
                buffer.erase(0, eol + 2 + size + 2);
                if (size == 0) break;
            }
        } else if (auto length = r.header("Content-Length")) {
            std::size_t want = std::stoul(*length);
            while (buffer.size() < want)
                if (!fill(c, buffer)) return std::nullopt;
            r.body = buffer.substr(0, want);
            buffer.erase(0, want);
        }
        return r;
    }

    void serve(int c) {
        std::string buffer;
        for (;;) {
            std::optional<received_request> r;
            try {
                r = next(c, buffer);
            } catch (std::exception const&) {
                return;  // a malformed chunk size or length: drop the connection
            }
            if (!r) return;
            {
                std::lock_guard lock(mutex_);
                requests_.push_back(*r);
            }
            if (delay_.count() > 0) std::this_thread::sleep_for(delay_);
            auto answer = handler_(*r);
            if (answer == hang_up) return;
            for (std::size_t sent = 0; sent < answer.size();) {
                auto n = ::send(c, answer.data() + sent, answer.size() - sent, MSG_NOSIGNAL);
                if (n <= 0) return;
                sent += static_cast<std::size_t>(n);
            }
        }
    }

    handler handler_;
    std::chrono::milliseconds delay_;
    int fd_ = -1;
    std::uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::atomic<int> accepted_{0};
    std::atomic<std::size_t> bytes_{0};
    std::mutex mutex_;
    std::vector<received_request> requests_;
    std::vector<std::thread> sessions_;
    std::thread acceptor_;
};

}  // namespace integration::testing

#endif
