// The bookkeeping half of the paged KV cache, independent of where the blocks live: a pool of
// fixed-size blocks with a free list and a block table per session. Tables grow on demand and
// are returned whole on close. Every reservation is all-or-nothing, so running out of blocks
// fails cleanly and never touches another session's blocks.
#pragma once

#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvcc::runtime {

class BlockPool {
 public:
  BlockPool(int64_t num_blocks, int block_size);

  int64_t num_blocks() const { return num_blocks_; }
  int block_size() const { return block_size_; }
  int64_t free_blocks() const { return static_cast<int64_t>(free_.size()); }
  int64_t BlocksFor(int64_t tokens) const { return (tokens + block_size_ - 1) / block_size_; }

  absl::Status AddSession(int64_t session);
  // Returns the session's blocks to the free list.
  absl::Status RemoveSession(int64_t session);
  bool HasSession(int64_t session) const { return tables_.count(session) != 0; }
  std::vector<int64_t> Sessions() const;

  // Grows each listed session's table to cover tokens [0, tokens). Either every session gets
  // its blocks or nothing changes (ResourceExhausted naming the shortfall).
  absl::Status Reserve(const std::vector<std::pair<int64_t, int64_t>>& session_tokens);
  absl::Status Reserve(int64_t session, int64_t tokens) { return Reserve({{session, tokens}}); }

  // The session's block ids in token order; token t is in table[t / block_size].
  absl::StatusOr<const std::vector<int32_t>*> Table(int64_t session) const;
  // Tokens the session's table can hold.
  int64_t Capacity(int64_t session) const;

 private:
  int64_t num_blocks_;
  int block_size_;
  std::vector<int32_t> free_;  // a stack: the most recently freed block is reused first
  std::map<int64_t, std::vector<int32_t>> tables_;
};

}  // namespace kvcc::runtime
