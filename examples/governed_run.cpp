// One governed run through the platform, against a loopback stand-in for the vendor: register a
// provider and its API client, store a credential, create and probe a connection, execute.
// Usage: governed_run [DATA_DIR]   (default ./data; each run uses a tenant of its own)

#include "loopback_vendor.hpp"

#include <integration/platform.hpp>

#include <iostream>

int main(int argc, char** argv) try {
    loopback_vendor acme;
    std::string const dir = argc > 1 ? argv[1] : "./data";
    std::string const url = acme.url();

    // The README's "Using the library", line for line.
    using namespace integration;
    auto p = open_platform({.data_dir = dir, .egress = {.allow = {net::cidr::parse("127.0.0.0/8").value()}}}).value();
    auto ctx = request_context::for_tenant(new_id("tenant", p->clock().now()), "alice");  // fresh: rerun at will
    auto provider = p->registry().register_provider(ctx, {.key = "acme", .display_name = "Acme", .base_url = url,
                                                          .capabilities = {"sms.send"}}).value();
    auto client = p->registry().register_client(ctx, provider.id(), {.assembly_name = "Acme.Sms", .version = "1.0.0",
        .capabilities = {"sms.send"}, .operations = {{"sms.send", "POST", "/v1/messages"}}}).value();
    p->registry().activate_client(ctx, client.id()).value();
    p->registry().activate_provider(ctx, provider.id()).value();
    auto key = p->credentials().create(ctx, {.provider_id = provider.id(), .secret = secret_bytes("s3cr3t")}).value();
    auto conn = p->connections().create(ctx, provider.id(), {.project_id = "p1", .display_name = "Acme",
                                                             .credential_id = key.id()}).value();
    p->prober().test(ctx, conn.id()).value();  // the health check passes: the connection becomes Active
    auto out = p->runs().execute(ctx, {.connection_id = conn.id(), .operation = "sms.send"}).value();
    std::cout << "run " << to_string(out.run.status()) << ", vendor answered " << out.response->status << "\n";
    return 0;
} catch (std::exception const& e) {
    std::cerr << "governed_run: " << e.what() << "\n";
    return 1;
}
