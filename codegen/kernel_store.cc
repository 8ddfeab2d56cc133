#include "codegen/kernel_store.h"

#include <cstdint>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "ir/status_macros.h"

namespace kvcc::codegen {

std::string EncodeKernelPayload(const CompiledKernel& k) {
  return absl::StrCat(k.log.size(), "\n", k.log, k.cubin);
}

bool DecodeKernelPayload(absl::string_view payload, absl::string_view kernel_name,
                         CompiledKernel* k) {
  const size_t nl = payload.find('\n');
  uint64_t log_len = 0;
  if (nl == absl::string_view::npos || !absl::SimpleAtoi(payload.substr(0, nl), &log_len) ||
      log_len > payload.size() - nl - 1) {
    return false;
  }
  k->log = std::string(payload.substr(nl + 1, log_len));
  k->cubin = std::string(payload.substr(nl + 1 + log_len));
  k->usage = ParsePtxasReport(k->log, kernel_name);
  k->from_cache = true;
  return !k->cubin.empty();
}

absl::StatusOr<std::optional<std::string>> RecordingKernelStore::Lookup(absl::string_view key) {
  if (inner_ == nullptr) return std::optional<std::string>();
  KVCC_ASSIGN_OR_RETURN(std::optional<std::string> hit, inner_->Lookup(key));
  if (hit.has_value()) recorded_[std::string(key)] = *hit;
  return hit;
}

absl::Status RecordingKernelStore::Store(absl::string_view key, absl::string_view payload) {
  recorded_[std::string(key)] = std::string(payload);
  if (inner_ != nullptr) (void)inner_->Store(key, payload);  // a cache miss next time, no more
  return absl::OkStatus();
}

std::map<std::string, std::string> RecordingKernelStore::TakeRecorded() {
  return std::exchange(recorded_, {});
}

}  // namespace kvcc::codegen
