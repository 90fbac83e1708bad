// A tour of the domain on the embedded default: a real SQLite file, the transactional outbox and
// an in-process event dispatcher. Usage: domain_tour [DATA_DIR]   (default ./data)

#include <integration/services/connection_service.hpp>
#include <integration/services/outbox_relay.hpp>
#include <integration/services/registry.hpp>
#include <integration/backends/sqlite/sqlite_store.hpp>

#include <boost/json/serialize.hpp>

#include <filesystem>
#include <iostream>

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
void check(result<void> r, char const* what) {
    if (!r) {
        std::cerr << what << ": " << r.error().message() << "\n";
        std::exit(1);
    }
}

}  // namespace

int main(int argc, char** argv) {
    std::filesystem::path dir = argc > 1 ? argv[1] : "data";
    std::filesystem::create_directories(dir);
    auto& clock = system_clock::instance();
    auto store = check(storage::open_sqlite_store({.path = (dir / "integration.db").string()}), "open store");
    std::cout << "store: " << (dir / "integration.db").string() << " (SQLite, WAL, synchronous=FULL)\n";

    events::in_process_dispatcher dispatcher;
    dispatcher.subscribe("*", [](events::event_envelope const& e) -> result<void> {
        std::cout << "  event " << e.event_type << " " << e.aggregate_id << " v" << e.aggregate_version << "\n";
        return {};
    });
    events::outbox_relay relay(*store, dispatcher);

    auto ctx = request_context::for_tenant("demo-tenant", "domain-tour");
    providers::registry registry(*store, clock, net::egress_policy{});
    connections::connection_service connections(*store, clock, net::egress_policy{});

    // Provider keys are unique per tenant, so each run of the tour uses a fresh one.
    auto suffix = std::to_string(to_unix_ms(clock.now()));
    auto provider = check(registry.register_provider(
                              ctx, {.key = "acme-sms-" + suffix,
                                    .display_name = "Acme SMS",
                                    .category = providers::provider_category::communication,
                                    .auth_model = auth_mode::api_key,
                                    .base_url = "https://api.acme.example",
                                    .capabilities = {"sms.send"},
                                    .health_check = providers::health_check{.path = "/health"}}),
                          "register provider");
    std::cout << "registered provider " << provider.id() << " (" << to_string(provider.status()) << ")\n";

    auto client = check(registry.register_client(ctx, provider.id(),
                                                 {.assembly_name = "Acme.Sms.ApiClient." + suffix,
                                                  .version = "1.0.0",
                                                  .capabilities = {"sms.send"},
                                                  .operations = {{"sms.send", "POST", "/v1/messages"}}}),
                        "register client");
    check(registry.activate_client(ctx, client.id()), "activate client");
    provider = check(registry.activate_provider(ctx, provider.id()), "activate provider");
    std::cout << "activated client " << client.id() << " and provider (" << to_string(provider.status()) << ")\n";

    // The credential row holds only a reference and a fingerprint; the secret lives in the vault.
    credentials::credential_spec cred_spec{.provider_id = provider.id(),
                                           .auth_mode = auth_mode::api_key,
                                           .key_vault_ref = "vault://local/demo-tenant/acme-key?version=1",
                                           .fingerprint = "hmac-sha256:" + std::string(64, '0'),
                                           .auth_parameters = {{"placement", {{"in", "header"}, {"name", "X-Api-Key"}}}}};
    std::string credential_id;
    check(store->transact(ctx,
                          [&](storage::unit_of_work& uow) -> result<void> {
                              auto c = credentials::integration_credential::create(ctx, clock.now(), cred_spec);
                              if (!c) return c.error();
                              credential_id = c->id();
                              return uow.credentials().save(*c);
                          }),
          "create credential");
    std::cout << "created credential " << credential_id << " (reference only)\n";

    connections::connection_spec conn_spec{.project_id = "proj-demo", .display_name = "Acme for demo", .credential_id = credential_id};
    auto connection = check(connections.create(ctx, provider.id(), conn_spec), "create connection");
    connection = check(connections.record_health(ctx, connection.id(), {health_status::healthy, "200 from /health"}),
                       "probe");
    check(store->transact(ctx,
                          [&](storage::unit_of_work& uow) -> result<void> {
                              auto c = uow.connections().find(connection.id());
                              if (!c) return c.error();
                              if (auto r = c->activate(true, clock.now()); !r) return r;
                              connection = *c;
                              return uow.connections().save(*c);
                          }),
          "activate connection");
    std::cout << "connection " << connection.id() << " is " << to_string(connection.status()) << "\n";

    std::string run_id;
    check(store->transact(ctx,
                          [&](storage::unit_of_work& uow) -> result<void> {
                              auto run = runs::integration_run::create(ctx, clock.now(), connection, "sms.send");
                              if (!run) return run.error();
                              if (auto r = run->start(connection, false, clock.now()); !r) return r;
                              if (auto r = run->record_attempt({1, runs::attempt_status::failed,
                                                                failures::failure_category::transient, 503, 41, clock.now()});
                                  !r)
                                  return r;
                              if (auto r = run->record_attempt({2, runs::attempt_status::succeeded, {}, 201, 87, clock.now()}); !r)
                                  return r;
                              if (auto r = run->complete(clock.now(), std::string("SM-0001"), {}); !r) return r;
                              run_id = run->id();
                              return uow.runs().save(*run);
                          }),
          "record run");
    check(store->read(ctx,
                      [&](storage::unit_of_work& uow) -> result<void> {
                          auto run = uow.runs().find(run_id);
                          if (!run) return run.error();
                          std::cout << "run read back: " << boost::json::serialize(aggregate_to_json(*run)) << "\n";
                          return {};
                      }),
          "read run");

    auto relayed = check(relay.run_once(), "relay outbox");
    std::cout << "relayed " << relayed << " events from the outbox\n";
    return 0;
}
