// A small fixed pool of worker threads for the CPU backend: ParallelFor splits an index range
// (GEMM rows, attention heads, tokens) into contiguous chunks run on the workers and the
// calling thread. One ParallelFor runs at a time per pool; calls from inside a task run inline.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"

namespace kvcc::runtime {

class ThreadPool {
 public:
  // Far beyond any useful CPU count; more only exhausts the system's thread limit.
  static constexpr int kMaxThreads = 1024;

  // An error naming the value when threads > kMaxThreads (what a --cpu-threads flag must
  // satisfy; <= 0 means every core).
  static absl::Status CheckThreadCount(int threads);

  // `threads` <= 0 picks std::thread::hardware_concurrency(). The caller counts as one thread.
  // Never throws: the count is capped at kMaxThreads, and when the system refuses to start a
  // thread the pool runs with those it has (status() says why).
  explicit ThreadPool(int threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }
  // OK, or why fewer threads than asked for are running.
  const absl::Status& status() const { return status_; }

  // Calls fn(begin, end) over disjoint chunks covering [0, n); chunks hold at least
  // `min_chunk` indices so tiny loops are not split. Returns when all chunks are done.
  void ParallelFor(int64_t n, int64_t min_chunk, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void WorkerLoop(int index);

  std::vector<std::thread> workers_;
  absl::Status status_;
  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  const std::function<void(int64_t, int64_t)>* task_ = nullptr;
  int64_t task_n_ = 0, chunk_ = 0;
  int64_t next_chunk_ = 0, num_chunks_ = 0, chunks_done_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::mutex run_mu_;  // serializes ParallelFor callers
};

}  // namespace kvcc::runtime
