#include <integration/core/context.hpp>

#include <gtest/gtest.h>

#include <string>

namespace {

using namespace integration;

bool lower_hex(std::string const& s, std::size_t n) {
    return s.size() == n && s.find_first_not_of("0123456789abcdef") == std::string::npos &&
           s.find_first_not_of('0') != std::string::npos;
}

TEST(trace_context_test, generate_makes_w3c_sized_nonzero_lower_hex_ids) {
    auto t = trace_context::generate();
    EXPECT_TRUE(lower_hex(t.trace_id, 32)) << t.trace_id;
    EXPECT_TRUE(lower_hex(t.span_id, 16)) << t.span_id;
    auto u = trace_context::generate();
    EXPECT_NE(t.trace_id, u.trace_id);
}

TEST(trace_context_test, traceparent_renders_and_parses_back) {
    auto t = trace_context::generate();
    auto header = t.traceparent();
    EXPECT_EQ(header, "00-" + t.trace_id + "-" + t.span_id + "-01");
    auto back = trace_context::parse_traceparent(header).value();
    EXPECT_EQ(back.trace_id, t.trace_id);
    EXPECT_EQ(back.span_id, t.span_id);

    auto w3c = trace_context::parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").value();
    EXPECT_EQ(w3c.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    EXPECT_EQ(w3c.span_id, "00f067aa0ba902b7");
}

class traceparent_rejects : public testing::TestWithParam<std::string> {};

TEST_P(traceparent_rejects, malformed_headers) {
    auto r = trace_context::parse_traceparent(GetParam());
    ASSERT_FALSE(r) << GetParam();
    EXPECT_TRUE(r.error() == errc::invalid_argument);
}

INSTANTIATE_TEST_SUITE_P(
    trace, traceparent_rejects,
    testing::Values("", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                    "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                    "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
                    "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
                    "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01"));

TEST(trace_context_test, a_child_span_keeps_the_trace) {
    auto t = trace_context::generate();
    auto c = t.child();
    EXPECT_EQ(c.trace_id, t.trace_id);
    EXPECT_NE(c.span_id, t.span_id);
    EXPECT_TRUE(lower_hex(c.span_id, 16));
}

TEST(request_context_test, for_tenant_scopes_to_the_tenant_with_a_fresh_trace_and_no_admin_rights) {
    auto c = request_context::for_tenant("t1", "alice");
    EXPECT_EQ(c.tenant_id, "t1");
    EXPECT_EQ(c.actor, "alice");
    EXPECT_FALSE(c.admin);
    EXPECT_TRUE(lower_hex(c.trace.trace_id, 32));
    EXPECT_NE(request_context::for_tenant("t1", "alice").trace.trace_id, c.trace.trace_id);
    EXPECT_EQ(request_context::for_tenant("t1").actor, "system");
}

TEST(request_context_test, tenant_ids_are_short_and_url_safe) {
    for (std::string ok :
         {std::string("t1"), std::string("acme-corp"), std::string("Acme_Corp.eu"), std::string(64, 'a')})
        EXPECT_TRUE(validate_tenant_id(ok)) << ok;
    for (std::string bad : {std::string(), std::string(65, 'a'), std::string("acme corp"), std::string("acme/corp"),
                            std::string("t1\n"), std::string("t\xc3\xa9"), std::string("."), std::string("..")}) {
        auto r = validate_tenant_id(bad);
        ASSERT_FALSE(r) << bad;
        EXPECT_TRUE(r.error() == errc::invalid_argument);
    }
}

}  // namespace
