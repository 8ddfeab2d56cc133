#!/usr/bin/env python3
"""PyTorch peer for `kvcc bench attention`: decode attention with
torch.nn.functional.scaled_dot_product_attention on an fp16 cache, and on an int8 cache that is
dequantized to fp16 first (the plain-PyTorch way to use an int8 cache). Same shapes and
reporting as the kvcc benchmark: median time over CUDA-event-timed calls, K+V bytes of the cache
read per call over that time, and the fraction of the bandwidth ceiling. Like the kvcc bench, a
cache smaller than the L2 is timed over copies of itself used in turn (together >= 3x the L2),
so it is read from memory. --shapes runs several shapes in one process (BATCHxKV_HEADSxSEQ_LEN,
comma-separated; the others from the flags).

Usage: python3 bench/attention_peer.py [--batch 64 --heads 32 --kv-heads 32 --head-dim 128
                                        --seq-len 2048 --iters 40 --peak-tbps 3.03
                                        --shapes 64x8x2048,1x8x8192 --no-int8]
"""
import argparse

import torch
import torch.nn.functional as F


def median_ms(fn, iters, warmup=5):
    """fn(i) for call i (i picks the cache copy)."""
    for i in range(warmup):
        fn(i)
    torch.cuda.synchronize()
    times = []
    for i in range(iters):
        start = torch.cuda.Event(enable_timing=True)
        stop = torch.cuda.Event(enable_timing=True)
        start.record()
        fn(warmup + i)
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    times.sort()
    return times[len(times) // 2]


def copies_for(nbytes):
    l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 << 20)
    return max(1, min(64, -(-3 * l2 // nbytes)))


def run_shape(b, h, kvh, d, s, iters, peak, int8):
    dev = torch.device("cuda")
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}; batch {b}, "
          f"{h} heads / {kvh} kv heads x {d}, {s} tokens")
    q = torch.randn(b, h, 1, d, device=dev, dtype=torch.float16)
    enable_gqa = h != kvh
    print(f"{'variant':<28} {'time_us':>10} {'KV_MB':>10} {'GB/s':>9} {'of_peak':>8} copies")

    def report(name, ms, kv_bytes, n):
        sec = ms * 1e-3
        print(f"{name:<28} {ms * 1e3:>10.1f} {kv_bytes / 1e6:>10.1f} {kv_bytes / sec / 1e9:>9.1f} "
              f"{100 * kv_bytes / sec / peak:>7.1f}% {n:>6}", flush=True)

    # fp16 cache
    kv_bytes = 2 * b * kvh * s * d * 2
    n = copies_for(kv_bytes)
    ks = [torch.randn(b, kvh, s, d, device=dev, dtype=torch.float16) for _ in range(n)]
    vs = [torch.randn(b, kvh, s, d, device=dev, dtype=torch.float16) for _ in range(n)]

    def sdpa(i):
        return F.scaled_dot_product_attention(q, ks[i % n], vs[i % n], enable_gqa=enable_gqa)

    report("sdpa fp16", median_ms(sdpa, iters), kv_bytes, n)
    for name, backend in (("flash backend", torch.nn.attention.SDPBackend.FLASH_ATTENTION),
                          ("mem-efficient", torch.nn.attention.SDPBackend.EFFICIENT_ATTENTION)):
        with torch.nn.attention.sdpa_kernel(backend):
            try:
                report(f"sdpa fp16 ({name})", median_ms(sdpa, iters), kv_bytes, n)
            except RuntimeError as e:
                print(f"sdpa fp16 ({name}): unavailable: {str(e).splitlines()[0]}")
    del ks, vs
    torch.cuda.empty_cache()
    if not int8:
        return

    # int8 cache, per-head scale and zero point, dequantized to fp16 then SDPA
    kv_bytes8 = 2 * b * kvh * s * d
    n = copies_for(kv_bytes8)
    k8 = [torch.randint(-128, 128, (b, kvh, s, d), device=dev, dtype=torch.int8) for _ in range(n)]
    v8 = [torch.randint(-128, 128, (b, kvh, s, d), device=dev, dtype=torch.int8) for _ in range(n)]
    kscale = torch.rand(1, kvh, 1, 1, device=dev, dtype=torch.float16) * 0.02
    kzero = torch.rand(1, kvh, 1, 1, device=dev, dtype=torch.float16) * 0.1

    def int8_sdpa(i):
        k = k8[i % n].to(torch.float16) * kscale + kzero
        v = v8[i % n].to(torch.float16) * kscale + kzero
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=enable_gqa)

    report("dequant int8 + sdpa", median_ms(int8_sdpa, iters), kv_bytes8, n)
    print("(KV_MB counts the bytes of the cache as stored: fp16 for sdpa fp16, int8 for "
          "dequant int8 + sdpa)")
    del k8, v8
    torch.cuda.empty_cache()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=32)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--iters", type=int, default=40)
    p.add_argument("--peak-tbps", type=float, default=3.03)
    p.add_argument("--shapes", default="", help="BATCHxKV_HEADSxSEQ_LEN,... (overrides those)")
    p.add_argument("--no-int8", action="store_true", help="skip dequant int8 + sdpa")
    a = p.parse_args()
    torch.manual_seed(0)
    shapes = [(a.batch, a.kv_heads, a.seq_len)]
    if a.shapes:
        shapes = [tuple(int(x) for x in t.split("x")) for t in a.shapes.split(",")]
    for b, kvh, s in shapes:
        run_shape(b, a.heads, kvh, a.head_dim, s, a.iters, a.peak_tbps * 1e12, not a.no_int8)


if __name__ == "__main__":
    main()
