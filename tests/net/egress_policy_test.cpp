#include <integration/outbound/egress_policy.hpp>

#include <gtest/gtest.h>

#include <string>
#include <utility>

namespace {

using integration::errc;
using integration::net::cidr;
using integration::net::egress_policy;
using integration::net::ip_address;
using integration::net::parse_numeric_ipv4;

ip_address ip(std::string_view text) { return ip_address::parse(text).value(); }

cidr block(std::string_view text) { return cidr::parse(text).value(); }

// ---------------------------------------------------------------------------------------------
// Strict literal parsing

TEST(ip_address_test, parses_dotted_quad_and_ipv6_text) {
    auto const v4 = ip("93.184.216.34");
    EXPECT_FALSE(v4.v6);
    EXPECT_EQ(v4.bytes[0], 93);
    EXPECT_EQ(v4.bytes[3], 34);
    EXPECT_EQ(v4.to_string(), "93.184.216.34");

    auto const v6 = ip("2606:4700::1111");
    EXPECT_TRUE(v6.v6);
    EXPECT_EQ(v6.bytes[0], 0x26);
    EXPECT_EQ(v6.bytes[15], 0x11);
    EXPECT_EQ(v6.to_string(), "2606:4700::1111");
    EXPECT_EQ(ip("0:0:0:0:0:0:0:1").to_string(), "::1");
    EXPECT_EQ(ip("::ffff:7f00:1"), ip("::ffff:127.0.0.1"));
}

class ip_address_rejects : public testing::TestWithParam<std::string> {};

TEST_P(ip_address_rejects, anything_but_a_strict_literal) { EXPECT_FALSE(ip_address::parse(GetParam())); }

INSTANTIATE_TEST_SUITE_P(strict, ip_address_rejects,
                         testing::Values("", "127.1", "2130706433", "0x7f000001", "0177.0.0.1", "01.2.3.4",
                                         "256.1.1.1", "1.2.3.4.5", " 1.2.3.4", "1.2.3.4 ", "[::1]",
                                         "fe80::1%eth0", "1.2.3.4/8", "::1::2", "example.com",
                                         std::string("1.2.3.4\0", 8)));

// ---------------------------------------------------------------------------------------------
// CIDR blocks

TEST(cidr_test, parses_blocks_and_bare_addresses) {
    auto const ten = block("10.0.0.0/8");
    EXPECT_EQ(ten.prefix, 8u);
    EXPECT_TRUE(ten.contains(ip("10.255.1.2")));
    EXPECT_FALSE(ten.contains(ip("11.0.0.0")));
    EXPECT_FALSE(ten.contains(ip("::ffff:10.0.0.1")));  // families never mix inside contains()

    auto const host = block("192.168.1.7");
    EXPECT_EQ(host.prefix, 32u);
    EXPECT_TRUE(host.contains(ip("192.168.1.7")));
    EXPECT_FALSE(host.contains(ip("192.168.1.8")));

    auto const ula = block("fd00::/8");
    EXPECT_TRUE(ula.contains(ip("fd12:3456::1")));
    EXPECT_FALSE(ula.contains(ip("fc00::1")));
    EXPECT_FALSE(ula.contains(ip("10.0.0.1")));

    EXPECT_EQ(block("::1").prefix, 128u);
    EXPECT_TRUE(block("0.0.0.0/0").contains(ip("203.0.113.9")));
    EXPECT_TRUE(block("::/0").contains(ip("2001:db8::1")));
    EXPECT_TRUE(block("100.64.0.0/10").contains(ip("100.127.255.255")));
    EXPECT_FALSE(block("100.64.0.0/10").contains(ip("100.128.0.0")));
}

class cidr_rejects : public testing::TestWithParam<std::string> {};

TEST_P(cidr_rejects, malformed_text) {
    auto const r = cidr::parse(GetParam());
    ASSERT_FALSE(r);
    EXPECT_TRUE(r.error() == errc::invalid_argument);
    EXPECT_FALSE(r.error().detail().empty());
}

INSTANTIATE_TEST_SUITE_P(malformed, cidr_rejects,
                         testing::Values("", "/8", "10.0.0.0/", "10.0.0.0/33", "fd00::/129", "10.0.0.0/-1",
                                         "10.0.0.0/+8", "10.0.0.0/ 8", "10.0.0.0/8/8", "10.1/8", "x/8",
                                         "10.0.0.1/8", "fd00::1/8"));

TEST(cidr_test, host_bits_error_suggests_the_network) {
    auto const r = cidr::parse("10.0.0.1/8");
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().detail().find("10.0.0.0/8"), std::string::npos) << r.error().detail();
}

