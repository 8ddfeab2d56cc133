// Skips a GPU test where no CUDA device exists: CI has none, the device runs them.
#pragma once

#include "gtest/gtest.h"
#include "runtime/cuda/cuda_context.h"

#define SKIP_WITHOUT_GPU() \
  if (!::kvcc::runtime::CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device"
