#include "tokenizer/hf_tokenizer.h"

#include <cstdint>
#include <optional>
#include <queue>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "ir/json_reader.h"
#include "ir/status_macros.h"
#include "tokenizer/added_token_matcher.h"
#include "tokenizer/pretokenizer_regex.h"
#include "tokenizer/tokenizer_files.h"
#include "tokenizer/tokenizer_regex.h"
#include "tokenizer/unicode_category.h"
#include "tokenizer/unicode_nfc.h"
#include "tokenizer/utf8.h"

namespace kvcc::tokenizer {

using json = ir::Json;

namespace {

// ---- components -------------------------------------------------------------------------

// Ids index dense tables; real vocabularies stay far below this, so a larger id means a
// corrupt file rather than a reason to allocate gigabytes.
constexpr int64_t kMaxVocab = int64_t{1} << 24;

struct NormalizerStep {
  enum Kind { kStrip, kReplace, kPrepend, kNfc, kNfd } kind;
  bool strip_left = false, strip_right = false;
  std::string pattern;  // Replace: literal text, or regex source when is_regex
  bool is_regex = false;
  std::unique_ptr<TokenizerRegex> regex;
  std::string content;  // Replace: replacement; Prepend: prefix
};

enum class SplitBehavior { kIsolated, kRemoved, kMergedWithPrevious, kMergedWithNext };

struct PreTokenizerStep {
  enum Kind { kByteLevel, kSplit, kDigits, kMetaspace } kind;
  bool add_prefix_space = false;  // ByteLevel
  bool use_regex = true;          // ByteLevel
  // Split: a literal delimiter, one of the hand-matched regexes, or any other regex (RE2).
  std::string literal;
  std::optional<PretokenizerPattern> regex;
  std::unique_ptr<TokenizerRegex> re2;
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool individual_digits = false;  // Digits
  std::string replacement;         // Metaspace
  enum Prepend { kAlways, kFirst, kNever } prepend = kAlways;
  bool split = true;  // Metaspace
};

struct DecoderStep {
  enum Kind { kByteLevel, kReplace, kByteFallback, kFuse, kStrip, kMetaspace } kind;
  std::string pattern, content;  // Replace
  char32_t strip_char = ' ';     // Strip
  int strip_start = 0, strip_stop = 0;
  std::string replacement;                  // Metaspace
  bool metaspace_strips_first = true;       // Metaspace: prepend_scheme != never
};

// A pre-tokenizer piece: text, and whether it starts at offset 0 of the original input.
struct Piece {
  std::string text;
  bool at_start;
};

// GPT-2's reversible byte <-> printable code point mapping used by byte-level BPE.
struct ByteLevelTable {
  std::string byte_to_piece[256];
  std::unordered_map<char32_t, uint8_t> char_to_byte;
  ByteLevelTable() {
    std::vector<int> bs;
    for (int b = '!'; b <= '~'; ++b) bs.push_back(b);
    for (int b = 0xA1; b <= 0xAC; ++b) bs.push_back(b);
    for (int b = 0xAE; b <= 0xFF; ++b) bs.push_back(b);
    std::vector<bool> direct(256, false);
    for (int b : bs) direct[b] = true;
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const char32_t cp = direct[b] ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
      byte_to_piece[b] = EncodeUtf8(cp);
      char_to_byte[cp] = static_cast<uint8_t>(b);
    }
  }
};

const ByteLevelTable& ByteLevel() {
  static const ByteLevelTable* table = new ByteLevelTable();
  return *table;
}

// The byte a "<0xAB>" byte-fallback token stands for.
std::optional<uint8_t> ByteFallbackValue(absl::string_view token) {
  if (token.size() != 6 || token.substr(0, 3) != "<0x" || token[5] != '>') return std::nullopt;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  const int hi = hex(token[3]), lo = hex(token[4]);
  if (hi < 0 || lo < 0) return std::nullopt;
  return static_cast<uint8_t>(hi * 16 + lo);
}

std::string ReplaceAll(absl::string_view s, absl::string_view from, absl::string_view to) {
  std::string out;
  size_t pos = 0;
  while (true) {
    const size_t hit = s.find(from, pos);
    if (hit == absl::string_view::npos) break;
    out.append(s.data() + pos, hit - pos);
    out.append(to.data(), to.size());
    pos = hit + from.size();
  }
  out.append(s.data() + pos, s.size() - pos);
  return out;
}

size_t CodePointCount(absl::string_view s) { return ToCodePoints(s).size(); }

// Splits `text` at byte spans [b, e) of delimiters per the Hugging Face split behaviours.
std::vector<Piece> SplitAt(const Piece& piece, const std::vector<std::pair<size_t, size_t>>& spans,
                           SplitBehavior behavior) {
  std::vector<Piece> out;
  const std::string& t = piece.text;
  auto add = [&](size_t b, size_t e) {
    if (e > b) out.push_back({t.substr(b, e - b), piece.at_start && b == 0});
  };
  size_t prev = 0;  // end of the last emitted piece
  size_t pending_start = std::string::npos;  // MergedWithNext: start of a delimiter to carry
  for (const auto& [b, e] : spans) {
    switch (behavior) {
      case SplitBehavior::kIsolated:
        add(prev, b);
        add(b, e);
        prev = e;
        break;
      case SplitBehavior::kRemoved:
        add(prev, b);
        prev = e;
        break;
      case SplitBehavior::kMergedWithPrevious:
        add(prev, e);
        prev = e;
        break;
      case SplitBehavior::kMergedWithNext:
        add(pending_start == std::string::npos ? prev : pending_start, b);
        pending_start = b;
        prev = e;
        break;
    }
  }
  if (behavior == SplitBehavior::kMergedWithNext && pending_start != std::string::npos) {
    add(pending_start, t.size());
  } else {
    add(prev, t.size());
  }
  return out;
}

// Byte spans of each code point satisfying pred (individual) or of maximal runs of them.
std::vector<std::pair<size_t, size_t>> CharSpans(absl::string_view s, bool (*pred)(char32_t),
                                                 bool individual) {
  std::vector<std::pair<size_t, size_t>> spans;
  for (size_t pos = 0; pos < s.size();) {
    const size_t start = pos;
    const char32_t c = DecodeUtf8At(s, &pos);
    if (!pred(c)) continue;
    if (!individual && !spans.empty() && spans.back().second == start) {
      spans.back().second = pos;
    } else {
      spans.emplace_back(start, pos);
    }
  }
  return spans;
}

// ---- JSON access ------------------------------------------------------------------------

// Normalizer / pre-tokenizer / decoder / post-processor "Sequence"s nest by recursion; real
// files nest one level, so this bound only stops hostile input.
constexpr int kMaxSequenceDepth = 16;

}  // namespace

