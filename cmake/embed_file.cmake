# cmake -DIN=file -DOUT=file.c -DNAME=symbol -P embed_file.cmake
# Writes `const unsigned char NAME[]` (NUL-terminated) and `const size_t NAME_len`
# so a file from the repository is served from the binary, byte for byte.
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," arr "${hex}")
file(WRITE "${OUT}.tmp" "/* generated from ${IN} by cmake/embed_file.cmake: do not edit */\n#include <stddef.h>\nconst unsigned char ${NAME}[] = {${arr}0x00};\nconst size_t ${NAME}_len = ${len};\n")
file(RENAME "${OUT}.tmp" "${OUT}")
