// GPT-2 / Qwen2 byte-to-unicode table (spec text-encoder-and-vae.md §1.3): bytes 33..126, 161..172
// and 174..255 map to the same code point, the other 68 bytes in increasing order to U+0100...
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace qwen::tokenizer {

// Code point of every byte.
const std::array<char32_t, 256>& bytes_to_unicode();

// Byte of a byte-level symbol, or -1 when `cp` is not one of the 256 symbols.
int unicode_to_byte(char32_t cp);

// UTF-8 of the byte-level symbols of `bytes` (what vocab.json stores), e.g. " the" -> "Ġthe".
std::string bytes_to_symbols(std::string_view bytes);

// Inverse of bytes_to_symbols; false when `symbols` holds a character outside the alphabet.
bool symbols_to_bytes(std::string_view symbols, std::string& out);

}  // namespace qwen::tokenizer
