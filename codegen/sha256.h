// SHA-256 (FIPS 180-4), used to key the on-disk kernel cache and to checksum its entries.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace kvcc::codegen {

// Incremental hasher: Update() any number of times, then Final() once.
class Sha256 {
 public:
  Sha256();
  void Update(absl::string_view data);
  void Update(const void* data, size_t size);
  std::array<uint8_t, 32> Final();

 private:
  void Compress(const uint8_t* block);

  uint32_t state_[8];
  uint8_t buffer_[64];
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
  bool finalized_ = false;
};

// Digest of `data` as 64 lowercase hex digits.
std::string Sha256Hex(absl::string_view data);
std::string DigestHex(const std::array<uint8_t, 32>& digest);

}  // namespace kvcc::codegen
