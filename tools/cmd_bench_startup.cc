// `kvcc bench startup ARTIFACT [--repeat 3]`: `vllm bench startup`-style. Spawns
// `kvcc generate ARTIFACT --prompt ... --max-new-tokens 1` with KVCC_TIMINGS=1, cold (a fresh
// empty kernel cache, and the artifact's files dropped from the page cache with
// posix_fadvise(DONTNEED), whose effect is measured with mincore) and warm, and reports the
// median of --repeat runs of process start to first token with the phases the child's
// `kvcc-timing` lines itemise. In the same run it measures the ceilings the weight upload is
// held to: reading model.weights into pinned memory (several threads) and pinned
// host-to-device copies, and reports the upload's fraction of the smaller one.
#include <fcntl.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "ir/onnx_io.h"
#include "ir/startup_marks.h"
#include "ir/status_macros.h"
#include "runtime/cuda/cuda_context.h"
#include "runtime/cuda/cuda_memory.h"
#include "runtime/cuda/weight_uploader.h"
#include "tools/bench_registry.h"

ABSL_FLAG(int32_t, repeat, 3, "bench startup: runs per mode (cold, warm); the median is shown");
ABSL_FLAG(int32_t, cold_repeat, -1,
          "bench startup: cold runs (-1: --repeat; 0 skips the cold mode, whose 7B runs read "
          "the whole file from storage)");

namespace kvcc::tools {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "kvcc bench startup: %s\n", std::string(s.message()).c_str());
  return 1;
}

// One child run: every mark's time in ms after the spawn, and its extra fields.
struct Run {
  std::map<std::string, double> at_ms;
  std::map<std::string, std::string> fields;  // "phase.key" -> value
};

// Spawns `exe args...` with the marks on and `cache_dir` as its kernel cache; the run must reach
// the mark `last`.
absl::StatusOr<Run> SpawnWithMarks(const std::string& exe, const std::vector<std::string>& argv_tail,
                                   const std::string& cache_dir, const std::string& last) {
  std::vector<std::string> args = {exe};
  args.insert(args.end(), argv_tail.begin(), argv_tail.end());
  std::vector<std::string> env_store = {"KVCC_TIMINGS=1", "KVCC_CACHE_DIR=" + cache_dir};
  for (char** e = environ; *e != nullptr; ++e) {
    if (absl::StartsWith(*e, "KVCC_TIMINGS=") || absl::StartsWith(*e, "KVCC_CACHE_DIR=")) continue;
    env_store.push_back(*e);
  }
  std::vector<char*> argv, envp;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (std::string& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return absl::InternalError("pipe failed");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, pipe_fds[1], 2);
  posix_spawn_file_actions_addclose(&fa, pipe_fds[0]);
  pid_t pid = 0;
  const int64_t spawn_ns = ir::UnixNanos();
  const int rc = posix_spawn(&pid, exe.c_str(), &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  close(pipe_fds[1]);
  if (rc != 0) {
    close(pipe_fds[0]);
    return absl::InternalError(absl::StrCat("cannot spawn ", exe, ": ", std::strerror(rc)));
  }
  std::string err;
  char buf[4096];
  for (ssize_t n; (n = read(pipe_fds[0], buf, sizeof(buf))) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    err.append(buf, n);
  }
  close(pipe_fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat("`", absl::StrJoin(args, " "), "` failed:\n",
                                            err.substr(err.size() > 2000 ? err.size() - 2000 : 0)));
  }
  Run run;
  for (absl::string_view line : absl::StrSplit(err, '\n')) {
    if (!absl::ConsumePrefix(&line, ir::kStartupMarkPrefix)) continue;
    std::vector<std::string> parts = absl::StrSplit(line, ' ', absl::SkipEmpty());
    int64_t ns = 0;
    if (parts.size() < 2 || !absl::SimpleAtoi(parts[1], &ns)) continue;
    // A phase that repeats (a second backend) keeps its first time.
    run.at_ms.emplace(parts[0], (ns - spawn_ns) / 1e6);
    for (size_t i = 2; i < parts.size(); ++i) {
      std::pair<std::string, std::string> kv = absl::StrSplit(parts[i], absl::MaxSplits('=', 1));
      run.fields.emplace(parts[0] + "." + kv.first, kv.second);
    }
  }
  if (run.at_ms.count(last) == 0) {
    return absl::InternalError(absl::StrCat("the child printed no `kvcc-timing ", last,
                                            "` line:\n", err));
  }
  return run;
}

