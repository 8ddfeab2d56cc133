// Flags shared by several subcommands. Spelled with '-' or '_' on the command line
// (--max-len and --max_len are the same flag). Command-specific flags live in their cmd file.
#pragma once

#include <string>

#include "absl/flags/declare.h"

ABSL_DECLARE_FLAG(std::string, o);
ABSL_DECLARE_FLAG(int64_t, max_len);
ABSL_DECLARE_FLAG(std::string, cache_dtype);
ABSL_DECLARE_FLAG(int64_t, seed);
ABSL_DECLARE_FLAG(std::string, device);
ABSL_DECLARE_FLAG(int32_t, quant_policy);
ABSL_DECLARE_FLAG(std::string, model_format);
ABSL_DECLARE_FLAG(std::string, kv_quant);
ABSL_DECLARE_FLAG(std::string, kv_params);
ABSL_DECLARE_FLAG(std::string, kv_quant_part);
ABSL_DECLARE_FLAG(std::string, dump_after);
ABSL_DECLARE_FLAG(std::string, prompt);
ABSL_DECLARE_FLAG(int32_t, max_new_tokens);
ABSL_DECLARE_FLAG(double, temperature);
ABSL_DECLARE_FLAG(int32_t, top_k);
ABSL_DECLARE_FLAG(double, top_p);
ABSL_DECLARE_FLAG(double, repetition_penalty);
ABSL_DECLARE_FLAG(std::string, chat_template);
ABSL_DECLARE_FLAG(double, cache_max_entry_count);
ABSL_DECLARE_FLAG(bool, no_jit);
