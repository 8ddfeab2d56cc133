// Column statistics for calibration (the KV observer of `kvcc calibrate`): one thread per
// column walks the rows, so a warp's loads of a row are contiguous, and only the statistics
// leave the device instead of every K and V row.
#ifndef KVCC_CODEGEN_OPS_REDUCE_CUH_
#define KVCC_CODEGEN_OPS_REDUCE_CUH_

#include "ops_common.cuh"

extern "C" __global__ void __launch_bounds__(kvcc_ops_spec::kThreads)
    kvcc_column_ranges(const kvcc::kernels::ColumnRangesParams p) {
  KVCC_OPS_DEPENDENT_ENTRY();
  KVCC_FOR_EACH(c, p.cols) {
    float lo = __int_as_float(0x7f800000), hi = -lo, amax = 0.0f;
    long long bad = 0;
    for (long long r = 0; r < p.rows; ++r) {
      const float v = p.x[r * p.cols + c];
      if (!isfinite(v)) {
        ++bad;
        continue;
      }
      lo = fminf(lo, v);
      hi = fmaxf(hi, v);
      amax = fmaxf(amax, fabsf(v));
    }
    p.out[c] = lo;
    p.out[p.cols + c] = hi;
    p.out[2 * p.cols + c] = amax;
    p.nonfinite[c] = bad;
  }
}

#endif  // KVCC_CODEGEN_OPS_REDUCE_CUH_
