#ifndef INTEGRATION_DOMAIN_WEBHOOK_FILTER_HPP
#define INTEGRATION_DOMAIN_WEBHOOK_FILTER_HPP

/** @file
 *  A subscription's payload filter: a small JSON predicate language over the event payload.
 *
 *  A filter is a JSON object holding exactly one operator:
 *  - `{"equals": {"path": "$.order.status", "value": "paid"}}`: the value at `path` equals `value`
 *    (JSON equality; numbers compare by value).
 *  - `{"in": {"path": "$.region", "values": ["eu", "us"]}}`: the value at `path` equals one of `values`.
 *  - `{"exists": {"path": "$.customer.email"}}`: `path` names a value (null included).
 *  - `{"and": [f, ...]}`, `{"or": [f, ...]}` (1-32 filters each), `{"not": f}`.
 *  A path is `$` followed by `.name` or `[index]` steps (`$.items[0].sku`); at most 32 steps and
 *  nesting depth 16. A path that names nothing makes `equals` and `in` false.
 */

#include <integration/core/error.hpp>
#include <integration/export.hpp>

#include <boost/json/value.hpp>

#include <memory>
#include <string>

namespace integration::webhooks {

/** A parsed, validated payload filter. Copyable; `matches` is thread-safe. */
class INTEGRATION_EXPORT payload_filter {
public:
    /** Parses `spec`; a malformed filter is `errc::invalid_argument` whose message names the
     *  position of the fault as a JSON path into the filter (e.g. `filter.and[1].equals.path`). */
    static result<payload_filter> parse(boost::json::value const& spec);
    /** Whether `payload` satisfies the filter. */
    bool matches(boost::json::value const& payload) const;

    struct node;

private:
    explicit payload_filter(std::shared_ptr<node const> root) : root_(std::move(root)) {}
    std::shared_ptr<node const> root_;
};

}  // namespace integration::webhooks

#endif
