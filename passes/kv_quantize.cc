#include "passes/kv_quantize.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ir/op_names.h"
#include "ir/status_macros.h"
#include "passes/kv_calibration_pass.h"

namespace kvcc::passes {

absl::Status KvQuantizePass::Run(ir::Module& module) {
  // Compute every layer's scheme first so a failure leaves the module untouched.
  std::vector<std::pair<ir::Node*, ir::KvCacheScheme>> rewrites;
  for (const auto& node : module.graph.nodes()) {
    if (node->op != ir::op::kKvCacheWrite) continue;
    KVCC_ASSIGN_OR_RETURN(auto current, ir::ReadKvCacheScheme(*node));
    if (current.quantized()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "node '", node->name, "' already has a quantized cache (",
          node->StrOr("kv_scheme", "?"), "); kv-quantize runs once"));
    }
    const int kv_heads = static_cast<int>(node->IntOr("kv_heads", 0));
    KvLayerRanges ranges;
    if (NeedsCalibration(scheme_)) {
      auto r = ReadCalibratedRanges(*node);
      if (absl::IsNotFound(r.status())) {
        return absl::FailedPreconditionError(absl::StrCat(
            "KV-cache scheme ", KvQuantSchemeName(scheme_), " needs calibration data, but layer ",
            node->IntOr("layer", -1),
            " has none: run `kvcc calibrate <model_dir>` first (it writes kv_params.json into "
            "the model directory or --work-dir; pass --kv-params FILE if it lives elsewhere)"));
      }
      if (!r.ok()) return r.status();
      ranges = std::move(*r);
    }
    auto scheme = MakeLayerScheme(scheme_, NeedsCalibration(scheme_) ? &ranges : nullptr,
                                  kv_heads, static_cast<int>(node->IntOr("head_dim", 0)));
    if (!scheme.ok()) {
      return absl::Status(scheme.status().code(),
                          absl::StrCat("node '", node->name, "': ", scheme.status().message()));
    }
    if (only_part_.has_value()) {
      // An fp16 part's parameters are not written (ir::WriteKvCacheScheme).
      scheme->SetPart(*only_part_ == ir::KvPart::kKey ? ir::KvPart::kValue : ir::KvPart::kKey,
                      ir::KvStorage{});
    }
    rewrites.emplace_back(node.get(), std::move(*scheme));
  }
  if (rewrites.empty()) {
    return absl::InvalidArgumentError("the graph has no kv_cache_write node to quantize");
  }
  for (auto& [node, scheme] : rewrites) {
    ir::WriteKvCacheScheme(scheme, node);
    node->output()->type.dtype = scheme.dtype;
  }
  module.metadata["kv_quant"] =
      absl::StrCat(KvQuantSchemeName(scheme_),
                   !only_part_.has_value()              ? ""
                   : *only_part_ == ir::KvPart::kKey ? " (K only)"
                                                     : " (V only)");
  return absl::OkStatus();
}

}  // namespace kvcc::passes
