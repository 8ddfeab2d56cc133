#!/usr/bin/env python3
"""PyTorch peer for `kvcc bench w4`: torch._weight_int4pack_mm (the tinygemm W4A16 kernel
gpt-fast and torchao use; bf16 activations, groupwise scale and zero) against torch.matmul in
fp16 (cuBLAS) at the same 7B layer shapes and batches, median of CUDA-event-timed calls, in the
columns kvcc prints. The packing API changed across releases: from torch 2.5 on,
_convert_weight_to_int4pack takes uint8 [N, K / 2] (two codes per byte, the even input in the
high nibble); older releases took int32 [N, K].

Usage: python3 bench/w4_peer.py [--batches 1,2,4,8,16,32,64,2048] [--group 128] [--iters 50]
"""
import argparse
import torch

from attention_peer import median_ms  # this script's folder is on sys.path

SHAPES = [(4096, 12288), (4096, 4096), (4096, 22016), (11008, 4096)]


def pack_int4(q, inner_k_tiles):
    """q: int32 [N, K] codes 0..15 on the GPU -> the tinygemm layout."""
    try:
        packed = ((q[:, ::2] << 4) | q[:, 1::2]).to(torch.uint8)
        return torch._convert_weight_to_int4pack(packed, inner_k_tiles)
    except (RuntimeError, TypeError):
        return torch._convert_weight_to_int4pack(q, inner_k_tiles)


def check(x, wp, group, sz, q, scales, zeros):
    """The int4 kernel against the dequantized weight, so a wrong packing cannot pass."""
    w = ((q.float() - 8) * scales.repeat_interleave(group, 1) +
         zeros.repeat_interleave(group, 1)).to(torch.bfloat16)
    want = x.float() @ w.float().t()
    got = torch._weight_int4pack_mm(x, wp, group, sz).float()
    err = (got - want).abs().max().item() / want.abs().max().item()
    print(f"check: _weight_int4pack_mm vs its dequantized weight, max rel error {err:.3g}"
          + ("" if err <= 2e-2 else " -- PACKING MISMATCH, timings below are of a wrong layout"))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batches", default="1,2,4,8,16,32,64,2048")
    p.add_argument("--group", type=int, default=128)
    p.add_argument("--iters", type=int, default=50)
    a = p.parse_args()
    dev = torch.device("cuda")
    torch.manual_seed(0)
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}")
    print(f"{'in x out':<12} {'batch':>6} {'f16 us':>12} {'int4mm us':>12} {'speedup':>8}")
    for k, n in SHAPES:
        q = torch.randint(0, 16, (n, k), dtype=torch.int32, device=dev)
        wp = pack_int4(q, 8)
        groups = k // a.group
        scales = (torch.rand(n, groups, device=dev) * 0.01 + 0.001)
        zeros = (torch.rand(n, groups, device=dev) - 0.5) * 0.01
        sz = torch.stack([scales.t(), zeros.t()], dim=2).to(torch.bfloat16).contiguous()
        w16 = torch.randn(n, k, dtype=torch.float16, device=dev) * 0.02
        checked = False
        for t in [int(b) for b in a.batches.split(",")]:
            x16 = torch.randn(t, k, dtype=torch.float16, device=dev)
            xb = x16.to(torch.bfloat16)
            if not checked:
                check(xb, wp, a.group, sz, q, scales, zeros)
                checked = True
            f16 = median_ms(lambda: torch.matmul(x16, w16.t()), a.iters)
            i4 = median_ms(lambda: torch._weight_int4pack_mm(xb, wp, a.group, sz), a.iters)
            print(f"{f'{k}x{n}':<12} {t:>6} {f16 * 1e3:>12.1f} {i4 * 1e3:>12.1f} {f16 / i4:>7.2f}x")


if __name__ == "__main__":
    main()
