// The CPU thread pool: a thread count beyond the cap is refused by the check and capped (not an
// uncaught std::system_error) by the constructor, and a capped pool still covers every index.
#include "runtime/thread_pool.h"

#include <atomic>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/backend_factory.h"

namespace kvcc::runtime {
namespace {

TEST(ThreadPoolTest, ThreadCountCheck) {
  EXPECT_TRUE(ThreadPool::CheckThreadCount(0).ok());
  EXPECT_TRUE(ThreadPool::CheckThreadCount(-1).ok());  // every core
  EXPECT_TRUE(ThreadPool::CheckThreadCount(ThreadPool::kMaxThreads).ok());
  absl::Status s = ThreadPool::CheckThreadCount(100000);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("100000"), std::string::npos) << s;
  EXPECT_NE(s.message().find("at most 1024"), std::string::npos) << s;
  // `kvcc bench cpu --cpu-threads 100000` once aborted here.
  auto backend = CreateBackend("cpu", 100000);
  ASSERT_FALSE(backend.ok());
  EXPECT_NE(backend.status().message().find("100000"), std::string::npos) << backend.status();
}

TEST(ThreadPoolTest, ConstructorCapsInsteadOfThrowing) {
  ThreadPool pool(ThreadPool::kMaxThreads + 5000);
  EXPECT_LE(pool.num_threads(), ThreadPool::kMaxThreads);
  EXPECT_FALSE(pool.status().ok());
  std::vector<std::atomic<int>> hits(5000);
  pool.ParallelFor(5000, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) hits[i]++;
  });
  for (const auto& h : hits) ASSERT_EQ(h.load(), 1);
}

}  // namespace
}  // namespace kvcc::runtime
