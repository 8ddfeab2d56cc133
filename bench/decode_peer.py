#!/usr/bin/env python3
"""Hugging Face transformers peer for `kvcc bench decode`: LlamaForCausalLM at a config.json's
shapes with random fp16 weights, a StaticCache whose first --context positions hold random K/V
for every sequence, and one decode step (logits of the new token, greedy pick on the GPU)
captured in a CUDA graph and replayed -- the fastest plain-transformers decode. Reports, per
batch, the median step time over CUDA-event-timed replays and tokens/s, in the columns kvcc
prints, so the two tables sit side by side. --eager times the uncaptured step instead.

Usage: python3 bench/decode_peer.py --config models/configs/llama-2-7b.json
                                    [--batches 1,8,32,64] [--context 2048] [--iters 20] [--eager]
"""
import argparse

import torch
from transformers import LlamaConfig, LlamaForCausalLM, StaticCache

from attention_peer import median_ms  # this script's folder is on sys.path


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--batches", default="1,8,32,64")
    p.add_argument("--context", type=int, default=2048)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--eager", action="store_true")
    a = p.parse_args()
    torch.manual_seed(0)
    dev = torch.device("cuda")
    config = LlamaConfig.from_json_file(a.config)
    with dev:
        model = LlamaForCausalLM._from_config(config, dtype=torch.float16).eval()
    mode = "eager" if a.eager else "CUDA graph"
    print(f"transformers peer ({mode}, static cache, sdpa) on {torch.cuda.get_device_name(0)}: "
          f"{a.config}, context {a.context}")
    print(f"{'cache':>6} {'batch':>6} {'step ms':>10} {'tokens/s':>12}")
    for batch in [int(b) for b in a.batches.split(",") if b]:
        cache = StaticCache(config=config, max_cache_len=a.context + 8)
        ids = torch.zeros(batch, 1, dtype=torch.long, device=dev)
        pos = torch.zeros(1, dtype=torch.long, device=dev)
        with torch.no_grad():
            # One token per sequence makes the cache allocate its tensors; then the first
            # `context` positions get random keys and values.
            model(input_ids=ids, cache=cache, cache_position=pos, use_cache=True)
            for layer in cache.layers:
                layer.keys.normal_()
                layer.values.normal_()
            pos.fill_(a.context)

            def step():
                logits = model(input_ids=ids, cache=cache, cache_position=pos,
                               position_ids=pos.expand(batch, 1), use_cache=True).logits
                return logits[:, -1].argmax(-1)

            if a.eager:
                run = step
            else:
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(3):
                        step()
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    step()
                run = graph.replay
            ms = median_ms(run, a.iters, warmup=3)
        print(f"{'f16':>6} {batch:>6} {ms:>10.3f} {1e3 * batch / ms:>12.0f}", flush=True)
        del cache
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
