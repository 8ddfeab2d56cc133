// The unit passes transform and the artifact stores: model config, graph, and free-form
// metadata (calibration results, tokenizer info, pass history).
#pragma once

#include <map>
#include <string>

#include "ir/graph.h"
#include "ir/model_config.h"

namespace kvcc::ir {

struct Module {
  ModelConfig config;
  Graph graph;
  std::map<std::string, std::string> metadata;
};

}  // namespace kvcc::ir