// ---- implementation ----------------------------------------------------------------------

struct HfTokenizer::Impl {
  std::string source;

  std::vector<NormalizerStep> normalizer;
  std::vector<PreTokenizerStep> pre_tokenizer;
  std::vector<DecoderStep> decoder;
  bool has_decoder = false;

  // BPE model.
  std::unordered_map<std::string, int32_t> vocab;
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // (a,b) -> (rank, new id)
  std::optional<int32_t> unk;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
  std::string continuing_subword_prefix, end_of_word_suffix;

  AddedTokenMatcher added;
  std::unordered_map<int32_t, size_t> added_by_id;  // id -> index in added.tokens()
  std::vector<std::string> id_to_token;              // model vocab and added tokens
  std::vector<bool> is_special;
  std::vector<int32_t> prefix, suffix;

  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  absl::Status Error(const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", what));
  }
  // "<file>: key '<path>' is <value>, expected <expected>" for a value with no parent reader.
  absl::Status Bad(const std::string& path, const json& value, absl::string_view expected) const {
    return Error(absl::StrCat("key '", path, "' is ", ir::ShowJson(value), ", expected ", expected));
  }
  // A reader over the component at `path`, which must be an object.
  absl::StatusOr<ir::JsonReader> Component(const json& j, const std::string& path) const {
    if (!j.is_object()) return Bad(path, j, "an object");
    return ir::JsonReader(j, source, path + ".");
  }
  // The array under `key` (required unless `optional`; absent then reads as empty).
  absl::StatusOr<const json*> Array(const ir::JsonReader& r, const char* key,
                                    bool optional = false) const {
    static const json* const kEmpty = new json(json::array());
    if (!r.Has(key)) {
      if (optional) return kEmpty;
      return r.Missing(key, "an array");
    }
    if (!r.At(key).is_array()) return r.Bad(key, r.At(key), "an array");
    return &r.At(key);
  }
  // {"String": s} or {"Regex": s}: the text and whether it is a regex.
  absl::StatusOr<std::pair<std::string, bool>> Pattern(const ir::JsonReader& r) const {
    KVCC_ASSIGN_OR_RETURN(ir::JsonReader p, r.Object("pattern"));
    const bool is_regex = p.Has("Regex");
    if (is_regex == p.Has("String")) {
      return r.Bad("pattern", r.At("pattern"), "{\"String\": ...} or {\"Regex\": ...}");
    }
    KVCC_ASSIGN_OR_RETURN(std::string text, p.String(is_regex ? "Regex" : "String"));
    if (text.empty()) return r.Bad("pattern", r.At("pattern"), "a non-empty pattern");
    return std::make_pair(std::move(text), is_regex);
  }
  // A token id in [0, kMaxVocab).
  absl::StatusOr<int32_t> Id(const std::string& path, const json& v) const {
    if (!v.is_number_integer() ||
        (v.is_number_unsigned() ? v.get<uint64_t>() >= static_cast<uint64_t>(kMaxVocab)
                                : (v.get<int64_t>() < 0 || v.get<int64_t>() >= kMaxVocab))) {
      return Bad(path, v, absl::StrCat("an integer id in [0, ", kMaxVocab, ")"));
    }
    return static_cast<int32_t>(v.get<int64_t>());
  }
  std::string Unsupported(absl::string_view what, absl::string_view type, const json& j,
                          absl::string_view supported) const {
    return absl::StrCat("unsupported ", what, " type \"", type.empty() ? ir::ShowJson(j) : type,
                        "\" (supported: ", supported, ")");
  }

  absl::Status ParseNormalizer(const json& j, const std::string& path, int depth);
  absl::Status ParsePreTokenizer(const json& j, const std::string& path, int depth);
  absl::Status ParseDecoder(const json& j, const std::string& path, int depth);
  absl::Status ParsePostProcessor(const json& j, const std::string& path, int depth);
  // The elements of a Sequence component's `key` array, each parsed by `parse`.
  template <typename Parse>
  absl::Status ParseSequence(const ir::JsonReader& r, const char* key, const std::string& path,
                             int depth, Parse parse) {
    if (depth >= kMaxSequenceDepth) {
      return Error(absl::StrCat("key '", path, "': Sequence nested deeper than ",
                                kMaxSequenceDepth, " levels"));
    }
    KVCC_ASSIGN_OR_RETURN(const json* items, Array(r, key));
    for (size_t i = 0; i < items->size(); ++i) {
      KVCC_RETURN_IF_ERROR(
          (this->*parse)((*items)[i], absl::StrCat(path, ".", key, "[", i, "]"), depth + 1));
    }
    return absl::OkStatus();
  }
  absl::Status ParseModel(const json& j);
  absl::Status ParseAddedTokens(const json& j);

  std::string Normalize(std::string s) const;
  std::vector<Piece> PreTokenize(Piece piece) const;
  void EncodeWord(const std::string& word, std::vector<int32_t>* ids) const;
  std::string RunDecoder(std::vector<std::string> tokens, bool at_start, bool* final) const;
};

