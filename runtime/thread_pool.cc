#include "runtime/thread_pool.h"

#include <algorithm>
#include <system_error>

#include "absl/strings/str_cat.h"

namespace kvcc::runtime {
namespace {
thread_local bool in_pool_task = false;
}  // namespace

absl::Status ThreadPool::CheckThreadCount(int threads) {
  if (threads <= kMaxThreads) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("CPU thread count ", threads,
                                                 " is too large: at most ", kMaxThreads,
                                                 " (0 = every core)"));
}

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (threads > kMaxThreads) {
    status_ = CheckThreadCount(threads);
    threads = kMaxThreads;
  }
  workers_.reserve(static_cast<size_t>(threads - 1));
  for (int i = 1; i < threads; ++i) {
    try {
      workers_.emplace_back([this, i] { WorkerLoop(i); });
    } catch (const std::system_error& e) {
      // EAGAIN past the process or system thread limit: run with the threads started so far.
      status_ = absl::ResourceExhaustedError(absl::StrCat(
          "started only ", i, " of ", threads, " CPU threads: ", e.what()));
      break;
    }
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::WorkerLoop(int) {
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    work_cv_.wait(lock, [&] { return stop_ || (generation_ != seen && next_chunk_ < num_chunks_); });
    if (stop_) return;
    seen = generation_;
    while (next_chunk_ < num_chunks_) {
      const int64_t c = next_chunk_++;
      const auto* fn = task_;
      const int64_t begin = c * chunk_, end = std::min(task_n_, begin + chunk_);
      lock.unlock();
      in_pool_task = true;
      (*fn)(begin, end);
      in_pool_task = false;
      lock.lock();
      if (++chunks_done_ == num_chunks_) done_cv_.notify_all();
    }
  }
}

void ThreadPool::ParallelFor(int64_t n, int64_t min_chunk,
                             const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  min_chunk = std::max<int64_t>(1, min_chunk);
  const int64_t threads = num_threads();
  if (workers_.empty() || in_pool_task || n <= min_chunk) {
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> run_lock(run_mu_);
  // A few chunks per thread balance uneven work (e.g. causal attention rows) without much
  // scheduling overhead.
  int64_t chunk = std::max(min_chunk, (n + threads * 4 - 1) / (threads * 4));
  std::unique_lock<std::mutex> lock(mu_);
  task_ = &fn;
  task_n_ = n;
  chunk_ = chunk;
  num_chunks_ = (n + chunk - 1) / chunk;
  next_chunk_ = 0;
  chunks_done_ = 0;
  ++generation_;
  work_cv_.notify_all();
  while (next_chunk_ < num_chunks_) {
    const int64_t c = next_chunk_++;
    const int64_t begin = c * chunk_, end = std::min(n, begin + chunk_);
    lock.unlock();
    in_pool_task = true;
    fn(begin, end);
    in_pool_task = false;
    lock.lock();
    ++chunks_done_;
  }
  done_cv_.wait(lock, [&] { return chunks_done_ == num_chunks_; });
  task_ = nullptr;
  num_chunks_ = 0;
}

}  // namespace kvcc::runtime
