#include "ir/onnx_io.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/io/coded_stream.h"
#include "ir/artifact_manifest.h"
#include "ir/atomic_file.h"
#include "ir/config_check.h"
#include "ir/file_read.h"
#include "ir/op_schema.h"
#include "ir/status_macros.h"
#include "ir/verifier.h"
#include "ir/weights_digest.h"
#include "ir/xxhash64.h"
#include "onnx/onnx.pb.h"

namespace kvcc::ir {
namespace {

constexpr char kTokensDim[] = "tokens";
// An XXH64 per 256 MiB of model.weights (besides the whole file's), so opening checks the
// chunks on several threads.
constexpr char kWeightsChunkDigestsKey[] = "kvcc.weights_xxh64_chunks";
constexpr int64_t kWeightsChunkBytes = int64_t{256} << 20;
// protobuf refuses messages of 2 GiB or more in either direction.
constexpr size_t kMaxModelBytes = static_cast<size_t>(std::numeric_limits<int>::max());
// Deeper nesting than a kvcc file has (model > graph > value_info > type > shape > dim) is
// garbage; the cap keeps a hostile file from recursing the parser deep.
constexpr int kMaxProtoNesting = 32;
// Caps element counts so byte sizes (up to 32 bits an element) cannot overflow int64.
constexpr int64_t kMaxElements = int64_t{1} << 56;

// ONNX TensorProto.DataType numbers. The field is an int32, so the numbers newer than Debian's
// onnx.proto (INT4 = 22) are written as plain integers.
struct ElemTypeCode {
  DType dtype;
  int32_t onnx;
};
constexpr ElemTypeCode kElemTypes[] = {
    {DType::kF32, 1},  {DType::kU8, 2},    {DType::kI8, 3},       {DType::kI32, 6},
    {DType::kF16, 10}, {DType::kBF16, 16}, {DType::kFP8E4M3, 17}, {DType::kI4, 22},
};

int32_t OnnxElemType(DType dtype) {
  for (const ElemTypeCode& c : kElemTypes) {
    if (c.dtype == dtype) return c.onnx;
  }
  return 0;  // unreachable: the table covers every DType
}

std::optional<DType> DTypeFromOnnx(int32_t code) {
  for (const ElemTypeCode& c : kElemTypes) {
    if (c.onnx == code) return c.dtype;
  }
  return std::nullopt;
}

int64_t AlignUp(int64_t n) {
  return (n + kWeightAlignment - 1) / kWeightAlignment * kWeightAlignment;
}

// The shortest %g text that parses back to exactly `v`, so files stay readable ("1e-05") and
// lossless.
std::string DoubleText(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  for (int precision = 1; precision < 17; ++precision) {
    std::string s = absl::StrFormat("%.*g", precision, v);
    double back = 0;
    if (absl::SimpleAtod(s, &back) && back == v) return s;
  }
  return absl::StrFormat("%.17g", v);
}

absl::StatusOr<double> ParseDoubleText(const std::string& text) {
  double v = 0;
  if (!absl::SimpleAtod(text, &v)) {
    return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not a number"));
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// Writing

void SetTensorType(const TensorType& type, onnx::TypeProto* proto) {
  auto* tensor = proto->mutable_tensor_type();
  tensor->set_elem_type(OnnxElemType(type.dtype));
  auto* shape = tensor->mutable_shape();
  for (int64_t d : type.shape) {
    auto* dim = shape->add_dim();
    if (d == kDynamic) {
      dim->set_dim_param(kTokensDim);
    } else {
      dim->set_dim_value(d);
    }
  }
}

void SetValueInfo(const Value& value, onnx::ValueInfoProto* info) {
  info->set_name(value.name);
  SetTensorType(value.type, info->mutable_type());
}

void SetAttribute(const std::string& name, const Attribute& attr, onnx::AttributeProto* proto) {
  proto->set_name(name);
  struct Visitor {
    onnx::AttributeProto* p;
    void operator()(int64_t v) const {
      p->set_type(onnx::AttributeProto::INT);
      p->set_i(v);
    }
    void operator()(double v) const {
      p->set_type(onnx::AttributeProto::STRING);
      p->set_s(DoubleText(v));
      p->set_doc_string(kDoubleAttrDoc);
    }
    void operator()(const std::string& v) const {
      p->set_type(onnx::AttributeProto::STRING);
      p->set_s(v);
    }
    void operator()(const std::vector<int64_t>& v) const {
      p->set_type(onnx::AttributeProto::INTS);
      for (int64_t x : v) p->add_ints(x);
    }
    void operator()(const std::vector<double>& v) const {
      p->set_type(onnx::AttributeProto::STRINGS);
      for (double x : v) p->add_strings(DoubleText(x));
      p->set_doc_string(kDoubleAttrDoc);
    }
  };
  std::visit(Visitor{proto}, attr);
}

// ---------------------------------------------------------------------------------------------
// Reading

absl::StatusOr<TensorType> ParseType(const onnx::TypeProto& proto) {
  if (!proto.has_tensor_type()) return absl::InvalidArgumentError("is not a tensor type");
  const auto& tensor = proto.tensor_type();
  std::optional<DType> dtype = DTypeFromOnnx(tensor.elem_type());
  if (!dtype) {
    return absl::InvalidArgumentError(absl::StrCat("has unsupported elem_type ", tensor.elem_type(),
                                                   " (kvcc reads 1 2 3 6 10 16 17 22)"));
  }
  if (!tensor.has_shape()) return absl::InvalidArgumentError("has no shape");
  TensorType type{*dtype, {}};
  for (int i = 0; i < tensor.shape().dim_size(); ++i) {
    const auto& dim = tensor.shape().dim(i);
    if (dim.has_dim_value()) {
      if (dim.dim_value() < 0) {
        return absl::InvalidArgumentError(absl::StrCat("has negative dimension ", dim.dim_value()));
      }
      type.shape.push_back(dim.dim_value());
    } else if (dim.has_dim_param()) {
      type.shape.push_back(kDynamic);
    } else {
      return absl::InvalidArgumentError(absl::StrCat("dimension ", i, " has no value or name"));
    }
  }
  return type;
}

absl::StatusOr<Attribute> ReadAttribute(const onnx::AttributeProto& proto) {
  const bool is_double = proto.doc_string() == kDoubleAttrDoc;
  switch (proto.type()) {
    case onnx::AttributeProto::INT:
      return Attribute{int64_t{proto.i()}};
    case onnx::AttributeProto::FLOAT:  // not written by kvcc; accepted from other tools
      return Attribute{double{proto.f()}};
    case onnx::AttributeProto::STRING: {
      if (!is_double) return Attribute{proto.s()};
      KVCC_ASSIGN_OR_RETURN(auto v, ParseDoubleText(proto.s()));
      return Attribute{v};
    }
    case onnx::AttributeProto::INTS:
      return Attribute{std::vector<int64_t>(proto.ints().begin(), proto.ints().end())};
    case onnx::AttributeProto::FLOATS:
      return Attribute{std::vector<double>(proto.floats().begin(), proto.floats().end())};
    case onnx::AttributeProto::STRINGS: {
      if (!is_double) {
        return absl::InvalidArgumentError("string lists are not kvcc attributes");
      }
      std::vector<double> values;
      for (const std::string& s : proto.strings()) {
        KVCC_ASSIGN_OR_RETURN(auto v, ParseDoubleText(s));
        values.push_back(v);
      }
      return Attribute{std::move(values)};
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("attribute type ", static_cast<int>(proto.type()), " is not supported"));
  }
}

// Decimal digits only: the external-data offset and length.
std::optional<uint64_t> ParseDecimal(const std::string& text) {
  if (text.empty()) return std::nullopt;
  uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - digit) / 10) return std::nullopt;
    v = v * 10 + digit;
  }
  return v;
}

class OnnxReader {
 public:
  OnnxReader(std::shared_ptr<const MappedFile> weights, const std::string& dir,
             const ReadOnnxOptions& options)
      : options_(options),
        weights_(std::move(weights)),
        where_(absl::StrCat(dir, "/", kOnnxFileName)),
        weights_path_(absl::StrCat(dir, "/", kWeightsFileName)) {}

