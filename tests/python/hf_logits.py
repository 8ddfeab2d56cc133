"""Hugging Face transformers as the oracle for kvcc's CPU runtime (tests/hf_oracle_test.cc).

  hf_logits.py JOBS_JSON
      Runs a list of jobs in one process (torch starts once): each a JSON object with "mode"
      and the arguments below by name.
  hf_logits.py logits MODEL_DIR IDS_FILE OUT_LOGITS OUT_GREEDY N
      Full-sequence fp32 logits for the int32 token ids in IDS_FILE (written as float32
      [tokens][vocab]) and the N-token greedy continuation of those ids (int32, OUT_GREEDY).
  hf_logits.py ppl MODEL_DIR TEXT_FILE SEQLEN SAMPLES OUT_IDS OUT_JSON
      Tokenizes TEXT_FILE (raw bytes as UTF-8, line endings kept) with the model's tokenizer
      (no special tokens) and takes up to SAMPLES consecutive windows laid out as `kvcc ppl`
      lays them out: BOS followed by SEQLEN-1 text tokens. Writes the windows' tokens (int32)
      to OUT_IDS and {"windows": n, "nll": mean NLL over every predicted token, "ppl": exp(nll)}
      to OUT_JSON.

Weights are loaded as float32 whatever the checkpoint stores (f16/bf16 values are exact in
f32), so the forward is the fp32 reference kvcc's CPU backend is held to.
"""

import json
import math
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def load(model_dir):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    return model


@torch.no_grad()
def logits_mode(model_dir, ids_file, out_logits, out_greedy, n):
    model = load(model_dir)
    ids = np.fromfile(ids_file, dtype=np.int32).astype(np.int64)
    x = torch.tensor(ids)[None, :]
    logits = model(x).logits[0].float().numpy()
    logits.astype(np.float32).tofile(out_logits)
    out = model(x, use_cache=True)
    past = out.past_key_values
    token = int(out.logits[0, -1].argmax())
    greedy = [token]
    for _ in range(n - 1):
        out = model(torch.tensor([[token]]), past_key_values=past, use_cache=True)
        past = out.past_key_values
        token = int(out.logits[0, -1].argmax())
        greedy.append(token)
    np.array(greedy, dtype=np.int32).tofile(out_greedy)


@torch.no_grad()
def ppl_mode(model_dir, text_file, seqlen, samples, out_ids, out_json):
    model = load(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    with open(text_file, encoding="utf-8", newline="") as f:
        text = f.read()
    ids = tok(text, add_special_tokens=False)["input_ids"]
    bos = tok.bos_token_id
    text_len = seqlen - 1 if bos is not None else seqlen
    windows = min(samples, len(ids) // text_len)
    if windows == 0:
        raise SystemExit(f"{text_file}: {len(ids)} tokens, fewer than one window of {seqlen}")
    total, count = 0.0, 0
    chunks = []
    for w in range(windows):
        window = ([bos] if bos is not None else []) + ids[w * text_len:(w + 1) * text_len]
        chunks.extend(window)
        x = torch.tensor(window)[None, :]
        logp = torch.log_softmax(model(x).logits[0].double(), dim=-1)
        target = torch.tensor(window[1:])
        total += float(-logp[:-1].gather(1, target[:, None]).sum())
        count += seqlen - 1
    np.array(chunks, dtype=np.int32).tofile(out_ids)
    nll = total / count
    with open(out_json, "w") as f:
        json.dump({"windows": windows, "nll": nll, "ppl": math.exp(nll)}, f)


def main(argv):
    if len(argv) == 2:
        with open(argv[1]) as f:
            jobs = json.load(f)
        for job in jobs:
            if job["mode"] == "logits":
                logits_mode(job["model"], job["ids"], job["out_logits"], job["out_greedy"],
                            int(job["n"]))
            elif job["mode"] == "ppl":
                ppl_mode(job["model"], job["text"], int(job["seqlen"]), int(job["samples"]),
                         job["out_ids"], job["out_json"])
            else:
                raise SystemExit(f"unknown job mode {job['mode']!r}")
    elif len(argv) == 7 and argv[1] == "logits":
        logits_mode(argv[2], argv[3], argv[4], argv[5], int(argv[6]))
    elif len(argv) == 8 and argv[1] == "ppl":
        ppl_mode(argv[2], argv[3], int(argv[4]), int(argv[5]), argv[6], argv[7])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
