#include <integration/outbound/egress_policy.hpp>

#include "../detail/url_destination.hpp"

#include <boost/url.hpp>

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <initializer_list>
#include <span>
#include <utility>

namespace integration::net {

namespace {

struct named_range {
    cidr block;
    std::string_view name;
};

constexpr cidr v4_block(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d, unsigned prefix) {
    cidr r;
    r.network.bytes = {a, b, c, d};
    r.prefix = prefix;
    return r;
}

// `groups` are the leading 16-bit groups of the network; the rest are zero.
constexpr cidr v6_block(std::initializer_list<std::uint16_t> groups, unsigned prefix) {
    cidr r;
    r.network.v6 = true;
    std::size_t i = 0;
    for (auto g : groups) {
        r.network.bytes[i++] = static_cast<std::uint8_t>(g >> 8);
        r.network.bytes[i++] = static_cast<std::uint8_t>(g & 0xff);
    }
    r.prefix = prefix;
    return r;
}

constexpr std::array denied_v4{
    named_range{v4_block(0, 0, 0, 0, 8), "\"this network\" (0.0.0.0/8)"},
    named_range{v4_block(10, 0, 0, 0, 8), "private (10.0.0.0/8)"},
    named_range{v4_block(100, 64, 0, 0, 10), "carrier-grade NAT (100.64.0.0/10)"},
    named_range{v4_block(127, 0, 0, 0, 8), "loopback (127.0.0.0/8)"},
    named_range{v4_block(169, 254, 0, 0, 16), "link-local, where cloud metadata lives (169.254.0.0/16)"},
    named_range{v4_block(172, 16, 0, 0, 12), "private (172.16.0.0/12)"},
    named_range{v4_block(192, 0, 0, 0, 24), "IETF protocol assignments (192.0.0.0/24)"},
    named_range{v4_block(192, 0, 2, 0, 24), "documentation (192.0.2.0/24)"},
    named_range{v4_block(192, 168, 0, 0, 16), "private (192.168.0.0/16)"},
    named_range{v4_block(198, 18, 0, 0, 15), "benchmarking (198.18.0.0/15)"},
    named_range{v4_block(198, 51, 100, 0, 24), "documentation (198.51.100.0/24)"},
    named_range{v4_block(203, 0, 113, 0, 24), "documentation (203.0.113.0/24)"},
    named_range{v4_block(224, 0, 0, 0, 4), "multicast (224.0.0.0/4)"},
    named_range{v4_block(255, 255, 255, 255, 32), "broadcast (255.255.255.255)"},
    named_range{v4_block(240, 0, 0, 0, 4), "reserved (240.0.0.0/4)"},
};

constexpr std::array denied_v6{
    named_range{v6_block({}, 128), "unspecified (::)"},
    named_range{v6_block({0, 0, 0, 0, 0, 0, 0, 1}, 128), "loopback (::1)"},
    named_range{v6_block({0xfe80}, 10), "link-local (fe80::/10)"},
    named_range{v6_block({0xfc00}, 7), "unique local (fc00::/7)"},
    named_range{v6_block({0xff00}, 8), "multicast (ff00::/8)"},
    named_range{v6_block({0x2001, 0x0db8}, 32), "documentation (2001:db8::/32)"},
    // RFC 8215: translators an operator sets up, each with a prefix of its own length inside, so
    // the IPv4 address it carries has no fixed place to be read from.
    named_range{v6_block({0x64, 0xff9b, 0x1}, 48), "local-use NAT64 (64:ff9b:1::/48)"},
};

enum class v4_position { tail, tail_inverted, after_first_group };

struct wrapper {
    cidr block;
    std::string_view name;
    v4_position where;
    // Whether the packet goes to the wrapped IPv4 address itself (this host's stack, or a NAT64
    // gateway), so that allowing that address allows this form too. 6to4 and Teredo go to a relay
    // elsewhere: their IPv4 part is checked against the denied ranges, never allowed by it.
    bool reaches_inner;
};

// Each of these carries an IPv4 address that the packet ends up at, so the IPv4 rules apply to it.
constexpr std::array v4_wrappers{
    wrapper{v6_block({0, 0, 0, 0, 0, 0xffff}, 96), "IPv4-mapped, ::ffff:0:0/96", v4_position::tail, true},
    wrapper{v6_block({}, 96), "IPv4-compatible, ::/96", v4_position::tail, true},
    wrapper{v6_block({0x64, 0xff9b}, 96), "NAT64, 64:ff9b::/96", v4_position::tail, true},
    wrapper{v6_block({0x2002}, 16), "6to4, 2002::/16", v4_position::after_first_group, false},
    wrapper{v6_block({0x2001, 0}, 32), "Teredo, 2001::/32", v4_position::tail_inverted, false},
};

struct unwrapped {
    ip_address inner;
    std::string_view form;
    bool reaches_inner;
};

std::optional<unwrapped> unwrap_v4(ip_address const& a) {
    if (!a.v6)
        return std::nullopt;
    for (auto const& w : v4_wrappers) {
        if (!w.block.contains(a))
            continue;
        ip_address inner;
        auto const first = w.where == v4_position::after_first_group ? 2u : 12u;
        for (unsigned i = 0; i < 4; ++i) {
            auto b = a.bytes[first + i];
            inner.bytes[i] = w.where == v4_position::tail_inverted ? static_cast<std::uint8_t>(b ^ 0xff) : b;
        }
        return unwrapped{inner, w.name, w.reaches_inner};
    }
    return std::nullopt;
}

std::optional<std::string_view> denied_range(ip_address const& a) {
    auto const& table = a.v6 ? std::span<named_range const>(denied_v6) : std::span<named_range const>(denied_v4);
    for (auto const& r : table)
        if (r.block.contains(a))
            return r.name;
    return std::nullopt;
}

std::string host_route(ip_address const& a) { return a.to_string() + (a.v6 ? "/128" : "/32"); }

error denied(ip_address const& a, std::string const& why) {
    return error{errc::egress_denied, "egress to " + a.to_string() + " is denied: " + why +
                                          "; if this destination is intended, the operator can add it to the "
                                          "egress allow-list (--egress-allow " +
                                          host_route(a) + ")"};
}

bool allow_listed(std::vector<cidr> const& allow, ip_address const& a) {
    auto inner = unwrap_v4(a);
    if (inner && !inner->reaches_inner) inner.reset();
    return std::any_of(allow.begin(), allow.end(),
                       [&](cidr const& c) { return c.contains(a) || (inner && c.contains(inner->inner)); });
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_hex_digit(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

int digit_value(char c) {
    if (is_digit(c))
        return c - '0';
    return (c | 0x20) - 'a' + 10;
}

// One part of an inet_aton address; anything above 32 bits is rejected rather than wrapped.
std::optional<std::uint64_t> parse_numeric_part(std::string_view s) {
    if (s.empty())
        return std::nullopt;
    unsigned base = 10;
    if (s.size() >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s.remove_prefix(2);  // inet_aton reads a bare "0x" as zero.
    } else if (s.size() >= 2 && s[0] == '0') {
        base = 8;
        s.remove_prefix(1);
    }
    std::uint64_t value = 0;
    for (char c : s) {
        bool const ok = base == 16 ? is_hex_digit(c) : (is_digit(c) && static_cast<unsigned>(c - '0') < base);
        if (!ok)
            return std::nullopt;
        value = value * base + static_cast<unsigned>(digit_value(c));
        if (value > 0xffffffffu)
            return std::nullopt;
    }
    return value;
}

// The WHATWG URL rule: a host whose last label is a number must be an IPv4 address, so
// `1.2.3.4.5` or `999.1.1.1` is malformed rather than a name some resolver might still accept.
bool ends_in_number(std::string_view host) {
    auto const dot = host.rfind('.');
    auto const last = dot == std::string_view::npos ? host : host.substr(dot + 1);
    if (!last.empty() && std::all_of(last.begin(), last.end(), is_digit))
        return true;
    return last.size() >= 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X') &&
           std::all_of(last.begin() + 2, last.end(), is_hex_digit);
}

result<void> check_host_name(std::string_view host) {
    if (host.size() > 253)
        return error{errc::invalid_argument, "host name is longer than 253 characters"};
    std::size_t label_start = 0;
    for (std::size_t i = 0; i <= host.size(); ++i) {
        if (i == host.size() || host[i] == '.') {
            auto const length = i - label_start;
            if (length == 0 || length > 63)
                return error{errc::invalid_argument, "host \"" + std::string(host) +
                                                         "\" has an empty label or one longer than 63 characters"};
            label_start = i + 1;
            continue;
        }
        char const c = host[i];
        if (!(is_digit(c) || (c >= 'a' && c <= 'z') || c == '-' || c == '_'))
            return error{errc::invalid_argument,
                         "host name contains a character that is not a letter, digit, '-', '_' or '.'; "
                         "write international names in their xn-- (punycode) form"};
    }
    return {};
}

}  // namespace

std::optional<ip_address> ip_address::parse(std::string_view text) {
    if (text.empty() || text.size() >= INET6_ADDRSTRLEN || text.find('\0') != std::string_view::npos)
        return std::nullopt;
    std::string const terminated(text);
    ip_address a;
    a.v6 = text.find(':') != std::string_view::npos;
    if (inet_pton(a.v6 ? AF_INET6 : AF_INET, terminated.c_str(), a.bytes.data()) != 1)
        return std::nullopt;
    return a;
}

std::string ip_address::to_string() const {
    char buffer[INET6_ADDRSTRLEN] = {};
    if (inet_ntop(v6 ? AF_INET6 : AF_INET, bytes.data(), buffer, sizeof buffer) == nullptr)
        return {};
    return buffer;
}

result<cidr> cidr::parse(std::string_view text) {
    auto const slash = text.find('/');
    auto const address_text = text.substr(0, slash);
    auto const address = ip_address::parse(address_text);
    if (!address)
        return error{errc::invalid_argument, "\"" + std::string(address_text) +
                                                 "\" is not an IPv4 dotted quad or an IPv6 address "
                                                 "(expected a CIDR such as 10.0.0.0/8 or fd00::/8)"};
    unsigned const max_prefix = address->v6 ? 128 : 32;
    cidr block{*address, max_prefix};
    if (slash != std::string_view::npos) {
        auto const prefix_text = text.substr(slash + 1);
        auto const* const end = prefix_text.data() + prefix_text.size();
        auto [ptr, ec] = std::from_chars(prefix_text.data(), end, block.prefix);
        if (prefix_text.empty() || ec != std::errc{} || ptr != end || block.prefix > max_prefix)
            return error{errc::invalid_argument, "prefix length in \"" + std::string(text) +
                                                     "\" must be a number from 0 to " +
                                                     std::to_string(max_prefix)};
    }
    // Host bits set usually mean a typo (10.0.0.1/8); say which network was meant instead of guessing.
    cidr network = block;
    for (unsigned bit = block.prefix; bit < max_prefix; ++bit)
        network.network.bytes[bit / 8] &= static_cast<std::uint8_t>(~(0x80u >> (bit % 8)));
    if (network.network != block.network)
        return error{errc::invalid_argument, "\"" + std::string(text) +
                                                 "\" has bits set after the prefix; did you mean " +
                                                 network.network.to_string() + "/" +
                                                 std::to_string(block.prefix) + "?"};
    return block;
}

bool cidr::contains(ip_address const& a) const noexcept {
    if (a.v6 != network.v6)
        return false;
    unsigned const full_bytes = prefix / 8;
    for (unsigned i = 0; i < full_bytes; ++i)
        if (a.bytes[i] != network.bytes[i])
            return false;
    unsigned const rest = prefix % 8;
    if (rest == 0)
        return true;
    auto const mask = static_cast<std::uint8_t>(0xff00u >> rest);
    return (a.bytes[full_bytes] & mask) == (network.bytes[full_bytes] & mask);
}

std::optional<ip_address> parse_numeric_ipv4(std::string_view host) {
    std::array<std::uint64_t, 4> parts{};
    std::size_t count = 0;
    while (true) {
        if (count == parts.size())
            return std::nullopt;
        auto const dot = host.find('.');
        auto const part = parse_numeric_part(host.substr(0, dot));
        if (!part)
            return std::nullopt;
        parts[count++] = *part;
        if (dot == std::string_view::npos)
            break;
        host.remove_prefix(dot + 1);
    }
    // Leading parts are one byte each; the last one fills whatever bytes remain.
    std::uint64_t value = 0;
    for (std::size_t i = 0; i + 1 < count; ++i) {
        if (parts[i] > 0xff)
            return std::nullopt;
        value |= parts[i] << (8 * (3 - i));
    }
    auto const last_bits = 8 * (4 - (count - 1));
    if (parts[count - 1] >= (std::uint64_t{1} << last_bits))
        return std::nullopt;
    value |= parts[count - 1];
    ip_address a;
    for (unsigned i = 0; i < 4; ++i)
        a.bytes[i] = static_cast<std::uint8_t>(value >> (8 * (3 - i)));
    return a;
}

result<void> egress_policy::check_endpoint(ip_address const& a, std::uint16_t port) const {
    auto inner = unwrap_v4(a);
    for (auto const& own : own_endpoints)
        if (own.port == port && (own.addresses.contains(a) || (inner && own.addresses.contains(inner->inner))))
            return error{errc::egress_denied,
                         "egress to " + a.to_string() + ":" + std::to_string(port) +
                             " is denied: it is this host's own listening socket, which the egress "
                             "allow-list (--egress-allow) cannot override; call the service directly "
                             "instead of through an outbound request"};
    return check_address(a);
}

result<void> egress_policy::check_address(ip_address const& a) const {
    if (allow_listed(allow, a))
        return {};

    if (auto const range = denied_range(a))
        return denied(a, "it is in the " + std::string(*range) + " range");
    if (auto const inner = unwrap_v4(a)) {
        if (auto const range = denied_range(inner->inner))
            return denied(a, "it wraps the IPv4 address " + inner->inner.to_string() + " (" +
                                 std::string(inner->form) + "), which is in the " + std::string(*range) +
                                 " range");
    }
    return {};
}

namespace {

std::uint16_t port_of(std::string_view text, bool http) {
    unsigned port = http ? 80 : 443;
    if (!text.empty()) std::from_chars(text.data(), text.data() + text.size(), port);
    return static_cast<std::uint16_t>(port);
}

}  // namespace

}  // namespace integration::net

namespace integration::detail {

result<net::destination> read_destination(std::string_view url) {
    using namespace net;
    // parse_uri rather than parse_absolute_uri: the latter rejects fragments, and a URL such as
    // https://127.0.0.1#@evil.example/ must be judged by its real host, not refused as malformed.
    auto const parsed = boost::urls::parse_uri(url);
    if (!parsed)
        return error{errc::invalid_argument, "not an absolute URL (" + parsed.error().message() + ")"};
    auto const& u = *parsed;

    bool const http = u.scheme_id() == boost::urls::scheme::http;
    if (!http && u.scheme_id() != boost::urls::scheme::https)
        return error{errc::egress_denied, "scheme \"" + std::string(u.scheme()) +
                                              "\" is not allowed for outbound calls; use https "
                                              "(http only for addresses on the egress allow-list, "
                                              "--egress-allow)"};
    if (!u.has_authority() || u.encoded_host().empty())
        return error{errc::invalid_argument, "URL has no host; expected https://host/path"};
    // Never echo the userinfo: it may be a password.
    if (u.has_userinfo())
        return error{errc::egress_denied,
                     "URL contains user information before '@'; credentials in URLs are refused, "
                     "store them as the connection's credential instead"};
    std::string_view port_text = u.has_port() ? std::string_view(u.port()) : std::string_view{};
    std::string_view host_continuation;
    // Boost.URL 1.81 ends the authority where its host or port rule stops and hands the rest to
    // the path: 127.0.0.1.nip.io reads as 127.0.0.1 plus path ".nip.io" (boostorg/url#755). A real
    // path after an authority starts with '/', so anything else is either the rest of a host that
    // begins with a dotted quad, or garbage after the port.
    if (auto const path = std::string_view(u.encoded_path()); !path.empty() && path.front() != '/') {
        if (u.host_type() != boost::urls::host_type::ipv4 || u.has_port())
            return error{errc::invalid_argument, "URL has unexpected characters after its host or port"};
        auto const rest = path.substr(0, path.find('/'));
        auto const colon = rest.find(':');
        host_continuation = rest.substr(0, colon);
        if (colon != std::string_view::npos)
            port_text = rest.substr(colon + 1);
    }
    if (!port_text.empty()) {
        unsigned port = 0;
        auto const* const end = port_text.data() + port_text.size();
        auto [ptr, ec] = std::from_chars(port_text.data(), end, port);
        if (ec != std::errc{} || ptr != end || port == 0 || port > 65535)
            return error{errc::invalid_argument, "port \"" + std::string(port_text) + "\" is not in 1-65535"};
    }

    std::optional<ip_address> literal;
    std::string host;
    auto const kind = host_continuation.empty() ? u.host_type() : boost::urls::host_type::name;
    switch (kind) {
    case boost::urls::host_type::ipv4: {
        ip_address a;
        auto const b = u.host_ipv4_address().to_bytes();
        std::copy(b.begin(), b.end(), a.bytes.begin());
        literal = a;
        break;
    }
    case boost::urls::host_type::ipv6: {
        ip_address a;
        a.v6 = true;
        auto const b = u.host_ipv6_address().to_bytes();
        std::copy(b.begin(), b.end(), a.bytes.begin());
        literal = a;
        break;
    }
    case boost::urls::host_type::name: {
        auto const encoded = std::string(u.encoded_host()) + std::string(host_continuation);
        auto const pct = boost::urls::make_pct_string_view(encoded);
        if (!pct)
            return error{errc::invalid_argument, "host has a malformed percent-encoding"};
        host = pct->decode();
        std::transform(host.begin(), host.end(), host.begin(),
                       [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c | 0x20) : c; });
        if (!host.empty() && host.back() == '.')
            host.pop_back();
        if (host.empty())
            return error{errc::invalid_argument, "URL has an empty host; expected https://host/path"};
        literal = parse_numeric_ipv4(host);
        if (!literal && ends_in_number(host))
            return error{errc::invalid_argument,
                         "host \"" + host + "\" ends in a number but is not a valid IPv4 address"};
        break;
    }
    default:
        return error{errc::invalid_argument, "unsupported host form " + std::string(u.encoded_host()) +
                                                 "; use a DNS name, an IPv4 address or an [IPv6] address"};
    }