  absl::StatusOr<std::unique_ptr<Module>> Read(absl::string_view bytes) {
    if (bytes.size() > kMaxModelBytes) return Error("is over protobuf's 2 GiB limit");
    onnx::ModelProto model;
    google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                                              static_cast<int>(bytes.size()));
    in.SetRecursionLimit(kMaxProtoNesting);
    if (!model.ParseFromCodedStream(&in) || !in.ConsumedEntireMessage()) {
      return Error("is not a valid ONNX ModelProto (corrupt or truncated)");
    }
    module_ = std::make_unique<Module>();
    KVCC_RETURN_IF_ERROR(ReadOpsets(model));
    KVCC_RETURN_IF_ERROR(ReadMetadata(model));
    if (!model.has_graph()) return Error("has no graph");
    const onnx::GraphProto& graph = model.graph();
    if (graph.sparse_initializer_size() > 0) return Error("has sparse initializers");
    for (const onnx::ValueInfoProto& input : graph.input()) {
      auto type = ParseType(input.type());
      if (!type.ok()) return Error("graph input '", input.name(), "' ", type.status().message());
      auto v = module_->graph.AddInput(input.name(), *type);
      if (!v.ok()) return Error("graph input: ", v.status().message());
    }
    for (const onnx::TensorProto& tensor : graph.initializer()) {
      KVCC_RETURN_IF_ERROR(ReadInitializer(tensor));
    }
    KVCC_RETURN_IF_ERROR(ReadNodes(graph));
    for (const onnx::ValueInfoProto& output : graph.output()) {
      Value* v = module_->graph.FindValue(output.name());
      if (v == nullptr) return Error("graph output '", output.name(), "' is not defined");
      auto type = ParseType(output.type());
      if (!type.ok()) return Error("graph output '", output.name(), "' ", type.status().message());
      if (*type != v->type) {
        return Error("graph output '", output.name(), "' is declared ", type->ToString(),
                     " but the value is ", v->type.ToString());
      }
      module_->graph.AddOutput(v);
    }
    if (auto s = Verify(*module_); !s.ok()) return Error(s.message());
    if (auto s = CheckConfigMatchesGraph(*module_); !s.ok()) return Error(s.message());
    // Last, so a structural problem (a tensor outside the file) gets its specific message.
    KVCC_RETURN_IF_ERROR(CheckWeightsDigest());
    return std::move(module_);
  }

