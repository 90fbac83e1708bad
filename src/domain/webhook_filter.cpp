#include <integration/domain/webhook_filter.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <charconv>
#include <string_view>
#include <variant>
#include <vector>

namespace integration::webhooks {

namespace {

constexpr std::size_t max_path_steps = 32;
constexpr std::size_t max_depth = 16;
constexpr std::size_t max_operands = 32;

using step = std::variant<std::string, std::size_t>;  // a member name or an array index

}  // namespace

struct payload_filter::node {
    enum class kind { equals, in, exists, all, any, negate };
    kind op = kind::exists;
    std::vector<step> path;
    std::vector<boost::json::value> values;         // equals: one; in: the candidates
    std::vector<payload_filter::node> operands;     // and, or: the operands; not: one
};

namespace {

using node = payload_filter::node;

error fault(std::string const& at, std::string what) { return error{errc::invalid_argument, at + ": " + what}; }

result<std::vector<step>> parse_path(boost::json::value const& v, std::string const& at) {
    auto const* text = v.if_string();
    if (!text) return fault(at, "must be a string such as \"$.order.status\"");
    std::string_view s = *text;
    auto malformed = [&] {
        return fault(at, "is not a path: write $ followed by .name or [index] steps, e.g. $.items[0].sku");
    };
    if (s.empty() || s.front() != '$') return malformed();
    s.remove_prefix(1);
    std::vector<step> steps;
    while (!s.empty()) {
        if (steps.size() == max_path_steps)
            return fault(at, "has more than " + std::to_string(max_path_steps) + " steps");
        if (s.front() == '.') {
            auto const end = s.find_first_of(".[", 1);
            auto name = s.substr(1, end == std::string_view::npos ? std::string_view::npos : end - 1);
            if (name.empty() || name.find(']') != std::string_view::npos) return malformed();
            for (unsigned char c : name)
                if (c < 0x20 || c == 0x7f) return malformed();
            steps.emplace_back(std::string(name));
            s.remove_prefix(1 + name.size());
        } else if (s.front() == '[') {
            auto const close = s.find(']');
            if (close == std::string_view::npos || close == 1 || close > 10) return malformed();
            std::size_t index = 0;
            auto const digits = s.substr(1, close - 1);
            auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
            if (ec != std::errc{} || ptr != digits.data() + digits.size() || (digits.size() > 1 && digits[0] == '0'))
                return malformed();
            steps.emplace_back(index);
            s.remove_prefix(close + 1);
        } else {
            return malformed();
        }
    }
    return steps;
}

/** The members of an operator's object: exactly `names` (those in `required` must be there). */
result<boost::json::object const*> operator_object(boost::json::value const& v, std::string const& at,
                                                   std::initializer_list<std::string_view> names) {
    auto const* o = v.if_object();
    if (!o) return fault(at, "must be an object");
    for (auto const& [key, value] : *o)
        if (std::find(names.begin(), names.end(), std::string_view(key)) == names.end())
            return fault(at + "." + std::string(key), "is not a member of this operator");
    for (auto name : names)
        if (!o->contains(name)) return fault(at + "." + std::string(name), "is required");
    return o;
}

result<node> parse_node(boost::json::value const& spec, std::string const& at, std::size_t depth) {
    if (depth > max_depth) return fault(at, "filters nest deeper than " + std::to_string(max_depth) + " levels");
    auto const* o = spec.if_object();
    if (!o || o->size() != 1)
        return fault(at, "must be an object holding exactly one operator: equals, in, exists, and, or, not");
    auto const& [name, operand] = *o->begin();
    std::string const here = at + "." + std::string(name);
    node n;
    if (name == "equals" || name == "in" || name == "exists") {
        n.op = name == "equals" ? node::kind::equals : name == "in" ? node::kind::in : node::kind::exists;
        auto members = n.op == node::kind::equals ? operator_object(operand, here, {"path", "value"})
                       : n.op == node::kind::in   ? operator_object(operand, here, {"path", "values"})
                                                  : operator_object(operand, here, {"path"});
        if (!members) return members.error();
        auto path = parse_path((*members)->at("path"), here + ".path");
        if (!path) return path.error();
        n.path = std::move(*path);
        if (n.op == node::kind::equals) n.values.push_back((*members)->at("value"));
        if (n.op == node::kind::in) {
            auto const* values = (*members)->at("values").if_array();
            if (!values || values->empty()) return fault(here + ".values", "must be a non-empty array");
            n.values.assign(values->begin(), values->end());
        }
        return n;
    }
    if (name == "and" || name == "or") {
        n.op = name == "and" ? node::kind::all : node::kind::any;
        auto const* list = operand.if_array();
        if (!list || list->empty() || list->size() > max_operands)
            return fault(here, "must be an array of 1-" + std::to_string(max_operands) + " filters");
        for (std::size_t i = 0; i < list->size(); ++i) {
            auto child = parse_node((*list)[i], here + "[" + std::to_string(i) + "]", depth + 1);
            if (!child) return child.error();
            n.operands.push_back(std::move(*child));
        }
        return n;
    }
    if (name == "not") {
        n.op = node::kind::negate;
        auto child = parse_node(operand, here, depth + 1);
        if (!child) return child.error();
        n.operands.push_back(std::move(*child));
        return n;
    }
    return fault(here, "is not an operator; use equals, in, exists, and, or or not");
}

boost::json::value const* find(boost::json::value const& root, std::vector<step> const& path) {
    auto const* v = &root;
    for (auto const& s : path) {
        if (auto const* name = std::get_if<std::string>(&s)) {
            auto const* o = v->if_object();
            if (!o) return nullptr;
            auto it = o->find(*name);
            if (it == o->end()) return nullptr;
            v = &it->value();
        } else {
            auto const* a = v->if_array();
            auto const index = std::get<std::size_t>(s);
            if (!a || index >= a->size()) return nullptr;
            v = &(*a)[index];
        }
    }
    return v;
}

// JSON equality where numbers compare by value (1 equals 1.0), which Boost.JSON's `==` does not do.
bool same(boost::json::value const& a, boost::json::value const& b) {
    if (a.is_number() && b.is_number()) {
        if (a.is_double() || b.is_double()) return a.to_number<double>() == b.to_number<double>();
        return a == b;  // int64 and uint64 compare by value
    }
    if (a.kind() != b.kind()) return false;
    if (auto const* x = a.if_array()) {
        auto const& y = b.get_array();
        if (x->size() != y.size()) return false;
        for (std::size_t i = 0; i < x->size(); ++i)
            if (!same((*x)[i], y[i])) return false;
        return true;
    }
    if (auto const* x = a.if_object()) {
        auto const& y = b.get_object();
        if (x->size() != y.size()) return false;
        for (auto const& [key, value] : *x) {
            auto it = y.find(key);
            if (it == y.end() || !same(value, it->value())) return false;
        }
        return true;
    }
    return a == b;
}

bool evaluate(node const& n, boost::json::value const& payload) {
    switch (n.op) {
    case node::kind::exists: return find(payload, n.path) != nullptr;
    case node::kind::equals:
    case node::kind::in: {
        auto const* v = find(payload, n.path);
        return v && std::any_of(n.values.begin(), n.values.end(), [&](auto const& c) { return same(*v, c); });
    }
    case node::kind::all:
        return std::all_of(n.operands.begin(), n.operands.end(), [&](auto const& c) { return evaluate(c, payload); });
    case node::kind::any:
        return std::any_of(n.operands.begin(), n.operands.end(), [&](auto const& c) { return evaluate(c, payload); });
    case node::kind::negate: return !evaluate(n.operands.front(), payload);
    }
    return false;
}

}  // namespace

result<payload_filter> payload_filter::parse(boost::json::value const& spec) {
    auto root = parse_node(spec, "filter", 1);
    if (!root) return root.error();
    return payload_filter(std::make_shared<node const>(std::move(*root)));
}

bool payload_filter::matches(boost::json::value const& payload) const { return evaluate(*root_, payload); }

}  // namespace integration::webhooks
