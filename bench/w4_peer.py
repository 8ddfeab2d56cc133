#!/usr/bin/env python3
"""PyTorch peer for `kvcc bench w4`: torch._weight_int4pack_mm (the tinygemm W4A16 kernel
gpt-fast and torchao use; bf16 activations, groupwise scale and zero) against torch.matmul in
fp16 (cuBLAS) at the same 7B layer shapes and batches, median of CUDA-event-timed calls, in the
columns kvcc prints. The packing API changed across releases: from torch 2.5 on,
_convert_weight_to_int4pack takes uint8 [N, K / 2] (two codes per byte, the even input in the
high nibble); older releases took int32 [N, K].

As in `kvcc bench w4 --w4-cold`, each call takes the next of enough weight copies that none is
read from the L2 (--warm: one copy). Two timings per call: the median of CUDA-event-timed eager
calls, and the mean of a CUDA graph of --iters calls (the "graph" column kvcc prints). Also the
share of the read bandwidth a 2 GiB read measures (fp16 and int4 weight bytes per call).

Usage: python3 bench/w4_peer.py [--batches 1,2,4,8,16,32,64,2048] [--group 128] [--iters 50]
    [--warm]
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


def graph_us(fn, iters):
    """Mean microseconds per call of a CUDA graph of `iters` calls fn(0..iters-1)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for i in range(3):
            fn(i)
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for i in range(iters):
            fn(i)
    g.replay()
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    stop = torch.cuda.Event(enable_timing=True)
    reps = 5
    start.record()
    for _ in range(reps):
        g.replay()
    stop.record()
    stop.synchronize()
    return start.elapsed_time(stop) * 1e3 / (reps * iters)


def copies(nbytes, warm):
    return 1 if warm else max(1, min(64, -(-160_000_000 // int(nbytes))))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batches", default="1,2,4,8,16,32,64,2048")
    p.add_argument("--group", type=int, default=128)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--warm", action="store_true")
    a = p.parse_args()
    dev = torch.device("cuda")
    torch.manual_seed(0)
    probe = torch.empty(1 << 29, dtype=torch.float32, device=dev)
    read_ms = median_ms(lambda i: probe.sum(), 10)
    bw = probe.numel() * 4 / (read_ms * 1e-3)
    del probe
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}; read probe "
          f"{bw / 1e12:.2f} TB/s; {'one weight copy (L2-warm)' if a.warm else 'weights cycled beyond the L2'}")
    print(f"{'in x out':<12} {'batch':>6} {'f16 us':>9} {'int4mm us':>10} {'f16 grph':>9} "
          f"{'i4 grph':>9} {'speedup':>8} {'i4 bw':>7} {'f16 bw':>7}")
    for k, n in SHAPES:
        groups = k // a.group
        i4_bytes = n * k / 2 + n * groups * 4
        f16_bytes = n * k * 2
        n4, n16 = copies(i4_bytes, a.warm), copies(f16_bytes, a.warm)
        q = torch.randint(0, 16, (n, k), dtype=torch.int32, device=dev)
        wp = pack_int4(q, 8)
        scales = (torch.rand(n, groups, device=dev) * 0.01 + 0.001)
        zeros = (torch.rand(n, groups, device=dev) - 0.5) * 0.01
        sz = torch.stack([scales.t(), zeros.t()], dim=2).to(torch.bfloat16).contiguous()
        wps = [wp] + [wp.clone() for _ in range(n4 - 1)]
        szs = [sz] + [sz.clone() for _ in range(n4 - 1)]
        w16s = [torch.randn(n, k, dtype=torch.float16, device=dev) * 0.02 for _ in range(n16)]
        checked = False
        for t in [int(b) for b in a.batches.split(",")]:
            x16 = torch.randn(t, k, dtype=torch.float16, device=dev)
            xb = x16.to(torch.bfloat16)
            if not checked:
                check(xb, wp, a.group, sz, q, scales, zeros)
                checked = True
            f16_fn = lambda i: torch.matmul(x16, w16s[i % n16].t())
            i4_fn = lambda i: torch._weight_int4pack_mm(xb, wps[i % n4], a.group, szs[i % n4])
            f16 = median_ms(f16_fn, a.iters) * 1e3
            i4 = median_ms(i4_fn, a.iters) * 1e3
            f16g = graph_us(f16_fn, a.iters)
            i4g = graph_us(i4_fn, a.iters)
            print(f"{f'{k}x{n}':<12} {t:>6} {f16:>9.1f} {i4:>10.1f} {f16g:>9.1f} {i4g:>9.1f} "
                  f"{f16g / i4g:>7.2f}x {100 * i4_bytes / (i4g * 1e-6) / bw:>6.1f}% "
                  f"{100 * f16_bytes / (f16g * 1e-6) / bw:>6.1f}%")
        del wps, szs, w16s


if __name__ == "__main__":
    main()
