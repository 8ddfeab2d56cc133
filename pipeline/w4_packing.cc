#include "pipeline/w4_packing.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "ir/group_quant.h"
#include "ir/op_names.h"
#include "ir/status_macros.h"
#include "runtime/thread_pool.h"
#include "runtime/w4_repack.h"

namespace kvcc::pipeline {
namespace {

bool IsPlainW4(const ir::Node& n) {
  return n.op == ir::op::kLinear && !n.Has(ir::kW4LayoutAttr) && n.input(1) != nullptr &&
         n.input(1)->type.dtype == ir::DType::kI4 && n.IntOr("group_size", 0) > 0;
}

// Why the packed layout cannot take node `n`'s weight, or OK.
absl::Status Packable(const ir::Node& n) {
  const ir::Value* codes = n.input(1);
  const ir::Value* scales = n.input(3);
  const ir::Value* zeros = n.input(4);
  if (!codes->is_weight() || scales == nullptr || !scales->is_weight() ||
      (zeros != nullptr && !zeros->is_weight())) {
    return absl::InvalidArgumentError("codes, scales and zeros must be weights");
  }
  if (codes->type.shape.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(codes->name, " is not [out, in]"));
  }
  const int64_t out = codes->type.shape[0], in = codes->type.shape[1];
  const int64_t g = n.IntOr("group_size", 0);
  KVCC_RETURN_IF_ERROR(runtime::CheckW4PackableShape(out, in, g, codes->name));
  const std::vector<int64_t> groups = {out, in / g};
  if (scales->type.dtype != ir::DType::kF16 || scales->type.shape != groups ||
      (zeros != nullptr && (zeros->type.dtype != ir::DType::kI4 || zeros->type.shape != groups))) {
    return absl::InvalidArgumentError(absl::StrCat(
        scales->name, ": packing needs f16 scales and i4 zeros of [", out, ", ", in / g, "]"));
  }
  for (const ir::Value* v : {codes, scales, zeros}) {
    if (v != nullptr && static_cast<int64_t>(v->weight->size) != v->type.NumBytes()) {
      return absl::InvalidArgumentError(absl::StrCat(v->name, " has ", v->weight->size,
                                                     " bytes for ", v->type.ToString()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<W4PackingSummary> PackW4Linears(ir::Module& module) {
  W4PackingSummary summary;
  ir::Graph& graph = module.graph;
  // The linears to pack and their new words, filled in parallel (a 7B model holds 3 GiB of
  // codes), then put into the graph in order.
  struct Job {
    ir::Node* node;
    std::vector<uint8_t> words, sz;
  };
  std::vector<Job> jobs;
  for (const auto& node : graph.nodes()) {
    if (!IsPlainW4(*node)) continue;
    if (absl::Status why = Packable(*node); !why.ok()) {
      summary.plain.push_back(absl::StrCat(node->name, ": ", why.message()));
      continue;
    }
    jobs.push_back({node.get(), {}, {}});
  }
  runtime::ThreadPool pool;
  pool.ParallelFor(static_cast<int64_t>(jobs.size()), 1, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) {
      Job& job = jobs[j];
      const ir::Value* codes = job.node->input(1);
      const ir::Value* scales = job.node->input(3);
      const ir::Value* zeros = job.node->input(4);
      const int64_t out = codes->type.shape[0], in = codes->type.shape[1];
      const int64_t g = job.node->IntOr("group_size", 0);
      job.words.resize(static_cast<size_t>(out * in / 8) * 4);
      runtime::PackW4Codes(codes->weight->bytes, out, in,
                           reinterpret_cast<uint32_t*>(job.words.data()));
      // The scales' bytes are copied out first: a view of a safetensors file may sit at an odd
      // offset.
      std::vector<uint16_t> s(static_cast<size_t>(out * (in / g)));
      std::memcpy(s.data(), scales->weight->bytes, s.size() * 2);
      job.sz.resize(s.size() * 4);
      runtime::PackW4ScaleZeros(s.data(), zeros != nullptr ? zeros->weight->bytes : nullptr, out,
                                in, g, reinterpret_cast<uint32_t*>(job.sz.data()));
    }
  });
  for (Job& job : jobs) {
    ir::Node* n = job.node;
    const ir::Value* codes = n->input(1);
    const ir::Value* scales = n->input(3);
    const int64_t out = codes->type.shape[0], in = codes->type.shape[1];
    const int64_t g = n->IntOr("group_size", 0);
    KVCC_ASSIGN_OR_RETURN(
        ir::Value * packed_codes,
        graph.AddWeight(absl::StrCat(codes->name, ".w4packed"),
                        ir::TensorType{ir::DType::kI32, {out, in / 8}},
                        ir::WeightData::FromVector(std::move(job.words))));
    KVCC_ASSIGN_OR_RETURN(
        ir::Value * packed_sz,
        graph.AddWeight(absl::StrCat(scales->name, ".w4packed"),
                        ir::TensorType{ir::DType::kI32, {out, in / g}},
                        ir::WeightData::FromVector(std::move(job.sz))));
    graph.SetInput(n, 1, packed_codes);
    graph.SetInput(n, 3, packed_sz);
    if (n->inputs.size() > 4) {
      graph.SetInput(n, 4, nullptr);
      n->inputs.resize(4);
    }
    n->attrs[ir::kW4LayoutAttr] = std::string(ir::kW4PackedLayout);
    n->attrs[ir::kW4LayoutVersionAttr] = ir::kW4PackedLayoutVersion;
    ++summary.packed;
  }
  graph.RemoveUnusedWeights();
  return summary;
}

W4LinearCounts CountW4Linears(const ir::Module& module) {
  W4LinearCounts c;
  for (const auto& node : module.graph.nodes()) {
    if (node->op != ir::op::kLinear) continue;
    if (node->Has(ir::kW4LayoutAttr)) {
      ++c.packed;
    } else if (IsPlainW4(*node)) {
      ++c.plain;
    }
  }
  return c;
}

}  // namespace kvcc::pipeline
