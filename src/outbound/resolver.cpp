#include <integration/outbound/egress_policy.hpp>

#include <netdb.h>
#include <sys/socket.h>

#include <cstring>
#include <memory>

namespace integration::net {

result<std::vector<ip_address>> system_resolver::resolve(std::string const& host) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
    if (rc != 0) return error{errc::unavailable, "cannot resolve " + host + ": " + ::gai_strerror(rc)};
    std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(res, ::freeaddrinfo);
    std::vector<ip_address> out;
    for (auto* p = res; p; p = p->ai_next) {
        ip_address a;
        if (p->ai_family == AF_INET) {
            std::memcpy(a.bytes.data(), &reinterpret_cast<sockaddr_in*>(p->ai_addr)->sin_addr, 4);
        } else if (p->ai_family == AF_INET6) {
            a.v6 = true;
            std::memcpy(a.bytes.data(), &reinterpret_cast<sockaddr_in6*>(p->ai_addr)->sin6_addr, 16);
        } else {
            continue;
        }
        if (std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
    }
    return out;
}

result<std::vector<ip_address>> static_resolver::resolve(std::string const& host) {
    for (auto const& [name, addresses] : entries_)
        if (name == host) return addresses;
    return error{errc::unavailable, "cannot resolve " + host + ": no such host"};
}

}  // namespace integration::net
