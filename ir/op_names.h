// The op names of the ai.kvcc domain as constants, so a misspelt op is a compile error rather
// than a node no pass or backend recognizes. ir/op_schema.h defines what each op means.
#pragma once

namespace kvcc::ir::op {

inline constexpr char kAdd[] = "add";
inline constexpr char kAddRmsNorm[] = "add_rms_norm";
inline constexpr char kAttention[] = "attention";
inline constexpr char kEmbedding[] = "embedding";
inline constexpr char kKvCacheWrite[] = "kv_cache_write";
inline constexpr char kLinear[] = "linear";
inline constexpr char kLmHead[] = "lm_head";
inline constexpr char kRmsNorm[] = "rms_norm";
inline constexpr char kRotary[] = "rotary";
inline constexpr char kSiluMul[] = "silu_mul";
inline constexpr char kSplit[] = "split";

}  // namespace kvcc::ir::op