absl::Status HfTokenizer::Impl::ParseNormalizer(const json& j, const std::string& path,
                                                int depth) {
  if (j.is_null()) return absl::OkStatus();
  KVCC_ASSIGN_OR_RETURN(ir::JsonReader r, Component(j, path));
  KVCC_ASSIGN_OR_RETURN(const std::string type, r.String("type", ""));
  if (type == "Sequence") {
    return ParseSequence(r, "normalizers", path, depth, &Impl::ParseNormalizer);
  }
  NormalizerStep step;
  if (type == "NFC") {
    step.kind = NormalizerStep::kNfc;
  } else if (type == "NFD") {
    step.kind = NormalizerStep::kNfd;
  } else if (type == "Strip") {
    step.kind = NormalizerStep::kStrip;
    KVCC_ASSIGN_OR_RETURN(step.strip_left, r.Bool("strip_left", true));
    KVCC_ASSIGN_OR_RETURN(step.strip_right, r.Bool("strip_right", true));
  } else if (type == "Prepend") {
    step.kind = NormalizerStep::kPrepend;
    KVCC_ASSIGN_OR_RETURN(step.content, r.String("prepend"));
  } else if (type == "Replace") {
    step.kind = NormalizerStep::kReplace;
    KVCC_ASSIGN_OR_RETURN(step.content, r.String("content"));
    KVCC_ASSIGN_OR_RETURN(std::tie(step.pattern, step.is_regex), Pattern(r));
    if (step.is_regex) {
      KVCC_ASSIGN_OR_RETURN(step.regex, TokenizerRegex::Compile(step.pattern, source,
                                                                absl::StrCat(path, " Replace")));
    }
  } else {
    return Error(Unsupported("normalizer", type, j, "Sequence, NFC, NFD, Strip, Replace, Prepend"));
  }
  normalizer.push_back(std::move(step));
  return absl::OkStatus();
}

absl::Status HfTokenizer::Impl::ParsePreTokenizer(const json& j, const std::string& path,
                                                  int depth) {
  if (j.is_null()) return absl::OkStatus();
  KVCC_ASSIGN_OR_RETURN(ir::JsonReader r, Component(j, path));
  KVCC_ASSIGN_OR_RETURN(const std::string type, r.String("type", ""));
  if (type == "Sequence") {
    return ParseSequence(r, "pretokenizers", path, depth, &Impl::ParsePreTokenizer);
  }
  PreTokenizerStep step;
  if (type == "ByteLevel") {
    step.kind = PreTokenizerStep::kByteLevel;
    KVCC_ASSIGN_OR_RETURN(step.add_prefix_space, r.Bool("add_prefix_space", true));
    KVCC_ASSIGN_OR_RETURN(step.use_regex, r.Bool("use_regex", true));
  } else if (type == "Split") {
    step.kind = PreTokenizerStep::kSplit;
    KVCC_ASSIGN_OR_RETURN(const bool invert, r.Bool("invert", false));
    if (invert) return Error("unsupported Split pre-tokenizer with invert=true");
    KVCC_ASSIGN_OR_RETURN(auto pattern, Pattern(r));
    if (!pattern.second) {
      step.literal = std::move(pattern.first);
    } else if (!(step.regex = RecognizePretokenizerPattern(pattern.first))) {
      // The published byte-level patterns need lookaheads RE2 lacks: they are matched by hand
      // above; any other pattern runs on RE2.
      KVCC_ASSIGN_OR_RETURN(step.re2, TokenizerRegex::Compile(pattern.first, source,
                                                              absl::StrCat(path, " Split")));
    }
    KVCC_ASSIGN_OR_RETURN(const std::string behavior, r.String("behavior", "Isolated"));
    if (behavior == "Isolated") step.behavior = SplitBehavior::kIsolated;
    else if (behavior == "Removed") step.behavior = SplitBehavior::kRemoved;
    else if (behavior == "MergedWithPrevious") step.behavior = SplitBehavior::kMergedWithPrevious;
    else if (behavior == "MergedWithNext") step.behavior = SplitBehavior::kMergedWithNext;
    else return Error(absl::StrCat("unsupported Split behavior \"", behavior, "\""));
  } else if (type == "Digits") {
    step.kind = PreTokenizerStep::kDigits;
    KVCC_ASSIGN_OR_RETURN(step.individual_digits, r.Bool("individual_digits", false));
  } else if (type == "Metaspace") {
    step.kind = PreTokenizerStep::kMetaspace;
    KVCC_ASSIGN_OR_RETURN(step.replacement, r.String("replacement", "\xE2\x96\x81"));
    if (CodePointCount(step.replacement) != 1) return Error("Metaspace replacement must be one character");
    if (r.Has("prepend_scheme")) {
      KVCC_ASSIGN_OR_RETURN(const std::string scheme, r.String("prepend_scheme"));
      if (scheme == "always") step.prepend = PreTokenizerStep::kAlways;
      else if (scheme == "first") step.prepend = PreTokenizerStep::kFirst;
      else if (scheme == "never") step.prepend = PreTokenizerStep::kNever;
      else return Error(absl::StrCat("unknown Metaspace prepend_scheme \"", scheme, "\""));
    } else {
      KVCC_ASSIGN_OR_RETURN(const bool prefix_space, r.Bool("add_prefix_space", true));
      step.prepend = prefix_space ? PreTokenizerStep::kAlways : PreTokenizerStep::kNever;
    }
    KVCC_ASSIGN_OR_RETURN(step.split, r.Bool("split", true));
  } else {
    return Error(Unsupported("pre_tokenizer", type, j, "Sequence, ByteLevel, Split, Digits, Metaspace"));
  }
  pre_tokenizer.push_back(std::move(step));
  return absl::OkStatus();
}

