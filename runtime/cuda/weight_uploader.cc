#include "runtime/cuda/weight_uploader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cerrno>
#include <cstring>
#include <future>
#include <mutex>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "ir/status_macros.h"
#include "ir/xxhash64.h"
#include "runtime/cuda/cuda_memory.h"
#include "runtime/thread_pool.h"

namespace kvcc::runtime {
namespace {

int64_t AlignUp(int64_t n, int64_t a) { return (n + a - 1) / a * a; }

// The copy stream, its events and the pinned buffers; the destructor waits for queued copies
// before freeing the buffers they read, also on an error path.
struct Staging {
  cudaStream_t stream = nullptr;
  std::vector<void*> buffers;
  std::vector<cudaEvent_t> done;  // done[b]: the last copy out of buffers[b] finished
  ~Staging() {
    if (stream != nullptr) cudaStreamSynchronize(stream);
    for (cudaEvent_t e : done) cudaEventDestroy(e);
    for (void* p : buffers) cudaFreeHost(p);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }
};

// The index of the item holding packed byte `at` (the last one starting at or before it).
size_t ItemAt(const std::vector<int64_t>& offsets, int64_t at) {
  auto it = std::upper_bound(offsets.begin(), offsets.end(), at);
  return it == offsets.begin() ? 0 : static_cast<size_t>(it - offsets.begin() - 1);
}

// Copies packed bytes [lo, hi) into dst: the items' bytes, zeros in the padding.
void FillRange(const std::vector<WeightUploadItem>& items, const std::vector<int64_t>& offsets,
               int64_t lo, int64_t hi, uint8_t* dst) {
  int64_t cursor = lo;
  for (size_t i = ItemAt(offsets, lo); i < items.size() && offsets[i] < hi; ++i) {
    const int64_t a = std::max(lo, offsets[i]);
    const int64_t b = std::min(hi, offsets[i] + items[i].bytes);
    if (b <= a) continue;
    if (a > cursor) std::memset(dst + (cursor - lo), 0, a - cursor);
    std::memcpy(dst + (a - lo), static_cast<const uint8_t*>(items[i].host) + (a - offsets[i]),
                b - a);
    cursor = b;
  }
  if (hi > cursor) std::memset(dst + (cursor - lo), 0, hi - cursor);
}

// "'first' .. 'last'" for the items overlapping packed bytes [lo, hi).
std::string ItemsIn(const std::vector<WeightUploadItem>& items,
                    const std::vector<int64_t>& offsets, int64_t lo, int64_t hi) {
  const size_t first = ItemAt(offsets, lo), last = ItemAt(offsets, hi - 1);
  if (first == last) return absl::StrCat("weight '", items[first].name, "'");
  return absl::StrCat("weights '", items[first].name, "' .. '", items[last].name, "'");
}

// Bytes copied and hashed at a time: the hash reads them back from the staging buffer while
// they are still in the core's cache, so the file's bytes come from memory once.
constexpr int64_t kHashBlock = int64_t{128} << 10;
// madvise works on whole pages (chunk boundaries are multiples of this anyway).
constexpr int64_t kPage = 4096;
// MADV_POPULATE_READ (Linux 5.14), spelled out for older headers.
#ifdef MADV_POPULATE_READ
constexpr int kMadvPopulateRead = MADV_POPULATE_READ;
#else
constexpr int kMadvPopulateRead = 22;
#endif
// Reads file bytes [at, at + n) of `fd` into dst; a short file or a read error names `path`.
absl::Status ReadFully(int fd, uint8_t* dst, int64_t n, int64_t at, const std::string& path) {
  for (int64_t got = 0; got < n;) {
    const ssize_t r = pread(fd, dst + got, static_cast<size_t>(n - got), at + got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      return absl::DataLossError(absl::StrCat(
          "reading bytes ", at + got, "..", at + n, " of ", path, ": ",
          r == 0 ? "the file ends before them (truncated since it was opened?)" : std::strerror(errno)));
    }
    got += r;
  }
  return absl::OkStatus();
}

// Pinned buffers per reader thread in the verifying upload: one fills while one copies.
constexpr int kBuffersPerReader = 2;

// One reader thread's stream and its staging buffers (pieces of one pinned block); the
// destructor waits for queued copies before the block they read is freed, also on an error path.
struct ReaderStaging {
  cudaStream_t stream = nullptr;
  uint8_t* buffers[kBuffersPerReader] = {};
  cudaEvent_t done[kBuffersPerReader] = {};
  int64_t uses = 0;
  ReaderStaging() = default;
  ReaderStaging(const ReaderStaging&) = delete;
  ReaderStaging& operator=(const ReaderStaging&) = delete;
  ~ReaderStaging() {
    if (stream != nullptr) cudaStreamSynchronize(stream);
    for (cudaEvent_t e : done) {
      if (e != nullptr) cudaEventDestroy(e);
    }
    if (stream != nullptr) cudaStreamDestroy(stream);
  }
  absl::Status Init(uint8_t* pinned, int64_t bytes) {
    KVCC_RETURN_IF_ERROR(CudaCheck(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking),
                                   "cudaStreamCreate(weight upload)"));
    for (int b = 0; b < kBuffersPerReader; ++b) {
      buffers[b] = pinned + b * bytes;
      KVCC_RETURN_IF_ERROR(CudaCheck(cudaEventCreateWithFlags(&done[b], cudaEventDisableTiming),
                                     "cudaEventCreate(weight upload)"));
    }
    return absl::OkStatus();
  }
};

// A pinned host block, freed last (declared before the ReaderStaging that copy out of it).
struct PinnedBlock {
  void* p = nullptr;
  ~PinnedBlock() {
    if (p != nullptr) cudaFreeHost(p);
  }
};

// PrepinWeightStaging's block: a future for it once started (leaked: never joined at exit).
struct Prepinned {
  std::mutex mu;
  std::shared_future<void*> block;
  int64_t bytes = 0;
  bool taken = false;
};
Prepinned& Prepin() {
  static auto* p = new Prepinned;
  return *p;
}

// The prepinned block when one was started, is not taken yet and holds `bytes` (waiting for it
// if it is still being pinned); null otherwise. The caller owns it.
void* TakePrepinnedStaging(int64_t bytes) {
  Prepinned& p = Prepin();
  std::lock_guard<std::mutex> lock(p.mu);
  if (!p.block.valid() || p.taken) return nullptr;
  p.taken = true;
  void* block = p.block.get();
  if (block != nullptr && p.bytes < bytes) {
    cudaFreeHost(block);
    return nullptr;
  }
  return block;
}

// The verifying upload: file bytes [0, copy_end) to device[0, copy_end). Reader threads take
// whole digest chunks from a shared counter; each stages its chunk piece by piece, hashing
// every block it copies, and checks the digest when the chunk is done. File bytes past
// copy_end (none for a kvcc artifact) are only hashed.
absl::Status UploadVerifying(const std::vector<WeightUploadItem>& items,
                             const std::vector<int64_t>& offsets, int64_t copy_end,
                             const WeightUploadOptions& options,
                             const ir::WeightsChunkDigests& verify, uint8_t* device,
                             int* copies, bool* prepinned) {
  const int64_t units = verify.num_chunks();
  const int readers = static_cast<int>(std::min<int64_t>(options.readers, units));
  // The readers share options.pinned_bytes whatever their number (pinning costs time in
  // proportion to the bytes), pinned in one call (each call has a fixed cost).
  const int64_t piece = std::min(
      std::max<int64_t>(kHashBlock, options.pinned_bytes / (readers * kBuffersPerReader) /
                                        kHashBlock * kHashBlock),
      AlignUp(std::max<int64_t>(copy_end, 1), 4096));
  PinnedBlock pinned;
  const int64_t pinned_bytes = piece * readers * kBuffersPerReader;
  pinned.p = TakePrepinnedStaging(pinned_bytes);
  *prepinned = pinned.p != nullptr;
  if (pinned.p == nullptr) {
    KVCC_RETURN_IF_ERROR(CudaCheck(cudaHostAlloc(&pinned.p, pinned_bytes, cudaHostAllocDefault),
                                   absl::StrCat("cudaHostAlloc(", pinned_bytes,
                                                " bytes of weight staging)")));
  }
  std::vector<std::unique_ptr<ReaderStaging>> staging;
  for (int r = 0; r < readers; ++r) {
    staging.push_back(std::make_unique<ReaderStaging>());
    KVCC_RETURN_IF_ERROR(staging.back()->Init(
        static_cast<uint8_t*>(pinned.p) + r * kBuffersPerReader * piece, piece));
  }
  const uint8_t* file = verify.data();
  // pread copies the page cache straight into the staging buffer; the mapping's pages are
  // never touched, which saves setting up a page-table entry per 4 KiB (3.3 million for 7B).
  // Where the file cannot be opened again, the mapping is read instead.
  const int fd = open(verify.path().c_str(), O_RDONLY | O_CLOEXEC);
  struct FdCloser {
    int fd;
    ~FdCloser() {
      if (fd >= 0) close(fd);
    }
  } closer{fd};
  std::atomic<int64_t> next{0};
  std::atomic<int> copied{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  absl::Status error;
  auto fail = [&](absl::Status s) {
    std::lock_guard<std::mutex> lock(mu);
    if (error.ok()) error = std::move(s);
    failed = true;
  };
  auto work = [&](int r) {
    ReaderStaging& st = *staging[r];
    for (int64_t c; !failed.load() && (c = next.fetch_add(1)) < units;) {
      // Cold, the bytes come from storage: ask for this chunk and the one this reader likely
      // takes next (readers chunks on), so the kernel reads ahead while this one is staged.
      for (int64_t ahead : {c, c + readers}) {
        if (ahead >= units) continue;
        const int64_t a = verify.ChunkBegin(ahead) / kPage * kPage;
        const int64_t len = verify.ChunkEnd(ahead) - a;
        if (fd >= 0) {
          posix_fadvise(fd, a, len, POSIX_FADV_WILLNEED);
        } else {
          madvise(const_cast<uint8_t*>(file) + a, static_cast<size_t>(len), MADV_WILLNEED);
        }
      }
      ir::Xxh64 hash;
      const int64_t lo = verify.ChunkBegin(c), hi = verify.ChunkEnd(c);
      const int64_t copy_hi = std::min(hi, copy_end);
      for (int64_t at = lo; at < copy_hi; at += piece) {
        if (failed.load()) return;
        const int64_t n = std::min(piece, copy_hi - at);
        const int b = static_cast<int>(st.uses % kBuffersPerReader);
        const std::string what = absl::StrCat(
            "copying ", ItemsIn(items, offsets, at, at + n), " (bytes ", at, "..", at + n,
            " of ", verify.path(), ") to the device");
        if (st.uses++ >= kBuffersPerReader) {
          if (auto s = CudaCheck(cudaEventSynchronize(st.done[b]), what); !s.ok()) {
            return fail(std::move(s));
          }
        }
        uint8_t* dst = st.buffers[b];
        if (fd < 0) {
          // Maps the piece's pages in one call instead of a fault per few pages; where the
          // kernel lacks it, faults do it.
          const int64_t page_lo = at / kPage * kPage;
          madvise(const_cast<uint8_t*>(file) + page_lo, static_cast<size_t>(at + n - page_lo),
                  kMadvPopulateRead);
        }
        for (int64_t o = 0; o < n; o += kHashBlock) {
          const int64_t m = std::min(kHashBlock, n - o);
          if (fd < 0) {
            std::memcpy(dst + o, file + at + o, static_cast<size_t>(m));
          } else if (auto s = ReadFully(fd, dst + o, m, at + o, verify.path()); !s.ok()) {
            return fail(std::move(s));
          }
          hash.Update(dst + o, static_cast<size_t>(m));
        }
        absl::Status s = CudaCheck(
            cudaMemcpyAsync(device + at, dst, n, cudaMemcpyHostToDevice, st.stream), what);
        if (s.ok()) s = CudaCheck(cudaEventRecord(st.done[b], st.stream), what);
        if (!s.ok()) return fail(std::move(s));
        copied.fetch_add(1);
      }
      const int64_t rest = std::max(lo, copy_hi);
      if (rest < hi) hash.Update(file + rest, static_cast<size_t>(hi - rest));
      if (auto s = verify.CheckChunk(c, hash.Digest()); !s.ok()) return fail(std::move(s));
    }
  };
  std::vector<std::thread> threads;
  for (int r = 1; r < readers; ++r) threads.emplace_back(work, r);
  work(0);
  for (std::thread& t : threads) t.join();
  for (auto& st : staging) {
    if (auto s = CudaCheck(cudaStreamSynchronize(st->stream), "uploading the weights");
        !s.ok() && error.ok()) {
      error = std::move(s);
    }
  }
  *copies = copied.load();
  return error;
}

}  // namespace

void PrepinWeightStaging() {
  Prepinned& p = Prepin();
  std::lock_guard<std::mutex> lock(p.mu);
  if (p.block.valid() || p.taken) return;
  p.bytes = WeightUploadOptions::FromEnvironment().pinned_bytes;
  p.block = std::async(std::launch::async, [bytes = p.bytes]() -> void* {
              AwaitPrewarmedCudaContext();
              void* block = nullptr;
              if (cudaHostAlloc(&block, bytes, cudaHostAllocDefault) != cudaSuccess) {
                cudaGetLastError();
                return nullptr;
              }
              return block;
            }).share();
}

int WeightUploadOptions::DefaultReaders() {
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  return std::clamp(cores, 8, 16);
}

WeightUploadOptions WeightUploadOptions::FromEnvironment() {
  WeightUploadOptions o;
  int readers = 0;
  if (const char* v = std::getenv("KVCC_UPLOAD_THREADS");
      v != nullptr && absl::SimpleAtoi(v, &readers) && readers >= 1 && readers <= 256) {
    o.readers = readers;
  }
  int mib = 0;
  if (const char* v = std::getenv("KVCC_UPLOAD_PINNED_MIB");
      v != nullptr && absl::SimpleAtoi(v, &mib) && mib >= 1 && mib <= 4096) {
    o.pinned_bytes = int64_t{mib} << 20;
  }
  return o;
}

std::vector<int64_t> PackWeightOffsets(const std::vector<int64_t>& bytes, int64_t* total) {
  std::vector<int64_t> offsets;
  offsets.reserve(bytes.size());
  int64_t at = 0;
  for (int64_t b : bytes) {
    offsets.push_back(at);
    at = AlignUp(at + b, kWeightAlignment);
  }
  *total = at;
  return offsets;
}

bool ItemsAreFileLayout(const std::vector<WeightUploadItem>& items,
                        const std::vector<int64_t>& offsets, const ir::WeightsChunkDigests& file) {
  if (offsets.size() != items.size()) return false;
  const auto base = reinterpret_cast<uintptr_t>(file.data());
  const auto size = static_cast<uint64_t>(file.size());
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].bytes == 0) continue;
    const auto at = reinterpret_cast<uintptr_t>(items[i].host);
    if (at < base || at - base != static_cast<uint64_t>(offsets[i]) ||
        static_cast<uint64_t>(items[i].bytes) > size - (at - base)) {
      return false;
    }
  }
  return true;
}

