#ifndef INTEGRATION_EXAMPLES_LOOPBACK_VENDOR_HPP
#define INTEGRATION_EXAMPLES_LOOPBACK_VENDOR_HPP

// A stand-in for a vendor's API on 127.0.0.1, so the examples run without a network: it answers
// every request `200 {"id":"SM-0001"}` and closes the connection.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>

class loopback_vendor {
public:
    loopback_vendor() {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof addr;
        if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 || ::listen(fd_, 16) != 0 ||
            ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
            throw std::runtime_error("loopback_vendor: cannot listen on 127.0.0.1");
        port_ = ntohs(addr.sin_port);
        thread_ = std::thread([this] { serve(); });
    }
    ~loopback_vendor() {
        stopping_ = true;
        ::shutdown(fd_, SHUT_RDWR);  // wakes accept()
        thread_.join();
        ::close(fd_);
    }
    loopback_vendor(loopback_vendor const&) = delete;
    loopback_vendor& operator=(loopback_vendor const&) = delete;

    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

private:
    void serve() {
        while (!stopping_) {
            int client = ::accept(fd_, nullptr, nullptr);
            if (client < 0) continue;
            answer(client);
            ::close(client);
        }
    }
    // Reads the request (header, then Content-Length bytes of body) before answering, so that
    // closing the socket never resets a request still being sent.
    static void answer(int client) {
        std::string in;
        char buf[4096];
        std::size_t want = std::string::npos;
        while (want == std::string::npos || in.size() < want) {
            auto n = ::recv(client, buf, sizeof buf, 0);
            if (n <= 0) return;
            in.append(buf, static_cast<std::size_t>(n));
            if (auto end = in.find("\r\n\r\n"); want == std::string::npos && end != std::string::npos) {
                std::size_t length = 0;
                for (auto const* name : {"\r\nContent-Length:", "\r\ncontent-length:"})
                    if (auto at = in.find(name); at != std::string::npos && at < end)
                        length = std::stoul(in.substr(at + 17));
                want = end + 4 + length;
            }
        }
        std::string body = R"({"id":"SM-0001"})";
        std::string out =
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
            "\r\nConnection: close\r\n\r\n" + body;
        ::send(client, out.data(), out.size(), MSG_NOSIGNAL);
    }

    int fd_ = -1;
    std::uint16_t port_ = 0;
    std::atomic<bool> stopping_{false};
    std::thread thread_;
};

#endif
