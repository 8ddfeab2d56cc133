#include "codegen/nvrtc_compiler.h"

#include <nvrtc.h>

#include <atomic>
#include <cstdio>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "codegen/kernel_templates.h"
#include "codegen/nvrtc_library.h"

namespace kvcc::codegen {
namespace {

struct ProgramDeleter {
  void operator()(nvrtcProgram* p) const {
    nvrtcDestroyProgram(p);
    delete p;
  }
};

absl::Status NvrtcError(nvrtcResult r, absl::string_view what, absl::string_view program) {
  return absl::InternalError(
      absl::StrCat("NVRTC ", what, " failed for ", program, ": ", nvrtcGetErrorString(r)));
}

// The integer just before `suffix` in `line` ("... 12 bytes spill stores" -> 12).
int NumberBefore(absl::string_view line, absl::string_view suffix) {
  size_t pos = line.find(suffix);
  if (pos == absl::string_view::npos) return -1;
  absl::string_view head = absl::StripTrailingAsciiWhitespace(line.substr(0, pos));
  size_t start = head.find_last_of(" ,:\t");
  absl::string_view digits = start == absl::string_view::npos ? head : head.substr(start + 1);
  int value = -1;
  if (!absl::SimpleAtoi(digits, &value)) return -1;
  return value;
}

std::atomic<int64_t> nvrtc_compiles{0};

}  // namespace

int64_t NvrtcCompileCount() { return nvrtc_compiles.load(); }

std::string NvrtcVersion() {
  int major = 0, minor = 0;
  if (nvrtcVersion(&major, &minor) != NVRTC_SUCCESS) return "unknown";
  return absl::StrCat(major, ".", minor);
}

std::vector<std::string> NvrtcOptions(absl::string_view arch_name) {
  return NvrtcOptions(arch_name, NvrtcVersion());
}

std::vector<std::string> NvrtcOptions(absl::string_view arch_name,
                                      absl::string_view nvrtc_version) {
  // ptxas -v puts the resource report into the log; fmad stays on (the default) and division
  // stays IEEE, which the quantization rounding relies on.
  std::vector<std::string> options = {absl::StrCat("--gpu-architecture=", arch_name),
                                      "--std=c++17", "--ptxas-options=-v", "-lineinfo"};
  // NVRTC 12.9 and later keep a compile cache of their own (beside the driver's, under
  // ~/.nv) and on a hit skip ptxas, so the log has no resource report: the register and spill
  // figures were then missing and BuildKernel kept a capped kernel that spills (seen on the
  // H200: int4 decode 248 -> 285 us). kvcc's kernel cache keeps the log instead.
  std::vector<absl::string_view> parts = absl::StrSplit(nvrtc_version, '.');
  int major = 0, minor = 0;
  if (parts.size() == 2 && absl::SimpleAtoi(parts[0], &major) &&
      absl::SimpleAtoi(parts[1], &minor) && (major > 12 || (major == 12 && minor >= 9))) {
    options.push_back("--no-cache");
  }
  return options;
}

absl::StatusOr<CompiledKernel> CompileCuda(absl::string_view program_name,
                                           absl::string_view source,
                                           absl::string_view kernel_name,
                                           absl::string_view arch_name) {
  if (absl::Status s = NvrtcLoaded(); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("compiling ", program_name, ": ", s.message()));
  }
  ++nvrtc_compiles;
  std::string src(source), name(program_name);
  std::vector<const char*> header_texts, header_names;
  for (const EmbeddedTemplate& t : EmbeddedTemplates()) {
    header_texts.push_back(t.text.c_str());
    header_names.push_back(t.name);
  }
  std::unique_ptr<nvrtcProgram, ProgramDeleter> prog(new nvrtcProgram(nullptr));
  nvrtcResult r =
      nvrtcCreateProgram(prog.get(), src.c_str(), name.c_str(), static_cast<int>(header_texts.size()),
                         header_texts.data(), header_names.data());
  if (r != NVRTC_SUCCESS) {
    delete prog.release();
    return NvrtcError(r, "nvrtcCreateProgram", program_name);
  }
  std::vector<std::string> options = NvrtcOptions(arch_name);
  std::vector<const char*> argv;
  for (const std::string& o : options) argv.push_back(o.c_str());
  nvrtcResult compiled = nvrtcCompileProgram(*prog, static_cast<int>(argv.size()), argv.data());

  CompiledKernel out;
  size_t log_size = 0;
  if (nvrtcGetProgramLogSize(*prog, &log_size) == NVRTC_SUCCESS && log_size > 1) {
    out.log.resize(log_size);
    if (nvrtcGetProgramLog(*prog, out.log.data()) != NVRTC_SUCCESS) out.log.clear();
    while (!out.log.empty() && out.log.back() == '\0') out.log.pop_back();
  }
  if (compiled != NVRTC_SUCCESS) {
    return absl::InvalidArgumentError(absl::StrCat("NVRTC could not compile ", program_name,
                                                   " for ", arch_name, " (",
                                                   nvrtcGetErrorString(compiled), "):\n", out.log));
  }
  size_t cubin_size = 0;
  if ((r = nvrtcGetCUBINSize(*prog, &cubin_size)) != NVRTC_SUCCESS) {
    return NvrtcError(r, "nvrtcGetCUBINSize", program_name);
  }
  if (cubin_size == 0) {
    return absl::InternalError(absl::StrCat("NVRTC produced no cubin for ", program_name,
                                            " (", arch_name, " is a virtual architecture?)"));
  }
  out.cubin.resize(cubin_size);
  if ((r = nvrtcGetCUBIN(*prog, out.cubin.data())) != NVRTC_SUCCESS) {
    return NvrtcError(r, "nvrtcGetCUBIN", program_name);
  }
  out.usage = ParsePtxasReport(out.log, kernel_name);
  return out;
}

ResourceUsage ParsePtxasReport(absl::string_view log, absl::string_view kernel_name) {
  ResourceUsage usage;
  bool in_kernel = false;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    if (absl::StrContains(line, "Compiling entry function") ||
        absl::StrContains(line, "Function properties for")) {
      in_kernel = absl::StrContains(line, absl::StrCat("'", kernel_name, "'")) ||
                  absl::EndsWith(absl::StripTrailingAsciiWhitespace(line), kernel_name);
      continue;
    }
    if (!in_kernel) continue;
    if (absl::StrContains(line, "bytes stack frame")) {
      usage.stack_bytes = std::max(0, NumberBefore(line, "bytes stack frame"));
      usage.spill_store_bytes = std::max(0, NumberBefore(line, "bytes spill stores"));
      usage.spill_load_bytes = std::max(0, NumberBefore(line, "bytes spill loads"));
    }
    if (absl::StrContains(line, "registers")) {
      usage.registers = NumberBefore(line, "registers");
      int smem = NumberBefore(line, "bytes smem");
      if (smem >= 0) usage.shared_bytes = smem;
    }
  }
  return usage;
}

}  // namespace kvcc::codegen