absl::StatusOr<UploadedWeights> UploadWeights(const std::shared_ptr<CudaContext>& ctx,
                                              const std::vector<WeightUploadItem>& items,
                                              const WeightUploadOptions& options,
                                              ir::WeightsChunkDigests* verify) {
  if (options.readers < 1 || options.buffers < 1 || options.chunk_bytes < 4096 ||
      options.chunk_bytes % kWeightAlignment != 0 || options.pinned_bytes < 4096) {
    return absl::InvalidArgumentError(absl::StrCat(
        "weight upload: ", options.readers, " readers, ", options.buffers, " buffers of ",
        options.chunk_bytes, " bytes, ", options.pinned_bytes,
        " pinned bytes (need >= 1, >= 1, a multiple of ", kWeightAlignment,
        " >= 4096 and >= 4096)"));
  }
  const auto start = std::chrono::steady_clock::now();
  std::vector<int64_t> sizes;
  UploadedWeights out;
  for (const WeightUploadItem& item : items) {
    if (item.bytes < 0 || (item.bytes > 0 && item.host == nullptr)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "weight '", item.name, "' has ", item.bytes, " bytes",
          item.bytes < 0 ? " (negative)" : " and no host data"));
    }
    sizes.push_back(item.bytes);
    out.bytes += item.bytes;
  }
  if (ctx == nullptr) return absl::InvalidArgumentError("weight upload: no CUDA context");
  int64_t total = 0;
  out.offsets = PackWeightOffsets(sizes, &total);
  if (total == 0) return out;
  KVCC_ASSIGN_OR_RETURN(out.buffer, AllocateDeviceBuffer(ctx, total, "the model's weights"));
  // The buffer is zeroed on the context's stream; the copies go on another.
  KVCC_RETURN_IF_ERROR(ctx->Synchronize());
  auto* device = static_cast<uint8_t*>(out.buffer.raw());

  if (verify != nullptr && verify->num_chunks() > 0 && !verify->verified() &&
      ItemsAreFileLayout(items, out.offsets, *verify)) {
    // Past the file's end (a file not padded to the alignment) the zeroed buffer stays zero.
    KVCC_RETURN_IF_ERROR(UploadVerifying(items, out.offsets, std::min(total, verify->size()),
                                         options, *verify, device, &out.chunks,
                                         &out.prepinned));
    verify->MarkVerified();
    out.verified = true;
    out.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return out;
  }

  // Small models get one small buffer: pinning costs time in proportion to the bytes.
  const int64_t chunk = std::min(options.chunk_bytes, AlignUp(total, 4096));
  const int64_t num_chunks = (total + chunk - 1) / chunk;
  const int buffers = static_cast<int>(std::min<int64_t>(options.buffers, num_chunks));
  Staging st;
  KVCC_RETURN_IF_ERROR(CudaCheck(cudaStreamCreateWithFlags(&st.stream, cudaStreamNonBlocking),
                                 "cudaStreamCreate(weight upload)"));
  for (int b = 0; b < buffers; ++b) {
    void* p = nullptr;
    KVCC_RETURN_IF_ERROR(CudaCheck(cudaHostAlloc(&p, chunk, cudaHostAllocDefault),
                                   absl::StrCat("cudaHostAlloc(", chunk,
                                                " bytes of weight staging)")));
    st.buffers.push_back(p);
    cudaEvent_t e = nullptr;
    KVCC_RETURN_IF_ERROR(CudaCheck(cudaEventCreateWithFlags(&e, cudaEventDisableTiming),
                                   "cudaEventCreate(weight upload)"));
    st.done.push_back(e);
  }
  // The caller fills too, so readers - 1 workers.
  ThreadPool pool(options.readers);
  const int64_t piece = std::max<int64_t>(int64_t{256} << 10,
                                          AlignUp((chunk + options.readers - 1) / options.readers,
                                                  4096));
  // Chunk c fills buffer c % buffers (after the copy that last read it is done) while the
  // copies of the chunks before it are still in flight.
  for (int64_t c = 0; c < num_chunks; ++c) {
    const int b = static_cast<int>(c % buffers);
    const int64_t lo = c * chunk, hi = std::min(total, lo + chunk);
    if (c >= buffers) {
      KVCC_RETURN_IF_ERROR(CudaCheck(cudaEventSynchronize(st.done[b]),
                                     absl::StrCat("copying ", ItemsIn(items, out.offsets,
                                                                      lo - buffers * chunk,
                                                                      hi - buffers * chunk),
                                                  " to the device")));
    }
    auto* dst = static_cast<uint8_t*>(st.buffers[b]);
    pool.ParallelFor((hi - lo + piece - 1) / piece, 1, [&](int64_t p0, int64_t p1) {
      FillRange(items, out.offsets, lo + p0 * piece, std::min(hi, lo + p1 * piece),
                dst + p0 * piece);
    });
    const std::string what = absl::StrCat("copying ", ItemsIn(items, out.offsets, lo, hi),
                                          " (bytes ", lo, "..", hi, " of ", total,
                                          " packed) to the device");
    KVCC_RETURN_IF_ERROR(CudaCheck(cudaMemcpyAsync(device + lo, dst, hi - lo,
                                                   cudaMemcpyHostToDevice, st.stream),
                                   what));
    KVCC_RETURN_IF_ERROR(CudaCheck(cudaEventRecord(st.done[b], st.stream), what));
  }
  KVCC_RETURN_IF_ERROR(CudaCheck(cudaStreamSynchronize(st.stream),
                                 absl::StrCat("uploading ", items.size(), " weights (", total,
                                              " bytes)")));
  out.chunks = static_cast<int>(num_chunks);
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

}  // namespace kvcc::runtime
