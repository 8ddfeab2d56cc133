#include "runtime/decode_graphs.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "ir/status_macros.h"

namespace kvcc::runtime {

std::vector<int> DecodeBuckets(int max_batch) {
  std::vector<int> b = {1};
  while (b.back() < max_batch) b.push_back(b.back() < 8 ? b.back() * 2 : b.back() + 8);
  return b;
}

int DecodeBucketFor(int64_t n, int max_batch) {
  if (n <= 0) return -1;
  for (int b : DecodeBuckets(max_batch)) {
    if (b >= n) return b;
  }
  return -1;
}

int64_t DecodeContextBand(int64_t max_len) {
  if (max_len <= 256) return 256;
  int64_t pow2 = 1;
  while (pow2 < max_len) pow2 *= 2;
  const int64_t step = std::max<int64_t>(256, pow2 / 16);
  return (max_len + step - 1) / step * step;
}

DecodeInputLayout DecodeInputLayout::For(int bucket, int64_t band, int block_size) {
  DecodeInputLayout l;
  l.bucket = bucket;
  l.table_stride = static_cast<int>((band + block_size - 1) / block_size);
  l.ids = 0;
  l.positions = bucket;
  l.slots = 2 * int64_t{bucket};
  l.lens = 3 * int64_t{bucket};
  l.tables = 4 * int64_t{bucket};
  l.total = l.tables + int64_t{bucket} * l.table_stride;
  return l;
}

absl::Status PackDecodeInputs(const std::vector<int32_t>& ids, const StepBatch& batch,
                              const BlockPool& blocks, const DecodeInputLayout& layout,
                              int64_t band, int32_t* out) {
  const int64_t n = batch.size();
  if (static_cast<int64_t>(ids.size()) != n || static_cast<int64_t>(batch.sessions.size()) != n ||
      n > layout.bucket || n == 0) {
    return absl::InvalidArgumentError(absl::StrCat("decode graph: ", ids.size(), " ids for ",
                                                   n, " positions in a bucket of ",
                                                   layout.bucket));
  }
  std::fill(out, out + layout.total, 0);
  const int bs = blocks.block_size();
  for (int64_t r = 0; r < layout.bucket; ++r) out[layout.slots + r] = -1;
  for (int64_t r = 0; r < n; ++r) {
    KVCC_ASSIGN_OR_RETURN(auto table, blocks.Table(batch.sessions[r]));
    const int64_t pos = batch.positions[r];
    const int64_t reserved = static_cast<int64_t>(table->size()) * bs;
    if (pos < 0 || pos >= reserved || pos >= band) {
      return absl::OutOfRangeError(absl::StrCat("decode graph: position ", pos, " of session ",
                                                batch.sessions[r], " is outside its ", reserved,
                                                " reserved tokens or the band of ", band));
    }
    out[layout.ids + r] = ids[r];
    out[layout.positions + r] = static_cast<int32_t>(pos);
    out[layout.slots + r] = (*table)[pos / bs] * bs + static_cast<int32_t>(pos % bs);
    out[layout.lens + r] = static_cast<int32_t>(pos + 1);
    const int64_t used = std::min<int64_t>(static_cast<int64_t>(table->size()), layout.table_stride);
    std::copy(table->begin(), table->begin() + used, out + layout.tables + r * layout.table_stride);
  }
  return absl::OkStatus();
}

}  // namespace kvcc::runtime
