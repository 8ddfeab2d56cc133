// Uploads all of a model's weights into one device allocation at 64-byte aligned offsets:
// reader threads copy the host bytes (views of the mmap'd model.weights) into a few pinned
// staging buffers while cudaMemcpyAsync on a copy stream moves the previous ones, so reading
// and the host-to-device transfer overlap instead of one pageable copy per tensor. Given the
// weights file's chunk digests, the readers hash each chunk as they stage it, so opening an
// artifact reads model.weights once instead of once for the digest and again for the upload.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ir/weights_digest.h"
#include "runtime/cuda/cuda_context.h"
#include "runtime/tensor.h"

namespace kvcc::runtime {

inline constexpr int64_t kWeightAlignment = 64;

struct WeightUploadItem {
  std::string name;  // for errors
  const void* host = nullptr;
  int64_t bytes = 0;
};

struct WeightUploadOptions {
  int readers = DefaultReaders();        // threads filling a staging buffer (with the caller)
  int buffers = 4;                       // pinned staging buffers in flight
  int64_t chunk_bytes = int64_t{16} << 20;  // bytes per staging buffer and per copy
  // Pinned bytes the verifying upload's readers share (two buffers each).
  int64_t pinned_bytes = int64_t{64} << 20;

  // The defaults, with `readers` from $KVCC_UPLOAD_THREADS when it is a number in 1..256 and
  // `pinned_bytes` from $KVCC_UPLOAD_PINNED_MIB (1..4096) (for measuring on a new host;
  // anything else keeps the default).
  static WeightUploadOptions FromEnvironment();
  // One reader per core, 8 to 16: a reader copies and hashes at a few GB/s, so 8 of them
  // stayed near half the host-to-device rate on the H200's 16-core host.
  static int DefaultReaders();
};

struct UploadedWeights {
  Tensor buffer;                 // u8 device tensor owning every weight
  std::vector<int64_t> offsets;  // byte offset of item i in `buffer`
  int64_t bytes = 0;             // sum of the items' bytes (without padding)
  double seconds = 0;            // wall time from the first read to the last copy done
  int chunks = 0;                // staging chunks copied
  bool verified = false;         // the file's chunk digests were checked on the way
  bool prepinned = false;        // the staging came from PrepinWeightStaging
};

// Starts pinning the verifying upload's staging (FromEnvironment's pinned_bytes) on a
// background thread as soon as the prewarmed CUDA context is ready, so that a large model's
// upload does not wait for it (pinning ran at ~1.2 GB/s on the H200's host: ~50 ms for 64 MiB,
// on the upload's critical path). The next verifying UploadWeights that fits takes the block;
// a failed pin leaves the upload to pin its own. Only the first call does anything.
void PrepinWeightStaging();

// The byte offsets items of `bytes` get when packed at kWeightAlignment, and the total.
std::vector<int64_t> PackWeightOffsets(const std::vector<int64_t>& bytes, int64_t* total);

// True when `items` lie in `file` exactly as packed: item i's bytes at file offset offsets[i].
// That is how an artifact's model.weights is written (64-byte aligned, in graph order), so the
// packed buffer is a copy of the file's first bytes.
bool ItemsAreFileLayout(const std::vector<WeightUploadItem>& items,
                        const std::vector<int64_t>& offsets, const ir::WeightsChunkDigests& file);

// Uploads `items` (the padding between them is zero) and waits until the copies are done, so
// the host bytes may go away afterwards. Errors name the weight being read or copied.
// With `verify` and items in its file's layout (ItemsAreFileLayout), the packed bytes are the
// file's (its padding included) and each reader thread takes whole digest chunks, hashing each
// piece as it stages it; the result says verified and `verify` is marked so. A chunk that
// differs fails the upload with verify's DataLoss naming the file and chunk (the device buffer
// is freed). Otherwise `verify` is left to the caller.
absl::StatusOr<UploadedWeights> UploadWeights(const std::shared_ptr<CudaContext>& ctx,
                                              const std::vector<WeightUploadItem>& items,
                                              const WeightUploadOptions& options = {},
                                              ir::WeightsChunkDigests* verify = nullptr);

}  // namespace kvcc::runtime
