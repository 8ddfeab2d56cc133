#include "runtime/block_pool.h"

#include "absl/strings/str_cat.h"

namespace kvcc::runtime {

BlockPool::BlockPool(int64_t num_blocks, int block_size)
    : num_blocks_(num_blocks), block_size_(block_size) {
  free_.reserve(static_cast<size_t>(num_blocks));
  for (int64_t b = num_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

absl::Status BlockPool::AddSession(int64_t session) {
  if (!tables_.emplace(session, std::vector<int32_t>{}).second) {
    return absl::AlreadyExistsError(absl::StrCat("KV cache: session ", session, " already exists"));
  }
  return absl::OkStatus();
}

absl::Status BlockPool::RemoveSession(int64_t session) {
  auto it = tables_.find(session);
  if (it == tables_.end()) {
    return absl::NotFoundError(absl::StrCat("KV cache: no session ", session));
  }
  for (auto b = it->second.rbegin(); b != it->second.rend(); ++b) free_.push_back(*b);
  tables_.erase(it);
  return absl::OkStatus();
}

std::vector<int64_t> BlockPool::Sessions() const {
  std::vector<int64_t> ids;
  for (const auto& [id, table] : tables_) ids.push_back(id);
  return ids;
}

absl::Status BlockPool::Reserve(const std::vector<std::pair<int64_t, int64_t>>& session_tokens) {
  // Sum the need first (a session listed twice counts its largest request once).
  std::map<int64_t, int64_t> want;
  for (const auto& [session, tokens] : session_tokens) {
    if (!tables_.count(session)) {
      return absl::NotFoundError(absl::StrCat("KV cache: no session ", session));
    }
    if (tokens < 0) {
      return absl::InvalidArgumentError(absl::StrCat("KV cache: negative token count ", tokens));
    }
    int64_t& w = want[session];
    w = std::max(w, tokens);
  }
  int64_t needed = 0;
  for (const auto& [session, tokens] : want) {
    needed += std::max<int64_t>(0, BlocksFor(tokens) - static_cast<int64_t>(tables_[session].size()));
  }
  if (needed > free_blocks()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "KV cache pool exhausted: this step needs ", needed, " more blocks of ", block_size_,
        " tokens but only ", free_blocks(), " of ", num_blocks_,
        " are free; close a session or give the cache more memory"));
  }
  for (const auto& [session, tokens] : want) {
    std::vector<int32_t>& table = tables_[session];
    while (static_cast<int64_t>(table.size()) < BlocksFor(tokens)) {
      table.push_back(free_.back());
      free_.pop_back();
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<const std::vector<int32_t>*> BlockPool::Table(int64_t session) const {
  auto it = tables_.find(session);
  if (it == tables_.end()) {
    return absl::NotFoundError(absl::StrCat("KV cache: no session ", session));
  }
  return &it->second;
}

int64_t BlockPool::Capacity(int64_t session) const {
  auto it = tables_.find(session);
  return it == tables_.end() ? 0 : static_cast<int64_t>(it->second.size()) * block_size_;
}

}  // namespace kvcc::runtime
