"""Checks `kvcc synth` checkpoints against Hugging Face's own view of them.

For every checkpoint directory given:
  * the safetensors files (single or sharded through model.safetensors.index.json) hold exactly
    the tensors the architecture declares for config.json, at the declared shapes, as derived
    here independently of kvcc;
  * for architectures that transformers implements (Llama, Mistral, Qwen2), transformers loads
    the checkpoint with no missing, unexpected or mis-shaped weights, and a forward pass gives
    finite logits with a sane spread and bounded hidden states.
InternLM and InternLM2 live outside transformers (remote code). Their tensors are mapped onto
transformers' LlamaForCausalLM the way their modeling code defines them (InternLM: LLaMA with
q/k/v/o bias; InternLM2: wqkv viewed as [kv_heads, group + 2, head_dim, hidden], the group's
query heads then key then value), and the same forward checks run on that model.

Exit status 0 when every checkpoint passes; each failure is printed.
"""

import json
import math
import os
import sys

from safetensors import safe_open

IN_TRANSFORMERS = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"}


def expected_tensors(cfg):
    """{name: shape} as each architecture's HF modeling code declares its parameters."""
    arch = cfg["architectures"][0]
    hidden = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    layers = cfg["num_hidden_layers"]
    inter = cfg["intermediate_size"]
    vocab = cfg["vocab_size"]
    kv_heads = heads if arch == "InternLMForCausalLM" else (
        cfg.get("num_key_value_heads") or heads)
    head_dim = hidden // heads
    if arch in IN_TRANSFORMERS and cfg.get("head_dim"):
        head_dim = cfg["head_dim"]
    tied = bool(cfg.get("tie_word_embeddings", False))
    q, kv = heads * head_dim, kv_heads * head_dim
    out = {}

    def linear(name, rows, cols, bias):
        out[name + ".weight"] = (rows, cols)
        if bias:
            out[name + ".bias"] = (rows,)

    if arch == "InternLM2ForCausalLM":
        bias = cfg.get("bias", True)
        out["model.tok_embeddings.weight"] = (vocab, hidden)
        for i in range(layers):
            p = f"model.layers.{i}."
            out[p + "attention_norm.weight"] = (hidden,)
            out[p + "ffn_norm.weight"] = (hidden,)
            linear(p + "attention.wqkv", q + 2 * kv, hidden, bias)
            linear(p + "attention.wo", hidden, q, bias)
            linear(p + "feed_forward.w1", inter, hidden, False)
            linear(p + "feed_forward.w3", inter, hidden, False)
            linear(p + "feed_forward.w2", hidden, inter, False)
        out["model.norm.weight"] = (hidden,)
        if not tied:
            out["output.weight"] = (vocab, hidden)
        return out

    if arch == "LlamaForCausalLM":
        qkv_bias = o_bias = cfg.get("attention_bias", False)
        mlp_bias = cfg.get("mlp_bias", False)
    elif arch == "Qwen2ForCausalLM":
        qkv_bias, o_bias, mlp_bias = True, False, False
    elif arch == "InternLMForCausalLM":
        qkv_bias = o_bias = cfg.get("bias", True)
        mlp_bias = False
    else:  # Mistral
        qkv_bias = o_bias = mlp_bias = False
    out["model.embed_tokens.weight"] = (vocab, hidden)
    for i in range(layers):
        p = f"model.layers.{i}."
        out[p + "input_layernorm.weight"] = (hidden,)
        out[p + "post_attention_layernorm.weight"] = (hidden,)
        linear(p + "self_attn.q_proj", q, hidden, qkv_bias)
        linear(p + "self_attn.k_proj", kv, hidden, qkv_bias)
        linear(p + "self_attn.v_proj", kv, hidden, qkv_bias)
        linear(p + "self_attn.o_proj", hidden, q, o_bias)
        linear(p + "mlp.gate_proj", inter, hidden, mlp_bias)
        linear(p + "mlp.up_proj", inter, hidden, mlp_bias)
        linear(p + "mlp.down_proj", hidden, inter, mlp_bias)
    out["model.norm.weight"] = (hidden,)
    if not tied:
        out["lm_head.weight"] = (vocab, hidden)
    return out


