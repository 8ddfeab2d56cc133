// Shared helpers for the GoogleTest suite: source-tree paths, Status assertions, and the
// stories260K model with random token windows that the pass and runtime tests run it on.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "ir/module.h"
#include "runtime/engine.h"

namespace kvcc::testing {

// The data roots: $KVCC_SOURCE_DIR and $KVCC_SHARED_DIR when set, else the checkout the tests
// were built from and ../shared beside it, so a copy of the tree elsewhere (the GPU machine)
// runs them without a link back to the build path.
inline std::string SourceRoot() {
  const char* dir = std::getenv("KVCC_SOURCE_DIR");
  return dir != nullptr && *dir != '\0' ? dir : KVCC_SOURCE_DIR;
}
inline std::string SharedRoot() {
  const char* dir = std::getenv("KVCC_SHARED_DIR");
  return dir != nullptr && *dir != '\0' ? dir : SourceRoot() + "/../shared";
}
inline std::string SourcePath(const std::string& rel) { return SourceRoot() + "/" + rel; }
// The models and data the tests share with other checkouts.
inline std::string SharedPath(const std::string& rel) { return SharedRoot() + "/" + rel; }
// A fresh empty directory under the build tree, unique per test.
std::string TempDir(const std::string& name);
// The whole content of a file ("" when it cannot be read).
std::string ReadFileBytes(const std::string& path);

// The toy LLaMA sizes the IR-level tests build graphs at: hidden 16, 4 heads over 2 KV heads
// of head_dim 4, ffn 24, vocab 32; other fields keep their defaults.
ir::ModelConfig TinyLlamaConfig(int64_t layers);

// models/stories260K loaded (HF checkpoint or artifact); a load error fails the calling test
// and returns null.
std::unique_ptr<ir::Module> LoadStories260K();

// An engine over models/stories260K on `device` ("cpu", "cuda"): blocks of 16 tokens, room
// for four full-context sessions. An error fails the calling test and returns null.
std::unique_ptr<runtime::Engine> Stories260KEngine(const std::string& device);

// `count` windows of `len` tokens: BOS (1) then seeded random ids in [3, vocab).
std::vector<std::vector<int32_t>> RandomTokenWindows(int count, int len, int vocab,
                                                     uint32_t seed);

// Logits of `module` on a fresh 2-thread CPU engine: every position of `prompt` (one
// session's prefill), then one row per token of `decode` fed one step at a time. An engine error
// fails the calling test and returns an empty vector.
std::vector<float> CpuLogits(std::unique_ptr<ir::Module> module,
                             const std::vector<int32_t>& prompt,
                             const std::vector<int32_t>& decode);

}  // namespace kvcc::testing

#define KVCC_ASSERT_OK(expr)                                \
  do {                                                      \
    const auto& kvcc_status_ = (expr);                      \
    ASSERT_TRUE(kvcc_status_.ok()) << kvcc_status_;         \
  } while (0)
#define KVCC_ASSERT_OK_AND_ASSIGN(lhs, expr)                \
  auto lhs##_or = (expr);                                   \
  ASSERT_TRUE(lhs##_or.ok()) << lhs##_or.status();          \
  auto lhs = std::move(*lhs##_or)
