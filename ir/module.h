// The unit passes transform and the artifact stores: model config, graph, and free-form
// metadata (calibration results, tokenizer info, pass history).
#pragma once

#include <map>
#include <memory>
#include <string>

#include "ir/graph.h"
#include "ir/model_config.h"
#include "ir/weights_digest.h"

namespace kvcc::ir {

struct Module {
  ModelConfig config;
  Graph graph;
  std::map<std::string, std::string> metadata;
  // Set when the weights' digests were left for their first reader (ReadOnnxOptions): until
  // it reports verified(), no result computed from the weights may be handed out.
  std::shared_ptr<WeightsChunkDigests> unverified_weights;
};

}  // namespace kvcc::ir