absl::Status HfTokenizer::Impl::ParseDecoder(const json& j, const std::string& path, int depth) {
  if (j.is_null()) return absl::OkStatus();
  has_decoder = true;
  KVCC_ASSIGN_OR_RETURN(ir::JsonReader r, Component(j, path));
  KVCC_ASSIGN_OR_RETURN(const std::string type, r.String("type", ""));
  if (type == "Sequence") {
    return ParseSequence(r, "decoders", path, depth, &Impl::ParseDecoder);
  }
  DecoderStep step;
  if (type == "ByteLevel") {
    step.kind = DecoderStep::kByteLevel;
  } else if (type == "ByteFallback") {
    step.kind = DecoderStep::kByteFallback;
  } else if (type == "Fuse") {
    step.kind = DecoderStep::kFuse;
  } else if (type == "Replace") {
    step.kind = DecoderStep::kReplace;
    KVCC_ASSIGN_OR_RETURN(auto pattern, Pattern(r));
    if (pattern.second) return Error("unsupported Replace decoder pattern (only {\"String\": ...})");
    step.pattern = std::move(pattern.first);
    KVCC_ASSIGN_OR_RETURN(step.content, r.String("content"));
  } else if (type == "Strip") {
    step.kind = DecoderStep::kStrip;
    KVCC_ASSIGN_OR_RETURN(const std::string content, r.String("content"));
    const std::u32string c = ToCodePoints(content);
    if (c.size() != 1) return r.Bad("content", r.At("content"), "one character");
    step.strip_char = c[0];
    KVCC_ASSIGN_OR_RETURN(const int64_t start, r.Int("start", 0, 1 << 20));
    KVCC_ASSIGN_OR_RETURN(const int64_t stop, r.Int("stop", 0, 1 << 20));
    step.strip_start = static_cast<int>(start);
    step.strip_stop = static_cast<int>(stop);
  } else if (type == "Metaspace") {
    step.kind = DecoderStep::kMetaspace;
    KVCC_ASSIGN_OR_RETURN(step.replacement, r.String("replacement", "\xE2\x96\x81"));
    if (step.replacement.empty()) return r.Bad("replacement", r.At("replacement"), "one character");
    if (r.Has("prepend_scheme")) {
      KVCC_ASSIGN_OR_RETURN(const std::string scheme, r.String("prepend_scheme"));
      step.metaspace_strips_first = scheme != "never";
    } else {
      KVCC_ASSIGN_OR_RETURN(step.metaspace_strips_first, r.Bool("add_prefix_space", true));
    }
  } else {
    return Error(Unsupported("decoder", type, j,
                             "Sequence, ByteLevel, ByteFallback, Fuse, Replace, Strip, Metaspace"));
  }
  decoder.push_back(std::move(step));
  return absl::OkStatus();
}

absl::Status HfTokenizer::Impl::ParsePostProcessor(const json& j, const std::string& path,
                                                   int depth) {
  if (j.is_null()) return absl::OkStatus();
  KVCC_ASSIGN_OR_RETURN(ir::JsonReader r, Component(j, path));
  KVCC_ASSIGN_OR_RETURN(const std::string type, r.String("type", ""));
  if (type == "Sequence") {
    return ParseSequence(r, "processors", path, depth, &Impl::ParsePostProcessor);
  }
  if (type == "ByteLevel") return absl::OkStatus();  // only adjusts offsets, never ids
  if (type != "TemplateProcessing") {
    return Error(Unsupported("post_processor", type, j, "Sequence, TemplateProcessing, ByteLevel"));
  }
  if (!prefix.empty() || !suffix.empty()) return Error("more than one TemplateProcessing post-processor");
  KVCC_ASSIGN_OR_RETURN(const ir::JsonReader specials, r.Object("special_tokens"));
  KVCC_ASSIGN_OR_RETURN(const json* single, Array(r, "single"));
  bool seen_sequence = false;
  for (size_t i = 0; i < single->size(); ++i) {
    const json& item = (*single)[i];
    const std::string item_path = absl::StrCat(path, ".single[", i, "]");
    KVCC_ASSIGN_OR_RETURN(const ir::JsonReader it, Component(item, item_path));
    if (it.Has("Sequence")) {
      if (seen_sequence) return Error("TemplateProcessing single template has two sequences");
      seen_sequence = true;
    } else if (it.Has("SpecialToken")) {
      KVCC_ASSIGN_OR_RETURN(const ir::JsonReader token, it.Object("SpecialToken"));
      KVCC_ASSIGN_OR_RETURN(const std::string name, token.String("id"));
      if (!specials.Has(name.c_str())) {
        return Error(absl::StrCat("TemplateProcessing uses special token \"", name, "\" missing from special_tokens"));
      }
      KVCC_ASSIGN_OR_RETURN(const ir::JsonReader special, specials.Object(name.c_str()));
      KVCC_ASSIGN_OR_RETURN(const json* ids, Array(special, "ids"));
      for (size_t k = 0; k < ids->size(); ++k) {
        KVCC_ASSIGN_OR_RETURN(const int32_t id,
                              Id(absl::StrCat(special.Key("ids"), "[", k, "]"), (*ids)[k]));
        (seen_sequence ? suffix : prefix).push_back(id);
      }
    } else {
      return Bad(item_path, item, "{\"Sequence\": ...} or {\"SpecialToken\": ...}");
    }
  }
  if (!seen_sequence) return Error("TemplateProcessing single template has no $A sequence");
  return absl::OkStatus();
}

