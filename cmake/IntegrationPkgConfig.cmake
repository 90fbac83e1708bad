# integration.pc for pkg-config users, installed to <libdir>/pkgconfig:
#   g++ -std=c++20 app.cpp $(pkg-config --cflags --libs integration)
# Libs lists the libraries built here in link order (the platform first, core last), then the
# Boost libraries (Boost ships no .pc file). libcurl, sqlite3 and libcrypto are named by their own
# .pc files: under Requires for a static build (every program links them), Requires.private for a
# shared one (only our libraries link them).
set(integration_pc_libs "")
foreach(target integration_platform integration_curl integration_filesystem integration_local_vault
               integration_sqlite integration_core)
  if(TARGET ${target})
    string(APPEND integration_pc_libs " -l${target}")
  endif()
endforeach()

set(integration_pc_requires libcrypto)
if(INTEGRATION_WITH_SQLITE)
  list(APPEND integration_pc_requires sqlite3)
endif()
if(INTEGRATION_WITH_CURL)
  list(APPEND integration_pc_requires libcurl)
endif()
list(JOIN integration_pc_requires ", " integration_pc_requires)

# Boost.JSON is in the public headers; Boost.URL is used inside, so only a static build names it.
set(integration_pc_boost Boost::json)
if(BUILD_SHARED_LIBS)
  set(integration_pc_kind shared)
  set(integration_pc_requires_field Requires.private)
else()
  set(integration_pc_kind static)
  set(integration_pc_requires_field Requires)
  list(APPEND integration_pc_boost Boost::url)
endif()
set(integration_pc_cflags "")
foreach(boost IN LISTS integration_pc_boost)
  get_target_property(location ${boost} LOCATION)
  get_filename_component(dir "${location}" DIRECTORY)
  if(NOT dir IN_LIST CMAKE_CXX_IMPLICIT_LINK_DIRECTORIES)
    string(APPEND integration_pc_libs " -L${dir}")
  endif()
  string(REGEX REPLACE "^Boost::" " -lboost_" library "${boost}")
  string(APPEND integration_pc_libs "${library}")
endforeach()
string(APPEND integration_pc_libs " -pthread")
if(Boost_INCLUDE_DIRS AND NOT Boost_INCLUDE_DIRS IN_LIST CMAKE_CXX_IMPLICIT_INCLUDE_DIRECTORIES)
  string(APPEND integration_pc_cflags " -I${Boost_INCLUDE_DIRS}")
endif()

# The prefix relative to the .pc file, so that `cmake --install --prefix ANY` keeps it right.
set(pc_dir "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
string(REGEX REPLACE "[^/]+" ".." integration_pc_up "${pc_dir}")
configure_file(${CMAKE_CURRENT_LIST_DIR}/integration.pc.in ${CMAKE_CURRENT_BINARY_DIR}/integration.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/integration.pc DESTINATION ${pc_dir})