def stored_tensors(ckpt):
    """{name: (shape, dtype)} over the checkpoint's safetensors files."""
    index = os.path.join(ckpt, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    found = {}
    for name in files:
        with safe_open(os.path.join(ckpt, name), framework="numpy") as f:
            for key in f.keys():
                sl = f.get_slice(key)
                if key in found:
                    raise AssertionError(f"{key} stored twice")
                found[key] = (tuple(sl.get_shape()), sl.get_dtype())
    return found


def check_names_and_shapes(ckpt, cfg, errors):
    want = expected_tensors(cfg)
    have = stored_tensors(ckpt)
    for name in sorted(set(want) - set(have)):
        errors.append(f"{ckpt}: missing tensor {name} {want[name]}")
    for name in sorted(set(have) - set(want)):
        errors.append(f"{ckpt}: unexpected tensor {name} {have[name][0]}")
    for name in sorted(set(want) & set(have)):
        if tuple(want[name]) != have[name][0]:
            errors.append(f"{ckpt}: {name} has shape {have[name][0]}, config implies {want[name]}")
    dtypes = {d for _, d in have.values()}
    torch_dtype = {"float16": "F16", "bfloat16": "BF16", "float32": "F32"}[cfg["torch_dtype"]]
    if dtypes != {torch_dtype}:
        errors.append(f"{ckpt}: stored dtypes {dtypes}, config.json says {cfg['torch_dtype']}")
    return len(have)


def load_state_dict(ckpt):
    import torch
    from safetensors.torch import load_file

    index = os.path.join(ckpt, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    state = {}
    for name in files:
        state.update(load_file(os.path.join(ckpt, name)))
    return {k: v.to(torch.float32) for k, v in state.items()}


def as_llama(ckpt, cfg):
    """An InternLM / InternLM2 checkpoint as the equivalent transformers LlamaForCausalLM."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    arch = cfg["architectures"][0]
    heads = cfg["num_attention_heads"]
    kv_heads = heads if arch == "InternLMForCausalLM" else (
        cfg.get("num_key_value_heads") or heads)
    hidden = cfg["hidden_size"]
    head_dim = hidden // heads
    bias = cfg.get("bias", True)
    llama_cfg = LlamaConfig(
        vocab_size=cfg["vocab_size"], hidden_size=hidden,
        intermediate_size=cfg["intermediate_size"],
        num_hidden_layers=cfg["num_hidden_layers"], num_attention_heads=heads,
        num_key_value_heads=kv_heads, rms_norm_eps=cfg.get("rms_norm_eps", 1e-6),
        rope_theta=cfg.get("rope_theta", 10000.0),
        max_position_embeddings=cfg.get("max_position_embeddings", 2048),
        attention_bias=bias, tie_word_embeddings=cfg.get("tie_word_embeddings", False))
    state = load_state_dict(ckpt)
    if arch == "InternLM2ForCausalLM":
        group = heads // kv_heads
        renames = {"model.tok_embeddings.": "model.embed_tokens.", "output.": "lm_head.",
                   ".attention_norm.": ".input_layernorm.",
                   ".ffn_norm.": ".post_attention_layernorm.",
                   ".attention.wo.": ".self_attn.o_proj.", ".feed_forward.w1.": ".mlp.gate_proj.",
                   ".feed_forward.w3.": ".mlp.up_proj.", ".feed_forward.w2.": ".mlp.down_proj."}
        converted = {}
        for name, t in state.items():
            if ".attention.wqkv." in name:
                # InternLM2's modeling code: rearrange(qkv, "(h gs d) -> h gs d", gs=2+group).
                rest = t.shape[1:]
                t = t.reshape(kv_heads, group + 2, head_dim, *rest)
                q = t[:, :group].reshape(heads * head_dim, *rest)
                k = t[:, -2].reshape(kv_heads * head_dim, *rest)
                v = t[:, -1].reshape(kv_heads * head_dim, *rest)
                prefix, suffix = name.split(".attention.wqkv.")
                for proj, part in (("q_proj", q), ("k_proj", k), ("v_proj", v)):
                    converted[f"{prefix}.self_attn.{proj}.{suffix}"] = part
                continue
            for old, new in renames.items():
                if name.startswith(old) or old.startswith(".") and old in name:
                    name = name.replace(old, new, 1)
                    break
            converted[name] = t
        state = converted
    model = LlamaForCausalLM(llama_cfg).to(torch.float32)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not (llama_cfg.tie_word_embeddings and m == "lm_head.weight")]
    return model, {"missing_keys": missing, "unexpected_keys": unexpected}


def check_forward(ckpt, cfg, errors):
    import torch
    from transformers import AutoModelForCausalLM

    if cfg["architectures"][0] in IN_TRANSFORMERS:
        model, info = AutoModelForCausalLM.from_pretrained(
            ckpt, dtype=torch.float32, output_loading_info=True)
    else:
        model, info = as_llama(ckpt, cfg)
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        if info.get(kind):
            errors.append(f"{ckpt}: transformers reports {kind}: {sorted(info[kind])[:8]}")
    model.eval()
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg["vocab_size"], (2, 24), generator=gen)
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True)
    logits = out.logits
    if not torch.isfinite(logits).all():
        errors.append(f"{ckpt}: non-finite logits")
        return None
    std = logits.std(dim=-1).mean().item()
    if not 0.5 <= std <= 20.0:
        errors.append(f"{ckpt}: logit standard deviation {std:.3f} outside [0.5, 20]")
    top = torch.softmax(logits, dim=-1).max(dim=-1).values.mean().item()
    if top > 0.95:
        errors.append(f"{ckpt}: softmax is degenerate (mean top probability {top:.3f})")
    # Different positions must give different distributions (attention and RoPE at work).
    if torch.allclose(logits[0, 1], logits[0, 2]):
        errors.append(f"{ckpt}: logits identical at two positions")
    for i, h in enumerate(out.hidden_states):
        rms = h.pow(2).mean().sqrt().item()
        if not math.isfinite(rms) or rms > 100.0:
            errors.append(f"{ckpt}: hidden state {i} RMS {rms:.3g} is not sane")
    return std, top


def main(argv):
    if len(argv) < 2:
        print(f"usage: {argv[0]} CHECKPOINT_DIR...", file=sys.stderr)
        return 2
    errors = []
    for ckpt in argv[1:]:
        with open(os.path.join(ckpt, "config.json")) as f:
            cfg = json.load(f)
        arch = cfg["architectures"][0]
        before = len(errors)
        try:
            count = check_names_and_shapes(ckpt, cfg, errors)
            summary = f"{count} tensors match the config"
            stats = check_forward(ckpt, cfg, errors)
            if stats:
                how = "" if arch in IN_TRANSFORMERS else " (as LlamaForCausalLM)"
                summary += (f"; transformers forward{how}: logit std {stats[0]:.2f}, "
                            f"mean top prob {stats[1]:.3f}")
        except Exception as e:  # report and go on to the next checkpoint
            errors.append(f"{ckpt}: {type(e).__name__}: {e}")
            summary = "error"
        status = "ok" if len(errors) == before else "FAIL"
        print(f"{status} {arch} {ckpt}: {summary}")
    for e in errors:
        print("error:", e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
