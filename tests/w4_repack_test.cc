// The packed 4-bit layout on the host (runtime/w4_repack.h): pack then unpack gives back every
// code, scale and zero; each word is lane's mma.m16n8k16 A fragment as the PTX ISA lays it out
// once split by the 0x000F000F mask; the CPU's strip dequantization and packed linear equal the
// plain layout's exactly; shapes the layout cannot hold are refused by name.
#include "runtime/w4_repack.h"

#include <cstring>
#include <random>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "ir/group_quant.h"
#include "ir/half.h"
#include "runtime/cpu_backend.h"
#include "tests/test_util.h"

namespace kvcc::runtime {
namespace {

struct HostW4 {
  Tensor codes, scales, zeros;
};

HostW4 Random(int64_t out, int64_t in, int64_t group, uint32_t seed) {
  std::mt19937 rng(seed);
  HostW4 h;
  h.codes = Tensor::HostZeros(ir::DType::kI4, {out, in});
  h.scales = Tensor::HostZeros(ir::DType::kF16, {out, in / group});
  h.zeros = Tensor::HostZeros(ir::DType::kI4, {out, in / group});
  for (int64_t i = 0; i < out * in; ++i) {
    ir::SetI4(static_cast<uint8_t*>(h.codes.raw()), i, int(rng() % 16) - 8);
  }
  for (int64_t i = 0; i < out * (in / group); ++i) {
    ir::SetI4(static_cast<uint8_t*>(h.zeros.raw()), i, int(rng() % 16) - 8);
    static_cast<uint16_t*>(h.scales.raw())[i] = ir::FloatToHalf(0.001f * (1 + rng() % 100));
  }
  return h;
}

TEST(W4RepackTest, PackThenUnpackIsTheIdentity) {
  for (auto [out, in, group] : {std::tuple{16, 64, 16}, std::tuple{48, 320, 32},
                                std::tuple{32, 256, 64}, std::tuple{64, 384, 128}}) {
    SCOPED_TRACE(absl::StrCat(out, "x", in, " g", group));
    HostW4 h = Random(out, in, group, static_cast<uint32_t>(out * in + group));
    QuantizedWeight w{&h.codes, &h.scales, &h.zeros, group};
    KVCC_ASSERT_OK_AND_ASSIGN(p, PackW4(w, "model.q_proj"));
    EXPECT_EQ(p.codes.size(), static_cast<size_t>(out * in / 8));
    EXPECT_EQ(p.sz.size(), static_cast<size_t>(out * in / group));
    const UnpackedW4 u = UnpackW4(p);
    EXPECT_EQ(0, std::memcmp(u.codes.raw(), h.codes.raw(), h.codes.NumBytes()));
    EXPECT_EQ(0, std::memcmp(u.scales.raw(), h.scales.raw(), h.scales.NumBytes()));
    EXPECT_EQ(0, std::memcmp(u.zeros.raw(), h.zeros.raw(), h.zeros.NumBytes()));
  }
}

TEST(W4RepackTest, NoZerosPackTheMidpoint) {
  HostW4 h = Random(16, 128, 64, 7);
  QuantizedWeight w{&h.codes, &h.scales, nullptr, 64};
  KVCC_ASSERT_OK_AND_ASSIGN(p, PackW4(w, "w"));
  const UnpackedW4 u = UnpackW4(p);
  for (int64_t i = 0; i < 16 * 2; ++i) {
    EXPECT_EQ(ir::GetI4(static_cast<const uint8_t*>(u.zeros.raw()), i), 0);  // z = 8
    EXPECT_EQ(p.sz[i] >> 16, 0x6408u);  // 1024 + 8 as f16
  }
}

// Register r of lane (g = lane / 4, t = lane % 4) of the m16n8k16 A fragment holds rows
// g (r even) or g + 8 (r odd) and mma k indices 2t, 2t + 1 (+ 8 for r >= 2), lower index in the
// low half; layout version 2 maps k index 2t + e of tile j to input 16t + 4j + e of the chunk
// and 2t + 8 + e to 16t + 4j + 2 + e (each lane's inputs contiguous).
TEST(W4RepackTest, WordsAreMmaFragments) {
  const int out = 32, in = 128, group = 32;
  HostW4 h = Random(out, in, group, 11);
  QuantizedWeight w{&h.codes, &h.scales, &h.zeros, group};
  KVCC_ASSERT_OK_AND_ASSIGN(p, PackW4(w, "w"));
  const auto* codes = static_cast<const uint8_t*>(h.codes.raw());
  const int chunks = in / 64;
  for (int strip = 0; strip < out / 16; ++strip) {
    for (int kt = 0; kt < in / 16; ++kt) {
      for (int lane = 0; lane < 32; ++lane) {
        const uint32_t word = p.codes[((strip * chunks + kt / 4) * 32 + lane) * 4 + kt % 4];
        const int g = lane / 4, t = lane % 4;
        for (int r = 0; r < 4; ++r) {
          const uint32_t pair = (word >> (4 * r)) & 0x000F000Fu;
          const int row = strip * 16 + g + 8 * (r % 2);
          const int k = (kt / 4) * 64 + 16 * t + 4 * (kt % 4) + 2 * (r / 2);
          EXPECT_EQ(static_cast<int>(pair & 0xF), ir::I4ToCode(ir::GetI4(codes, row * in + k)));
          EXPECT_EQ(static_cast<int>(pair >> 16),
                    ir::I4ToCode(ir::GetI4(codes, row * in + k + 1)));
        }
      }
    }
  }
  // Scale/zero word of (strip, group, row): low half the scale, high half 1024 + z.
  const auto* scales = static_cast<const uint16_t*>(h.scales.raw());
  const auto* zeros = static_cast<const uint8_t*>(h.zeros.raw());
  const int groups = in / group;
  for (int row = 0; row < out; ++row) {
    for (int gi = 0; gi < groups; ++gi) {
      const uint32_t v = p.sz[((row / 16) * groups + gi) * 16 + row % 16];
      EXPECT_EQ(v & 0xFFFF, scales[row * groups + gi]);
      EXPECT_FLOAT_EQ(ir::HalfToFloat(static_cast<uint16_t>(v >> 16)),
                      1024.0f + ir::I4ToCode(ir::GetI4(zeros, row * groups + gi)));
    }
  }
}

// The stream kernels' dequantization (codegen/w4_stream.cuh) on the packed words, bit for bit
// on the host: registers 0, 2 are `w & 0x000F000F | 0x64006400` (of w, w >> 8) minus the
// zero's 1024 + z, registers 1, 3 `w & 0x00F000F0 | 0x64006400` minus 1024 + 16 z (derived
// from the same scale/zero word), and as f16 halves they must be exactly q - z of rows g and
// 16 (q - z) of rows g + 8 at the fragment's inputs.
TEST(W4RepackTest, StreamDequantizationGivesExactCodeMinusZero) {
  const int out = 32, in = 256, group = 64;
  HostW4 h = Random(out, in, group, 13);
  QuantizedWeight w{&h.codes, &h.scales, &h.zeros, group};
  KVCC_ASSERT_OK_AND_ASSIGN(p, PackW4(w, "w"));
  const auto* codes = static_cast<const uint8_t*>(h.codes.raw());
  const auto* zeros = static_cast<const uint8_t*>(h.zeros.raw());
  const int chunks = in / 64, groups = in / group;
  auto half_sub = [](uint32_t a, uint32_t b, int half) {
    return ir::HalfToFloat(static_cast<uint16_t>(a >> (16 * half))) -
           ir::HalfToFloat(static_cast<uint16_t>(b >> (16 * half)));
  };
  for (int strip = 0; strip < out / 16; ++strip) {
    for (int kt = 0; kt < in / 16; ++kt) {
      const int gi = kt * 16 / group;
      for (int lane = 0; lane < 32; ++lane) {
        const int g = lane / 4, t = lane % 4;
        const uint32_t word = p.codes[((strip * chunks + kt / 4) * 32 + lane) * 4 + kt % 4];
        const uint32_t sz_lo = p.sz[(strip * groups + gi) * 16 + g];
        const uint32_t sz_hi = p.sz[(strip * groups + gi) * 16 + g + 8];
        const uint32_t zl = (sz_lo >> 16) * 0x10001u;
        const uint32_t zhi = (((sz_hi >> 16) - 0x6400u) << 4) + 0x6400u;
        const uint32_t zh = zhi * 0x10001u;
        const uint32_t w8 = word >> 8;
        const uint32_t regs[4] = {(word & 0x000F000Fu) | 0x64006400u,
                                  (word & 0x00F000F0u) | 0x64006400u,
                                  (w8 & 0x000F000Fu) | 0x64006400u,
                                  (w8 & 0x00F000F0u) | 0x64006400u};
        for (int r = 0; r < 4; ++r) {
          const int row = strip * 16 + g + 8 * (r % 2);
          const int z = ir::I4ToCode(ir::GetI4(zeros, row * groups + gi));
          for (int half = 0; half < 2; ++half) {
            const int k = (kt / 4) * 64 + 16 * t + 4 * (kt % 4) + 2 * (r / 2) + half;
            const int q = ir::I4ToCode(ir::GetI4(codes, row * in + k));
            EXPECT_EQ(half_sub(regs[r], r % 2 ? zh : zl, half), (r % 2 ? 16.0f : 1.0f) * (q - z))
                << "strip " << strip << " tile " << kt << " lane " << lane << " reg " << r;
          }
        }
      }
    }
  }
}

// Every element of every strip is (q - z) * s of the plain layout, bit for bit.
TEST(W4RepackTest, StripDequantizationEqualsThePlainFormula) {
  for (auto [out, in, group, zeros] : {std::tuple{32, 256, 64, true}, std::tuple{48, 320, 32, false},
                                       std::tuple{16, 384, 128, true}, std::tuple{16, 64, 16, true}}) {
    SCOPED_TRACE(absl::StrCat(out, "x", in, " g", group, zeros ? "" : " no zeros"));
    HostW4 h = Random(out, in, group, static_cast<uint32_t>(in + group));
    QuantizedWeight w{&h.codes, &h.scales, zeros ? &h.zeros : nullptr, group};
    KVCC_ASSERT_OK_AND_ASSIGN(p, PackW4(w, "w"));
    const auto* codes = static_cast<const uint8_t*>(h.codes.raw());
    const auto* zs = static_cast<const uint8_t*>(h.zeros.raw());
    const auto* scales = static_cast<const uint16_t*>(h.scales.raw());
    const int groups = in / group;
    std::vector<float> rows(16 * in);
    for (int strip = 0; strip < out / 16; ++strip) {
      DequantizeW4Strip(p.codes.data(), p.sz.data(), in, group, strip, rows.data());
      for (int r = 0; r < 16; ++r) {
        const int row = strip * 16 + r;
        for (int k = 0; k < in; ++k) {
          const int gi = row * groups + k / group;
          const int z = zeros ? ir::GetI4(zs, gi) : 0;
          const float want = static_cast<float>(ir::GetI4(codes, row * in + k) - z) *
                             ir::HalfToFloat(scales[gi]);
          ASSERT_EQ(rows[r * in + k], want) << "row " << row << " input " << k;
        }
      }
    }
  }
}

// The CPU backend's linear on the packed words (what a compiled artifact runs) is the plain
// layout's result exactly; its operands are checked like the plain ones.
TEST(W4RepackTest, CpuPackedLinearEqualsThePlainLinear) {
  CpuBackend cpu(2);
  const int64_t out = 48, in = 256, group = 64;
  HostW4 h = Random(out, in, group, 21);
  QuantizedWeight plain{&h.codes, &h.scales, &h.zeros, group};
  KVCC_ASSERT_OK_AND_ASSIGN(p, PackW4(plain, "w"));
  Tensor words = Tensor::HostZeros(ir::DType::kI32, {out, in / 8});
  Tensor sz = Tensor::HostZeros(ir::DType::kI32, {out, in / group});
  std::memcpy(words.raw(), p.codes.data(), p.codes.size() * 4);
  std::memcpy(sz.raw(), p.sz.data(), p.sz.size() * 4);
  QuantizedWeight packed{&words, &sz, nullptr, group, true};
  Tensor bias = Tensor::HostZeros(ir::DType::kF32, {out});
  for (int64_t o = 0; o < out; ++o) bias.data<float>()[o] = 0.01f * static_cast<float>(o);
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  for (int64_t tokens : {1, 5, 33}) {
    Tensor x = Tensor::HostZeros(ir::DType::kF32, {tokens, in});
    for (int64_t i = 0; i < tokens * in; ++i) x.data<float>()[i] = nd(rng);
    KVCC_ASSERT_OK_AND_ASSIGN(want, cpu.QuantizedLinear(x, plain, &bias));
    KVCC_ASSERT_OK_AND_ASSIGN(got, cpu.QuantizedLinear(x, packed, &bias));
    ASSERT_EQ(0, std::memcmp(got.raw(), want.raw(), want.NumBytes())) << tokens << " tokens";
  }
  // Words of the wrong shape, or zeros beside packed words: refused, not read past.
  Tensor x = Tensor::HostZeros(ir::DType::kF32, {1, in});
  Tensor short_words = Tensor::HostZeros(ir::DType::kI32, {out, in / 16});
  QuantizedWeight bad{&short_words, &sz, nullptr, group, true};
  EXPECT_FALSE(cpu.QuantizedLinear(x, bad, nullptr).ok());
  QuantizedWeight with_zeros{&words, &sz, &h.zeros, group, true};
  EXPECT_FALSE(cpu.QuantizedLinear(x, with_zeros, nullptr).ok());
  Tensor x_wide = Tensor::HostZeros(ir::DType::kF32, {1, 2 * in});
  EXPECT_FALSE(cpu.QuantizedLinear(x_wide, packed, nullptr).ok());
}

TEST(W4RepackTest, RefusesShapesTheLayoutCannotHold) {
  struct Case {
    int64_t out, in, group;
  };
  for (const Case& c : {Case{24, 128, 64}, Case{32, 96, 32}, Case{32, 128, 8}, Case{32, 192, 24},
                        Case{16, 172, 4}, Case{16, 192, 48}, Case{16, 192, 96}}) {
    SCOPED_TRACE(absl::StrCat(c.out, "x", c.in, " g", c.group));
    HostW4 h = Random(c.out, c.in, c.group, 3);
    QuantizedWeight w{&h.codes, &h.scales, &h.zeros, c.group};
    auto p = PackW4(w, "model.layers.0.mlp.down_proj");
    ASSERT_FALSE(p.ok());
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(p.status().message().find("model.layers.0.mlp.down_proj"), std::string::npos)
        << p.status();
  }
  // f32 scales: the packed words hold f16.
  HostW4 h = Random(16, 64, 32, 3);
  Tensor s32 = Tensor::HostZeros(ir::DType::kF32, {16, 2});
  QuantizedWeight w{&h.codes, &s32, &h.zeros, 32};
  auto p = PackW4(w, "lm.o_proj");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("lm.o_proj"), std::string::npos) << p.status();
}

}  // namespace
}  // namespace kvcc::runtime
