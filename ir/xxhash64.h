// XXH64 (the 64-bit xxHash of Yann Collet, seed 0 unless given): the fast checksum that binds an
// artifact's model.onnx to its weights file and lets kvcc detect a damaged file when opening it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace kvcc::ir {

// Incremental XXH64: Update any number of times, then Digest (which does not reset).
class Xxh64 {
 public:
  explicit Xxh64(uint64_t seed = 0);
  void Update(const void* data, size_t size);
  void Update(absl::string_view bytes) { Update(bytes.data(), bytes.size()); }
  uint64_t Digest() const;

 private:
  uint64_t v_[4];
  uint64_t seed_;
  uint64_t total_ = 0;
  unsigned char buf_[32];
  size_t buffered_ = 0;
};

uint64_t Xxh64Hash(const void* data, size_t size, uint64_t seed = 0);
// 16 lowercase hex digits, the form the digest takes in files.
std::string Xxh64Hex(uint64_t digest);

}  // namespace kvcc::ir
