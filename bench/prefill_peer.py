#!/usr/bin/env python3
"""Hugging Face transformers peer for `kvcc bench prefill`: LlamaForCausalLM at a config.json's
shapes with random fp16 weights, one forward of a single prompt with plain SDPA attention and a
fresh DynamicCache (every layer's K/V kept, logits of the last token only), timed with CUDA
events. Prints time to first token, tokens/s and TFLOP/s over the same work kvcc counts (the
linear layers over every token, causal attention, one row of lm_head), in kvcc's columns.

Usage: python3 bench/prefill_peer.py --config models/configs/llama-2-7b.json
                                     [--prompt 512,2048,8192] [--iters 5]
"""
import argparse

import torch
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

from attention_peer import median_ms  # this script's folder is on sys.path


def prefill_flops(config, tokens):
    h, inter, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    head_dim = getattr(config, "head_dim", None) or h // config.num_attention_heads
    kv = config.num_key_value_heads * head_dim
    linear = h * (h + 2 * kv) + h * h + 3 * h * inter  # qkv, o, gate/up/down
    attention = 2 * 2 * config.num_attention_heads * head_dim * tokens * (tokens + 1) / 2
    return layers * (2.0 * linear * tokens + attention) + 2.0 * h * config.vocab_size


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--prompt", default="512,2048,8192")
    p.add_argument("--iters", type=int, default=5)
    a = p.parse_args()
    torch.manual_seed(0)
    dev = torch.device("cuda")
    config = LlamaConfig.from_json_file(a.config)
    config._attn_implementation = "sdpa"
    with dev:
        model = LlamaForCausalLM._from_config(config, dtype=torch.float16).eval()
    print(f"transformers peer (sdpa, DynamicCache, last-token logits) on "
          f"{torch.cuda.get_device_name(0)}: {a.config}")
    print(f"{'tokens':>8} {'TTFT ms':>10} {'tokens/s':>12} {'TFLOP/s':>10}")
    for n in [int(t) for t in a.prompt.split(",") if t]:
        ids = torch.randint(0, config.vocab_size, (1, n), device=dev)

        def step():
            with torch.no_grad():
                out = model(input_ids=ids, past_key_values=DynamicCache(), use_cache=True,
                            logits_to_keep=1)
                return out.logits[:, -1].argmax(-1)

        ms = median_ms(step, a.iters, warmup=2)
        print(f"{n:>8} {ms:>10.2f} {1e3 * n / ms:>12.0f} "
              f"{prefill_flops(config, n) / (ms * 1e-3) / 1e12:>10.1f}", flush=True)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
