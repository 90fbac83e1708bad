# Fails when an include points the wrong way (docs/architecture.md, "Layers"):
#   core, domain -> core, domain            ports -> core, domain, ports
#   outbound -> core, domain, ports, outbound
#   services -> core, domain, ports, outbound, services
#   backends/<b> -> core, domain, ports, backends/<b>; never another backend's private sources
#   platform (platform.hpp, platform/, src/platform/) -> every public header, backends included
#   host -> the public headers only (never src/)
# Run: cmake -DROOT=<source dir> -P cmake/check_layering.cmake
set(allowed_core "core|domain")
set(allowed_domain "core|domain")
set(allowed_ports "core|domain|ports")
set(allowed_outbound "core|domain|ports|outbound")
set(allowed_services "core|domain|ports|outbound|services")
set(allowed_platform "core|domain|ports|outbound|services|backends|platform")
set(violations "")

function(check_file file layer allowed)
  file(STRINGS "${file}" lines REGEX "^#include")
  foreach(line IN LISTS lines)
    if(line MATCHES "^#include <integration/([a-z_]+)/" AND NOT CMAKE_MATCH_1 MATCHES "^(${allowed})$")
      set(violations "${violations}\n  ${file}: ${layer} must not include ${line}" PARENT_SCOPE)
    endif()
    if(line MATCHES "^#include <integration/platform.hpp>" AND NOT layer STREQUAL "platform")
      set(violations "${violations}\n  ${file}: ${layer} must not include the platform" PARENT_SCOPE)
    endif()
  endforeach()
endfunction()

foreach(layer core domain ports outbound services platform)
  file(GLOB_RECURSE files "${ROOT}/include/integration/${layer}/*.hpp" "${ROOT}/src/${layer}/*.[ch]pp")
  if(layer STREQUAL "platform")
    list(APPEND files "${ROOT}/include/integration/platform.hpp")
  endif()
  foreach(f IN LISTS files)
    check_file("${f}" ${layer} "${allowed_${layer}}")
  endforeach()
endforeach()

file(GLOB backends LIST_DIRECTORIES true RELATIVE "${ROOT}/src/backends" "${ROOT}/src/backends/*")
foreach(b IN LISTS backends)
  file(GLOB_RECURSE files "${ROOT}/include/integration/backends/${b}/*.hpp" "${ROOT}/src/backends/${b}/*.[ch]pp")
  foreach(f IN LISTS files)
    file(STRINGS "${f}" lines REGEX "^#include")
    foreach(line IN LISTS lines)
      if(line MATCHES "^#include <integration/backends/([a-z_]+)/" AND NOT CMAKE_MATCH_1 STREQUAL b)
        set(violations "${violations}\n  ${f}: backend ${b} must not include ${line}")
      elseif(line MATCHES "^#include <integration/(services|outbound|platform)[/.]")
        set(violations "${violations}\n  ${f}: backend ${b} must not include ${line}")
      elseif(line MATCHES "^#include \"\\.\\./([a-z_]+)/" AND NOT CMAKE_MATCH_1 STREQUAL b)
        set(violations "${violations}\n  ${f}: backend ${b} must not include another backend's private ${line}")
      endif()
    endforeach()
  endforeach()
endforeach()

# TODO(issue 12): the host still reaches crypto and the SQLite wrapper; enforced once it does not.
set(host_files "")
foreach(f IN LISTS host_files)
  file(STRINGS "${f}" lines REGEX "^#include \"")
  foreach(line IN LISTS lines)
    if(line MATCHES "\\.\\./" OR line MATCHES "\"(detail|crypto|storage|backends)/")
      set(violations "${violations}\n  ${f}: the host includes library internals: ${line}")
    endif()
  endforeach()
endforeach()

if(violations)
  message(FATAL_ERROR "Layering violations (see docs/architecture.md):${violations}")
endif()