// ---------------------------------------------------------------------------------------------
// inet_aton-style numeric hosts

class numeric_trick : public testing::TestWithParam<std::pair<std::string, std::string>> {};

TEST_P(numeric_trick, is_read_as_the_address_it_means) {
    auto const& [host, meant] = GetParam();
    auto const a = parse_numeric_ipv4(host);
    ASSERT_TRUE(a) << host;
    EXPECT_EQ(*a, ip(meant)) << host << " -> " << a->to_string();
}

TEST_P(numeric_trick, is_denied_in_a_url) {
    auto const& host = GetParam().first;
    auto const r = egress_policy{}.check_url("https://" + host + "/");
    ASSERT_FALSE(r) << host;
    EXPECT_TRUE(r.error() == errc::egress_denied) << r.error().detail();
    EXPECT_NE(r.error().detail().find(GetParam().second), std::string::npos) << r.error().detail();
}

INSTANTIATE_TEST_SUITE_P(
    reference, numeric_trick,
    testing::Values(std::pair{"127.1", "127.0.0.1"}, std::pair{"2130706433", "127.0.0.1"},
                    std::pair{"0x7f000001", "127.0.0.1"}, std::pair{"0177.0.0.1", "127.0.0.1"},
                    std::pair{"017700000001", "127.0.0.1"}, std::pair{"0x7f.0.0.1", "127.0.0.1"},
                    std::pair{"127.000.000.1", "127.0.0.1"}, std::pair{"0251.254.169.254", "169.254.169.254"},
                    std::pair{"0", "0.0.0.0"}, std::pair{"0X7F.1", "127.0.0.1"},
                    std::pair{"127.0.1", "127.0.0.1"}, std::pair{"169.254.43518", "169.254.169.254"},
                    std::pair{"0xa9fea9fe", "169.254.169.254"}, std::pair{"0xA9.0xFE.0xA9.0xFE", "169.254.169.254"},
                    std::pair{"10.0x0.0", "10.0.0.0"}, std::pair{"0x", "0.0.0.0"},
                    std::pair{"192.168.0x1.01", "192.168.1.1"}, std::pair{"4294967295", "255.255.255.255"}));

TEST(numeric_ipv4_test, plain_dotted_quad_is_numeric_too) {
    EXPECT_EQ(parse_numeric_ipv4("93.184.216.34"), ip("93.184.216.34"));
}

class not_numeric : public testing::TestWithParam<std::string> {};

TEST_P(not_numeric, is_not_an_address) { EXPECT_FALSE(parse_numeric_ipv4(GetParam())) << GetParam(); }

INSTANTIATE_TEST_SUITE_P(reference, not_numeric,
                         testing::Values("", "evil.example", "1.2.3.4.5", "256.0.0.1", "1.2.3.256", "1.2.65536",
                                         "1.16777216", "4294967296", "0x100000000", "08.0.0.1", "09", "0xg",
                                         "1..2", "127.0.0.1.", ".127.0.0.1", " 127.0.0.1", "127.0.0.1 ", "-1",
                                         "+1", "1e3", "127.0.0.1x", "localhost"));

// ---------------------------------------------------------------------------------------------
// Deny ranges

class denied_address : public testing::TestWithParam<std::string> {};

TEST_P(denied_address, is_refused_by_default) {
    auto const r = egress_policy{}.check_address(ip(GetParam()));
    ASSERT_FALSE(r) << GetParam();
    EXPECT_TRUE(r.error() == errc::egress_denied);
    EXPECT_NE(r.error().detail().find(ip(GetParam()).to_string()), std::string::npos) << r.error().detail();
    EXPECT_NE(r.error().detail().find("--egress-allow"), std::string::npos) << r.error().detail();
}