absl::Status HfTokenizer::Impl::ParseModel(const json& j) {
  KVCC_ASSIGN_OR_RETURN(const ir::JsonReader r, Component(j, "model"));
  KVCC_ASSIGN_OR_RETURN(std::string type, r.String("type", ""));
  if (type.empty() && r.Has("merges")) type = "BPE";  // older files omit the type
  if (type != "BPE") {
    return Error(absl::StrCat("unsupported model type \"", type.empty() ? "(none)" : type,
                              "\" (supported: BPE)"));
  }
  KVCC_ASSIGN_OR_RETURN(const double dropout, r.Float("dropout", 0.0, false, 1.0, 0.0));
  if (dropout > 0.0) return Error("BPE dropout is not supported for inference");
  KVCC_ASSIGN_OR_RETURN(const ir::JsonReader v, r.Object("vocab"));
  std::unordered_map<int32_t, const std::string*> token_of_id;
  for (auto it = v.json().begin(); it != v.json().end(); ++it) {
    const std::string key = absl::StrCat("model.vocab[", ir::ShowJson(it.key()), "]");
    if (!it.value().is_number_integer()) {
      return Error(absl::StrCat(key, " is ", ir::ShowJson(it.value()), ", expected an integer id"));
    }
    KVCC_ASSIGN_OR_RETURN(const int32_t id, Id(key, it.value()));
    auto [prev, fresh] = token_of_id.emplace(id, &it.key());
    if (!fresh) {
      return Error(absl::StrCat(key, " is ", id, ", already the id of ",
                                ir::ShowJson(*prev->second), "; ids must be unique"));
    }
    vocab[it.key()] = id;
  }
  KVCC_ASSIGN_OR_RETURN(const json* merge_list, Array(r, "merges"));
  int32_t rank = 0;
  for (size_t i = 0; i < merge_list->size(); ++i) {
    const json& m = (*merge_list)[i];
    std::string a, b;
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
        return Error(absl::StrCat("merge \"", s, "\" is not of the form \"left right\""));
      }
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      return Bad(absl::StrCat("model.merges[", i, "]"), m, "\"a b\" or [\"a\", \"b\"]");
    }
    auto ia = vocab.find(a), ib = vocab.find(b), inew = vocab.find(a + b);
    if (ia == vocab.end() || ib == vocab.end() || inew == vocab.end()) {
      return Error(absl::StrCat("merge (\"", a, "\", \"", b, "\") uses a token not in the vocab"));
    }
    merges.emplace(PairKey(ia->second, ib->second), std::make_pair(rank++, inew->second));
  }
  KVCC_ASSIGN_OR_RETURN(const std::string unk_token, r.String("unk_token", ""));
  if (!unk_token.empty()) {
    auto it = vocab.find(unk_token);
    if (it == vocab.end()) return Error(absl::StrCat("unk_token \"", unk_token, "\" is not in the vocab"));
    unk = it->second;
  }
  KVCC_ASSIGN_OR_RETURN(fuse_unk, r.Bool("fuse_unk", false));
  KVCC_ASSIGN_OR_RETURN(byte_fallback, r.Bool("byte_fallback", false));
  KVCC_ASSIGN_OR_RETURN(ignore_merges, r.Bool("ignore_merges", false));
  KVCC_ASSIGN_OR_RETURN(continuing_subword_prefix, r.String("continuing_subword_prefix", ""));
  KVCC_ASSIGN_OR_RETURN(end_of_word_suffix, r.String("end_of_word_suffix", ""));
  return absl::OkStatus();
}

absl::Status HfTokenizer::Impl::ParseAddedTokens(const json& j) {
  std::vector<AddedToken> tokens;
  if (!j.is_null() && !j.is_array()) return Bad("added_tokens", j, "an array");
  std::unordered_map<int32_t, std::string> content_of_id;
  for (size_t i = 0; !j.is_null() && i < j.size(); ++i) {
    const std::string path = absl::StrCat("added_tokens[", i, "]");
    KVCC_ASSIGN_OR_RETURN(const ir::JsonReader t, Component(j[i], path));
    AddedToken a;
    if (!t.Has("id")) return t.Missing("id", "an integer id");
    KVCC_ASSIGN_OR_RETURN(a.id, Id(t.Key("id"), t.At("id")));
    KVCC_ASSIGN_OR_RETURN(a.content, t.String("content"));
    if (a.content.empty()) return t.Bad("content", t.At("content"), "a non-empty string");
    // An added token may restate a vocab entry (same id, same text), never redefine one.
    if (auto v = vocab.find(a.content); v != vocab.end() && v->second != a.id) {
      return Error(absl::StrCat("key '", path, "' gives ", ir::ShowJson(a.content), " id ", a.id,
                                " but model.vocab has it as ", v->second));
    }
    if (auto [prev, fresh] = content_of_id.emplace(a.id, a.content);
        !fresh && prev->second != a.content) {
      return Error(absl::StrCat("key '", path, "' gives id ", a.id, " to ",
                                ir::ShowJson(a.content), ", already the id of added token ",
                                ir::ShowJson(prev->second)));
    }
    KVCC_ASSIGN_OR_RETURN(a.special, t.Bool("special", false));
    KVCC_ASSIGN_OR_RETURN(a.lstrip, t.Bool("lstrip", false));
    KVCC_ASSIGN_OR_RETURN(a.rstrip, t.Bool("rstrip", false));
    KVCC_ASSIGN_OR_RETURN(a.single_word, t.Bool("single_word", false));
    KVCC_ASSIGN_OR_RETURN(a.normalized, t.Bool("normalized", !a.special));
    tokens.push_back(std::move(a));
  }
  added = AddedTokenMatcher(std::move(tokens));
  for (size_t i = 0; i < added.tokens().size(); ++i) added_by_id[added.tokens()[i].id] = i;
  return absl::OkStatus();
}

std::string HfTokenizer::Impl::Normalize(std::string s) const {
  for (const NormalizerStep& step : normalizer) {
    switch (step.kind) {
      case NormalizerStep::kStrip: {
        const std::u32string cps = ToCodePoints(s);
        size_t b = 0, e = cps.size();
        if (step.strip_left) while (b < e && IsUnicodeWhitespace(cps[b])) ++b;
        if (step.strip_right) while (e > b && IsUnicodeWhitespace(cps[e - 1])) --e;
        std::string out;
        for (size_t i = b; i < e; ++i) AppendUtf8(cps[i], &out);
        s = std::move(out);
        break;
      }
      case NormalizerStep::kPrepend:
        if (!s.empty()) s = step.content + s;
        break;
      case NormalizerStep::kNfc:
        s = ToNfc(s);
        break;
      case NormalizerStep::kNfd:
        s = ToNfd(s);
        break;
      case NormalizerStep::kReplace:
        if (!step.is_regex) {
          s = ReplaceAll(s, step.pattern, step.content);
        } else {
          std::string out;
          size_t last = 0;
          for (auto [pos, end] : step.regex->FindAll(s)) {
            if (end == pos) continue;
            out.append(s, last, pos - last);
            out += step.content;
            last = end;
          }
          out.append(s, last, std::string::npos);
          s = std::move(out);
        }
        break;
    }
  }
  return s;
}