absl::StatusOr<Run> SpawnGenerate(const std::string& exe, const std::string& artifact,
                                  const std::string& cache_dir) {
  return SpawnWithMarks(exe, {"generate", artifact, "--prompt", "Once upon a time",
                              "--max-new-tokens", "1"}, cache_dir, "generated");
}

// Fraction of `path`'s pages in the page cache (mincore over a read-only mapping).
double ResidentFraction(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return -1;
  struct stat st {};
  double out = -1;
  if (fstat(fd, &st) == 0 && st.st_size > 0) {
    void* p = mmap(nullptr, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (p != MAP_FAILED) {
      const long page = sysconf(_SC_PAGESIZE);
      std::vector<unsigned char> vec((st.st_size + page - 1) / page);
      if (mincore(p, st.st_size, vec.data()) == 0) {
        int64_t in = 0;
        for (unsigned char v : vec) in += v & 1;
        out = static_cast<double>(in) / vec.size();
      }
      munmap(p, st.st_size);
    }
  }
  close(fd);
  return out;
}

// Drops the artifact's files from the page cache; returns model.weights' resident fraction
// before and after.
std::pair<double, double> DropPageCache(const std::string& artifact,
                                        const std::string& weights) {
  const double before = ResidentFraction(weights);
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(artifact, ec)) {
    if (!e.is_regular_file(ec)) continue;
    const int fd = open(e.path().c_str(), O_RDONLY);
    if (fd < 0) continue;
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
  }
  return {before, ResidentFraction(weights)};
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// GB/s reading `path` with `threads` preads into pinned buffers of 16 MiB each.
absl::StatusOr<double> PinnedReadRate(const std::string& path, int threads) {
  const int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  struct stat st {};
  fstat(fd, &st);
  constexpr int64_t kChunk = int64_t{16} << 20;
  std::vector<void*> bufs(threads, nullptr);
  absl::Status status;
  for (void*& b : bufs) {
    status.Update(runtime::CudaCheck(cudaHostAlloc(&b, kChunk, cudaHostAllocDefault),
                                     "cudaHostAlloc(read probe)"));
  }
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  const auto t0 = Clock::now();
  if (status.ok()) {
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        for (int64_t off; (off = next.fetch_add(kChunk)) < st.st_size;) {
          const int64_t want = std::min<int64_t>(kChunk, st.st_size - off);
          if (pread(fd, bufs[t], want, off) != want) failed = true;
        }
      });
    }
    for (std::thread& th : pool) th.join();
  }
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  for (void* b : bufs) {
    if (b != nullptr) cudaFreeHost(b);
  }
  close(fd);
  KVCC_RETURN_IF_ERROR(status);
  if (failed) return absl::DataLossError(absl::StrCat("short read of ", path));
  return st.st_size / s / 1e9;
}