    if (literal) return destination{http ? "http" : "https", literal->to_string(), port_of(port_text, http), literal};
    return destination{http ? "http" : "https", std::move(host), port_of(port_text, http), std::nullopt};
}

}  // namespace integration::detail

namespace integration::net {

result<destination> egress_policy::parse_destination(std::string_view url) const {
    auto d = detail::read_destination(url);
    if (!d) return d;
    auto const& host = d->host;
    bool const http = d->scheme == "http";
    if (auto const& literal = d->literal) {
        if (auto r = check_endpoint(*literal, d->port); !r)
            return r.error();
        if (http && !allow_listed(allow, *literal))
            return error{errc::egress_denied,
                         "http is allowed only for addresses on the egress allow-list (--egress-allow); "
                         "use https for " +
                             literal->to_string()};
        return d;
    }

    if (auto r = check_host_name(host); !r)
        return r.error();
    for (auto const& own : own_names)
        if (own.host == host && own.port == d->port)
            return error{errc::egress_denied,
                         "egress to " + host + ":" + std::to_string(d->port) +
                             " is denied: it is this host's own public address, which the egress allow-list "
                             "(--egress-allow) cannot override; call the service directly instead of through an "
                             "outbound request"};
    if (host == "localhost" || host.ends_with(".localhost"))
        return error{errc::egress_denied,
                     "host \"" + host + "\" always means this machine (RFC 6761), so egress to it is denied; "
                                        "the egress allow-list (--egress-allow) takes addresses, not names"};
    return d;
}

result<void> egress_policy::deny_own_url(std::string_view url) {
    auto d = detail::read_destination(url);
    if (!d) return d.error();
    if (d->literal) {
        auto block = cidr::parse(d->literal->to_string());
        if (!block) return block.error();
        own_endpoints.push_back({*block, d->port});
    } else {
        own_names.push_back({d->host, d->port});
    }
    return {};
}

result<destination> egress_policy::check_url(std::string_view url) const {
    auto d = parse_destination(url);
    if (!d) return d;
    // Without resolving, a name's addresses are unknown: http needs a literal allow-listed address.
    if (d->scheme == "http" && !d->literal)
        return error{errc::egress_denied, "http is allowed only for literal addresses on the egress allow-list "
                                          "(--egress-allow); use https://" +
                                              d->host};
    return d;
}

result<destination> egress_policy::check_destination(std::string_view url, resolver& names) const {
    auto d = parse_destination(url);
    if (!d || d->literal) return d;
    auto answers = names.resolve(d->host);
    if (!answers) return answers.error();
    if (answers->empty()) return error{errc::unavailable, "host " + d->host + " has no addresses"};
    // Every answer must pass: a resolver that returns a public address and then loopback must not
    // get the loopback one used later. The error never names the answer: a caller who chose the
    // name must not learn which internal address it leads to.
    for (auto const& a : *answers) {
        if (!check_endpoint(a, d->port))
            return error{errc::egress_denied,
                         "egress to " + d->host +
                             " is refused by the egress policy: the name resolves to an address in a "
                             "denied range (private, loopback, link-local or reserved); if it is "
                             "intended, the operator can allow that range (--egress-allow)"};
        if (d->scheme == "http" && !allow_listed(allow, a))
            return error{errc::egress_denied,
                         "egress to http://" + d->host +
                             " is refused by the egress policy: http is allowed only for addresses "
                             "on the egress allow-list (--egress-allow); use https"};
    }
    d->literal = answers->front();  // pinned: the connection goes to this checked address
    return d;
}

}  // namespace integration::net