TEST_P(denied_address, is_refused_as_a_url_host) {
    auto const a = ip(GetParam());
    auto const host = a.v6 ? "[" + a.to_string() + "]" : a.to_string();
    auto const r = egress_policy{}.check_url("https://" + host + "/hook");
    ASSERT_FALSE(r) << host;
    EXPECT_TRUE(r.error() == errc::egress_denied);
}

// First, a middle and the last address of every range in the reference list.
INSTANTIATE_TEST_SUITE_P(ipv4, denied_address,
                         testing::Values("0.0.0.0", "0.1.2.3", "0.255.255.255",                //
                                         "10.0.0.0", "10.1.2.3", "10.255.255.255",             //
                                         "100.64.0.0", "100.100.100.200", "100.127.255.255",   //
                                         "127.0.0.0", "127.0.0.1", "127.255.255.255",          //
                                         "169.254.0.0", "169.254.169.254", "169.254.255.255",  //
                                         "172.16.0.0", "172.20.1.1", "172.31.255.255",         //
                                         "192.0.0.0", "192.0.0.170", "192.0.0.255",            //
                                         "192.0.2.0", "192.0.2.1", "192.0.2.255",              //
                                         "192.168.0.0", "192.168.1.1", "192.168.255.255",      //
                                         "198.18.0.0", "198.19.1.1", "198.19.255.255",         //
                                         "198.51.100.0", "198.51.100.7", "198.51.100.255",     //
                                         "203.0.113.0", "203.0.113.9", "203.0.113.255",        //
                                         "224.0.0.0", "239.255.255.250", "239.255.255.255",    //
                                         "240.0.0.0", "250.1.2.3", "255.255.255.254",          //
                                         "255.255.255.255"));

INSTANTIATE_TEST_SUITE_P(ipv6, denied_address,
                         testing::Values("::", "::1",                                       //
                                         "fe80::", "fe80::1", "febf:ffff::1",               //
                                         "fc00::", "fd12:3456::1", "fdff:ffff::ffff",       //
                                         "ff00::", "ff02::1", "ffff:ffff::1",               //
                                         "2001:db8::", "2001:db8::1", "2001:db8:ffff::1"));

class public_address : public testing::TestWithParam<std::string> {};

TEST_P(public_address, is_allowed) {
    auto const r = egress_policy{}.check_address(ip(GetParam()));
    EXPECT_TRUE(r) << GetParam() << ": " << r.error().detail();
}

// Public addresses, including the first address past each edge of the deny ranges.
INSTANTIATE_TEST_SUITE_P(reference, public_address,
                         testing::Values("93.184.216.34", "1.1.1.1", "8.8.8.8", "1.0.0.0", "9.255.255.255",
                                         "11.0.0.0", "100.63.255.255", "100.128.0.0", "126.255.255.255",
                                         "128.0.0.0", "169.253.255.255", "169.255.0.0", "172.15.255.255",
                                         "172.32.0.0", "192.0.1.0", "192.0.3.0", "192.167.255.255",
                                         "192.169.0.0", "198.17.255.255", "198.20.0.0", "198.51.99.255",
                                         "198.51.101.0", "203.0.112.255", "203.0.114.0", "223.255.255.255",
                                         "2606:4700::1111", "2001:4860:4860::8888", "2a00:1450:4001::1",
                                         "fe7f:ffff::1", "fec0::1", "2001:db7:ffff::1", "2001:db9::1", "::2:0:0:1",
                                         "64:ff9b:0:ffff::1", "64:ff9b:2::1"));

// ---------------------------------------------------------------------------------------------
// IPv4 wrapped in IPv6

class wrapped_v4 : public testing::TestWithParam<std::pair<std::string, bool>> {};

TEST_P(wrapped_v4, is_judged_by_the_inner_address) {
    auto const& [text, should_deny] = GetParam();
    auto const r = egress_policy{}.check_address(ip(text));
    EXPECT_EQ(!r, should_deny) << text;
    if (!r) {
        EXPECT_TRUE(r.error() == errc::egress_denied);
    }
}