 private:
  template <typename... Parts>
  absl::Status Error(const Parts&... parts) const {
    return absl::InvalidArgumentError(absl::StrCat(where_, ": ", parts...));
  }

  absl::Status ReadOpsets(const onnx::ModelProto& model) {
    std::optional<int64_t> version;
    for (const auto& opset : model.opset_import()) {
      if (opset.domain() != kOpDomain) continue;
      if (version) return Error("declares the ", kOpDomain, " opset twice");
      version = opset.version();
    }
    if (!version) {
      return Error("has no opset_import for domain ", kOpDomain, " (not a kvcc artifact)");
    }
    if (*version < 1 || *version > kOpsetVersion) {
      return Error(kOpDomain, " opset version ", *version, " is not supported (this kvcc reads 1..",
                   kOpsetVersion, ")");
    }
    return absl::OkStatus();
  }

  absl::Status ReadMetadata(const onnx::ModelProto& model) {
    std::set<std::string> keys;
    bool have_config = false;
    for (const auto& prop : model.metadata_props()) {
      if (!keys.insert(prop.key()).second) return Error("metadata key '", prop.key(), "' repeats");
      if (prop.key() == kConfigMetadataKey) {
        auto config = ModelConfig::FromJson(prop.value());
        if (!config.ok()) return Error(kConfigMetadataKey, ": ", config.status().message());
        module_->config = *config;
        have_config = true;
      } else if (prop.key() == kWeightsChunkDigestsKey) {
        KVCC_RETURN_IF_ERROR(ParseChunkDigests(prop.value()));
      } else if (prop.key() == kWeightsDigestKey) {
        weights_digest_ = 0;
        if (!ParseXxh64Hex(prop.value(), &*weights_digest_)) {
          return Error(kWeightsDigestKey, " '", prop.value(), "' is not 16 lowercase hex digits");
        }
      } else if (absl::StartsWith(prop.key(), kMetadataKeyPrefix)) {
        module_->metadata[prop.key().substr(std::strlen(kMetadataKeyPrefix))] = prop.value();
      }
    }
    if (!have_config) {
      return Error("has no ", kConfigMetadataKey, " metadata (not a kvcc artifact)");
    }
    return absl::OkStatus();
  }

