// The per-chunk XXH64 digests of an artifact's model.weights (`kvcc.weights_xxh64_chunks`),
// kept with the mapped file so their check can happen where the bytes are read anyway: the
// CUDA weight uploader hashes each chunk as it stages it, so opening a compiled artifact reads
// model.weights once. Whoever uses the weights first must either verify every chunk that way
// (MarkVerified) or call CheckAll; nothing built on unverified weights may be handed out.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "ir/mapped_file.h"

namespace kvcc::ir {

class WeightsChunkDigests {
 public:
  // `where` names the file recording the digests (model.onnx) in errors. `digests` must hold
  // one XXH64 per `chunk_bytes` of `file` (the reader checks the count).
  WeightsChunkDigests(std::shared_ptr<const MappedFile> file, int64_t chunk_bytes,
                      std::vector<uint64_t> digests, std::string where);

  const uint8_t* data() const { return file_->data(); }
  int64_t size() const { return static_cast<int64_t>(file_->size()); }
  const std::string& path() const { return file_->path(); }
  int64_t chunk_bytes() const { return chunk_bytes_; }
  int64_t num_chunks() const { return static_cast<int64_t>(digests_.size()); }
  // File bytes [ChunkBegin(c), ChunkEnd(c)) are chunk c.
  int64_t ChunkBegin(int64_t c) const { return c * chunk_bytes_; }
  int64_t ChunkEnd(int64_t c) const;

  // OK when `got` is chunk c's recorded digest, else DataLoss naming the file and the bytes.
  absl::Status CheckChunk(int64_t c, uint64_t got) const;
  // Hashes every chunk on up to 16 threads; on success the weights count as verified.
  absl::Status CheckAll();
  // For a reader that checked every chunk itself (CheckChunk on each).
  void MarkVerified() { verified_.store(true); }
  bool verified() const { return verified_.load(); }

 private:
  std::shared_ptr<const MappedFile> file_;
  int64_t chunk_bytes_;
  std::vector<uint64_t> digests_;
  std::string where_;
  std::atomic<bool> verified_{false};
};

}  // namespace kvcc::ir
