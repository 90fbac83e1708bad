#include <integration/core/id.hpp>

#include <integration/core/time.hpp>
#include <integration/ports/clock.hpp>

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <unordered_set>
#include <vector>

namespace {

using namespace integration;

constexpr std::string_view crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/** Decodes the 10 time characters of a ULID body into milliseconds. */
std::uint64_t ulid_time_ms(std::string_view body) {
    std::uint64_t ms = 0;
    for (char c : body.substr(0, 10)) ms = ms * 32 + crockford.find(c);
    return ms;
}

TEST(id_test, new_id_is_prefix_dash_and_26_crockford_characters) {
    manual_clock clock;
    for (auto prefix : {id_prefix::connection, id_prefix::provider, id_prefix::credential, id_prefix::subscription,
                        id_prefix::delivery, id_prefix::api_client, id_prefix::run, id_prefix::failure,
                        id_prefix::event}) {
        auto id = new_id(prefix, clock.now());
        ASSERT_EQ(id.size(), prefix.size() + 1 + 26) << id;
        EXPECT_EQ(id.substr(0, prefix.size()), prefix);
        EXPECT_EQ(id[prefix.size()], '-');
        auto body = std::string_view(id).substr(prefix.size() + 1);
        EXPECT_EQ(body.find_first_not_of(crockford), std::string_view::npos) << id;
        EXPECT_TRUE(is_valid_id(id, prefix)) << id;
    }
}

TEST(id_test, the_seed_prefixes_are_spelled_as_documented) {
    EXPECT_EQ(id_prefix::connection, "conn");
    EXPECT_EQ(id_prefix::provider, "prov");
    EXPECT_EQ(id_prefix::credential, "cred");
    EXPECT_EQ(id_prefix::subscription, "sub");
    EXPECT_EQ(id_prefix::delivery, "del");
    EXPECT_EQ(id_prefix::api_client, "client");
    EXPECT_EQ(id_prefix::run, "run");
    EXPECT_EQ(id_prefix::failure, "fail");
}

TEST(id_test, the_first_ten_characters_encode_the_millisecond_timestamp) {
    manual_clock clock;
    clock.advance(std::chrono::milliseconds{1234});
    auto id = new_id("run", clock.now());
    EXPECT_EQ(ulid_time_ms(std::string_view(id).substr(4)), static_cast<std::uint64_t>(to_unix_ms(clock.now())));

    // The example of the ULID specification.
    auto spec_example = new_id("x", from_unix_ms(1'469'918'176'385));
    EXPECT_EQ(spec_example.substr(2, 10), "01ARYZ6S41");
}

TEST(id_test, ids_sort_by_creation_time_across_milliseconds) {
    manual_clock clock;
    std::vector<std::string> ids;
    for (int i = 0; i < 200; ++i) {
        ids.push_back(new_id("conn", clock.now()));
        clock.advance(std::chrono::milliseconds{1 + i % 3});
    }
    EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
    EXPECT_EQ(std::adjacent_find(ids.begin(), ids.end()), ids.end());

    // Far apart instants too: the epoch, now, and the year 2200.
    EXPECT_LT(new_id("conn", from_unix_ms(0)), new_id("conn", from_unix_ms(1)));
    EXPECT_LT(new_id("conn", from_unix_ms(1)), new_id("conn", from_unix_ms(1'767'225'600'000)));
    EXPECT_LT(new_id("conn", from_unix_ms(1'767'225'600'000)), new_id("conn", from_unix_ms(7'258'118'400'000)));
}

// A store walking ids in order stops at first_id_at(cutoff): nothing made at or after the
// cutoff may sort below it, nothing made before it may sort above it.
TEST(id_test, first_id_at_bounds_the_ids_made_before_and_after_an_instant) {
    auto at = from_unix_ms(1'767'225'600'123);
    auto bound = first_id_at("run", at);
    EXPECT_TRUE(is_valid_id(bound, "run")) << bound;
    EXPECT_EQ(bound.substr(4, 10), new_id("run", at).substr(4, 10));  // the same instant
    EXPECT_EQ(bound.substr(14), std::string(16, '0'));                 // no random bits
    for (int i = 0; i < 1000; ++i) {
        EXPECT_LE(bound, new_id("run", at));
        EXPECT_LT(bound, new_id("run", at + std::chrono::milliseconds(1 + i)));
        EXPECT_LT(new_id("run", at - std::chrono::milliseconds(1 + i)), bound);
    }
    EXPECT_EQ(first_id_at("fail", from_unix_ms(-5)), "fail-" + std::string(26, '0'));  // before the epoch: the least
}

TEST(id_test, ten_thousand_ids_in_one_millisecond_are_unique_and_not_sequential) {
    manual_clock clock;
    std::unordered_set<std::string> seen;
    std::string previous;
    int ascending = 0;
    for (int i = 0; i < 10'000; ++i) {
        auto id = new_id("evt", clock.now());
        EXPECT_TRUE(seen.insert(id).second) << "duplicate " << id;
        if (id > previous) ++ascending;
        previous = id;
    }
    EXPECT_EQ(seen.size(), 10'000u);
    // The 80 random bits come from a CSPRNG, so ids minted in one millisecond are not a counter.
    EXPECT_LT(ascending, 9'000);
}

class is_valid_id_rejects : public testing::TestWithParam<std::string> {};

TEST_P(is_valid_id_rejects, malformed_ids) { EXPECT_FALSE(is_valid_id(GetParam(), "conn")) << GetParam(); }

INSTANTIATE_TEST_SUITE_P(
    id, is_valid_id_rejects,
    testing::Values("", "conn", "conn-", "conn-01JD3Q8V6X4T2M9R5B7N1K0FZ",   // 25 characters
                    "conn-01JD3Q8V6X4T2M9R5B7N1K0FZCA",                      // 27 characters
                    "prov-01JD3Q8V6X4T2M9R5B7N1K0FZC",                       // another prefix
                    "con-01JD3Q8V6X4T2M9R5B7N1K0FZC", "connn-01JD3Q8V6X4T2M9R5B7N1K0FZC",
                    "conn_01JD3Q8V6X4T2M9R5B7N1K0FZC",                       // wrong separator
                    "conn-01jd3q8v6x4t2m9r5b7n1k0fzc",                       // lower case
                    "conn-01JD3Q8V6X4T2M9R5B7N1K0FZI", "conn-01JD3Q8V6X4T2M9R5B7N1K0FZL",
                    "conn-01JD3Q8V6X4T2M9R5B7N1K0FZO", "conn-01JD3Q8V6X4T2M9R5B7N1K0FZU",
                    "conn-81JD3Q8V6X4T2M9R5B7N1K0FZC",                       // over 128 bits
                    "conn-01JD3Q8V6X4T2M9R5B7N1K0FZ-", "CONN-01JD3Q8V6X4T2M9R5B7N1K0FZC",
                    " conn-01JD3Q8V6X4T2M9R5B7N1K0FZC", std::string("conn-01JD3Q8V6X4T2M9R5B7N1K0F\0C", 31)));

TEST(id_test, is_valid_id_accepts_the_documented_example_and_the_largest_value) {
    EXPECT_TRUE(is_valid_id("conn-01JD3Q8V6X4T2M9R5B7N1K0FZC", "conn"));
    EXPECT_TRUE(is_valid_id("conn-7ZZZZZZZZZZZZZZZZZZZZZZZZZ", "conn"));
    EXPECT_TRUE(is_valid_id("conn-00000000000000000000000000", "conn"));
}

TEST(id_test, random_bytes_fills_the_buffer) {
    std::array<unsigned char, 32> a{}, b{};
    random_bytes(a.data(), a.size());
    random_bytes(b.data(), b.size());
    EXPECT_NE(a, b);
    EXPECT_NE(a, (std::array<unsigned char, 32>{}));
}

}  // namespace

namespace integration {
namespace {

TEST(id_test, a_forked_child_never_repeats_the_ids_its_parent_makes_next) {
    auto now = system_clock::instance().now();
    (void)new_id("run", now);  // the parent's pool is filled
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        auto id = new_id("run", now);
        (void)::write(fds[1], id.data(), id.size());
        ::_exit(0);
    }
    ::close(fds[1]);
    char buf[64] = {};
    auto n = ::read(fds[0], buf, sizeof buf);
    ::close(fds[0]);
    ::waitpid(child, nullptr, 0);
    ASSERT_GT(n, 0);
    EXPECT_NE(std::string(buf, static_cast<std::size_t>(n)), new_id("run", now));
}

}  // namespace
}  // namespace integration
