// Bulk fp16 -> f32 conversion for the CPU backend's hot loops (weight rows, cached K/V rows):
// the F16C instruction where the CPU has it (checked at run time, so the default build needs
// no -march flag), else the portable HalfToFloatRow. Both are exact, so results are identical.
#pragma once

#include <cstdint>

namespace kvcc::runtime {

void ConvertHalfRow(const uint16_t* in, float* out, int64_t n);

}  // namespace kvcc::runtime
