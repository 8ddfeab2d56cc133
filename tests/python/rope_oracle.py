"""Test oracle for tests/hf_config_test.cc: the rotary inverse frequencies transformers computes
for each config.json given, as JSON on stdout.

  python rope_oracle.py CONFIG.json... > out.json

For each config: {"inv_freq": [...], "attention_scaling": a, "seq_len": L, "long_inv_freq": [...]},
where inv_freq is what the model's rotary embedding holds after loading (the model's own
*RotaryEmbedding class, or for rope_parameters nested per layer type ROPE_INIT_FUNCTIONS with
that layer type, every layer type the model uses checked to agree) and long_inv_freq the
frequencies at sequence length L = 3 * max_position_embeddings (they differ only for dynamic
NTK scaling). Native architectures (Llama, Mistral, Qwen2) are read by transformers itself, in
either layout. InternLM and InternLM2 are remote code; their rotary embeddings are the transformers
formulas (InternLM2's were copied from LlamaDynamicNTKScalingRotaryEmbedding), so their documented
keys (InternLM: rotary.base/type/scaling_factor, InternLM2: rope_theta/rope_scaling) are handed
to a LlamaConfig.
"""
import importlib
import json
import sys

import torch
import transformers
from transformers import AutoConfig, LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS


def remote_code_as_llama(d):
    if d["model_type"] == "internlm":
        rotary = d.get("rotary") or {}
        theta = float(rotary.get("base", 10000.0))
        scaling = None
        if rotary.get("type", "origin") == "dynamic":
            scaling = {"rope_type": "dynamic", "factor": float(rotary.get("scaling_factor", 1.0))}
    else:
        theta = float(d.get("rope_theta", 10000.0))
        scaling = d.get("rope_scaling")
        if scaling is not None:
            scaling = {"rope_type": scaling["type"], "factor": float(scaling["factor"])}
    params = dict(scaling or {"rope_type": "default"}, rope_theta=theta)
    return LlamaConfig(hidden_size=d["hidden_size"], num_attention_heads=d["num_attention_heads"],
                       num_key_value_heads=d.get("num_key_value_heads", d["num_attention_heads"]),
                       max_position_embeddings=d["max_position_embeddings"],
                       rope_parameters=params)


def load(d):
    if d["model_type"] in ("internlm", "internlm2"):
        return remote_code_as_llama(d)
    cls = AutoConfig.for_model(d["model_type"]).__class__
    return cls.from_dict(d)


def rotary_class(config):
    mt = config.model_type
    module = importlib.import_module(f"transformers.models.{mt}.modeling_{mt}")
    return getattr(module, type(config).__name__.replace("Config", "RotaryEmbedding"))


def frequencies(config, seq_len):
    nested = config.nested_rope_parameter_keys(config.rope_parameters)
    if not nested:
        if seq_len is None:
            rope = rotary_class(config)(config)
            return rope.inv_freq, rope.attention_scaling
        rope_type = config.rope_parameters["rope_type"]
        if rope_type == "default":
            rope = rotary_class(config)(config)
            return rope.inv_freq, rope.attention_scaling
        return ROPE_INIT_FUNCTIONS[rope_type](config, None, seq_len=seq_len)
    results = []
    for layer_type in sorted(set(config.layer_types)):
        rope_type = config.rope_parameters[layer_type]["rope_type"]
        results.append(ROPE_INIT_FUNCTIONS[rope_type](config, None, seq_len=seq_len,
                                                      layer_type=layer_type))
    for inv, scaling in results[1:]:
        assert torch.equal(inv, results[0][0]) and scaling == results[0][1], "layer types differ"
    return results[0]


def main():
    out = {"transformers": transformers.__version__, "configs": {}}
    for path in sys.argv[1:]:
        with open(path) as f:
            config = load(json.load(f))
        inv, scaling = frequencies(config, None)
        seq_len = 3 * config.max_position_embeddings
        long_inv, _ = frequencies(config, seq_len)
        out["configs"][path] = {
            "inv_freq": [float(x) for x in inv.float()],
            "attention_scaling": float(scaling),
            "seq_len": seq_len,
            "long_inv_freq": [float(x) for x in long_inv.float()],
        }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
