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
    EXPECT_EQ(other.error(), errc::idempotency_key_reused);
    EXPECT_EQ(other.error().detail().find("sms.status"), std::string::npos);  // the request is not echoed
    must(keys.claim(b, "k-1", R"({"operation":"sms.status"})"));
    must(keys.release(a, "k-1"));
    must(keys.claim(a, "k-1", R"({"operation":"sms.status"})"));
    EXPECT_EQ(keys.claim(a, "", "x").error(), errc::invalid_argument);
    EXPECT_EQ(keys.claim(a, std::string(256, 'k'), "x").error(), errc::invalid_argument);
}

// A request whose run was written and then failed (its final save, a twin still executing)
// does not free the key: another request with it would be handed that run.
TEST(idempotency_keys, a_key_a_run_holds_is_not_released) {
    temp_dir dir;
    auto store = must(storage::open_sqlite_store({.path = dir.file("i.db")}));
    runs::idempotency_keys keys(*store);
    auto a = request_context::for_tenant("tenant-a");
    auto now = system_clock::instance().now();
    must(keys.claim(a, "k-run", R"({"operation":"sms.send","body":"A"})"));
    must(store->transact(a, [&](storage::unit_of_work& uow) -> result<void> {
        auto p = active_provider(a, now, "vendor");
        auto c = must(connections::integration_connection::create(a, now, p, connection_spec()));
        auto run = must(runs::integration_run::create(a, now, c, "sms.send", "k-run"));
        if (auto r = uow.providers().save(p); !r) return r;
        if (auto r = uow.connections().save(c); !r) return r;
        return uow.runs().save(run);
    }));
    must(keys.release(a, "k-run"));
    auto other = keys.claim(a, "k-run", R"({"operation":"sms.send","body":"B"})");
    ASSERT_FALSE(other) << "the key of a written run was freed for another request";
    EXPECT_EQ(other.error(), errc::idempotency_key_reused);
    must(keys.claim(a, "k-run", R"({"operation":"sms.send","body":"A"})"));
}

}  // namespace
}  // namespace integration::testing
