#ifndef INTEGRATION_BENCH_KEEP_ALIVE_RECEIVER_HPP
#define INTEGRATION_BENCH_KEEP_ALIVE_RECEIVER_HPP

// A thread-per-connection HTTP/1.1 keep-alive server on loopback for the benchmarks: reads each
// request (with its Content-Length body) and writes `answer`. Its threads are named
// "bench-vendor", so a profile tells its CPU from the code under test.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <thread>

namespace integration::bench {

class keep_alive_receiver {
public:
    explicit keep_alive_receiver(std::string answer) : answer_(std::move(answer)) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
        ::listen(fd_, 512);
        socklen_t len = sizeof a;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        std::thread([this] {
            pthread_setname_np(pthread_self(), "bench-vendor");  // inherited by the connection threads
            while (true) {
                int c = ::accept(fd_, nullptr, nullptr);
                if (c < 0) return;
                std::thread([this, c] { serve(c); }).detach();
            }
        }).detach();
    }
    std::uint16_t port() const { return port_; }

private:
    void serve(int c) const {
        std::string pending;
        char buf[16384];
        while (true) {
            auto n = ::read(c, buf, sizeof buf);
            if (n <= 0) break;
            pending.append(buf, static_cast<std::size_t>(n));
            for (;;) {
                auto e = pending.find("\r\n\r\n");
                if (e == std::string::npos) break;
                std::size_t body = 0;
                auto cl = pending.find("Content-Length: ");
                if (cl != std::string::npos && cl < e) body = std::stoul(pending.substr(cl + 16));
                if (pending.size() < e + 4 + body) break;
                pending.erase(0, e + 4 + body);
                (void)::write(c, answer_.data(), answer_.size());
            }
        }
        ::close(c);
    }
    std::string answer_;
    int fd_;
    std::uint16_t port_;
};

}  // namespace integration::bench

#endif
