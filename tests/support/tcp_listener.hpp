#ifndef INTEGRATION_TESTS_SUPPORT_TCP_LISTENER_HPP
#define INTEGRATION_TESTS_SUPPORT_TCP_LISTENER_HPP

// The socket calls every raw test server starts with, and the read of an HTTP request head that
// most of them answer after. Real sockets, no framework.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace integration::testing {

/** A listening TCP socket (the caller closes `fd`) and the port it listens on. */
struct tcp_listener {
    int fd = -1;
    std::uint16_t port = 0;
};

/** Listens on `address`:`port` (0: a free port the kernel picks); throws naming the address
 *  when it cannot. */
inline tcp_listener listen_tcp(std::string const& address = "127.0.0.1", std::uint16_t port = 0, int backlog = 64) {
    tcp_listener l{::socket(AF_INET, SOCK_STREAM, 0), 0};
    int one = 1;
    ::setsockopt(l.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    if (::inet_pton(AF_INET, address.c_str(), &addr.sin_addr) != 1 ||
        ::bind(l.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(l.fd, backlog) != 0) {
        ::close(l.fd);
        throw std::runtime_error("cannot listen on " + address + ":" + std::to_string(port));
    }
    socklen_t len = sizeof addr;
    ::getsockname(l.fd, reinterpret_cast<sockaddr*>(&addr), &len);
    l.port = ntohs(addr.sin_port);
    return l;
}

/** Reads from `fd` until the blank line that ends a request head; returns all it read (the
 *  head and any bytes after it), or less when the peer closed first. */
inline std::string read_head(int fd) {
    std::string in;
    char buf[4096];
    while (in.find("\r\n\r\n") == std::string::npos) {
        auto const n = ::read(fd, buf, sizeof buf);
        if (n <= 0) break;
        in.append(buf, static_cast<std::size_t>(n));
    }
    return in;
}

}  // namespace integration::testing

#endif
