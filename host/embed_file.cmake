# cmake -DINPUT=file -DOUTPUT=file.cpp -DHEADER=name.hpp -DFUNCTION=name -P embed_file.cmake
# Writes a .cpp whose FUNCTION() returns INPUT's bytes. A byte array, not a string literal:
# literals over 64 KiB trip -Woverlength-strings under -Wpedantic.
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" hex_length)
math(EXPR size "${hex_length} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "((0x..,){24})" "\\1\n    " bytes "${bytes}")
file(WRITE "${OUTPUT}.tmp" "// Generated from ${INPUT} by embed_file.cmake; do not edit.
#include \"${HEADER}\"

namespace integration::host {
namespace {
constexpr unsigned char bytes[] = {
    ${bytes}0x00};
}  // namespace

std::string_view ${FUNCTION}() noexcept { return {reinterpret_cast<char const*>(bytes), ${size}}; }

}  // namespace integration::host
")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
