#include <integration/services/idempotency_keys.hpp>

#include "storage/fixtures.hpp"

#include <integration/backends/sqlite/sqlite_store.hpp>

namespace integration::testing {
namespace {

TEST(idempotency_keys, a_key_is_bound_to_its_first_request_per_tenant_until_released) {
    temp_dir dir;
    auto store = must(storage::open_sqlite_store({.path = dir.file("i.db")}));
    runs::idempotency_keys keys(*store);
    auto a = request_context::for_tenant("tenant-a"), b = request_context::for_tenant("tenant-b");
    must(keys.claim(a, "k-1", R"({"operation":"sms.send"})"));
    must(keys.claim(a, "k-1", R"({"operation":"sms.send"})"));
    auto other = keys.claim(a, "k-1", R"({"operation":"sms.status"})");
    ASSERT_FALSE(other);
    EXPECT_EQ(other.error(), errc::conflict);
    EXPECT_EQ(other.error().detail().find("sms.status"), std::string::npos);  // the request is not echoed
    must(keys.claim(b, "k-1", R"({"operation":"sms.status"})"));
    must(keys.release(a, "k-1"));
    must(keys.claim(a, "k-1", R"({"operation":"sms.status"})"));
    EXPECT_EQ(keys.claim(a, "", "x").error(), errc::invalid_argument);
    EXPECT_EQ(keys.claim(a, std::string(256, 'k'), "x").error(), errc::invalid_argument);
}

}  // namespace
}  // namespace integration::testing