  // "<chunk bytes>:<hex>,<hex>,...": one XXH64 per chunk of the weights file.
  absl::Status ParseChunkDigests(absl::string_view text) {
    auto bad = [&](absl::string_view why) {
      return Error(kWeightsChunkDigestsKey, " '", text.substr(0, 64),
                   text.size() > 64 ? "...'" : "'", ": ", why);
    };
    const size_t colon = text.find(':');
    int64_t chunk = 0;
    if (colon == absl::string_view::npos || !absl::SimpleAtoi(text.substr(0, colon), &chunk) ||
        chunk < kWeightAlignment || chunk > (int64_t{1} << 40)) {
      return bad("expected '<chunk bytes>:<digests>' with a chunk of 64 bytes..1 TiB");
    }
    chunk_bytes_ = chunk;
    if (colon + 1 == text.size()) return absl::OkStatus();  // an empty weights file
    for (absl::string_view hex : absl::StrSplit(text.substr(colon + 1), ',')) {
      uint64_t d = 0;
      if (!ParseXxh64Hex(hex, &d)) return bad("a digest is not 16 lowercase hex digits");
      chunk_digests_.push_back(d);
    }
    return absl::OkStatus();
  }

  // Chunk digests are checked by several threads at once (a 7B model's 13.5 GB in a fraction
  // of the single-threaded pass), or, when the caller defers them, left with the module for
  // the first reader of the weights (the CUDA uploader hashes them as it stages them). Either
  // way a chunk that differs is refused like a whole-file mismatch.
  absl::Status CheckChunkDigests() const {
    const int64_t size = weights_ == nullptr ? 0 : static_cast<int64_t>(weights_->size());
    const int64_t chunks = (size + chunk_bytes_ - 1) / chunk_bytes_;
    if (chunks != static_cast<int64_t>(chunk_digests_.size())) {
      return absl::DataLossError(absl::StrCat(
          weights_path_, " is ", size, " bytes, ", chunks, " chunks of ", chunk_bytes_, ", but ",
          where_, " records ", chunk_digests_.size(),
          ": the weights are damaged or belong to another model (re-run `kvcc import`)"));
    }
    if (chunks == 0) return absl::OkStatus();
    auto digests = std::make_shared<WeightsChunkDigests>(weights_, chunk_bytes_,
                                                         chunk_digests_, where_);
    if (options_.defer_chunk_digests) {
      module_->unverified_weights = std::move(digests);
      return absl::OkStatus();
    }
    return digests->CheckAll();
  }

