#include <integration/services/api_key_service.hpp>

#include "storage/fixtures.hpp"

#include <integration/backends/sqlite/sqlite_store.hpp>

#include "support/sqlite_file.hpp"

#include <fstream>
#include <iterator>

namespace integration::testing {
namespace {

TEST(api_key_service, keys_are_random_found_by_their_owner_and_stored_hashed) {
    temp_dir dir;
    std::string a, admin;
    {
        auto store = must(storage::open_sqlite_store({.path = dir.file("i.db")}));
        keys::api_key_service keys(*store);
        a = must(keys.create("tenant-a", false));
        admin = must(keys.create("ops", true));
        EXPECT_EQ(a.rfind("ik_", 0), 0u);
        EXPECT_EQ(a.size(), 3u + 43u);
        EXPECT_NE(a, admin);
        EXPECT_EQ(keys.create("bad tenant!", false).error(), errc::invalid_argument);
    }
    for (auto const& f : {dir.file("i.db"), dir.file("i.db-wal")}) {
        std::ifstream in(f, std::ios::binary);
        std::string bytes{std::istreambuf_iterator<char>(in), {}};
        EXPECT_EQ(bytes.find(a.substr(3)), std::string::npos) << f;
    }
    auto store = must(storage::open_sqlite_store({.path = dir.file("i.db")}));
    keys::api_key_service keys(*store);
    auto owner = must(keys.find(a));
    ASSERT_TRUE(owner);
    EXPECT_EQ(owner->tenant_id, "tenant-a");
    EXPECT_FALSE(owner->admin);
    EXPECT_EQ(owner->key_hash.size(), 64u);
    EXPECT_EQ(owner->key_hash.find(a.substr(3)), std::string::npos);
    EXPECT_TRUE(must(keys.find(admin))->admin);
    EXPECT_FALSE(must(keys.find(a + "x")));
    EXPECT_FALSE(must(keys.find("not-a-key")));
    EXPECT_FALSE(must(keys.find("")));
}

// A found key is kept for cache_ttl, so a lookup per request costs no store read; a key deleted
// from the store (revoked) stops working once that passes, and an unknown key is never cached.
TEST(api_key_service, a_cached_key_stops_working_within_the_ttl_once_revoked) {
    temp_dir dir;
    manual_clock clock;
    auto store = must(storage::open_sqlite_store({.path = dir.file("i.db")}));
    keys::api_key_service keys(*store, {.cache_ttl = std::chrono::seconds(1), .clock = &clock});
    auto key = must(keys.create("tenant-a", false));
    ASSERT_TRUE(must(keys.find(key)));
    exec_sql(dir.file("i.db"), "DELETE FROM api_keys");
    EXPECT_TRUE(must(keys.find(key))) << "served from the cache within its TTL";
    clock.advance(std::chrono::milliseconds(1'001));
    EXPECT_FALSE(must(keys.find(key))) << "a revoked key must stop working once the TTL passed";

    auto late = must(keys.create("tenant-b", false));
    EXPECT_TRUE(must(keys.find(late))) << "a new key works at once";
    keys::api_key_service uncached(*store, {.cache_ttl = std::chrono::milliseconds(0), .clock = &clock});
    EXPECT_TRUE(must(uncached.find(late)));
}

}  // namespace
}  // namespace integration::testing
