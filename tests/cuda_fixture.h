// The GPU tests' common pieces: a fixture holding a fresh CudaBackend (f32 activations, as
// CudaBackend::Create makes it), skipped without a device, and the relative error the tests
// compare device results with.
#pragma once

#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/tensor.h"
#include "tests/gpu_skip.h"

namespace kvcc::testing {

class CudaBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_GPU();
    auto g = runtime::CudaBackend::Create(0);
    ASSERT_TRUE(g.ok()) << g.status();
    gpu_ = *std::move(g);
  }
  std::unique_ptr<runtime::CudaBackend> gpu_;
};

// The elements of an f32 host tensor.
std::vector<float> Floats(const runtime::Tensor& host);

// max |a - b| / max |b|: the error relative to the reference's scale (infinite where `a` holds
// a non-finite value).
double ScaledError(const std::vector<float>& a, const std::vector<float>& b);

}  // namespace kvcc::testing
