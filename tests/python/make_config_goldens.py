"""Writes the transformers-5 layout of the golden configs in tests/data/configs/: each native
architecture's *.v4.json (as transformers 4.x saved it) loaded and saved again by transformers
>= 5, as a user re-saving the checkpoint today gets it, plus a Qwen2 config whose rope_parameters
are nested per layer type (linear scaling, so transformers' per-layer-type functions apply). (InternLM/InternLM2 configs come from remote code, which transformers 5
saves unchanged but for dtype; those v5 files are written by hand.)

usage: python make_config_goldens.py tests/data/configs
"""
import glob
import json
import os
import sys
import tempfile

import transformers
from transformers import AutoConfig


def resave(src, dst, edit=None):
    with open(src) as f:
        d = json.load(f)
    cls = AutoConfig.for_model(d["model_type"]).__class__
    config = cls.from_dict(d)
    if edit:
        edit(config)
    with tempfile.TemporaryDirectory() as tmp:
        config.save_pretrained(tmp)
        with open(os.path.join(tmp, "config.json")) as f:
            saved = json.load(f)
    with open(dst, "w") as f:
        f.write(json.dumps(saved, indent=2, sort_keys=True) + "\n")


def main():
    assert int(transformers.__version__.split(".")[0]) >= 5, transformers.__version__
    out = sys.argv[1]
    for src in sorted(glob.glob(os.path.join(out, "*.v4.json"))):
        with open(src) as f:
            if json.load(f)["model_type"] in ("internlm", "internlm2"):
                continue
        resave(src, src.replace(".v4.json", ".v5.json"))

    def nest(config):
        flat = {"rope_type": "linear", "factor": 4.0,
                "rope_theta": config.rope_parameters["rope_theta"]}
        config.rope_parameters = {"full_attention": flat, "sliding_attention": dict(flat)}

    resave(os.path.join(out, "qwen2.5-0.5b-instruct.v4.json"),
           os.path.join(out, "qwen2.5-0.5b-instruct-nested.v5.json"), nest)


if __name__ == "__main__":
    main()