  // The whole weights file, padding included, so one model's graph with another model's (or a
  // damaged) weights file is refused before any tensor is used.
  absl::Status CheckWeightsDigest() const {
    if (!chunk_digests_.empty()) return CheckChunkDigests();
    if (!weights_digest_) {
      return Error("has no ", kWeightsDigestKey,
                   " metadata (written by an older kvcc: re-run `kvcc import`)");
    }
    uint64_t got = Xxh64Hash(nullptr, 0);
    if (weights_ != nullptr) {
      const int threads =
          std::clamp(static_cast<int>(std::thread::hardware_concurrency()) - 1, 1, 8);
      weights_->WithPagesPopulating(
          threads, [&] { got = Xxh64Hash(weights_->data(), weights_->size()); });
    }
    if (got != *weights_digest_) {
      return absl::DataLossError(absl::StrCat(
          weights_path_, " has XXH64 ", Xxh64Hex(got), " but ", where_, " records ",
          Xxh64Hex(*weights_digest_),
          ": the weights are damaged or belong to another model (re-run `kvcc import`)"));
    }
    return absl::OkStatus();
  }

  absl::Status ReadInitializer(const onnx::TensorProto& tensor) {
    const std::string& name = tensor.name();
    if (name.empty()) return Error("an initializer has no name");
    auto bad = [&](auto&&... parts) { return Error("initializer '", name, "': ", parts...); };
    std::optional<DType> dtype = DTypeFromOnnx(tensor.data_type());
    if (!dtype) {
      return bad("unsupported elem_type ", tensor.data_type(), " (kvcc reads 1 2 3 6 10 16 17 22)");
    }
    TensorType type{*dtype, {}};
    int64_t elements = 1;
    for (int64_t d : tensor.dims()) {
      if (d < 0) return bad("negative dimension ", d);
      if (d != 0 && elements > kMaxElements / d) return bad("has too many elements");
      elements *= d;
      type.shape.push_back(d);
    }
    if (tensor.data_location() != onnx::TensorProto::EXTERNAL) {
      return bad("data must be external data in ", kWeightsFileName);
    }
    if (tensor.has_raw_data() || tensor.float_data_size() || tensor.int32_data_size() ||
        tensor.string_data_size() || tensor.int64_data_size() || tensor.double_data_size() ||
        tensor.uint64_data_size()) {
      return bad("external tensor also carries inline data");
    }
    if (tensor.has_segment()) return bad("segmented tensors are not supported");
    std::optional<std::string> location;
    std::optional<uint64_t> offset, length;
    for (const auto& entry : tensor.external_data()) {
      const std::string& key = entry.key();
      if (key == "location") {
        if (location) return bad("external_data location repeats");
        location = entry.value();
      } else if (key == "offset" || key == "length") {
        std::optional<uint64_t>& slot = key == "offset" ? offset : length;
        if (slot) return bad("external_data ", key, " repeats");
        slot = ParseDecimal(entry.value());
        if (!slot) return bad("external_data ", key, " '", entry.value(), "' is not a number");
      } else if (key != "checksum") {
        return bad("unknown external_data key '", key, "'");
      }
    }
    if (!location) return bad("external data has no location");
    if (*location != kWeightsFileName) {
      return bad("external data location '", *location, "' is not ", kWeightsFileName,
                 " (kvcc artifacts keep every weight there)");
    }
    if (!offset || !length) return bad("external data needs both offset and length");
    const uint64_t want = static_cast<uint64_t>(DTypeBytes(*dtype, elements));
    if (*length != want) {
      return bad("length ", *length, " but ", type.ToString(), " needs ", want, " bytes");
    }
    if (*offset % kWeightAlignment != 0) {
      return bad("offset ", *offset, " is not ", kWeightAlignment, "-byte aligned");
    }
    const uint64_t file_size = weights_ == nullptr ? 0 : weights_->size();
    if (*offset > file_size || *length > file_size - *offset) {
      const std::string end = *length <= std::numeric_limits<uint64_t>::max() - *offset
                                  ? absl::StrCat(*offset + *length)
                                  : absl::StrCat(*offset, "+", *length);
      return bad("bytes [", *offset, ", ", end, ") lie outside ", weights_path_, " (", file_size,
                 " bytes)");
    }
    WeightData data;
    if (*length > 0) {
      data.owner = weights_;
      data.bytes = weights_->data() + *offset;
      data.size = *length;
    }
    auto v = module_->graph.AddWeight(name, std::move(type), std::move(data));
    if (!v.ok()) return Error("initializer: ", v.status().message());
    return absl::OkStatus();
  }

