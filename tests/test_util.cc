#include "tests/test_util.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

#include "frontend/model_loader.h"
#include "runtime/backend_factory.h"
#include "runtime/backend.h"
#include "runtime/engine.h"

namespace kvcc::testing {

std::string TempDir(const std::string& name) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::filesystem::path dir = std::filesystem::path(KVCC_BINARY_DIR) / "test_tmp" /
                              (std::string(info->test_suite_name()) + "." + info->name() + "." +
                               name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

std::string ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

ir::ModelConfig TinyLlamaConfig(int64_t layers) {
  ir::ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.hidden_size = 16;
  c.num_layers = layers;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 4;
  c.intermediate_size = 24;
  c.vocab_size = 32;
  return c;
}

std::unique_ptr<ir::Module> LoadStories260K() {
  auto m = frontend::LoadModel(SourcePath("models/stories260K"));
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? std::move(*m) : nullptr;
}

std::unique_ptr<runtime::Engine> Stories260KEngine(const std::string& device) {
  std::unique_ptr<ir::Module> m = LoadStories260K();
  if (m == nullptr) return nullptr;
  auto backend = runtime::CreateBackend(device, 2);
  EXPECT_TRUE(backend.ok()) << backend.status();
  if (!backend.ok()) return nullptr;
  runtime::EngineOptions o;
  o.block_size = 16;
  o.default_sessions = 4;
  auto e = runtime::Engine::Create(std::shared_ptr<const ir::Module>(std::move(m)),
                                   *std::move(backend), o);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? *std::move(e) : nullptr;
}

std::vector<std::vector<int32_t>> RandomTokenWindows(int count, int len, int vocab,
                                                     uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::vector<int32_t>> out(count);
  for (auto& w : out) {
    w.push_back(1);
    while (static_cast<int>(w.size()) < len) {
      w.push_back(3 + static_cast<int32_t>(rng() % (vocab - 3)));
    }
  }
  return out;
}

std::vector<float> CpuLogits(std::unique_ptr<ir::Module> module,
                             const std::vector<int32_t>& prompt,
                             const std::vector<int32_t>& decode) {
  if (module == nullptr) return {};
  auto backend = runtime::CreateBackend("cpu", 2);
  EXPECT_TRUE(backend.ok()) << backend.status();
  if (!backend.ok()) return {};
  auto engine = runtime::Engine::Create(std::shared_ptr<const ir::Module>(std::move(module)),
                                        std::move(*backend));
  EXPECT_TRUE(engine.ok()) << engine.status();
  if (!engine.ok()) return {};
  auto session = (*engine)->CreateSession();
  EXPECT_TRUE(session.ok()) << session.status();
  if (!session.ok()) return {};
  auto all = (*engine)->PrefillAll(*session, prompt);
  EXPECT_TRUE(all.ok()) << all.status();
  if (!all.ok()) return {};
  std::vector<float> logits = *std::move(all);
  for (int32_t token : decode) {
    auto next = (*engine)->Decode({{*session, token}});
    EXPECT_TRUE(next.ok()) << next.status();
    if (!next.ok()) return {};
    logits.insert(logits.end(), (*next)[0].begin(), (*next)[0].end());
  }
  return logits;
}

}  // namespace kvcc::testing
