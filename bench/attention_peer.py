#!/usr/bin/env python3
"""PyTorch peer for `kvcc bench attention`: decode attention with
torch.nn.functional.scaled_dot_product_attention on an fp16 cache, and on an int8 cache that is
dequantized to fp16 first (the plain-PyTorch way to use an int8 cache). Same shapes and
reporting as the kvcc benchmark: median time over CUDA-event-timed calls, K+V bytes of the cache
read per call over that time, and the fraction of the bandwidth ceiling.

Usage: python3 bench/attention_peer.py [--batch 64 --heads 32 --kv-heads 32 --head-dim 128
                                        --seq-len 2048 --iters 40 --peak-tbps 3.03]
"""
import argparse

import torch
import torch.nn.functional as F


def median_ms(fn, iters, warmup=5):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start = torch.cuda.Event(enable_timing=True)
        stop = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    times.sort()
    return times[len(times) // 2]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=32)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--iters", type=int, default=40)
    p.add_argument("--peak-tbps", type=float, default=3.03)
    a = p.parse_args()
    dev = torch.device("cuda")
    torch.manual_seed(0)
    b, h, kvh, d, s = a.batch, a.heads, a.kv_heads, a.head_dim, a.seq_len
    peak = a.peak_tbps * 1e12
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}; batch {b}, "
          f"{h} heads / {kvh} kv heads x {d}, {s} tokens")
    q = torch.randn(b, h, 1, d, device=dev, dtype=torch.float16)
    enable_gqa = h != kvh
    print(f"{'variant':<28} {'time_us':>10} {'KV_MB':>10} {'GB/s':>9} {'of_peak':>8}")

    def report(name, ms, kv_bytes):
        sec = ms * 1e-3
        print(f"{name:<28} {ms * 1e3:>10.1f} {kv_bytes / 1e6:>10.1f} {kv_bytes / sec / 1e9:>9.1f} "
              f"{100 * kv_bytes / sec / peak:>7.1f}%", flush=True)

    # fp16 cache
    k = torch.randn(b, kvh, s, d, device=dev, dtype=torch.float16)
    v = torch.randn(b, kvh, s, d, device=dev, dtype=torch.float16)
    kv_bytes = 2 * k.numel() * 2
    ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=enable_gqa), a.iters)
    report("sdpa fp16", ms, kv_bytes)
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.FLASH_ATTENTION):
        try:
            ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=enable_gqa),
                           a.iters)
            report("sdpa fp16 (flash backend)", ms, kv_bytes)
        except RuntimeError as e:
            print(f"sdpa fp16 (flash backend): unavailable: {str(e).splitlines()[0]}")
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.EFFICIENT_ATTENTION):
        try:
            ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=enable_gqa),
                           a.iters)
            report("sdpa fp16 (mem-efficient)", ms, kv_bytes)
        except RuntimeError as e:
            print(f"sdpa fp16 (mem-efficient): unavailable: {str(e).splitlines()[0]}")
    del k, v
    torch.cuda.empty_cache()

    # int8 cache, per-head scale and zero point, dequantized to fp16 then SDPA
    k8 = torch.randint(-128, 128, (b, kvh, s, d), device=dev, dtype=torch.int8)
    v8 = torch.randint(-128, 128, (b, kvh, s, d), device=dev, dtype=torch.int8)
    ks = torch.rand(1, kvh, 1, 1, device=dev, dtype=torch.float16) * 0.02
    kz = torch.rand(1, kvh, 1, 1, device=dev, dtype=torch.float16) * 0.1
    kv_bytes8 = 2 * k8.numel()

    def int8_sdpa():
        k = k8.to(torch.float16) * ks + kz
        v = v8.to(torch.float16) * ks + kz
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=enable_gqa)

    ms = median_ms(int8_sdpa, a.iters)
    report("dequant int8 + sdpa", ms, kv_bytes8)
    print("(KV_MB counts the bytes of the cache as stored: fp16 for sdpa fp16, int8 for "
          "dequant int8 + sdpa)")


if __name__ == "__main__":
    main()
