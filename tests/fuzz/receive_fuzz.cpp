// The whole receive path: `platform::inbound().receive` over a real SQLite store, local vault and
// blob directory in a temp dir, with one registered connection per scheme. The input: the first
// line names the scheme (standard, github, stripe, slack, twilio, shopify; anything else github),
// then `Name: value` header lines up to an empty line, then the body. Signed seeds reach the
// dedupe, the payload and the outbox; everything else is refused and recorded.
#include <integration/platform.hpp>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace {

using namespace integration;
using namespace integration::webhooks;

struct world {
    std::filesystem::path dir;
    // The seeds' time, so that their timestamps stay fresh whatever the day.
    manual_clock clock{time_point{std::chrono::milliseconds{1'614'265'330'000}}};
    std::unique_ptr<platform> p;
    std::map<std::string, std::string, std::less<>> connection_of;  // scheme name -> connection id

    world() {
        char pattern[] = "/tmp/integration-receive-fuzz-XXXXXX";
        dir = ::mkdtemp(pattern);
        platform_options options{.data_dir = (dir / "data").string(), .clock = &clock, .workers = {.start = false}};
        options.webhooks.deliver = false;
        options.webhooks.inbound.commit = durability::deferred;  // the fuzzer is after the parsing, not the fsync
        options.log = [](std::string_view, std::string_view) {};
        p = open_platform(options).value();
        auto const ctx = request_context::for_tenant("fuzz");
        auto provider = p->registry()
                            .register_provider(ctx, {.key = "vendor", .display_name = "Vendor",
                                                     .base_url = "https://vendor.example", .capabilities = {"hooks"}})
                            .value();
        auto client = p->registry()
                          .register_client(ctx, provider.id(),
                                           {.assembly_name = "Vendor.Hooks", .version = "1.0.0",
                                            .capabilities = {"hooks"}, .operations = {{"hooks", "POST", "/hooks"}}})
                          .value();
        p->registry().activate_client(ctx, client.id()).value();
        p->registry().activate_provider(ctx, provider.id()).value();
        // The reference vectors' secrets, so that the seeds verify.
        std::pair<inbound_scheme, char const*> const secrets[] = {
            {inbound_scheme::standard, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
            {inbound_scheme::github, "It's a Secret to Everybody"},
            {inbound_scheme::stripe, "whsec_test_secret"},
            {inbound_scheme::slack, "8f742231b10e8888abcd99yyyzzz85a5"},
            {inbound_scheme::twilio, "12345"},
            {inbound_scheme::shopify, "shop-secret"}};
        for (auto const& [scheme, secret] : secrets) {
            auto key = p->credentials().create(ctx, {.provider_id = provider.id(), .secret = secret_bytes("vendor-key")}).value();
            auto conn = p->connections()
                            .create(ctx, provider.id(),
                                    {.project_id = "p1", .display_name = std::string(to_string(scheme)), .credential_id = key.id()})
                            .value();
            p->inbound().register_endpoint(ctx, conn.id(), scheme, secret_bytes(secret)).value();
            connection_of.emplace(std::string(to_string(scheme)), conn.id());
        }
    }
    ~world() {
        p.reset();
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
    static world w;
    std::string_view rest(reinterpret_cast<char const*>(data), size);
    auto line = [&] {
        auto const nl = rest.find('\n');
        auto const l = rest.substr(0, nl);
        rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
        return l;
    };
    auto const scheme = line();
    auto const it = w.connection_of.find(scheme);
    auto const& connection = it == w.connection_of.end() ? w.connection_of.at("github") : it->second;
    std::vector<header_field> headers;
    std::string_view content_type, url = "https://hooks.example/webhooks/inbound/c";
    while (!rest.empty()) {
        auto const l = line();
        if (l.empty()) break;
        auto const colon = l.find(':');
        if (colon == std::string_view::npos) continue;
        auto value = l.substr(colon + 1);
        if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
        auto const name = l.substr(0, colon);
        if (name == "Content-Type") content_type = value;
        if (name == "X-Url") url = value;  // the URL Twilio signs
        headers.push_back({name, value});
    }
    auto out = w.p->inbound().receive(connection, {headers, rest, url, content_type});
    // A store or vault error is not a refusal, but nothing here should make one.
    if (!out) std::abort();
    bool const rejected = out->outcome == inbound_outcome::kind::rejected;
    if (rejected != out->refusal.has_value() || rejected == out->identity.has_value()) std::abort();
    return 0;
}
