// Resolving an API-key credential for one request:
//   resolve_cached    - material reused from memory (the steady state)
//   resolve_uncached  - point read of the credential row + vault read + two AES-256-GCM opens
//   raw_aes_gcm_open  - baseline: one OpenSSL AES-256-GCM decrypt of a 64-byte secret, same process

#include <integration/services/credential_service.hpp>
#include <integration/backends/local_vault/local_secret_store.hpp>
#include <integration/backends/sqlite/sqlite_store.hpp>

#include <benchmark/benchmark.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <filesystem>

using namespace integration;

namespace {

class no_network final : public http::transport {
public:
    result<http::response> send(http::request const&) override { return error{errc::unavailable, "none"}; }
};

struct fixture {
    std::filesystem::path dir;
    std::unique_ptr<storage::store> store;
    std::unique_ptr<credentials::local_secret_store> vault;
    std::optional<credentials::fingerprinter> fp;
    no_network net;
    net::static_resolver dns;
    std::unique_ptr<credentials::credential_service> service;
    request_context ctx = request_context::for_tenant("bench");
    std::string credential_id;

    explicit fixture(std::chrono::milliseconds ttl) {
        dir = std::filesystem::temp_directory_path() / ("integration-cred-bench-" + std::to_string(ttl.count()));
        std::filesystem::remove_all(dir);
        std::filesystem::create_directories(dir);
        store = storage::open_sqlite_store({.path = (dir / "i.db").string()}).value();
        vault = credentials::open_local_secret_store({.path = (dir / "s.db").string(), .key_file = (dir / "k").string(), .key_env = ""}).value();
        fp.emplace(credentials::fingerprinter::load_or_create((dir / "fp").string()).value());
        service = std::make_unique<credentials::credential_service>(*store, *vault, *fp, system_clock::instance(), net,
                                                                     net::egress_policy{}, dns,
                                                                     credentials::credential_service_options{.material_ttl = ttl});
        std::string provider_id;
        store->transact(ctx, [&](storage::unit_of_work& uow) -> result<void> {
                 providers::provider_spec spec;
                 spec.key = "bench";
                 spec.display_name = "Bench";
                 spec.base_url = "https://bench.example";
                 auto p = providers::integration_provider::register_new(ctx, system_clock::instance().now(), spec).value();
                 provider_id = p.id();
                 return uow.providers().save(p);
             }).value();
        credential_id = service->create(ctx, {.provider_id = provider_id, .secret = secret_bytes(std::string(64, 'k')),
                                              .api_key = credentials::api_key_placement{.prefix = "Bearer "}})
                            .value()
                            .id();
    }
    ~fixture() { std::filesystem::remove_all(dir); }
};

void resolve_cached(benchmark::State& state) {
    fixture f(std::chrono::hours(1));
    f.service->resolve(f.ctx, f.credential_id).value();
    for (auto _ : state) benchmark::DoNotOptimize(f.service->resolve(f.ctx, f.credential_id));
}
BENCHMARK(resolve_cached);

void resolve_uncached(benchmark::State& state) {
    fixture f(std::chrono::milliseconds(0));
    for (auto _ : state) benchmark::DoNotOptimize(f.service->resolve(f.ctx, f.credential_id));
}
BENCHMARK(resolve_uncached);

void raw_aes_gcm_open(benchmark::State& state) {
    unsigned char key[32], nonce[12], tag[16], pt[64], ct[64], out[64];
    RAND_bytes(key, 32);
    RAND_bytes(nonce, 12);
    RAND_bytes(pt, 64);
    int len = 0;
    auto* e = EVP_CIPHER_CTX_new();
    EVP_EncryptInit_ex(e, EVP_aes_256_gcm(), nullptr, key, nonce);
    EVP_EncryptUpdate(e, ct, &len, pt, 64);
    EVP_EncryptFinal_ex(e, ct + len, &len);
    EVP_CIPHER_CTX_ctrl(e, EVP_CTRL_GCM_GET_TAG, 16, tag);
    EVP_CIPHER_CTX_free(e);
    for (auto _ : state) {
        auto* d = EVP_CIPHER_CTX_new();
        EVP_DecryptInit_ex(d, EVP_aes_256_gcm(), nullptr, key, nonce);
        EVP_DecryptUpdate(d, out, &len, ct, 64);
        EVP_CIPHER_CTX_ctrl(d, EVP_CTRL_GCM_SET_TAG, 16, tag);
        benchmark::DoNotOptimize(EVP_DecryptFinal_ex(d, out + len, &len));
        EVP_CIPHER_CTX_free(d);
    }
}
BENCHMARK(raw_aes_gcm_open);

}  // namespace

BENCHMARK_MAIN();
