#include "runtime/engine.h"

#include <algorithm>
#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "ir/startup_marks.h"
#include "ir/status_macros.h"

namespace kvcc::runtime {

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(std::shared_ptr<const ir::Module> module,
                                                       std::unique_ptr<Backend> backend,
                                                       const EngineOptions& options) {
  if (module == nullptr || backend == nullptr) {
    return absl::InvalidArgumentError("engine needs a module and a backend");
  }
  if (options.block_size <= 0 || options.prefill_chunk <= 0 || options.cache_tokens < 0 ||
      options.max_context < 0 || options.default_sessions <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "engine options are invalid: block size ", options.block_size, ", prefill chunk ",
        options.prefill_chunk, ", cache tokens ", options.cache_tokens, ", max context ",
        options.max_context));
  }
  std::unique_ptr<Engine> e(new Engine());
  e->module_ = std::move(module);
  e->backend_ = std::move(backend);
  e->options_ = options;
  e->max_context_ = options.max_context > 0 ? options.max_context
                    : e->module_->config.max_position > 0 ? e->module_->config.max_position
                                                          : 2048;
  KVCC_ASSIGN_OR_RETURN(auto exec, Executor::Create(e->module_.get(), e->backend_.get()));
  e->executor_ = std::move(exec);
  ir::StartupMark("executor");
  // The default pool holds default_sessions full-context sessions, counted in whole blocks
  // because every session rounds up to its own blocks.
  const int64_t per_session = (e->max_context_ + options.block_size - 1) / options.block_size;
  const int64_t blocks = options.cache_tokens > 0
                             ? (options.cache_tokens + options.block_size - 1) / options.block_size
                             : per_session * options.default_sessions;
  KVCC_ASSIGN_OR_RETURN(auto spec, KvCacheSpecFromModule(*e->module_, options.block_size, blocks,
                                                         options.full_precision_cache));
  spec.layout.SetStagingFor(blocks, 2 * std::max(1, options.default_sessions));
  KVCC_ASSIGN_OR_RETURN(auto cache, e->backend_->CreateKvCache(spec));
  e->cache_ = std::move(cache);
  ir::StartupMark("kv_cache");
  return e;
}

absl::StatusOr<int64_t> Engine::CreateSession() {
  const int64_t id = next_session_++;
  KVCC_RETURN_IF_ERROR(cache_->blocks().AddSession(id));
  lengths_[id] = 0;
  return id;
}

absl::Status Engine::CloseSession(int64_t session) {
  if (!lengths_.count(session)) {
    return absl::NotFoundError(absl::StrCat("no session ", session));
  }
  lengths_.erase(session);
  return cache_->blocks().RemoveSession(session);
}

absl::Status Engine::TruncateSession(int64_t session, int64_t length) {
  auto it = lengths_.find(session);
  if (it == lengths_.end()) return absl::NotFoundError(absl::StrCat("no session ", session));
  if (length < 0 || length > it->second) {
    return absl::OutOfRangeError(absl::StrCat("session ", session, " holds ", it->second,
                                              " tokens; cannot truncate to ", length));
  }
  it->second = length;
  return absl::OkStatus();
}

int64_t Engine::SessionLength(int64_t session) const {
  auto it = lengths_.find(session);
  return it == lengths_.end() ? -1 : it->second;
}

absl::Status Engine::CheckRoom(int64_t session, int64_t extra) const {
  auto it = lengths_.find(session);
  if (it == lengths_.end()) return absl::NotFoundError(absl::StrCat("no session ", session));
  if (it->second + extra > max_context_) {
    return absl::OutOfRangeError(absl::StrCat(
        "session ", session, " would hold ", it->second + extra, " tokens (", it->second,
        " cached + ", extra, " new), beyond the context length of ", max_context_));
  }
  return absl::OkStatus();
}

absl::StatusOr<Tensor> Engine::Append(int64_t session, const std::vector<int32_t>& tokens,
                                      std::vector<float>* all_logits, std::vector<double>* nll) {
  if (tokens.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("session ", session, ": no tokens to prefill"));
  }
  KVCC_RETURN_IF_ERROR(CheckRoom(session, static_cast<int64_t>(tokens.size())));
  Tensor last;
  for (size_t begin = 0; begin < tokens.size(); begin += options_.prefill_chunk) {
    const size_t end = std::min(tokens.size(), begin + static_cast<size_t>(options_.prefill_chunk));
    const int64_t start = lengths_[session];
    const int64_t n = static_cast<int64_t>(end - begin);
    KVCC_RETURN_IF_ERROR(cache_->blocks().Reserve(session, start + n));
    std::vector<int32_t> ids(tokens.begin() + begin, tokens.begin() + end);
    StepBatch batch;
    batch.sessions.assign(n, session);
    for (int64_t i = 0; i < n; ++i) batch.positions.push_back(static_cast<int32_t>(start + i));
    batch.ComputeSeqLens();
    if (all_logits != nullptr) {
      KVCC_ASSIGN_OR_RETURN(auto logits, executor_->Run(ids, batch, cache_.get()));
      all_logits->insert(all_logits->end(), logits.data<float>(),
                         logits.data<float>() + n * vocab_size());
    } else if (nll != nullptr) {
      KVCC_ASSIGN_OR_RETURN(auto logits, executor_->RunOnDevice(ids, batch, cache_.get()));
      // Row i predicts tokens[begin + i + 1]; the last token has nothing to predict.
      std::vector<int32_t> targets(tokens.begin() + begin + 1,
                                   tokens.begin() + std::min(tokens.size(), end + 1));
      if (end == tokens.size()) targets.push_back(-1);
      KVCC_ASSIGN_OR_RETURN(auto values, backend_->TargetNll(logits, targets));
      if (end == tokens.size()) values.pop_back();
      nll->insert(nll->end(), values.begin(), values.end());
    } else {
      // Only the last token's logits are computed (and kept on the device).
      std::vector<int64_t> last_row = {n - 1};
      KVCC_ASSIGN_OR_RETURN(last, executor_->RunOnDevice(ids, batch, cache_.get(), &last_row));
    }
    lengths_[session] = start + n;
  }
  return last;
}

