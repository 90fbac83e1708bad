#ifndef INTEGRATION_TESTS_HOST_API_STEPS_HPP
#define INTEGRATION_TESTS_HOST_API_STEPS_HPP

// The steps most host tests take over HTTP: a provider with an Active client, a credential, a
// connection probed at once, a run; each checks its own answer.

#include "host/http_client.hpp"

#include <gtest/gtest.h>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <string>

namespace integration::testing {

inline std::string str(boost::json::value const& v, char const* name) { return std::string(v.at(name).as_string()); }

inline std::string problem_type(http_answer const& a) { return str(a.json(), "type"); }
inline std::string problem_detail(http_answer const& a) { return str(a.json(), "detail"); }

inline boost::json::object op(std::string const& name, std::string const& method, std::string const& path) {
    return {{"operation", name}, {"method", method}, {"path", path}};
}

/** An operation whose vendor dedupes repeated requests by `Idempotency-Key`: retried like a GET. */
inline boost::json::object keyed_op(std::string const& name, std::string const& method, std::string const& path) {
    auto o = op(name, method, path);
    o["idempotencyHeader"] = "Idempotency-Key";
    return o;
}

/** A provider with one Active client of `operations` (capabilities are their names) and a
 *  `GET /health` check expecting 200; `extra` adds fields to the provider. */
inline std::string provider_with(api const& a, std::string const& key, std::string const& base_url,
                                 boost::json::array operations, boost::json::object extra = {}) {
    boost::json::array caps;
    for (auto const& o : operations) caps.push_back(o.at("operation"));
    boost::json::object body{{"key", key}, {"displayName", key}, {"category", "BusinessSystem"},
                             {"authModel", "ApiKey"}, {"baseUrl", base_url}, {"capabilities", caps},
                             {"healthCheck", boost::json::object{{"method", "GET"}, {"path", "/health"},
                                                                 {"expectStatus", 200}}}};
    for (auto const& [k, v] : extra) body[k] = v;
    auto p = a.post("/integrations/providers", body);
    EXPECT_EQ(p.status, 201) << p.body;
    if (p.status != 201) return {};
    auto id = str(p.json(), "providerId");
    auto c = a.post("/integrations/providers/" + id + "/clients",
                    boost::json::object{{"assemblyName", key + ".Client"}, {"version", "1.0.0"}, {"capabilities", caps},
                                        {"authMode", "ApiKey"}, {"operations", operations}});
    EXPECT_EQ(c.status, 201) << c.body;
    auto act = a.post("/integrations/providers/" + id + "/activate", boost::json::object{});
    EXPECT_EQ(act.status, 200) << act.body;
    return id;
}

inline std::string create_credential(api const& a, boost::json::object body) {
    auto cred = a.post("/integrations/credentials", body);
    EXPECT_EQ(cred.status, 201) << cred.body;
    return cred.status == 201 ? str(cred.json(), "credentialId") : std::string();
}

/** An API key sent in `X-Api-Key`. */
inline std::string api_key_credential(api const& a, std::string const& provider, std::string const& secret) {
    return create_credential(a, {{"providerId", provider}, {"authMode", "ApiKey"}, {"secret", secret},
                                 {"apiKey", boost::json::object{{"in", "header"}, {"name", "X-Api-Key"}}}});
}

/** Creates a connection (probed at once); returns the answer. */
inline http_answer connect(api const& a, std::string const& provider, std::string const& credential) {
    return a.post("/integrations/connections", boost::json::object{{"projectId", "p"}, {"providerId", provider},
                                                                    {"displayName", "c"}, {"credentialId", credential}});
}

inline std::string active_connection(api const& a, std::string const& provider, std::string const& credential) {
    auto c = connect(a, provider, credential);
    EXPECT_EQ(c.status, 201) << c.body;
    if (c.status != 201) return {};
    EXPECT_EQ(str(c.json(), "status"), "Active") << c.body;
    return str(c.json(), "connectionId");
}

inline http_answer run(api const& a, std::string const& connection, std::string const& operation, boost::json::object input) {
    return a.post("/integrations/runs",
                  boost::json::object{{"connectionId", connection}, {"operation", operation}, {"input", input}});
}

}  // namespace integration::testing

#endif
