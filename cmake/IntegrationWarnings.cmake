# Warning and sanitizer flags shared by every target of the project.
function(integration_warnings target)
  # Designated initialisers that leave members at their defaults are the options idiom, not a bug.
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wno-missing-field-initializers)
  if(INTEGRATION_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

if(INTEGRATION_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()

# libFuzzer (tests/fuzz/run.sh, clang only): everything is instrumented for coverage and checked by
# ASan + UBSan; only the fuzzers link libFuzzer's main.
if(INTEGRATION_BUILD_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "INTEGRATION_BUILD_FUZZ needs clang (libFuzzer): -DCMAKE_CXX_COMPILER=clang++-16")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