INSTANTIATE_TEST_SUITE_P(
    every_form, wrapped_v4,
    testing::Values(
        // ::ffff:0:0/96, IPv4-mapped
        std::pair{"::ffff:127.0.0.1", true}, std::pair{"::ffff:7f00:1", true}, std::pair{"::ffff:169.254.169.254", true},
        std::pair{"::ffff:10.0.0.1", true}, std::pair{"::ffff:0.0.0.0", true}, std::pair{"::ffff:93.184.216.34", false},
        // ::/96, IPv4-compatible (:: and ::1 are denied on their own)
        std::pair{"::127.0.0.1", true}, std::pair{"::192.168.1.1", true}, std::pair{"::0.0.0.2", true},
        std::pair{"::93.184.216.34", false},
        // 64:ff9b::/96, NAT64
        std::pair{"64:ff9b::127.0.0.1", true}, std::pair{"64:ff9b::a9fe:a9fe", true}, std::pair{"64:ff9b::ac10:1", true},
        std::pair{"64:ff9b::5db8:d822", false},
        // 64:ff9b:1::/48, local-use NAT64 (RFC 8215): an operator's translator, denied whole
        std::pair{"64:ff9b:1::a9fe:a9fe", true}, std::pair{"64:ff9b:1:a9fe:a900:fe::", true},
        std::pair{"64:ff9b:1::5db8:d822", true},
        // 2002::/16, 6to4 (IPv4 in bytes 2-5)
        std::pair{"2002:7f00:1::", true}, std::pair{"2002:c0a8:101::1", true}, std::pair{"2002:a9fe:a9fe:1::1", true},
        std::pair{"2002:5db8:d822::1", false},
        // 2001::/32, Teredo (client IPv4 in the last four bytes, inverted)
        std::pair{"2001:0:4136:e378:8000:63bf:80ff:fffe", true},  // 127.0.0.1
        std::pair{"2001:0:4136:e378:8000:63bf:5601:5601", true},  // 169.254.169.254
        std::pair{"2001:0:4136:e378:8000:63bf:f5ff:fffe", true},  // 10.0.0.1
        std::pair{"2001:0:4136:e378:8000:63bf:a247:27dd", false}  // 93.184.216.34
        ));

TEST(wrapped_v4_test, error_names_the_inner_address_and_the_form) {
    auto const r = egress_policy{}.check_address(ip("2001:0:4136:e378:8000:63bf:5601:5601"));
    ASSERT_FALSE(r);
    auto const detail = r.error().detail();  // error() returns by value: copy, do not bind
    EXPECT_NE(detail.find("169.254.169.254"), std::string::npos) << detail;
    EXPECT_NE(detail.find("Teredo"), std::string::npos) << detail;
    EXPECT_NE(detail.find("--egress-allow"), std::string::npos) << detail;
}

class bracketed_trick : public testing::TestWithParam<std::string> {};

TEST_P(bracketed_trick, is_denied_in_a_url) {
    auto const r = egress_policy{}.check_url("https://" + GetParam() + "/");
    ASSERT_FALSE(r) << GetParam();
    EXPECT_TRUE(r.error() == errc::egress_denied) << r.error().detail();
}

INSTANTIATE_TEST_SUITE_P(reference, bracketed_trick,
                         testing::Values("[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[0:0:0:0:0:0:0:1]", "[::]",
                                         "[::1]", "[::127.0.0.1]", "[64:ff9b::169.254.169.254]", "[2002:7f00:1::]",
                                         "[2001:0:4136:e378:8000:63bf:80ff:fffe]", "[FE80::1]", "[::FFFF:A9FE:A9FE]"));

// ---------------------------------------------------------------------------------------------
// Operator allow-list and the host's own addresses

TEST(allow_list_test, lets_a_private_block_through) {
    egress_policy const policy{.allow = {block("10.20.0.0/16"), block("fd00:1::/32")}};
    EXPECT_TRUE(policy.check_address(ip("10.20.1.2")));
    EXPECT_TRUE(policy.check_address(ip("::ffff:10.20.1.2")));
    EXPECT_TRUE(policy.check_address(ip("fd00:1::5")));
    EXPECT_TRUE(policy.check_address(ip("10.21.0.1")).error() == errc::egress_denied);
    EXPECT_TRUE(policy.check_address(ip("127.0.0.1")).error() == errc::egress_denied);
    EXPECT_TRUE(policy.check_address(ip("fd00:2::5")).error() == errc::egress_denied);
}

