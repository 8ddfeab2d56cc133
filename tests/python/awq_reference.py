"""An independent reference for the 4-bit checkpoint formats kvcc imports
(tests/w4_checkpoint_format_test.cc), written from the published formats with numpy only:

  AutoAWQ GEMM (awq/modules/linear/gemm.py, WQLinear_GEMM.from_linear):
    qweight int32 [in, out/8]: word c of input row i holds outputs 8c + ORDER[p] in nibble p,
    ORDER = [0, 2, 4, 6, 1, 3, 5, 7]; qzeros int32 [in/G, out/8] likewise (raw zeros);
    scales fp16 [in/G, out]; w[o, i] = (q - z) * s.
  GPTQ (auto_gptq QuantLinear.pack, checkpoint_format "gptq"):
    qweight int32 [in/8, out]: word r of output column o holds inputs 8r + k in nibble k;
    qzeros int32 [in/G, out/8]: nibble k = output 8c + k, storing (z - 1) & 15;
    scales fp16 [in/G, out]; g_idx int32 [in] = i // G.

  awq_reference.py SRC_DIR OUT_DIR GROUP_AWQ GROUP_GPTQ SEED [SKIP ...]
      SRC_DIR is a float checkpoint (config.json + model.safetensors). Every linear's weight
      is replaced by random codes q, zeros z (0..15, both ends included) and fp16 scales s;
      OUT_DIR/awq and OUT_DIR/gptq hold them packed, OUT_DIR/dequant the f32 weights
      (q - z) * s computed in f32, every other tensor copied. Linears whose name contains a
      SKIP string stay float in all three (AWQ's modules_to_not_convert). When OUT_DIR/ids
      (int32) exists and transformers imports, OUT_DIR/logits gets the fp32 logits of the
      dequantized model for those ids (float32 [tokens, vocab]).
"""

import json
import os
import shutil
import sys

import numpy as np
from safetensors.numpy import load_file, save_file

AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def pack_awq(values, order):
    """values uint [rows, out] -> int32 [rows, out/8], nibble p = column 8c + order[p]."""
    rows, out = values.shape
    v = values.astype(np.uint32).reshape(rows, out // 8, 8)
    word = np.zeros((rows, out // 8), dtype=np.uint32)
    for p in range(8):
        word |= v[:, :, order[p]] << np.uint32(4 * p)
    return word.view(np.int32)


def pack_gptq_qweight(q):
    """q uint [in, out] -> int32 [in/8, out], nibble k = input 8r + k."""
    n_in, out = q.shape
    v = q.astype(np.uint32).reshape(n_in // 8, 8, out)
    word = np.zeros((n_in // 8, out), dtype=np.uint32)
    for k in range(8):
        word |= v[:, k, :] << np.uint32(4 * k)
    return word.view(np.int32)


def write_checkpoint(src_dir, dst_dir, tensors, quant):
    os.makedirs(dst_dir, exist_ok=True)
    with open(os.path.join(src_dir, "config.json")) as f:
        config = json.load(f)
    if quant is None:
        config["torch_dtype"] = "float32"
    else:
        config["quantization_config"] = quant
    with open(os.path.join(dst_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    for name in os.listdir(src_dir):
        if name.startswith("tokenizer") or name == "generation_config.json":
            shutil.copy(os.path.join(src_dir, name), dst_dir)
    save_file(tensors, os.path.join(dst_dir, "model.safetensors"), metadata={"format": "pt"})


def main():
    src, out_dir, g_awq, g_gptq, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(
        sys.argv[4]), int(sys.argv[5])
    skip = sys.argv[6:]
    rng = np.random.default_rng(seed)
    tensors = load_file(os.path.join(src, "model.safetensors"))
    awq, gptq, deq = {}, {}, {}
    for name, t in sorted(tensors.items()):
        module = name[: -len(".weight")] if name.endswith(".weight") else None
        is_linear = module is not None and module.split(".")[-1] in LINEARS
        if not is_linear or any(s in module for s in skip):
            for d in (awq, gptq):
                d[name] = t
            deq[name] = t.astype(np.float32)
            continue
        out, n_in = t.shape
        q = rng.integers(0, 16, size=(n_in, out), dtype=np.int64)  # [in, out], as the formats
        per = {}
        for fmt, group in (("awq", g_awq), ("gptq", g_gptq)):
            groups = n_in // group
            z = rng.integers(0, 16, size=(groups, out), dtype=np.int64)
            z[0, 0], z[0, 1] = 0, 15  # both ends of the zero range
            s = (rng.uniform(0.002, 0.02, size=(groups, out))).astype(np.float16)
            w = (q - np.repeat(z, group, axis=0)).astype(np.float32) * np.repeat(
                s.astype(np.float32), group, axis=0)
            per[fmt] = (z, s, w.T.copy())  # w.T: [out, in]
        z, s, _ = per["awq"]
        awq[module + ".qweight"] = pack_awq(q, AWQ_ORDER)
        awq[module + ".qzeros"] = pack_awq(z, AWQ_ORDER)
        awq[module + ".scales"] = s
        z, s, _ = per["gptq"]
        gptq[module + ".qweight"] = pack_gptq_qweight(q)
        gptq[module + ".qzeros"] = pack_awq((z - 1) & 15, list(range(8)))
        gptq[module + ".scales"] = s
        gptq[module + ".g_idx"] = (np.arange(n_in) // g_gptq).astype(np.int32)
        deq[module + ".weight"] = per["awq"][2]
        deq[module + ".gptq_weight"] = per["gptq"][2]  # the GPTQ variant, ignored by loaders
    write_checkpoint(src, os.path.join(out_dir, "awq"), awq, {
        "quant_method": "awq", "version": "gemm", "bits": 4, "group_size": g_awq,
        "zero_point": True, "modules_to_not_convert": skip or None})
    write_checkpoint(src, os.path.join(out_dir, "gptq"), gptq, {
        "quant_method": "gptq", "bits": 4, "group_size": g_gptq, "desc_act": False,
        "sym": False, "checkpoint_format": "gptq", "modules_to_not_convert": skip or None})
    write_checkpoint(src, os.path.join(out_dir, "dequant"), deq, None)

    ids_file = os.path.join(out_dir, "ids")
    if os.path.exists(ids_file):
        try:
            import torch
            from transformers import AutoModelForCausalLM
        except ImportError:
            return
        model = AutoModelForCausalLM.from_pretrained(os.path.join(out_dir, "dequant"),
                                                     dtype=torch.float32,
                                                     attn_implementation="eager")
        model.eval()
        ids = torch.tensor(np.fromfile(ids_file, dtype=np.int32).astype(np.int64))[None, :]
        with torch.no_grad():
            model(ids).logits[0].float().numpy().astype(np.float32).tofile(
                os.path.join(out_dir, "logits"))


if __name__ == "__main__":
    main()