std::vector<Piece> HfTokenizer::Impl::PreTokenize(Piece piece) const {
  std::vector<Piece> pieces{std::move(piece)};
  for (const PreTokenizerStep& step : pre_tokenizer) {
    std::vector<Piece> next;
    for (Piece& p : pieces) {
      switch (step.kind) {
        case PreTokenizerStep::kByteLevel: {
          if (step.add_prefix_space && (p.text.empty() || p.text[0] != ' ')) p.text.insert(0, " ");
          std::vector<Piece> parts;
          if (step.use_regex) {
            const std::u32string cps = ToCodePoints(p.text);
            std::vector<size_t> offset(cps.size() + 1, 0);
            for (size_t i = 0; i < cps.size(); ++i) offset[i + 1] = offset[i] + EncodeUtf8(cps[i]).size();
            std::vector<std::pair<size_t, size_t>> spans;
            for (auto [b, e] : FindPretokenMatches(PretokenizerPattern::kGpt2, cps)) {
              spans.emplace_back(offset[b], offset[e]);
            }
            parts = SplitAt(p, spans, SplitBehavior::kIsolated);
          } else if (!p.text.empty()) {
            parts.push_back(p);
          }
          for (Piece& part : parts) {
            std::string mapped;
            for (unsigned char c : part.text) mapped += ByteLevel().byte_to_piece[c];
            next.push_back({std::move(mapped), part.at_start});
          }
          break;
        }
        case PreTokenizerStep::kSplit: {
          std::vector<std::pair<size_t, size_t>> spans;
          if (step.regex) {
            const std::u32string cps = ToCodePoints(p.text);
            std::vector<size_t> offset(cps.size() + 1, 0);
            for (size_t i = 0; i < cps.size(); ++i) offset[i + 1] = offset[i] + EncodeUtf8(cps[i]).size();
            for (auto [b, e] : FindPretokenMatches(*step.regex, cps)) spans.emplace_back(offset[b], offset[e]);
          } else if (step.re2) {
            spans = step.re2->FindAll(p.text);
          } else {
            for (size_t pos = p.text.find(step.literal); pos != std::string::npos;
                 pos = p.text.find(step.literal, pos + step.literal.size())) {
              spans.emplace_back(pos, pos + step.literal.size());
            }
          }
          for (Piece& q : SplitAt(p, spans, step.behavior)) next.push_back(std::move(q));
          break;
        }
        case PreTokenizerStep::kDigits: {
          auto spans = CharSpans(p.text, &IsUnicodeNumber, step.individual_digits);
          for (Piece& q : SplitAt(p, spans, SplitBehavior::kIsolated)) next.push_back(std::move(q));
          break;
        }
        case PreTokenizerStep::kMetaspace: {
          p.text = ReplaceAll(p.text, " ", step.replacement);
          const bool starts = p.text.compare(0, step.replacement.size(), step.replacement) == 0;
          if (!starts && (step.prepend == PreTokenizerStep::kAlways ||
                          (step.prepend == PreTokenizerStep::kFirst && p.at_start))) {
            p.text.insert(0, step.replacement);
          }
          if (!step.split) {
            if (!p.text.empty()) next.push_back(std::move(p));
            break;
          }
          std::vector<std::pair<size_t, size_t>> spans;
          for (size_t pos = p.text.find(step.replacement); pos != std::string::npos;
               pos = p.text.find(step.replacement, pos + step.replacement.size())) {
            spans.emplace_back(pos, pos + step.replacement.size());
          }
          for (Piece& q : SplitAt(p, spans, SplitBehavior::kMergedWithNext)) next.push_back(std::move(q));
          break;
        }
      }
    }
    pieces = std::move(next);
  }
  return pieces;
}

