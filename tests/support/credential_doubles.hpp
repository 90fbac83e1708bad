#ifndef INTEGRATION_TESTS_SUPPORT_CREDENTIAL_DOUBLES_HPP
#define INTEGRATION_TESTS_SUPPORT_CREDENTIAL_DOUBLES_HPP

// Stand-ins for what a credential test does not talk to for real: a vault that can go down and a
// network that must not be used.

#include <integration/ports/secret_store.hpp>
#include <integration/ports/transport.hpp>
#include <integration/outbound/pipeline.hpp>
#include <integration/services/credential_service.hpp>

#include <gtest/gtest.h>

#include <functional>
#include <utility>

namespace integration::testing {

/** Wraps a real secret store; while `down`, reads and writes fail as if it were unreachable.
 *  `after_get` runs once, right after the next `get` read its secret; `after_put` once, right
 *  after the next `put` stored one. */
class switchable_vault final : public credentials::secret_store {
public:
    explicit switchable_vault(credentials::secret_store& inner) : inner_(inner) {}
    bool down = false;
    std::function<void()> after_get;
    std::function<void()> after_put;
    std::string const& name() const noexcept override { return inner_.name(); }
    result<credentials::secret_ref> put(std::string const& t, std::string const& n, secret_bytes const& v) override {
        if (down) return error{errc::unavailable, "vault unreachable"};
        auto out = inner_.put(t, n, v);
        if (auto hook = std::exchange(after_put, nullptr)) hook();
        return out;
    }
    result<secret_bytes> get(std::string const& t, credentials::secret_ref const& r) override {
        if (down) return error{errc::unavailable, "vault unreachable"};
        auto out = inner_.get(t, r);
        if (auto hook = std::exchange(after_get, nullptr)) hook();
        return out;
    }
    result<std::vector<credentials::secret_version_info>> versions(std::string const& t, std::string const& n) override {
        return inner_.versions(t, n);
    }
    result<void> disable(std::string const& t, credentials::secret_ref const& r) override { return inner_.disable(t, r); }
    result<void> soft_delete(std::string const& t, std::string const& n) override { return inner_.soft_delete(t, n); }
    result<void> recover(std::string const& t, std::string const& n) override { return inner_.recover(t, n); }
    result<void> purge(std::string const& t, std::string const& n) override { return inner_.purge(t, n); }
    result<std::size_t> purge_expired() override { return inner_.purge_expired(); }

private:
    credentials::secret_store& inner_;
};

/** A transport for tests that need no network: any call fails the test. */
class no_network final : public http::transport {
public:
    result<http::response> send(http::request const&) override {
        ADD_FAILURE() << "unexpected HTTP call";
        return error{errc::unavailable, "no network in this test"};
    }
};

/** Sends `req` with credential `id` applied, through a pipeline of the authentication policy
 *  alone (as a service's pipeline applies it; no egress checks, for loopback peers). */
inline result<http::response> send_authorized(credentials::credential_service& service, http::transport& transport,
                                              request_context const& ctx, std::string const& id, http::request req) {
    std::vector<std::unique_ptr<http::policy>> policies;
    policies.push_back(std::make_unique<credentials::authentication_policy>(service));
    http::pipeline pipeline(transport, std::move(policies));
    http::call_context call{.ctx = &ctx, .credential_id = id};
    return pipeline.send(req, call);
}

}  // namespace integration::testing

#endif