absl::StatusOr<std::vector<float>> Engine::Prefill(int64_t session,
                                                   const std::vector<int32_t>& tokens) {
  KVCC_ASSIGN_OR_RETURN(auto logits, Append(session, tokens, nullptr));
  KVCC_ASSIGN_OR_RETURN(auto host, backend_->ToHost(logits));
  return std::vector<float>(host.data<float>(), host.data<float>() + vocab_size());
}

absl::StatusOr<std::vector<float>> Engine::PrefillAll(int64_t session,
                                                      const std::vector<int32_t>& tokens) {
  std::vector<float> all;
  KVCC_RETURN_IF_ERROR(Append(session, tokens, &all).status());
  return all;
}

absl::StatusOr<std::vector<double>> Engine::PrefillNll(int64_t session,
                                                       const std::vector<int32_t>& tokens) {
  std::vector<double> nll;
  KVCC_RETURN_IF_ERROR(Append(session, tokens, nullptr, &nll).status());
  return nll;
}

absl::StatusOr<int32_t> Engine::PrefillSample(int64_t session, const std::vector<int32_t>& tokens,
                                              const SampleRow& row) {
  KVCC_ASSIGN_OR_RETURN(auto logits, Append(session, tokens, nullptr));
  KVCC_ASSIGN_OR_RETURN(auto ids, backend_->SampleRows(logits, {row}));
  return ids[0];
}

absl::StatusOr<Tensor> Engine::DecodeStep(
    const std::vector<std::pair<int64_t, int32_t>>& session_tokens) {
  if (session_tokens.empty()) return absl::InvalidArgumentError("decode step without sessions");
  std::set<int64_t> seen;
  std::vector<std::pair<int64_t, int64_t>> reserve;
  StepBatch batch;
  std::vector<int32_t> ids;
  for (const auto& [session, token] : session_tokens) {
    if (!seen.insert(session).second) {
      return absl::InvalidArgumentError(absl::StrCat("session ", session,
                                                     " appears twice in one decode step"));
    }
    KVCC_RETURN_IF_ERROR(CheckRoom(session, 1));
    const int64_t pos = lengths_[session];
    reserve.push_back({session, pos + 1});
    batch.sessions.push_back(session);
    batch.positions.push_back(static_cast<int32_t>(pos));
    ids.push_back(token);
  }
  batch.ComputeSeqLens();
  KVCC_RETURN_IF_ERROR(cache_->blocks().Reserve(reserve));
  KVCC_ASSIGN_OR_RETURN(auto logits, executor_->RunOnDevice(ids, batch, cache_.get()));
  for (const auto& [session, token] : session_tokens) ++lengths_[session];
  return logits;
}

absl::StatusOr<std::vector<std::vector<float>>> Engine::Decode(
    const std::vector<std::pair<int64_t, int32_t>>& session_tokens) {
  KVCC_ASSIGN_OR_RETURN(auto device, DecodeStep(session_tokens));
  KVCC_ASSIGN_OR_RETURN(auto logits, backend_->ToHost(device));
  const int64_t vocab = vocab_size();
  std::vector<std::vector<float>> out;
  for (size_t i = 0; i < session_tokens.size(); ++i) {
    out.emplace_back(logits.data<float>() + i * vocab, logits.data<float>() + (i + 1) * vocab);
  }
  return out;
}

absl::StatusOr<std::vector<int32_t>> Engine::DecodeSample(
    const std::vector<std::pair<int64_t, int32_t>>& session_tokens,
    const std::vector<SampleRow>& rows) {
  if (rows.size() != session_tokens.size()) {
    return absl::InvalidArgumentError(absl::StrCat("decode step of ", session_tokens.size(),
                                                   " sessions with ", rows.size(),
                                                   " sampling rows"));
  }
  KVCC_ASSIGN_OR_RETURN(auto logits, DecodeStep(session_tokens));
  return backend_->SampleRows(logits, rows);
}

}  // namespace kvcc::runtime
