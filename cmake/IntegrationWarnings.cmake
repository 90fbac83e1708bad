# Warning and sanitizer flags shared by every target of the project.
function(integration_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic)
  if(INTEGRATION_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

if(INTEGRATION_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
