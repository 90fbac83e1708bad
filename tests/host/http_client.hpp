#ifndef INTEGRATION_TESTS_HOST_HTTP_CLIENT_HPP
#define INTEGRATION_TESTS_HOST_HTTP_CLIENT_HPP

// A plain-socket HTTP/1.1 client: one connection per request, read to EOF, or a kept-alive
// connection that reads each answer by its length. Raw bytes go out as written, so tests can send
// what a well-behaved client library would refuse to.

#include <algorithm>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>

namespace integration::testing {

/** Connects to 127.0.0.1:`port`, from `source` (another loopback address, e.g. "127.0.0.2") if given. */
inline int connect_loopback(std::uint16_t port, char const* source = nullptr) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (source) {
        sockaddr_in from{};
        from.sin_family = AF_INET;
        if (::inet_pton(AF_INET, source, &from.sin_addr) != 1 ||
            ::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0) {
            ::close(fd);
            throw std::runtime_error(std::string("cannot bind to ") + source);
        }
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(fd);
        throw std::runtime_error("connect failed");
    }
    return fd;
}

/** Reads until EOF or `timeout`; `closed` says whether the peer closed. */
inline std::string read_all(int fd, std::chrono::milliseconds timeout, bool* closed = nullptr) {
    std::string out;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    if (closed) *closed = false;
    for (;;) {
        // A timeout that has passed (or 0) still looks once at what is there already.
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(std::max<std::int64_t>(left.count(), 0))) <= 0) break;
        char buf[8192];
        auto n = ::read(fd, buf, sizeof buf);
        if (n <= 0) {
            if (closed) *closed = true;
            break;
        }
        out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
}

/** Sends `bytes` and returns everything the server answered before closing. */
inline std::string raw_exchange(std::uint16_t port, std::string const& bytes,
                                std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    int fd = connect_loopback(port);
    std::size_t sent = 0;
    while (sent < bytes.size()) {
        auto n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) break;
        sent += static_cast<std::size_t>(n);
    }
    auto out = read_all(fd, timeout);
    ::close(fd);
    return out;
}

struct http_answer {
    int status = 0;
    std::map<std::string, std::string> headers;  // lower-case names
    std::string body;
    boost::json::value json() const { return body.empty() ? boost::json::value() : boost::json::parse(body); }
};

inline http_answer parse_answer(std::string const& raw) {
    http_answer a;
    auto head_end = raw.find("\r\n\r\n");
    if (raw.size() < 12 || head_end == std::string::npos) return a;
    a.status = std::stoi(raw.substr(9, 3));
    std::size_t pos = raw.find("\r\n") + 2;
    while (pos < head_end) {
        auto eol = raw.find("\r\n", pos);
        auto line = raw.substr(pos, eol - pos);
        auto colon = line.find(':');
        std::string name = line.substr(0, colon);
        for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        auto value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.erase(0, 1);
        a.headers[name] = value;
        pos = eol + 2;
    }
    a.body = raw.substr(head_end + 4);
    return a;
}

/** What one request on a kept-alive connection got back. */
struct exchange_result {
    std::string raw;         // the bytes of the answer that arrived, whole or not
    bool complete = false;   // the head and all Content-Length bytes of the body arrived
    bool timed_out = false;  // the connection stayed open but the answer did not finish in time
};

/** A kept-alive connection: one request at a time, each answer read by its Content-Length, so
 *  the next request follows on the same socket and an answer cut short is told from none. */
class keep_alive_connection {
public:
    explicit keep_alive_connection(std::uint16_t port) : fd_(connect_loopback(port)) {}
    ~keep_alive_connection() { ::close(fd_); }
    keep_alive_connection(keep_alive_connection const&) = delete;
    keep_alive_connection& operator=(keep_alive_connection const&) = delete;

    exchange_result exchange(std::string const& request, std::chrono::milliseconds timeout) {
        exchange_result r;
        for (std::size_t sent = 0; sent < request.size();) {
            auto n = ::send(fd_, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
            if (n <= 0) return r;
            sent += static_cast<std::size_t>(n);
        }
        auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            if (auto head_end = r.raw.find("\r\n\r\n"); head_end != std::string::npos) {
                auto length = parse_answer(r.raw.substr(0, head_end + 4)).headers["content-length"];
                if (r.raw.size() >= head_end + 4 + (length.empty() ? 0 : std::stoul(length))) {
                    r.complete = true;
                    return r;
                }
            }
            auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            pollfd p{fd_, POLLIN, 0};
            if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
                r.timed_out = true;
                return r;
            }
            char buf[8192];
            auto n = ::read(fd_, buf, sizeof buf);
            if (n <= 0) return r;  // closed or reset
            r.raw.append(buf, static_cast<std::size_t>(n));
        }
    }

private:
    int fd_;
};

class api {
public:
    api(std::uint16_t port, std::string key) : port_(port), key_(std::move(key)) {}

    /** The bytes of a request; `Connection: close` unless `keep_alive`. */
    std::string request(std::string const& method, std::string const& target, std::string const& body = "",
                        std::map<std::string, std::string> const& extra = {}, bool keep_alive = false) const {
        std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
        if (!keep_alive) req += "Connection: close\r\n";
        if (!key_.empty()) req += "Authorization: Bearer " + key_ + "\r\n";
        if (!body.empty()) req += "Content-Type: application/json\r\n";
        if (!body.empty() || method == "POST") req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
        for (auto const& [k, v] : extra) req += k + ": " + v + "\r\n";
        return req + "\r\n" + body;
    }
    http_answer call(std::string const& method, std::string const& target, std::string const& body = "",
                     std::map<std::string, std::string> const& extra = {}) const {
        return parse_answer(raw_exchange(port_, request(method, target, body, extra)));
    }
    http_answer get(std::string const& target) const { return call("GET", target); }
    http_answer post(std::string const& target, boost::json::value const& body,
                     std::map<std::string, std::string> const& extra = {}) const {
        return call("POST", target, boost::json::serialize(body), extra);
    }

private:
    std::uint16_t port_;
    std::string key_;
};

}  // namespace integration::testing

#endif