// GB/s of cudaMemcpyAsync from one pinned 256 MiB buffer to the device.
absl::StatusOr<double> PinnedH2DRate() {
  KVCC_ASSIGN_OR_RETURN(auto ctx, runtime::CudaContext::Create(0));
  constexpr int64_t kBytes = int64_t{256} << 20;
  KVCC_ASSIGN_OR_RETURN(runtime::Tensor dev,
                        runtime::AllocateDeviceBuffer(ctx, kBytes, "the H2D probe"));
  void* host = nullptr;
  KVCC_RETURN_IF_ERROR(runtime::CudaCheck(cudaHostAlloc(&host, kBytes, cudaHostAllocDefault),
                                          "cudaHostAlloc(H2D probe)"));
  std::memset(host, 1, kBytes);
  double best = 0;
  absl::Status s;
  for (int i = 0; i < 5 && s.ok(); ++i) {
    const auto t0 = Clock::now();
    s.Update(runtime::CudaCheck(cudaMemcpyAsync(dev.raw(), host, kBytes, cudaMemcpyHostToDevice,
                                                ctx->stream()), "H2D probe"));
    s.Update(ctx->Synchronize());
    best = std::max(best, kBytes / std::chrono::duration<double>(Clock::now() - t0).count() / 1e9);
  }
  cudaFreeHost(host);
  KVCC_RETURN_IF_ERROR(s);
  return best;
}

// The phases, as (label, from mark, to mark); a missing mark leaves the phase out.
struct Phase {
  const char* label;
  const char* from;
  const char* to;
};
constexpr Phase kPhases[] = {
    {"process start + shared libraries (to main)", "", "main"},
    {"artifact checksums", "main", "verified"},
    {"graph + weights mmap/digest", "verified", "module"},
    {"tokenizer", "module", "tokenizer"},
    {"CUDA context (what the above did not hide)", "tokenizer", "context"},
    {"GEMM set-up (tuning; cuBLASLt opens at its first plan)", "context", "gemm"},
    {"ops kernels (cubin loads)", "gemm", "kernels"},
    {"executor + weight upload", "kernels", "weights"},
    {"rest of engine start", "weights", "model_ready"},
    {"first step (prefill + 1 token)", "model_ready", "generated"},
    {"total: process start to first token", "", "generated"},
};

void Report(const char* mode, const std::vector<Run>& runs) {
  std::printf("\n%s (median of %zu):\n", mode, runs.size());
  for (const Phase& p : kPhases) {
    std::vector<double> v;
    for (const Run& r : runs) {
      auto to = r.at_ms.find(p.to);
      auto from = r.at_ms.find(p.from);
      if (to == r.at_ms.end() || (*p.from != '\0' && from == r.at_ms.end())) continue;
      v.push_back(to->second - (*p.from != '\0' ? from->second : 0.0));
    }
    if (v.empty()) continue;
    std::printf("  %-48s %9.1f ms\n", p.label, Median(v));
  }
  // Events off the phase chain: when they happened (from the spawn) and how long they took.
  const std::pair<const char*, const char*> kEvents[] = {
      {"cublaslt_warm", "cuBLASLt warm-up on the library thread"},
      {"gemm_plan", "first GEMM plan (heuristic query or stored algorithm)"}};
  for (const auto& [mark, label] : kEvents) {
    std::vector<double> at, took;
    for (const Run& r : runs) {
      auto a = r.at_ms.find(mark);
      auto f = r.fields.find(absl::StrCat(mark, ".ms"));
      double ms = 0;
      if (a == r.at_ms.end() || f == r.fields.end() || !absl::SimpleAtod(f->second, &ms)) continue;
      at.push_back(a->second);
      took.push_back(ms);
    }
    if (!at.empty()) {
      std::printf("  (%s: %.1f ms, done at %.1f ms)\n", label, Median(took), Median(at));
    }
  }
  int verified = 0, counted = 0;
  for (const Run& r : runs) {
    auto f = r.fields.find("weights.verified");
    if (f == r.fields.end()) continue;
    ++counted;
    verified += f->second == "1" ? 1 : 0;
  }
  // Inside the CUDA context phase: when the background context was ready, when its limits
  // were set (cudaDeviceSetLimit), when the context mark followed.
  for (const char* mark : {"context_prewarmed", "context_limits", "context"}) {
    std::vector<double> at;
    for (const Run& r : runs) {
      if (auto a = r.at_ms.find(mark); a != r.at_ms.end()) at.push_back(a->second);
    }
    if (!at.empty()) std::printf("  (%s at %.1f ms)\n", mark, Median(at));
  }
  // The lazily opened libraries: a run from an artifact should never open NVRTC.
  for (const char* lib : {"libnvrtc", "libcublasLt"}) {
    std::vector<double> at;
    for (const Run& r : runs) {
      if (auto a = r.at_ms.find(absl::StrCat("loaded_", lib)); a != r.at_ms.end()) {
        at.push_back(a->second);
      }
    }
    if (at.empty()) {
      std::printf("  (%s not opened)\n", lib);
    } else {
      std::printf("  (%s opened in %zu of %zu runs, at %.1f ms)\n", lib, at.size(), runs.size(),
                  Median(at));
    }
  }
  if (counted > 0) {
    std::printf("  (weights digest checked inside the upload in %d of %d runs)\n", verified,
                counted);
  }
}

