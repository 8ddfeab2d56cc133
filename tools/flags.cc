#include "tools/flags.h"

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, o, "", "output directory");
ABSL_FLAG(int64_t, max_len, 2048, "session length in tokens for KV-cache sizing");
ABSL_FLAG(std::string, cache_dtype, "", "KV-cache element dtype for sizing (f16, i8, i4, ...)");
ABSL_FLAG(int64_t, seed, 0, "random seed");
ABSL_FLAG(std::string, device, "", "cpu or cuda (default: cuda when a GPU is present)");
ABSL_FLAG(bool, no_jit, false,
          "compiled artifacts: refuse to compile kernels the artifact lacks (no NVRTC)");
ABSL_FLAG(int32_t, quant_policy, 0, "KV-cache quantization: 0 = fp16, 4 = int8 (the seed's)");
ABSL_FLAG(std::string, model_format, "",
          "checkpoint weight format: awq, gptq or hf (default: detected from config.json)");
ABSL_FLAG(std::string, kv_quant, "", "named KV-cache scheme (see docs)");
ABSL_FLAG(std::string, kv_params, "", "KV quantization parameter file (default: model dir)");
ABSL_FLAG(std::string, kv_quant_part, "",
          "diagnostic: k or v quantizes that part alone with --kv-quant's scheme, the other "
          "stays fp16 (not for kvcc compile)");
ABSL_FLAG(std::string, dump_after, "", "print the IR after the named pass");
ABSL_FLAG(std::string, prompt, "", "prompt text");
ABSL_FLAG(int32_t, max_new_tokens, 128, "tokens to generate");
ABSL_FLAG(double, temperature, 0.0, "sampling temperature (0 = greedy)");
ABSL_FLAG(int32_t, top_k, 0, "top-k sampling (0 = off)");
ABSL_FLAG(double, top_p, 1.0, "top-p (nucleus) sampling, in (0, 1]");
ABSL_FLAG(double, repetition_penalty, 1.0, "repetition penalty (1 = off)");
ABSL_FLAG(std::string, chat_template, "", "chat template: llama2, chatml, internlm");
ABSL_FLAG(double, cache_max_entry_count, 0.8,
          "fraction of free GPU memory after weights given to the KV-cache pool");
