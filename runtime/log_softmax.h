// The log-softmax of a row of logits in double precision: what perplexity, kvcompare's KL
// divergence and the backends' target log-likelihood (Backend::TargetNll) share.
#pragma once

#include <cstdint>

namespace kvcc::runtime {

// log(sum(exp(row[i]))) over a logit row, in double precision with the row's max factored
// out; the negative log-likelihood of token t is LogSumExp(row, n) - row[t].
double LogSumExp(const float* row, int64_t n);

}  // namespace kvcc::runtime
