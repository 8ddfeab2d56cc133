#!/usr/bin/env python3
"""Peer of `kvcc bench prefill_attention`: PyTorch's SDPA with the flash backend, causal, at the
same shapes (prompts x heads x head_dim, MHA and GQA), fp16 contiguous [batch, heads, tokens,
head_dim] tensors. Prints time and TFLOP/s counted as kvcc counts them (4 * D * H * L(L+1)/2)."""
import argparse

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def median_ms(fn, iters):
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for i in range(iters + 2):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        if i >= 2:
            times.append(start.elapsed_time(stop))
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", default="512,2048,8192")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", default="32,8")
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--iters", type=int, default=20)
    a = ap.parse_args()
    dev = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print(f"{'kv_h':<6} {'prompt':>6} {'mode':<10} {'time_ms':>10} {'TFLOP/s':>9}")
    for kvh in (int(x) for x in a.kv_heads.split(",")):
        for L in (int(x) for x in a.prompts.split(",")):
            q = torch.randn(a.batch, a.heads, L, a.head_dim, device=dev, dtype=torch.float16)
            k = torch.randn(a.batch, kvh, L, a.head_dim, device=dev, dtype=torch.float16)
            v = torch.randn_like(k)
            flops = 4.0 * a.batch * a.heads * a.head_dim * L * (L + 1) / 2
            runs = []
            if kvh == a.heads:
                runs.append(("mha", lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)))
            else:
                runs.append(("gqa", lambda: F.scaled_dot_product_attention(
                    q, k, v, is_causal=True, enable_gqa=True)))
                ke = k.repeat_interleave(a.heads // kvh, dim=1)
                ve = v.repeat_interleave(a.heads // kvh, dim=1)
                runs.append(("expanded", lambda: F.scaled_dot_product_attention(
                    q, ke, ve, is_causal=True)))
            for mode, fn in runs:
                try:
                    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                        ms = median_ms(fn, a.iters)
                except RuntimeError as e:  # e.g. no GQA in this build's flash backend
                    print(f"{kvh:<6} {L:>6} {mode:<10} unavailable: {str(e).splitlines()[0]}")
                    continue
                print(f"{kvh:<6} {L:>6} {mode:<10} {ms:>10.3f} {flops / ms / 1e9:>9.1f}")


if __name__ == "__main__":
    main()