TEST(allow_list_test, only_forms_that_reach_an_allowed_ipv4_address_are_allowed_with_it) {
    egress_policy const policy{.allow = {block("127.0.0.1/32"), block("10.20.0.0/16")}};
    // Mapped, compatible and NAT64 forms reach the IPv4 address itself.
    for (auto a : {"::ffff:127.0.0.1", "::ffff:10.20.1.2", "64:ff9b::a14:102"}) EXPECT_TRUE(policy.check_address(ip(a))) << a;
    // 6to4 and Teredo go to a relay elsewhere, never to the address they carry: allowing 127.0.0.1
    // allows neither (and the loopback they wrap is denied as ever).
    for (auto a : {"2002:7f00:1::1", "2002:a14:102::1", "2001:0:4136:e378:8000:63bf:80ff:fffe"}) {
        auto const r = policy.check_address(ip(a));
        ASSERT_FALSE(r) << a;
        EXPECT_TRUE(r.error() == errc::egress_denied) << a;
    }
}

TEST(allow_list_test, http_is_allowed_only_for_allow_listed_literals) {
    egress_policy const policy{.allow = {block("10.20.0.0/16"), block("fd00:1::/32")}};
    EXPECT_TRUE(policy.check_url("http://10.20.1.2:8080/hook"));
    EXPECT_TRUE(policy.check_url("http://10.20.258/hook"));  // 10.20.1.2 in inet_aton form
    EXPECT_TRUE(policy.check_url("http://[fd00:1::5]/hook"));
    EXPECT_TRUE(policy.check_url("http://[::ffff:10.20.1.2]/hook"));
    EXPECT_TRUE(policy.check_url("https://10.20.1.2/hook"));

    for (auto url : {"http://10.21.0.1/", "http://93.184.216.34/", "http://[2606:4700::1111]/",
                     "http://api.example.com/x", "HTTP://API.EXAMPLE.COM/x", "http://127.0.0.1/"}) {
        auto const r = policy.check_url(url);
        ASSERT_FALSE(r) << url;
        EXPECT_TRUE(r.error() == errc::egress_denied) << url;
    }
    EXPECT_NE(policy.check_url("http://93.184.216.34/").error().detail().find("https"), std::string::npos);
}

TEST(allow_list_test, without_an_allow_list_http_is_refused) {
    auto const r = egress_policy{}.check_url("http://93.184.216.34/");
    ASSERT_FALSE(r);
    EXPECT_TRUE(r.error() == errc::egress_denied);
}

TEST(own_endpoints_test, are_denied_even_when_allow_listed) {
    egress_policy const policy{.allow = {block("10.0.0.0/8"), block("0.0.0.0/0"), block("2606:4700::/32")},
                               .own_endpoints = {{block("10.0.0.5"), 8080}, {block("93.184.216.34"), 443},
                                                 {block("2606:4700::5"), 443}}};
    for (auto [text, port] : std::initializer_list<std::pair<char const*, std::uint16_t>>{
             {"10.0.0.5", 8080}, {"::ffff:10.0.0.5", 8080}, {"93.184.216.34", 443}, {"2606:4700::5", 443}, {"64:ff9b::a00:5", 8080}}) {
        auto const r = policy.check_endpoint(ip(text), port);
        ASSERT_FALSE(r) << text;
        EXPECT_TRUE(r.error() == errc::egress_denied);
        EXPECT_NE(r.error().detail().find("own"), std::string::npos) << r.error().detail();
    }
    // Another port on the same allow-listed address is another service.
    EXPECT_TRUE(policy.check_endpoint(ip("10.0.0.5"), 8081));
    EXPECT_TRUE(policy.check_endpoint(ip("10.0.0.6"), 8080));
    EXPECT_TRUE(policy.check_url("http://10.0.0.6:8080/"));
    EXPECT_TRUE(policy.check_url("http://10.0.0.5:9090/"));
    EXPECT_TRUE(policy.check_url("http://10.0.0.5:8080/").error() == errc::egress_denied);
    EXPECT_TRUE(policy.check_url("http://[::ffff:a00:5]:8080/").error() == errc::egress_denied);
    EXPECT_TRUE(policy.check_url("http://0xa000005:8080/").error() == errc::egress_denied);
    EXPECT_TRUE(policy.check_url("https://93.184.216.34/").error() == errc::egress_denied);  // the default port
}

