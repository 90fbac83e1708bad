#ifndef INTEGRATION_HOST_OPENAPI_DOCUMENT_HPP
#define INTEGRATION_HOST_OPENAPI_DOCUMENT_HPP

// host/openapi.json as embedded at build time (host/embed_file.cmake): the one source of the
// OpenAPI document that GET /openapi.json serves.

#include <string_view>

namespace integration::host {

std::string_view openapi_document() noexcept;

}  // namespace integration::host

#endif