  absl::Status ReadNodes(const onnx::GraphProto& graph) {
    // Declared types of node outputs: value_info, or graph.output for graph outputs.
    std::unordered_map<std::string, const onnx::TypeProto*> value_info, output_info;
    for (const onnx::ValueInfoProto& info : graph.value_info()) {
      if (!value_info.emplace(info.name(), &info.type()).second) {
        return Error("value_info for '", info.name(), "' repeats");
      }
    }
    for (const onnx::ValueInfoProto& info : graph.output()) {
      output_info.emplace(info.name(), &info.type());
    }
    std::unordered_set<std::string> used_info;
    Graph& g = module_->graph;
    for (int index = 0; index < graph.node_size(); ++index) {
      const onnx::NodeProto& proto = graph.node(index);
      const std::string label = proto.name().empty() ? absl::StrCat("#", index) : proto.name();
      auto bad = [&](auto&&... parts) {
        return Error("node '", label, "' (", proto.op_type(), "): ", parts...);
      };
      if (proto.domain() != kOpDomain) {
        return bad("domain '", proto.domain(), "' is not ", kOpDomain);
      }
      if (FindOpSchema(proto.op_type()) == nullptr) return bad("unknown op");
      if (proto.name().empty()) return bad("has no name");
      std::vector<Value*> inputs;
      for (int i = 0; i < proto.input_size(); ++i) {
        const std::string& name = proto.input(i);
        if (name.empty()) {
          inputs.push_back(nullptr);  // an omitted optional operand
          continue;
        }
        Value* v = g.FindValue(name);
        if (v == nullptr) {
          return bad("input ", i, " '", name,
                     "' is not defined before this node (dangling name or nodes out of order)");
        }
        inputs.push_back(v);
      }
      AttributeMap attrs;
      for (const onnx::AttributeProto& attr : proto.attribute()) {
        if (attr.name().empty()) return bad("has an unnamed attribute");
        auto value = ReadAttribute(attr);
        if (!value.ok()) return bad("attribute '", attr.name(), "': ", value.status().message());
        if (!attrs.emplace(attr.name(), std::move(*value)).second) {
          return bad("attribute '", attr.name(), "' repeats");
        }
      }
      std::vector<std::pair<std::string, TensorType>> outputs;
      std::unordered_set<std::string> output_names;
      for (const std::string& name : proto.output()) {
        if (name.empty()) return bad("has an unnamed output");
        if (!output_names.insert(name).second) return bad("output '", name, "' repeats");
        auto vi = value_info.find(name);
        auto go = output_info.find(name);
        const onnx::TypeProto* declared = vi != value_info.end()    ? vi->second
                                          : go != output_info.end() ? go->second
                                                                    : nullptr;
        if (declared == nullptr) return bad("output '", name, "' has no value_info");
        if (vi != value_info.end()) used_info.insert(name);
        auto type = ParseType(*declared);
        if (!type.ok()) return bad("output '", name, "' ", type.status().message());
        outputs.emplace_back(name, std::move(*type));
      }
      auto node = g.AddNode(proto.op_type(), proto.name(), std::move(inputs), std::move(outputs),
                            std::move(attrs));
      if (!node.ok()) return Error(node.status().message());
    }
    for (const auto& [name, type] : value_info) {
      if (!used_info.count(name)) return Error("value_info '", name, "' names no node output");
    }
    return absl::OkStatus();
  }