// Median upload rate in GB/s from the runs' `weights` marks.
double UploadRate(const std::vector<Run>& runs, int64_t* bytes) {
  std::vector<double> rates;
  for (const Run& r : runs) {
    auto b = r.fields.find("weights.bytes");
    auto s = r.fields.find("weights.seconds");
    double sec = 0;
    int64_t n = 0;
    if (b == r.fields.end() || s == r.fields.end() || !absl::SimpleAtoi(b->second, &n) ||
        !absl::SimpleAtod(s->second, &sec) || sec <= 0) {
      continue;
    }
    *bytes = n;
    rates.push_back(n / sec / 1e9);
  }
  return Median(rates);
}

int RunBenchStartup(const std::vector<std::string>& args) {
  if (args.size() != 1) {
    std::fprintf(stderr, "usage: kvcc bench startup ARTIFACT [--repeat 3] [--cold_repeat N]\n");
    return 2;
  }
  const int repeat = absl::GetFlag(FLAGS_repeat);
  if (repeat < 1 || repeat > 100) {
    return Fail(absl::InvalidArgumentError(absl::StrCat("--repeat ", repeat,
                                                        " is outside 1..100")));
  }
  const std::string artifact = args[0];
  const std::string weights = (fs::path(artifact) / ir::kWeightsFileName).string();
  std::error_code ec;
  if (!fs::is_regular_file(weights, ec)) {
    return Fail(absl::NotFoundError(absl::StrCat(weights, " does not exist: ", artifact,
                                                 " is not an artifact (kvcc compile / import)")));
  }
  std::string exe = fs::read_symlink("/proc/self/exe", ec).string();
  if (ec) return Fail(absl::InternalError("cannot find the kvcc executable (/proc/self/exe)"));
  const fs::path tmp = fs::temp_directory_path(ec) / absl::StrCat("kvcc-startup-", getpid());
  auto fresh_dir = [&](const std::string& name) {
    const fs::path d = tmp / name;
    fs::remove_all(d, ec);
    fs::create_directories(d, ec);
    return d.string();
  };
  const int cold_repeat =
      absl::GetFlag(FLAGS_cold_repeat) < 0 ? repeat : absl::GetFlag(FLAGS_cold_repeat);
  if (cold_repeat > 100) {
    return Fail(absl::InvalidArgumentError(absl::StrCat("--cold_repeat ", cold_repeat,
                                                        " is outside 0..100")));
  }
  std::vector<Run> cold, warm;
  std::vector<std::pair<double, double>> drops;
  for (int i = 0; i < cold_repeat; ++i) {
    drops.push_back(DropPageCache(artifact, weights));
    auto run = SpawnGenerate(exe, artifact, fresh_dir(absl::StrCat("cold", i)));
    if (!run.ok()) return Fail(run.status());
    cold.push_back(*std::move(run));
  }
  const std::string warm_cache = fresh_dir("warm");
  for (int i = 0; i <= repeat; ++i) {  // run 0 warms the page and kernel caches
    auto run = SpawnGenerate(exe, artifact, warm_cache);
    if (!run.ok()) return Fail(run.status());
    if (i > 0) warm.push_back(*std::move(run));
  }
  fs::remove_all(tmp, ec);
  std::printf("kvcc bench startup %s (%s)\n", artifact.c_str(), weights.c_str());
  for (size_t i = 0; i < drops.size(); ++i) {
    std::printf("  cold run %zu: posix_fadvise(DONTNEED) left %.1f%% of model.weights in the "
                "page cache (%.1f%% before)%s\n", i, 100 * drops[i].second,
                100 * drops[i].first,
                drops[i].second < 0.05 ? "" : ": it did not take effect (pages mapped or dirty)");
  }
  if (!cold.empty()) Report("cold: empty kernel cache, artifact dropped from the page cache", cold);
  Report("warm: kernel and page caches warm", warm);
  int64_t bytes = 0;
  const double cold_up = UploadRate(cold, &bytes), warm_up = UploadRate(warm, &bytes);
  if (!runtime::CudaDeviceAvailable()) {
    std::printf("\nno CUDA device: the upload ceilings (pinned read, host-to-device) are not "
                "measured\n");
    return 0;
  }
  // The floor under every start: a fresh process that only initialises CUDA (kvcc bench context).
  std::vector<Run> bare;
  for (int i = 0; i < repeat; ++i) {
    auto run = SpawnWithMarks(exe, {"bench", "context"}, warm_cache, "context");
    if (!run.ok()) return Fail(run.status());
    bare.push_back(*std::move(run));
  }
  std::vector<double> to_driver, to_context, first_token;
  for (const Run& r : bare) {
    to_driver.push_back(r.at_ms.at("driver"));
    to_context.push_back(r.at_ms.at("context"));
  }
  for (const Run& r : warm) first_token.push_back(r.at_ms.at("generated"));
  const double floor_ms = Median(to_context);
  std::printf("\nCUDA alone in a fresh process (kvcc bench context, median of %d): driver "
              "initialised at %.1f ms, primary context ready at %.1f ms from the spawn; warm "
              "first token %.1f ms = that floor + %.1f ms\n", repeat, Median(to_driver),
              floor_ms, Median(first_token), Median(first_token) - floor_ms);
  // The best of 8 threads and the upload's own reader count, so the ceiling is never one the
  // upload's thread count alone would lower.
  const int upload_readers = runtime::WeightUploadOptions::FromEnvironment().readers;
  int read_threads = 8;
  auto read_rate = PinnedReadRate(weights, 8);
  if (!read_rate.ok()) return Fail(read_rate.status());
  if (upload_readers != 8) {
    auto more = PinnedReadRate(weights, upload_readers);
    if (!more.ok()) return Fail(more.status());
    if (*more > *read_rate) {
      read_rate = *more;
      read_threads = upload_readers;
    }
  }
  auto h2d = PinnedH2DRate();
  if (!h2d.ok()) return Fail(h2d.status());
  const double ceiling = std::min(*read_rate, *h2d);
  std::printf("\nweight upload (%.2f GB): cold %.2f GB/s, warm %.2f GB/s\n", bytes / 1e9, cold_up,
              warm_up);
  std::printf("ceilings: model.weights read into pinned memory (%d threads, page cache warm; "
              "the upload uses %d readers) %.2f GB/s; pinned host-to-device %.2f GB/s\n",
              read_threads, upload_readers, *read_rate, *h2d);
  std::printf("warm upload = %.0f%% of min(read, H2D) = %.2f GB/s\n", 100 * warm_up / ceiling,
              ceiling);
  return 0;
}

}  // namespace
}  // namespace kvcc::tools

KVCC_BENCH(startup, "startup ARTIFACT [--repeat 3]", kvcc::tools::RunBenchStartup);
