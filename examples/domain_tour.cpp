// A tour of the domain through the platform on the embedded default (a real SQLite file, the local
// vault, the transactional outbox): a provider and its API client, a credential whose secret goes
// to the vault, a connection made Active by its health check, a governed run against a loopback
// stand-in for the vendor, and the events the outbox relay publishes.
// Usage: domain_tour [DATA_DIR]   (default ./data)

#include "loopback_vendor.hpp"

#include <integration/platform.hpp>

#include <boost/json/serialize.hpp>

#include <condition_variable>
#include <iostream>
#include <mutex>

using namespace integration;

namespace {

template <class T>
T check(result<T> r, char const* what) {
    if (!r) {
        std::cerr << what << ": " << r.error().message() << "\n";
        std::exit(1);
    }
    return std::move(*r);
}

}  // namespace

int main(int argc, char** argv) {
    loopback_vendor acme;
    std::string dir = argc > 1 ? argv[1] : "./data";
    // Events reach subscribers through the outbox relay, which the platform runs every 50 ms here.
    auto p = check(open_platform({.data_dir = dir,
                                  .egress = {.allow = {net::cidr::parse("127.0.0.0/8").value()}},
                                  .workers = {.outbox = std::chrono::milliseconds(50)}}),
                   "open platform");
    std::cout << "platform on " << dir << " (SQLite store, local vault, filesystem blobs)\n";

    std::mutex mutex;
    std::condition_variable relayed;
    bool run_event = false;
    auto ctx = request_context::for_tenant(new_id("tenant", p->clock().now()), "domain-tour");
    p->events().subscribe("*", [&](events::event_envelope const& e) -> result<void> {
        if (e.tenant_id != ctx.tenant_id) return {};
        std::lock_guard lock(mutex);
        std::cout << "  event " << e.event_type << " " << e.aggregate_id << " v" << e.aggregate_version << "\n";
        run_event = run_event || e.event_type == events::event_type::run_completed;
        relayed.notify_all();
        return {};
    });

    auto& registry = p->registry();
    auto provider = check(registry.register_provider(ctx, {.key = "acme-sms",
                                                           .display_name = "Acme SMS",
                                                           .category = providers::provider_category::communication,
                                                           .auth_model = auth_mode::api_key,
                                                           .base_url = acme.url(),
                                                           .capabilities = {"sms.send"},
                                                           .health_check = providers::health_check{.path = "/health"}}),
                          "register provider");
    auto client = check(registry.register_client(ctx, provider.id(),
                                                 {.assembly_name = "Acme.Sms.ApiClient",
                                                  .version = "1.0.0",
                                                  .capabilities = {"sms.send"},
                                                  .operations = {{"sms.send", "POST", "/v1/messages"}}}),
                        "register client");
    check(registry.activate_client(ctx, client.id()), "activate client");
    provider = check(registry.activate_provider(ctx, provider.id()), "activate provider");
    std::cout << "provider " << provider.id() << " is " << to_string(provider.status()) << "\n";

    // The credential row holds only a reference and a fingerprint; the secret lives in the vault.
    auto credential =
        check(p->credentials().create(ctx, {.provider_id = provider.id(),
                                            .secret = secret_bytes("acme-demo-key"),
                                            .api_key = credentials::api_key_placement{.name = "X-Api-Key"}}),
              "create credential");
    std::cout << "credential " << credential.id() << " refers to " << credential.data().key_vault_ref << "\n";

    auto connection =
        check(p->connections().create(
                  ctx, provider.id(),
                  {.project_id = "proj-demo", .display_name = "Acme for demo", .credential_id = credential.id()}),
              "create connection");
    connection = check(p->prober().test(ctx, connection.id()), "probe connection");
    std::cout << "connection " << connection.id() << " is " << to_string(connection.status()) << "\n";

    auto outcome = check(p->runs().execute(ctx, {.connection_id = connection.id(),
                                                 .operation = "sms.send",
                                                 .input = {.body = R"({"to":"+15550100","text":"hello"})"}}),
                         "execute");
    std::cout << "run read back: " << boost::json::serialize(aggregate_to_json(outcome.run)) << "\n";

    bool seen = false;
    {
        std::unique_lock lock(mutex);
        seen = relayed.wait_for(lock, std::chrono::seconds(10), [&] { return run_event; });
    }
    p->stop();  // nothing reaches the subscriber, whose state ends with main, after this
    if (!seen) std::cerr << "the outbox relay published no IntegrationRunCompleted within 10 s\n";
    return seen ? 0 : 1;
}
