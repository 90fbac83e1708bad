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
