#include "ir/config_check.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "ir/op_names.h"
#include "ir/status_macros.h"

namespace kvcc::ir {
namespace {

absl::Status Mismatch(const Node& node, const char* attr, const std::string& got,
                      const char* field, const std::string& want) {
  return absl::InvalidArgumentError(absl::StrCat("node '", node.name, "' (", node.op, ") has ",
                                                 attr, " ", got, " but kvcc.config has ", field,
                                                 " ", want));
}

absl::Status ExpectInt(const Node& node, const char* attr, const char* field, int64_t want) {
  KVCC_ASSIGN_OR_RETURN(int64_t got, node.Int(attr));
  if (got != want) return Mismatch(node, attr, absl::StrCat(got), field, absl::StrCat(want));
  return absl::OkStatus();
}

// Doubles are stored exactly (onnx_io.h), so equality is the right test for values copied from
// the config.
absl::Status ExpectDouble(const Node& node, const char* attr, const char* field, double want) {
  KVCC_ASSIGN_OR_RETURN(double got, node.Float(attr));
  if (got != want) {
    return Mismatch(node, attr, absl::StrCat(got), field, absl::StrCat(want));
  }
  return absl::OkStatus();
}

absl::Status CheckLayer(const Node& node, const ModelConfig& c, std::vector<int>& seen) {
  KVCC_ASSIGN_OR_RETURN(int64_t layer, node.Int("layer"));
  if (layer < 0 || layer >= c.num_layers) {
    return Mismatch(node, "layer", absl::StrCat(layer), "num_layers",
                    absl::StrCat(c.num_layers));
  }
  if (seen[layer]++ > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("node '", node.name, "' (", node.op, ") repeats layer ", layer));
  }
  KVCC_RETURN_IF_ERROR(ExpectInt(node, "kv_heads", "num_kv_heads", c.num_kv_heads));
  return ExpectInt(node, "head_dim", "head_dim", c.head_dim);
}

}  // namespace

absl::Status CheckConfigMatchesGraph(const Module& m) {
  const ModelConfig& c = m.config;
  if (c.num_layers <= 0 || c.vocab_size <= 0 || c.head_dim <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("kvcc.config has num_layers ", c.num_layers, ", vocab_size ", c.vocab_size,
                     ", head_dim ", c.head_dim, "; all must be positive"));
  }
  for (const auto& [field, id] : {std::pair<const char*, int64_t>{"bos_token_id", c.bos_token_id},
                                  {"eos_token_id", c.eos_token_id}}) {
    if (id < -1 || id >= c.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("kvcc.config has ", field, " ", id,
                                                     ", outside vocab_size ", c.vocab_size));
    }
  }
  // Every layer has an attention node, so a larger count is damage (and must not size a vector).
  if (static_cast<size_t>(c.num_layers) > m.graph.nodes().size()) {
    return absl::InvalidArgumentError(absl::StrCat("kvcc.config has num_layers ", c.num_layers,
                                                   " but the graph has only ",
                                                   m.graph.nodes().size(), " nodes"));
  }
  std::vector<int> cache_layers(static_cast<size_t>(c.num_layers), 0);
  std::vector<int> attention_layers(static_cast<size_t>(c.num_layers), 0);
  for (const auto& node : m.graph.nodes()) {
    const Node& n = *node;
    if (n.op == op::kAttention) {
      KVCC_RETURN_IF_ERROR(CheckLayer(n, c, attention_layers));
      KVCC_RETURN_IF_ERROR(ExpectInt(n, "heads", "num_heads", c.num_heads));
    } else if (n.op == op::kKvCacheWrite) {
      KVCC_RETURN_IF_ERROR(CheckLayer(n, c, cache_layers));
    } else if (n.op == op::kRotary) {
      KVCC_RETURN_IF_ERROR(ExpectInt(n, "head_dim", "head_dim", c.head_dim));
      KVCC_RETURN_IF_ERROR(ExpectDouble(n, "theta", "rope_theta", c.rope_theta));
      KVCC_ASSIGN_OR_RETURN(int64_t heads, n.Int("heads"));
      if (heads != c.num_heads && heads != c.num_kv_heads) {
        return Mismatch(n, "heads", absl::StrCat(heads), "num_heads / num_kv_heads",
                        absl::StrCat(c.num_heads, " / ", c.num_kv_heads));
      }
    } else if (n.op == op::kRmsNorm || n.op == op::kAddRmsNorm) {
      KVCC_RETURN_IF_ERROR(ExpectDouble(n, "eps", "rms_norm_eps", c.rms_norm_eps));
    } else if (n.op == op::kEmbedding) {
      const Value* table = n.input(1);
      const std::vector<int64_t> want = {c.vocab_size, c.hidden_size};
      if (table == nullptr || table->type.shape != want) {
        return absl::InvalidArgumentError(absl::StrCat(
            "node '", n.name, "' (embedding) has table ",
            table == nullptr ? std::string("(none)") : table->type.ToString(),
            " but kvcc.config has vocab_size ", c.vocab_size, ", hidden_size ", c.hidden_size));
      }
    } else if (n.op == op::kLmHead) {
      const Value* out = n.output();
      if (out == nullptr || out->type.shape.empty() || out->type.shape.back() != c.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat(
            "node '", n.name, "' (lm_head) gives ", out == nullptr ? "nothing" : out->type.ToString(),
            " but kvcc.config has vocab_size ", c.vocab_size));
      }
    }
  }
  for (int64_t l = 0; l < c.num_layers; ++l) {
    if (attention_layers[l] == 0 || cache_layers[l] == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "kvcc.config has num_layers ", c.num_layers, " but the graph has no ",
          attention_layers[l] == 0 ? "attention" : "kv_cache_write", " node for layer ", l));
    }
  }
  return absl::OkStatus();
}

}  // namespace kvcc::ir
