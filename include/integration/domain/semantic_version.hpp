#ifndef INTEGRATION_DOMAIN_SEMANTIC_VERSION_HPP
#define INTEGRATION_DOMAIN_SEMANTIC_VERSION_HPP

/** @file
 *  SemanticVersion value object (SemVer 2.0.0) for ExternalApiClient versions.
 */

#include <integration/core/error.hpp>
#include <integration/export.hpp>

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

namespace integration::providers {

/** A parsed SemVer 2.0.0 version; build metadata is kept but ignored in comparisons. */
struct INTEGRATION_EXPORT semantic_version {
    std::uint64_t major = 0, minor = 0, patch = 0;
    std::string prerelease;  ///< e.g. "beta.1"; empty for a release.
    std::string build;       ///< e.g. "sha.5114f85".

    /** Parses `MAJOR.MINOR.PATCH[-pre][+build]` strictly (no leading zeros, no `v`). */
    static result<semantic_version> parse(std::string_view text);
    /** Canonical text. */
    std::string to_string() const;
    /** SemVer precedence (prerelease < release; identifiers compared per spec). */
    friend INTEGRATION_EXPORT std::strong_ordering operator<=>(semantic_version const& a, semantic_version const& b);
    friend bool operator==(semantic_version const& a, semantic_version const& b) { return (a <=> b) == 0; }
};

}  // namespace integration::providers

#endif
