// integration-host: the reference HTTP host over the library on the embedded default.

#include "access_log.hpp"
#include "application.hpp"
#include "config.hpp"
#include "server.hpp"
#include "services.hpp"

#include <boost/asio/signal_set.hpp>

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <thread>

namespace host = integration::host;

namespace {

int serve(std::vector<std::string> const& args) {
    auto flags = host::parse_flags(args, {});
    if (!flags) {
        std::cerr << flags.error().detail() << "\n" << host::usage();
        return 2;
    }
    auto config = host::load_serve_config(*flags);
    if (!config) {
        std::cerr << config.error().detail() << "\n";
        return 2;
    }
    auto listening = host::listen_on(config->listen);
    if (!listening) {
        std::cerr << "cannot start: " << listening.error().message() << "\n";
        return 1;
    }
    // With port 0, URLs the host hands out (inboundUrl, the OpenAPI servers) and the egress
    // policy's own endpoint need the real one.
    config->listen = listening->address();
    auto services = host::open_services(*config);
    if (!services) {
        std::cerr << "cannot start: " << services.error().message() << "\n";
        return 1;
    }
    auto& s = **services;
    host::application app(s);
    boost::asio::thread_pool workers(s.config.workers);
    boost::asio::thread_pool executions(s.config.execution_threads);
    host::server server(s.config, app, workers, executions);
    server.start(*listening);
    s.platform->start();

    // SIGTERM / SIGINT: stop accepting, let answers in progress be written, then return from run().
    boost::asio::signal_set signals(server.control(), SIGINT, SIGTERM);
    signals.async_wait([&](boost::system::error_code ec, int sig) {
        if (ec) return;
        host::log_event("info", "signal " + std::to_string(sig) + ": draining");
        server.stop();
        s.platform->request_stop();  // sweeps in progress finish; none starts
    });
    std::signal(SIGPIPE, SIG_IGN);

    std::cout << "listening on http://" << s.config.listen << std::endl;
    host::log_event("info", "listening on http://" + s.config.listen + " with data in " + s.config.data);

    server.run();
    workers.join();
    executions.join();
    // A sweep cannot be interrupted (a vendor call, a commit), so it gets until the deadline. Past
    // it the process ends without unwinding: the store rolls back the open transaction, leased
    // failures become due again when their lease expires, and unmarked outbox rows are relayed
    // again (at least once), so nothing is lost, but the exit code says the stop was not clean.
    if (!s.platform->stop(std::chrono::steady_clock::now() + s.config.shutdown_timeout)) {
        host::log_event("error", "background workers still running at the shutdown deadline; exiting");
        std::_Exit(1);
    }
    host::log_event("info", "stopped");
    return 0;
}

// Hidden: prints `METHOD PATTERN open|key|admin QUERY` per route (QUERY: the query parameters it
// takes, comma-separated, or `-`), so tests can compare the router with host/openapi.json. The
// handlers are registered on unopened services and never called.
int routes() {
    host::services none;
    host::application app(none);
    for (auto const& r : app.routes().routes()) {
        std::string query;
        for (auto q : r.options.query) query += (query.empty() ? "" : ",") + std::string(q);
        std::cout << r.method << " " << r.pattern << " " << host::access_name(r.options.who) << " "
                  << (query.empty() ? "-" : query) << "\n";
    }
    return 0;
}

int keys_create(std::vector<std::string> const& args) {
    auto flags = host::parse_flags(args, {"admin"});
    if (!flags) {
        std::cerr << flags.error().detail() << "\n" << host::usage();
        return 2;
    }
    auto config = host::load_keys_create_config(*flags);
    if (!config) {
        std::cerr << config.error().detail() << "\n" << host::usage();
        return 2;
    }
    auto store = host::open_store(config->data);
    if (!store) {
        std::cerr << store.error().message() << "\n";
        return 1;
    }
    integration::keys::api_key_service keys(**store);
    auto key = keys.create(config->tenant, config->admin);
    if (!key) {
        std::cerr << key.error().message() << "\n";
        return 1;
    }
    std::cout << "created " << (config->admin ? "an admin" : "an") << " API key for tenant " << config->tenant
              << "; it is shown once, store it now:\n"
              << *key << std::endl;
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
        std::cout << host::usage();
        return args.empty() ? 2 : 0;
    }
    try {
        auto help = [](std::string const& a) { return a == "--help" || a == "-h"; };
        if (args.size() > 1 && help(args[1])) {
            std::cout << host::usage();
            return 0;
        }
        if (args[0] == "serve") return serve({args.begin() + 1, args.end()});
        if (args[0] == "routes") return routes();
        if (args[0] == "keys" && args.size() > 1 && args[1] == "create") return keys_create({args.begin() + 2, args.end()});
    } catch (std::exception const& e) {
        std::cerr << "integration-host: " << e.what() << "\n";
        return 1;
    }
    std::cerr << "unknown command\n" << host::usage();
    return 2;
}