TEST(own_endpoints_test, a_name_resolving_to_the_own_endpoint_is_denied) {
    egress_policy const policy{.allow = {block("127.0.0.0/8")}, .own_endpoints = {{block("127.0.0.0/8"), 8080}}};
    integration::net::static_resolver names;
    names.add("me.test", {ip("127.0.0.9")});
    auto const r = policy.check_destination("http://me.test:8080/x", names);
    ASSERT_FALSE(r);
    EXPECT_TRUE(r.error() == errc::egress_denied);
    EXPECT_TRUE(policy.check_destination("http://me.test:8081/x", names));
}

// The URL the process is reached at from outside (a load balancer's name or address) is denied
// like its own sockets, whatever the name resolves to; the same name at another port is not.
TEST(own_endpoints_test, the_own_public_url_is_denied_by_name_or_address) {
    egress_policy policy{.allow = {block("0.0.0.0/0")}};
    ASSERT_TRUE(policy.deny_own_url("https://Hooks.Example.com./integration"));
    ASSERT_TRUE(policy.deny_own_url("http://93.184.216.34:8080"));
    EXPECT_FALSE(policy.deny_own_url("not a url"));
    integration::net::static_resolver names;
    names.add("hooks.example.com", {ip("93.184.216.40")});
    for (auto url : {"https://hooks.example.com/webhooks/inbound/x", "https://HOOKS.example.com.:443/", "http://93.184.216.34:8080/x",
                     "http://0x5db8d822:8080/"}) {
        auto const r = policy.check_destination(url, names);
        ASSERT_FALSE(r) << url;
        EXPECT_TRUE(r.error() == errc::egress_denied) << url;
        EXPECT_NE(r.error().detail().find("own"), std::string::npos) << r.error().detail();
        EXPECT_FALSE(policy.check_static(url)) << url << ": registration refuses it too";
    }
    EXPECT_TRUE(policy.check_destination("https://hooks.example.com:8443/x", names));
    EXPECT_TRUE(policy.check_destination("http://93.184.216.34:8081/x", names));
}

// ---------------------------------------------------------------------------------------------
// URLs

class refused_scheme : public testing::TestWithParam<std::string> {};

TEST_P(refused_scheme, is_denied_with_a_hint) {
    auto const r = egress_policy{}.check_url(GetParam());
    ASSERT_FALSE(r) << GetParam();
    EXPECT_TRUE(r.error() == errc::egress_denied) << r.error().detail();
    EXPECT_NE(r.error().detail().find("https"), std::string::npos) << r.error().detail();
}

INSTANTIATE_TEST_SUITE_P(reference, refused_scheme,
                         testing::Values("file:///etc/passwd", "file://localhost/etc/passwd",
                                         "gopher://api.example.com:70/_GET", "dict://api.example.com:11211/stat",
                                         "ftp://api.example.com/x", "ws://api.example.com/", "wss://api.example.com/",
                                         "ldap://api.example.com/", "data:text/plain,hello", "javascript:alert(1)",
                                         "httpx://api.example.com/", "FILE:///etc/passwd"));

TEST(check_url_test, accepts_public_https) {
    egress_policy const policy;
    for (auto url : {"https://api.example.com/x", "HTTPS://API.Example.COM./x?q=1", "https://api.example.com:8443/x",
                     "https://api.example.com/x#frag", "https://93.184.216.34/", "https://[2606:4700::1111]/",
                     "https://api%2Eexample.com/", "https://my_host.example.com/", "https://xn--bcher-kva.example/",
                     "https://0xg.example/", "https://api.example.com:/x",
                     // Boost.URL 1.81 cuts these hosts short at the dotted quad (boostorg/url#755).
                     "https://127.0.0.1.nip.io/", "https://93.184.216.34.nip.io:8443/x?q#f", "https://1.2.3.4.example"}) {
        auto const r = policy.check_url(url);
        EXPECT_TRUE(r) << url << ": " << r.error().detail();
    }
}

