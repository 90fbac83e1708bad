// Writes N providers into a SQLite store: the second process of the two-process tests.
// Usage: storage_probe DB TENANT KEY_PREFIX N

#include <integration/domain/provider.hpp>
#include <integration/backends/sqlite/sqlite_store.hpp>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
    using namespace integration;
    if (argc != 5) {
        std::fprintf(stderr, "usage: storage_probe DB TENANT KEY_PREFIX N\n");
        return 2;
    }
    auto store = storage::open_sqlite_store({.path = argv[1]});
    if (!store) {
        std::fprintf(stderr, "open: %s\n", store.error().message().c_str());
        return 1;
    }
    auto ctx = request_context::for_tenant(argv[2], "probe");
    int n = std::stoi(argv[4]);
    for (int i = 0; i < n; ++i) {
        auto r = (*store)->transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
            providers::provider_spec spec;
            spec.key = std::string(argv[3]) + std::to_string(i);
            spec.display_name = "probe";
            spec.base_url = "https://probe.example";
            auto p = providers::integration_provider::register_new(ctx, system_clock::instance().now(), spec);
            if (!p) return p.error();
            return uow.providers().save(*p);
        });
        if (!r) {
            std::fprintf(stderr, "write %d: %s\n", i, r.error().message().c_str());
            return 1;
        }
    }
    return 0;
}
