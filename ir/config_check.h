// The model config stored in an artifact (kvcc.config) checked against the graph it describes:
// layer count, head counts, head_dim, vocabulary, token ids, norm epsilon and rotary theta must
// agree with the nodes' attributes and the weight shapes, so an edited or damaged
// config cannot silently change how tools size caches, tokenizers and sessions.
#pragma once

#include "absl/status/status.h"
#include "ir/module.h"

namespace kvcc::ir {

// An error names the node (or weight), the attribute and both values.
absl::Status CheckConfigMatchesGraph(const Module& module);

}  // namespace kvcc::ir
