// libFuzzer target for the ONNX artifact reader: the input is the bytes of model.onnx, read
// against the weights file of a small valid artifact (fuzz_artifact.h). Any crash or sanitizer
// report is a finding, and so is a module that reads back but does not verify or points a
// weight outside the mapped file.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "fuzz/fuzz_artifact.h"
#include "ir/mapped_file.h"
#include "ir/onnx_io.h"
#include "ir/verifier.h"

namespace {

std::shared_ptr<const kvcc::ir::MappedFile>* weights = nullptr;

void Die(const std::string& what) {
  std::fprintf(stderr, "onnx_reader_fuzzer: %s\n", what.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  char pattern[] = "/tmp/kvcc-onnx-fuzz-XXXXXX";
  if (mkdtemp(pattern) == nullptr) Die("cannot create a temporary directory");
  const std::string dir = pattern;
  if (auto s = kvcc::fuzz::WriteFuzzArtifact(dir); !s.ok()) Die(std::string(s.message()));
  auto mapped = kvcc::ir::MappedFile::Open(dir + "/" + kvcc::ir::kWeightsFileName);
  if (!mapped.ok()) Die(std::string(mapped.status().message()));
  weights = new std::shared_ptr<const kvcc::ir::MappedFile>(*std::move(mapped));
  // The mapping stays valid after the files are gone.
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto module = kvcc::ir::ParseOnnx(bytes, *weights, "fuzz");
  if (!module.ok()) {
    if (module.status().message().empty()) Die("error without a message");
    return 0;
  }
  if (auto s = kvcc::ir::Verify(**module); !s.ok()) {
    Die("ParseOnnx returned a module that does not verify: " + std::string(s.message()));
  }
  const uint8_t* begin = (*weights)->data();
  const uint8_t* end = begin + (*weights)->size();
  for (const kvcc::ir::Value* w : (*module)->graph.weights()) {
    const kvcc::ir::WeightData& d = *w->weight;
    if (d.size > 0 && (d.bytes < begin || d.bytes + d.size > end)) {
      Die("weight '" + w->name + "' points outside the weights file");
    }
    if (d.size > 0 && (d.bytes - begin) % kvcc::ir::kWeightAlignment != 0) {
      Die("weight '" + w->name + "' is misaligned");
    }
  }
  return 0;
}