  ReadOnnxOptions options_;
  std::shared_ptr<const MappedFile> weights_;
  std::string where_, weights_path_;
  std::optional<uint64_t> weights_digest_;
  int64_t chunk_bytes_ = 0;
  std::vector<uint64_t> chunk_digests_;
  std::unique_ptr<Module> module_;
};

}  // namespace

absl::Status WriteOnnx(const Module& module, const std::string& dir) {
  if (auto s = Verify(module); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("not writing an invalid module to ", dir, ": ", s.message()));
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::InternalError(absl::StrCat("cannot create directory ", dir, ": ", ec.message()));
  }
  const Graph& g = module.graph;
  onnx::ModelProto model;
  model.set_ir_version(kOnnxIrVersion);
  model.set_producer_name("kvcc");
  model.set_doc_string(
      absl::StrCat("kvcc artifact: ops in domain ", kOpDomain, ", weights in ", kWeightsFileName));
  auto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOnnxDefaultOpset);
  opset = model.add_opset_import();
  opset->set_domain(kOpDomain);
  opset->set_version(kOpsetVersion);
  auto* prop = model.add_metadata_props();
  prop->set_key(kConfigMetadataKey);
  prop->set_value(module.config.ToJson());
  for (const auto& [key, value] : module.metadata) {
    prop = model.add_metadata_props();
    prop->set_key(absl::StrCat(kMetadataKeyPrefix, key));
    prop->set_value(value);
  }

  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name(module.config.architecture.empty() ? "kvcc" : module.config.architecture);
  for (const Value* input : g.inputs()) SetValueInfo(*input, graph->add_input());
  std::vector<int64_t> offsets;
  int64_t end = 0;
  for (const Value* w : g.weights()) {
    const int64_t offset = AlignUp(end);
    offsets.push_back(offset);
    end = offset + static_cast<int64_t>(w->weight->size);
    onnx::TensorProto* tensor = graph->add_initializer();
    tensor->set_name(w->name);
    tensor->set_data_type(OnnxElemType(w->type.dtype));
    for (int64_t d : w->type.shape) tensor->add_dims(d);
    tensor->set_data_location(onnx::TensorProto::EXTERNAL);
    auto add_entry = [tensor](const std::string& key, const std::string& value) {
      auto* entry = tensor->add_external_data();
      entry->set_key(key);
      entry->set_value(value);
    };
    add_entry("location", kWeightsFileName);
    add_entry("offset", absl::StrCat(offset));
    add_entry("length", absl::StrCat(w->weight->size));
  }
  std::unordered_set<const Value*> graph_outputs(g.outputs().begin(), g.outputs().end());
  for (const auto& node : g.nodes()) {
    onnx::NodeProto* proto = graph->add_node();
    proto->set_op_type(node->op);
    proto->set_domain(kOpDomain);
    proto->set_name(node->name);
    for (const Value* in : node->inputs) proto->add_input(in == nullptr ? "" : in->name);
    for (const Value* out : node->outputs) {
      proto->add_output(out->name);
      if (!graph_outputs.count(out)) SetValueInfo(*out, graph->add_value_info());
    }
    for (const auto& [name, attr] : node->attrs) SetAttribute(name, attr, proto->add_attribute());
  }
  for (const Value* output : g.outputs()) SetValueInfo(*output, graph->add_output());

  // Weights first: once model.onnx is renamed into place, the weights it names are complete;
  // the manifest last, so it vouches only for a model.onnx already in place.
  const std::string weights_path = absl::StrCat(dir, "/", kWeightsFileName);
  KVCC_ASSIGN_OR_RETURN(std::unique_ptr<AtomicFile> weights_file,
                        AtomicFile::Create(weights_path));
  static const uint8_t kZeros[kWeightAlignment] = {};
  Xxh64 digest, chunk_digest;
  std::vector<std::string> chunk_hex;
  int64_t written = 0;
  auto write = [&](const void* data, size_t size) {
    digest.Update(data, size);
    for (size_t done = 0; done < size;) {
      const size_t n = std::min<size_t>(size - done,
                                        kWeightsChunkBytes - written % kWeightsChunkBytes);
      chunk_digest.Update(static_cast<const uint8_t*>(data) + done, n);
      done += n;
      written += static_cast<int64_t>(n);
      if (written % kWeightsChunkBytes == 0) {
        chunk_hex.push_back(Xxh64Hex(chunk_digest.Digest()));
        chunk_digest = Xxh64();
      }
    }
    return weights_file->Write(data, size);
  };
  int64_t pos = 0;
  for (size_t i = 0; i < g.weights().size(); ++i) {
    const WeightData& data = *g.weights()[i]->weight;
    KVCC_RETURN_IF_ERROR(write(kZeros, static_cast<size_t>(offsets[i] - pos)));
    if (data.size > 0) KVCC_RETURN_IF_ERROR(write(data.bytes, data.size));
    pos = offsets[i] + static_cast<int64_t>(data.size);
  }
  KVCC_RETURN_IF_ERROR(weights_file->Commit());
  prop = model.add_metadata_props();
  prop->set_key(kWeightsDigestKey);
  prop->set_value(Xxh64Hex(digest.Digest()));
  if (written % kWeightsChunkBytes != 0) chunk_hex.push_back(Xxh64Hex(chunk_digest.Digest()));
  prop = model.add_metadata_props();
  prop->set_key(kWeightsChunkDigestsKey);
  prop->set_value(absl::StrCat(kWeightsChunkBytes, ":", absl::StrJoin(chunk_hex, ",")));

  std::string bytes;
  if (!model.SerializeToString(&bytes)) {
    return absl::InvalidArgumentError(absl::StrCat("cannot serialize ", dir, "/", kOnnxFileName,
                                                   " (over protobuf's 2 GiB limit?)"));
  }
  KVCC_RETURN_IF_ERROR(WriteFileAtomically(absl::StrCat(dir, "/", kOnnxFileName), bytes));
  return WriteFileAtomically(absl::StrCat(dir, "/", kManifestFileName),
                             ManifestToJson(ManifestOf(bytes)));
}

