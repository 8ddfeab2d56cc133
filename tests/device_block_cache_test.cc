// The CUDA backend's op-result block cache (runtime/cuda/device_block_cache.h): a freed block
// serves the next allocation of its size without a new one; a miss hands idle blocks of other
// sizes back to the pool first, so the bytes held stay near the most live at once; pinned
// caches (the decode graphs') keep every block. Skips without a device.
#include "runtime/cuda/device_block_cache.h"

#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/cuda/cuda_context.h"
#include "tests/gpu_skip.h"
#include "tests/test_util.h"

namespace kvcc::runtime {
namespace {

constexpr int64_t kMiB = int64_t{1} << 20;

TEST(DeviceBlockCacheTest, AFreedBlockServesTheNextAllocationOfItsSize) {
  SKIP_WITHOUT_GPU();
  KVCC_ASSERT_OK_AND_ASSIGN(ctx, CudaContext::Create(0));
  auto cache = DeviceBlockCache::Create(ctx, 256 * kMiB);
  const void* first = nullptr;
  {
    KVCC_ASSERT_OK_AND_ASSIGN(t, cache->Allocate(ir::DType::kU8, {kMiB}, false));
    first = t.raw();
    EXPECT_EQ(cache->stats().live_bytes, kMiB);
  }
  EXPECT_EQ(cache->stats().live_bytes, 0);
  EXPECT_EQ(cache->stats().idle_bytes, kMiB);
  KVCC_ASSERT_OK_AND_ASSIGN(again, cache->Allocate(ir::DType::kU8, {kMiB}, false));
  EXPECT_EQ(again.raw(), first);
  EXPECT_EQ(cache->stats().hits, 1);
  EXPECT_EQ(cache->stats().misses, 1);
}

// Sizes a prefill chunk makes one after another: without the hand-back every distinct size
// would stay held (the sum of all of them); with it, held stays within one block of the most
// live at once.
TEST(DeviceBlockCacheTest, AMissHandsIdleBlocksOfOtherSizesBack) {
  SKIP_WITHOUT_GPU();
  KVCC_ASSERT_OK_AND_ASSIGN(ctx, CudaContext::Create(0));
  auto cache = DeviceBlockCache::Create(ctx, 256 * kMiB);
  for (int64_t mib : {8, 12, 20, 4, 10, 16}) {
    KVCC_ASSERT_OK_AND_ASSIGN(t, cache->Allocate(ir::DType::kU8, {mib * kMiB}, true));
  }
  const DeviceBlockCache::Stats st = cache->stats();
  EXPECT_EQ(st.peak_live_bytes, 20 * kMiB);
  EXPECT_LE(st.peak_held_bytes, 40 * kMiB);  // not the 70 MiB of all six
  EXPECT_GT(st.returned, 0);
  EXPECT_TRUE(ctx->Synchronize().ok());
}

TEST(DeviceBlockCacheTest, APinnedCacheKeepsEveryBlock) {
  SKIP_WITHOUT_GPU();
  KVCC_ASSERT_OK_AND_ASSIGN(ctx, CudaContext::Create(0));
  auto cache = DeviceBlockCache::Create(ctx, 0, /*pinned=*/true);
  for (int64_t mib : {2, 3, 5}) {
    KVCC_ASSERT_OK_AND_ASSIGN(t, cache->Allocate(ir::DType::kU8, {mib * kMiB}, false));
  }
  EXPECT_EQ(cache->stats().idle_bytes, 10 * kMiB);
  EXPECT_EQ(cache->stats().returned, 0);
}

}  // namespace
}  // namespace kvcc::runtime