// BPE over one pre-tokenized word, following the Hugging Face model exactly: per-character
// initial symbols (byte fallback, then unk fusing), then merges by lowest rank, leftmost first.
void HfTokenizer::Impl::EncodeWord(const std::string& word, std::vector<int32_t>* ids) const {
  if (word.empty()) return;
  if (ignore_merges) {
    auto it = vocab.find(word);
    if (it != vocab.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  struct Symbol {
    int32_t id;
    int prev, next;
    size_t len;
  };
  std::vector<Symbol> symbols;
  auto add = [&](int32_t id, size_t len) {
    const int idx = static_cast<int>(symbols.size());
    symbols.push_back({id, idx - 1, -1, len});
    if (idx > 0) symbols[idx - 1].next = idx;
  };
  // An unknown character waiting to be added (and, with fuse_unk, widened by the next ones).
  bool has_pending_unk = false;
  size_t pending_unk_len = 0;
  for (size_t pos = 0; pos < word.size();) {
    const size_t start = pos;
    const size_t n = Utf8SequenceLength(word, pos);
    pos += n == 0 ? 1 : n;
    std::string s = word.substr(start, pos - start);
    const size_t byte_len = s.size();
    if (start != 0 && !continuing_subword_prefix.empty()) s = continuing_subword_prefix + s;
    if (pos == word.size() && !end_of_word_suffix.empty()) s += end_of_word_suffix;
    auto it = vocab.find(s);
    if (it != vocab.end()) {
      if (has_pending_unk) {
        add(*unk, pending_unk_len);
        has_pending_unk = false;
      }
      add(it->second, byte_len);
      continue;
    }
    if (byte_fallback) {
      std::vector<int32_t> bytes;
      for (unsigned char c : s) {
        static const char* kHex = "0123456789ABCDEF";
        const std::string name = {'<', '0', 'x', kHex[c >> 4], kHex[c & 15], '>'};
        auto b = vocab.find(name);
        if (b == vocab.end()) break;
        bytes.push_back(b->second);
      }
      if (bytes.size() == s.size()) {
        // As in Hugging Face, a pending unk is not flushed here, so it lands after these bytes.
        for (int32_t b : bytes) add(b, 1);
        continue;
      }
    }
    if (unk) {
      if (has_pending_unk && fuse_unk) {
        pending_unk_len += byte_len;
      } else {
        if (has_pending_unk) add(*unk, pending_unk_len);
        has_pending_unk = true;
        pending_unk_len = byte_len;
      }
    }
  }
  if (has_pending_unk) add(*unk, pending_unk_len);

  struct Merge {
    int32_t rank;
    int pos;
    int32_t new_id;
    bool operator<(const Merge& o) const {  // priority_queue pops the largest: invert
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Merge> queue;
  auto lookup = [&](int32_t a, int32_t b) -> const std::pair<int32_t, int32_t>* {
    auto it = merges.find(PairKey(a, b));
    return it == merges.end() ? nullptr : &it->second;
  };
  for (size_t i = 0; i + 1 < symbols.size(); ++i) {
    if (auto* m = lookup(symbols[i].id, symbols[i + 1].id)) queue.push({m->first, static_cast<int>(i), m->second});
  }
  while (!queue.empty()) {
    const Merge top = queue.top();
    queue.pop();
    Symbol& cur = symbols[top.pos];
    if (cur.len == 0 || cur.next == -1) continue;
    const int next_pos = cur.next;
    const Symbol right = symbols[next_pos];
    const auto* m = lookup(cur.id, right.id);
    if (m == nullptr || m->second != top.new_id) continue;  // stale entry
    cur.id = top.new_id;
    cur.len += right.len;
    cur.next = right.next;
    symbols[next_pos].len = 0;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (cur.prev >= 0) {
      if (auto* pm = lookup(symbols[cur.prev].id, cur.id)) queue.push({pm->first, cur.prev, pm->second});
    }
    if (cur.next >= 0) {
      if (auto* nm = lookup(cur.id, symbols[cur.next].id)) queue.push({nm->first, top.pos, nm->second});
    }
  }
  for (const Symbol& s : symbols) {
    if (s.len != 0) ids->push_back(s.id);
  }
}

// The decoder chain over token strings. `fused` tracks whether the list has become the whole
// text as one string (after Fuse or ByteLevel), which decides whether start-of-text rules
// (Strip, Metaspace's first token) apply to this segment.
std::string HfTokenizer::Impl::RunDecoder(std::vector<std::string> tokens, bool at_start,
                                          bool* final) const {
  *final = !(at_start && tokens.empty());
  if (!has_decoder) {
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0 || !at_start) out += " ";
      out += tokens[i];
    }
    return out;
  }
  bool fused = false;
  for (const DecoderStep& step : decoder) {
    switch (step.kind) {
      case DecoderStep::kByteLevel: {
        std::string bytes;
        for (const std::string& t : tokens) {
          std::string mapped;
          bool ok = true;
          size_t pos = 0;
          while (pos < t.size()) {
            const char32_t c = DecodeUtf8At(t, &pos);
            auto it = ByteLevel().char_to_byte.find(c);
            if (it == ByteLevel().char_to_byte.end()) {
              ok = false;
              break;
            }
            mapped.push_back(static_cast<char>(it->second));
          }
          bytes += ok ? mapped : t;
        }
        if (Utf8IncompleteTailLength(bytes) > 0) *final = false;
        tokens = {Utf8Lossy(bytes)};
        fused = true;
        break;
      }
      case DecoderStep::kByteFallback: {
        if (!tokens.empty() && ByteFallbackValue(tokens.back())) *final = false;
        std::vector<std::string> out;
        std::string run;
        size_t run_tokens = 0;
        auto flush = [&]() {
          if (run_tokens == 0) return;
          if (IsValidUtf8(run)) {
            out.push_back(run);
          } else {
            for (size_t i = 0; i < run_tokens; ++i) out.push_back(EncodeUtf8(kReplacementChar));
          }
          run.clear();
          run_tokens = 0;
        };
        for (std::string& t : tokens) {
          if (auto b = ByteFallbackValue(t)) {
            run.push_back(static_cast<char>(*b));
            ++run_tokens;
          } else {
            flush();
            out.push_back(std::move(t));
          }
        }
        flush();
        tokens = std::move(out);
        break;
      }
      case DecoderStep::kFuse: {
        std::string all;
        for (const std::string& t : tokens) all += t;
        tokens = {std::move(all)};
        fused = true;
        break;
      }
      case DecoderStep::kReplace:
        if (fused && CodePointCount(step.pattern) > 1) *final = false;  // a match may span segments
        for (std::string& t : tokens) t = ReplaceAll(t, step.pattern, step.content);
        break;
      case DecoderStep::kStrip: {
        if (step.strip_stop > 0 && fused) *final = false;  // the end of the text is not known yet
        for (std::string& t : tokens) {
          const std::u32string cps = ToCodePoints(t);
          size_t b = 0, e = cps.size();
          const bool apply_start = !fused || at_start;
          if (apply_start) {
            int k = 0;
            while (k < step.strip_start && b < e && cps[b] == step.strip_char) ++b, ++k;
            if (fused && at_start && k < step.strip_start && b == e) *final = false;  // may strip more
          }
          if (!fused || step.strip_stop > 0) {
            int k = 0;
            while (k < step.strip_stop && e > b && cps[e - 1] == step.strip_char) --e, ++k;
          }
          std::string out;
          for (size_t i = b; i < e; ++i) AppendUtf8(cps[i], &out);
          t = std::move(out);
        }
        break;
      }
      case DecoderStep::kMetaspace: {
        for (size_t i = 0; i < tokens.size(); ++i) {
          const bool first = i == 0 && at_start && step.metaspace_strips_first;
          std::string out;
          const std::string& t = tokens[i];
          for (size_t pos = 0; pos < t.size();) {
            if (t.compare(pos, step.replacement.size(), step.replacement) == 0) {
              if (!first) out += ' ';
              pos += step.replacement.size();
            } else {
              out += t[pos++];
            }
          }
          tokens[i] = std::move(out);
        }
        break;
      }
    }
  }
  std::string text;
  for (const std::string& t : tokens) text += t;
  return text;
}

// ---- public -------------------------------------------------------------------------------

HfTokenizer::HfTokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HfTokenizer::~HfTokenizer() = default;

absl::StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::FromFile(const std::string& path) {
  KVCC_ASSIGN_OR_RETURN(auto text, ReadTokenizerFile(path));
  return FromJson(text, path);
}

absl::StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::FromJson(absl::string_view text,
                                                                   const std::string& source) {
  auto impl = std::make_unique<Impl>();
  impl->source = source;
  KVCC_ASSIGN_OR_RETURN(const json j, ir::ParseJson(text, source));
  if (!j.is_object() || !j.contains("model")) return impl->Error("not a tokenizer.json: no \"model\" object");
  auto part = [&j](const char* key) -> const json& {
    static const json* const kNull = new json();
    auto it = j.find(key);
    return it == j.end() ? *kNull : *it;
  };
  // Every access below checks its JSON type; this guards against one that does not.
  try {
    KVCC_RETURN_IF_ERROR(impl->ParseModel(j.at("model")));
    KVCC_RETURN_IF_ERROR(impl->ParseAddedTokens(part("added_tokens")));
    KVCC_RETURN_IF_ERROR(impl->ParseNormalizer(part("normalizer"), "normalizer", 0));
    KVCC_RETURN_IF_ERROR(impl->ParsePreTokenizer(part("pre_tokenizer"), "pre_tokenizer", 0));
    KVCC_RETURN_IF_ERROR(impl->ParsePostProcessor(part("post_processor"), "post_processor", 0));
    KVCC_RETURN_IF_ERROR(impl->ParseDecoder(part("decoder"), "decoder", 0));
  } catch (const json::exception& e) {
    return impl->Error(absl::StrCat("unexpected tokenizer.json structure: ", e.what()));
  }
  int32_t size = 0;
  for (const auto& [tok, id] : impl->vocab) size = std::max(size, id + 1);
  for (const AddedToken& t : impl->added.tokens()) size = std::max(size, t.id + 1);
  impl->id_to_token.assign(size, std::string());
  impl->is_special.assign(size, false);
  for (const auto& [tok, id] : impl->vocab) impl->id_to_token[id] = tok;
  for (const AddedToken& t : impl->added.tokens()) {
    impl->id_to_token[t.id] = t.content;
    impl->is_special[t.id] = t.special;
  }
  for (int32_t id : impl->prefix) {
    if (id < 0 || id >= size) return impl->Error(absl::StrCat("post_processor token id ", id, " is outside the vocabulary"));
  }
  for (int32_t id : impl->suffix) {
    if (id < 0 || id >= size) return impl->Error(absl::StrCat("post_processor token id ", id, " is outside the vocabulary"));
  }
  auto tok = std::unique_ptr<HfTokenizer>(new HfTokenizer(std::move(impl)));
  const Impl& m = *tok->impl_;
  if (m.unk) tok->unk_id_ = *m.unk;
  if (!m.prefix.empty()) tok->bos_id_ = m.prefix.front();
  return tok;
}

absl::StatusOr<std::vector<int32_t>> HfTokenizer::Encode(absl::string_view text,
                                                         const EncodeOptions& options) const {
  const Impl& m = *impl_;
  std::vector<int32_t> ids;
  if (options.add_special_tokens) ids = m.prefix;
  auto raw_phase = [&](const AddedToken& t) { return !t.normalized && (options.parse_special || !t.special); };
  auto norm_phase = [&](const AddedToken& t) { return t.normalized && (options.parse_special || !t.special); };
  for (const TextChunk& chunk : m.added.Split(text, true, raw_phase)) {
    if (chunk.token_id >= 0) {
      ids.push_back(chunk.token_id);
      continue;
    }
    const std::string normalized = m.Normalize(chunk.text);
    for (const TextChunk& sub : m.added.Split(normalized, chunk.at_text_start, norm_phase)) {
      if (sub.token_id >= 0) {
        ids.push_back(sub.token_id);
        continue;
      }
      for (const Piece& p : m.PreTokenize({sub.text, sub.at_text_start})) m.EncodeWord(p.text, &ids);
    }
  }
  if (options.add_special_tokens) ids.insert(ids.end(), m.suffix.begin(), m.suffix.end());
  return ids;
}

int32_t HfTokenizer::vocab_size() const { return static_cast<int32_t>(impl_->id_to_token.size()); }

std::optional<int32_t> HfTokenizer::PieceToId(absl::string_view piece) const {
  for (const AddedToken& t : impl_->added.tokens()) {
    if (t.content == piece) return t.id;
  }
  auto it = impl_->vocab.find(std::string(piece));
  if (it == impl_->vocab.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<std::string> HfTokenizer::IdToPiece(int32_t id) const {
  if (id < 0 || id >= vocab_size()) {
    return absl::OutOfRangeError(absl::StrCat("token id ", id, " is outside the vocabulary [0, ", vocab_size(), ") of ", impl_->source));
  }
  return impl_->id_to_token[id];
}

bool HfTokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size() && impl_->is_special[id];
}

std::string HfTokenizer::DecodeSegment(absl::Span<const int32_t> ids, bool at_start,
                                       bool skip_special_tokens, bool* final) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (skip_special_tokens && impl_->is_special[id]) continue;
    tokens.push_back(impl_->id_to_token[id]);
  }
  return impl_->RunDecoder(std::move(tokens), at_start, final);
}

absl::Status HfTokenizer::SetSpecialAffixes(std::optional<bool> add_bos, std::optional<bool> add_eos) {
  if (add_bos) {
    if (*add_bos && bos_id_ < 0) return absl::InvalidArgumentError("add_bos_token is true but there is no BOS token");
    impl_->prefix.clear();
    if (*add_bos) impl_->prefix.push_back(bos_id_);
  }
  if (add_eos) {
    if (*add_eos && eos_id_ < 0) return absl::InvalidArgumentError("add_eos_token is true but there is no EOS token");
    impl_->suffix.clear();
    if (*add_eos) impl_->suffix.push_back(eos_id_);
  }
  return absl::OkStatus();
}

const std::vector<int32_t>& HfTokenizer::prefix_ids() const { return impl_->prefix; }
const std::vector<int32_t>& HfTokenizer::suffix_ids() const { return impl_->suffix; }

}  // namespace kvcc::tokenizer
