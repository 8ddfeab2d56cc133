"""Hugging Face transformers on the GPU as the oracle for kvcc's CUDA backend
(tests/cuda_backend_test.cc, LogitsMatchTransformersOnTheGpu).

  hf_logits_cuda.py MODEL_DIR IDS_FILE OUT_LOGITS

Runs the model in float32 (eager attention) on the CUDA device for the int32 token ids in
IDS_FILE and writes the full-sequence logits as float32 [tokens][vocab]. Fails when torch sees
no CUDA device: this comparison is about the GPU.
"""

import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM


@torch.no_grad()
def main(model_dir, ids_file, out_logits):
    if not torch.cuda.is_available():
        sys.exit("hf_logits_cuda.py: torch sees no CUDA device")
    # TF32 would round the matmul inputs to 10 mantissa bits; the oracle stays fp32.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                 attn_implementation="eager").to("cuda")
    model.eval()
    ids = np.fromfile(ids_file, dtype=np.int32).astype(np.int64)
    logits = model(torch.tensor(ids, device="cuda")[None, :]).logits[0].float().cpu().numpy()
    logits.astype(np.float32).tofile(out_logits)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