absl::StatusOr<std::unique_ptr<Module>> ParseOnnx(absl::string_view model_bytes,
                                                  std::shared_ptr<const MappedFile> weights,
                                                  const std::string& dir,
                                                  const ReadOnnxOptions& options) {
  return OnnxReader(std::move(weights), dir, options).Read(model_bytes);
}

absl::StatusOr<std::unique_ptr<Module>> ReadOnnx(const std::string& dir,
                                                 const ReadOnnxOptions& options) {
  const std::string manifest_path = absl::StrCat(dir, "/", kManifestFileName);
  auto manifest_text = ReadRegularFile(manifest_path, 1 << 16, "artifact manifest");
  if (!manifest_text.ok()) {
    return absl::Status(manifest_text.status().code(),
                        absl::StrCat("artifact ", dir, " has no readable ", kManifestFileName,
                                     " (written by an older kvcc, or incomplete: re-run `kvcc "
                                     "import`): ",
                                     manifest_text.status().message()));
  }
  KVCC_ASSIGN_OR_RETURN(ArtifactManifest manifest, ParseManifest(*manifest_text, manifest_path));
  const std::string onnx_path = absl::StrCat(dir, "/", kOnnxFileName);
  KVCC_ASSIGN_OR_RETURN(auto bytes, ReadRegularFile(onnx_path, kMaxModelBytes, "model.onnx"));
  KVCC_RETURN_IF_ERROR(CheckManifest(manifest, bytes, onnx_path));
  auto weights = MappedFile::Open(absl::StrCat(dir, "/", kWeightsFileName));
  if (!weights.ok()) {
    return absl::Status(weights.status().code(),
                        absl::StrCat("artifact ", dir, " has no readable ", kWeightsFileName, ": ",
                                     weights.status().message()));
  }
  return ParseOnnx(bytes, *std::move(weights), dir, options);
}

}  // namespace kvcc::ir
