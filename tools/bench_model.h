// A model at a config.json's real shapes on the GPU, for `kvcc bench memory` and `kvcc bench
// decode`: the graph from the real importer over a shape-only checkpoint (a safetensors header
// naming every tensor, over a sparse data section the host never reads), weights filled on the
// device by a seeded RNG kernel and adopted as the uploads, and a paged KV cache of `batch`
// sessions of `max_len` tokens filled with random rows through the cache-write kernel.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "ir/module.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/executor.h"
#include "runtime/kv_cache.h"
#include "testing/synth.h"

// --w4-group-size G (bench decode, bench memory): the model's decoder linears in 4 bits (AWQ
// GEMM, group size G); 0 keeps them in 16 bits.
ABSL_DECLARE_FLAG(int64_t, w4_group_size);

namespace kvcc::tools {

constexpr int kBenchBlockSize = 64;

// Writes `dir`/config.json and the shape-only `dir`/model.safetensors; returns the synth plan
// (the weights' distributions). `w4_group_size` > 0 writes an AutoAWQ-GEMM checkpoint instead:
// every decoder-layer linear as qweight/qzeros/scales at that group size (InternLM2's
// interleaved wqkv, which kvcc imports only in 16 bits, stays listed in modules_to_not_convert).
absl::StatusOr<testing::SynthPlan> WriteShapeOnlyCheckpoint(const std::string& config_path,
                                                             const std::string& dir,
                                                             int64_t w4_group_size = 0);

// The folder a bench writes its shape-only checkpoint of `config_path` into: `bench`, the
// config's name and the 4-bit group size make it unique.
std::string BenchCheckpointDir(const std::string& bench, const std::string& config_path,
                               int64_t w4_group_size);
// " (W4 AWQ g128)" for a 4-bit bench model, "" for 16 bits: the weights named in a bench header.
std::string W4Label(int64_t w4_group_size);

// Imports `dir`, packs its 4-bit linears as `kvcc compile` does (pipeline/w4_packing.h) and
// gives every kv_cache_write the cache `kind`: "f16", "i8" (per layer) or "i4" (per head),
// with fixed parameters (zero point 0, range +-4): benchmarks of speed and memory do not
// depend on the values.
absl::StatusOr<std::unique_ptr<ir::Module>> LoadBenchModule(const std::string& dir,
                                                            const std::string& kind);

// Fills every weight of `module` on the device (distributions from `plan`) and makes it the
// upload `backend` hands the executor. 4-bit codes and zeros (packed code words too) get random
// nibbles and a linear's scales the value that gives its dequantized weight the planned spread
// (packed scale/zero words: that scale and z = 8).
absl::Status AdoptRandomWeights(const ir::Module& module, const testing::SynthPlan& plan,
                                uint64_t seed, runtime::CudaBackend* backend);

// Adds sessions 0..batch-1 with `max_len` reserved tokens each and writes random K/V rows at
// positions [0, fill) of every session and layer.
absl::Status FillBenchCache(runtime::CudaBackend* backend, const runtime::KvCacheSpec& spec,
                            int64_t batch, int64_t max_len, int64_t fill, uint64_t seed,
                            runtime::KvCache* cache);

}  // namespace kvcc::tools
