#include "ir/weights_digest.h"

#include <algorithm>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "ir/xxhash64.h"

namespace kvcc::ir {

WeightsChunkDigests::WeightsChunkDigests(std::shared_ptr<const MappedFile> file,
                                         int64_t chunk_bytes, std::vector<uint64_t> digests,
                                         std::string where)
    : file_(std::move(file)),
      chunk_bytes_(chunk_bytes),
      digests_(std::move(digests)),
      where_(std::move(where)) {}

int64_t WeightsChunkDigests::ChunkEnd(int64_t c) const {
  return std::min(size(), (c + 1) * chunk_bytes_);
}

absl::Status WeightsChunkDigests::CheckChunk(int64_t c, uint64_t got) const {
  if (c >= 0 && c < num_chunks() && got == digests_[c]) return absl::OkStatus();
  return absl::DataLossError(absl::StrCat(
      path(), " chunk ", c, " (bytes ", ChunkBegin(c), "..", ChunkEnd(c), ") has XXH64 ",
      Xxh64Hex(got), " but ", where_, " records ",
      c >= 0 && c < num_chunks() ? Xxh64Hex(digests_[c]) : std::string("no such chunk"),
      ": the weights are damaged or belong to another model (re-run `kvcc import`)"));
}

absl::Status WeightsChunkDigests::CheckAll() {
  if (verified()) return absl::OkStatus();
  const int64_t chunks = num_chunks();
  std::atomic<int64_t> next{0}, bad{-1};
  std::vector<uint64_t> got(chunks);
  auto work = [&] {
    for (int64_t c; (c = next.fetch_add(1)) < chunks && bad.load() < 0;) {
      got[c] = Xxh64Hash(data() + ChunkBegin(c), static_cast<size_t>(ChunkEnd(c) - ChunkBegin(c)));
      if (got[c] != digests_[c]) bad = c;
    }
  };
  const int threads = std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, 16);
  std::vector<std::thread> pool;
  for (int t = 1; t < threads && t < chunks; ++t) pool.emplace_back(work);
  work();
  for (std::thread& th : pool) th.join();
  if (const int64_t c = bad.load(); c >= 0) return CheckChunk(c, got[c]);
  MarkVerified();
  return absl::OkStatus();
}

}  // namespace kvcc::ir