TEST(check_url_test, refuses_userinfo) {
    for (auto url : {"https://evil.example@127.0.0.1/", "https://user:secret@api.example.com/",
                     "https://@api.example.com/", "https://api.example.com:443@93.184.216.34/"}) {
        auto const r = egress_policy{}.check_url(url);
        ASSERT_FALSE(r) << url;
        EXPECT_TRUE(r.error() == errc::egress_denied) << url;
        EXPECT_EQ(r.error().detail().find("secret"), std::string::npos);  // never echo a password
    }
}

TEST(check_url_test, fragment_does_not_hide_the_real_host) {
    auto const r = egress_policy{}.check_url("https://127.0.0.1#@evil.example/");
    ASSERT_FALSE(r);
    EXPECT_TRUE(r.error() == errc::egress_denied);
    EXPECT_NE(r.error().detail().find("127.0.0.1"), std::string::npos) << r.error().detail();

    EXPECT_TRUE(egress_policy{}.check_url("https://127.0.0.1?@evil.example/").error() == errc::egress_denied);
    EXPECT_TRUE(egress_policy{}.check_url("https://127.0.0.1/@evil.example/").error() == errc::egress_denied);
    EXPECT_FALSE(egress_policy{}.check_url("https://127.0.0.1\\@evil.example/"));
}

class denied_host_spelling : public testing::TestWithParam<std::string> {};

TEST_P(denied_host_spelling, is_normalised_then_denied) {
    auto const r = egress_policy{}.check_url("https://" + GetParam() + "/x");
    ASSERT_FALSE(r) << GetParam();
    EXPECT_TRUE(r.error() == errc::egress_denied) << GetParam() << ": " << r.error().detail();
}

INSTANTIATE_TEST_SUITE_P(percent_case_and_dots, denied_host_spelling,
                         testing::Values("localhost", "LOCALHOST", "LocalHost", "localhost.", "LOCALHOST.",
                                         "api.localhost", "Foo.LocalHost.", "%6c%6f%63%61%6c%68%6f%73%74",
                                         "%4C%4F%43%41%4C%48%4F%53%54", "%31%32%37.0.0.1", "%31%32%37%2e%31",
                                         "127%2E0%2E0%2E1", "%30x7f000001", "127.0.0.1.", "127.1.", "0X7F000001",
                                         "0X7F000001.", "169.254.169.254:443", "localhost:8443", "0:443",
                                         "127.0.0.1%2e", "127.0.0.1.:443", "127.0.0.1%2e:443"));

class malformed_url : public testing::TestWithParam<std::string> {};

TEST_P(malformed_url, is_an_invalid_argument) {
    auto const r = egress_policy{}.check_url(GetParam());
    ASSERT_FALSE(r) << GetParam();
    EXPECT_TRUE(r.error() == errc::invalid_argument) << GetParam() << ": " << r.error().detail();
}

INSTANTIATE_TEST_SUITE_P(
    reference, malformed_url,
    testing::Values("", "not a url", "api.example.com/x", "//api.example.com/x", "https:", "https:api.example.com",
                    "https:///x", "https://./x", "https://localhost../", "https://a..b/", "https://1.2.3.4.5/",
                    "https://999.1.1.1/", "https://1.2.3.08/", "https://evil.0x1/", "https://api.example.com:99999/",
                    "https://api.example.com:0/", "https://[v1.x]/", "https://[fe80::1%25eth0]/", "https://%00/",
                    "https://%5B%3A%3A1%5D/", "https://a%20b.example/", "https://127.0.0.1%00.evil.example/",
                    "https://a b/", "https://1.2.3.4%2e5/", "https://1.2.3.4.5:443/", "https://api.example.com:80x/",
                    "https://[::1]x/", "https://[2606:4700::1111]:443x/", "https://1.2.3.4:80x/", "https://%zz/",
                    "https://1.2.3.4.5:80:90/"));

}  // namespace
