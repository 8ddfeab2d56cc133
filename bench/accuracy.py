#!/usr/bin/env python3
"""KV-cache quantization accuracy report (issue 4): calibrates on PTB valid, then measures,
for fp16 and every quantized cache scheme, perplexity (`kvcc ppl`) on the PTB test,
WikiText-2 test and TinyStories text, plus the mean KL divergence of the next-token
distribution against fp16 and the greedy-token agreement (`kvcc kvcompare`), and writes
docs/accuracy.md.

    python3 bench/accuracy.py [--model models/stories260K] [--seqlen 512] [--eval-samples 200]

Runs on the CPU backend by default (--device picks another). Only the standard library.
"""
import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMES = [  # (row label, flags selecting it)
    ("fp16", []),
    ("int8 per-layer (policy 4)", ["--quant-policy", "4"]),
    ("int8 per-head", ["--kv-quant", "int8-per-head"]),
    ("int4 per-head", ["--kv-quant", "int4-per-head"]),
    ("int8 online", ["--kv-quant", "int8-online"]),
    ("int4 online", ["--kv-quant", "int4-online"]),
]
COMPARED = "int8-per-layer,int8-per-head,int4-per-head,int8-online,int4-online"
CANDIDATE_LABEL = {
    "int8-per-layer": "int8 per-layer (policy 4)",
    "int8-per-head": "int8 per-head",
    "int4-per-head": "int4 per-head",
    "int8-online": "int8 online",
    "int4-online": "int4 online",
}
# Targets of issue 4: allowed perplexity increase over fp16, in percent.
TARGETS = {"int8 per-layer (policy 4)": 1.0, "int8 per-head": 0.3, "int8 online": 0.3,
           "int4 online": 5.0}
BEGIN = "<!-- bench/accuracy.py: measured results begin (rewritten on each run) -->"
END = "<!-- bench/accuracy.py: measured results end -->"
DATASETS = [("ptb", "PTB test"), ("wikitext2", "WikiText-2 test (raw)"),
            ("tinystories", "TinyStories text")]


def run(cmd, log):
    """Runs a kvcc command, echoing it; returns stdout. stderr (progress) goes to the log."""
    print("+ " + " ".join(cmd), flush=True)
    log.write("+ " + " ".join(cmd) + "\n")
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
    log.write(proc.stderr)
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return proc.stdout


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def git_rev():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True).stdout.strip()
    except OSError:
        return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/stories260K")
    ap.add_argument("--kvcc", default="build/tools/kvcc")
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--calib-samples", type=int, default=128)
    ap.add_argument("--eval-samples", type=int, default=200,
                    help="windows per test text (0 = every whole window)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--work-dir", default="out/accuracy")
    ap.add_argument("--out", default="docs/accuracy.md")
    args = ap.parse_args()

    kvcc = os.path.join(ROOT, args.kvcc) if not os.path.isabs(args.kvcc) else args.kvcc
    work = os.path.join(ROOT, args.work_dir)
    os.makedirs(work, exist_ok=True)
    params = os.path.join(work, "kv_params.json")
    log = open(os.path.join(work, "accuracy.log"), "w")
    start = time.time()
    common = ["--device", args.device]

    calib_cmd = [kvcc, "calibrate", args.model, "--calib-dataset", "ptb", "--calib-samples",
                 str(args.calib_samples), "--calib-seqlen", str(args.seqlen), "--work-dir", work,
                 "--seed", str(args.seed)] + common
    calib_out = run(calib_cmd, log)
    m = re.search(r"\((\d+) windows x", calib_out)
    calib_windows = int(m.group(1)) if m else args.calib_samples

    rows = []  # (scheme, dataset, metric, value, diff)
    notes = []
    for ds, ds_label in DATASETS:
        ppl = {}
        windows = None
        for label, flags in SCHEMES:
            cmd = [kvcc, "ppl", args.model, "--dataset", ds, "--seqlen", str(args.seqlen),
                   "--samples", str(args.eval_samples), "--kv-params", params] + flags + common
            out = run(cmd, log)
            m = re.search(r"^ppl ([0-9.]+) \(nll [0-9.]+ nats over (\d+) tokens in (\d+) windows",
                          out, re.M)
            if not m:
                sys.exit(f"cannot parse kvcc ppl output: {out!r}")
            ppl[label] = float(m.group(1))
            windows = (int(m.group(3)), int(m.group(2)))
        cmp_cmd = [kvcc, "kvcompare", args.model, "--eval-dataset", ds, "--eval-seqlen",
                   str(args.seqlen), "--eval-samples", str(args.eval_samples), "--kv-params",
                   params, "--kv-quant", COMPARED] + common
        compared = {}
        for line in run(cmp_cmd, log).splitlines():
            if line.startswith("{"):
                j = json.loads(line)
                compared[CANDIDATE_LABEL[j["candidate"]]] = j
        base = ppl["fp16"]
        for label, _ in SCHEMES:
            diff = "" if label == "fp16" else f"{100.0 * (ppl[label] - base) / base:+.3f}%"
            rows.append((label, ds_label, "perplexity", f"{ppl[label]:.4f}", diff))
            if label in compared:
                c = compared[label]
                # kvcompare recomputes both perplexities on the same windows: they must agree
                # with kvcc ppl, or the two tools scored different text.
                for key, want in (("baseline_ppl", base), ("candidate_ppl", ppl[label])):
                    if abs(c[key] - want) > 1e-3 * want:
                        notes.append(f"{ds_label} {label}: kvcompare {key} {c[key]:.4f} differs "
                                     f"from kvcc ppl {want:.4f}")
                rows.append((label, ds_label, "mean KL vs fp16 (nats)", f"{c['mean_kl']:.5f}",
                             ""))
                rows.append((label, ds_label, "greedy agreement vs fp16",
                             f"{100.0 * c['greedy_agreement']:.2f}%", ""))
        notes.append(f"{ds_label}: {windows[0]} windows, {windows[1]} scored tokens")
    elapsed = time.time() - start

    targets = []
    for label, limit in TARGETS.items():
        for ds, ds_label in DATASETS:
            base = next(float(r[3]) for r in rows if r[0] == "fp16" and r[1] == ds_label)
            val = next(float(r[3]) for r in rows
                       if r[0] == label and r[1] == ds_label and r[2] == "perplexity")
            d = 100.0 * (val - base) / base
            targets.append((label, ds_label, limit, d, d <= limit))

    with open(os.path.join(work, "results.json"), "w") as f:
        json.dump({"rows": rows, "targets": targets, "notes": notes}, f, indent=1)
    write_report(args, rows, targets, notes, calib_cmd, calib_windows, elapsed)
    print(f"wrote {args.out} in {elapsed:.0f} s")


def write_report(args, rows, targets, notes, calib_cmd, calib_windows, elapsed):
    rel = lambda p: os.path.relpath(p, ROOT) if os.path.isabs(p) else p
    lines = [
        BEGIN,
        f"Model `{args.model}`, {args.seqlen}-token windows (BOS + {args.seqlen - 1} text tokens, "
        "each in a fresh session, every position scored).",
        f"Calibration: PTB valid (`ptb.valid.txt`), {calib_windows} random windows, seed "
        f"{args.seed}. Evaluation: the first {args.eval_samples or 'all'} consecutive windows "
        "of each test text.",
        "",
        "Command:",
        "",
        "    python3 bench/accuracy.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in
            (("model", args.model), ("kvcc", args.kvcc), ("seqlen", args.seqlen),
             ("calib_samples", args.calib_samples), ("eval_samples", args.eval_samples),
             ("seed", args.seed), ("device", args.device))),
        "",
        "which runs `" + " ".join(rel(c) for c in calib_cmd) + "`, then per dataset `kvcc ppl "
        "... --dataset D --seqlen N --samples N [--quant-policy 4 | --kv-quant NAME] "
        "--kv-params FILE` for each scheme and one `kvcc kvcompare ... --kv-quant "
        f"{COMPARED}` for KL divergence and greedy agreement against the fp16 cache.",
        "",
        f"Machine: {machine()}; backend `{args.device}`; kvcc {git_rev()}; "
        f"{datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC; {elapsed:.0f} s in all.",
        "",
        "## Results",
        "",
        "| scheme | dataset | metric | value | diff vs fp16 |",
        "| --- | --- | --- | ---: | ---: |",
    ]
    for r in rows:
        lines.append("| " + " | ".join(r) + " |")
    lines += ["", "## Targets (perplexity increase over fp16)", "",
              "| scheme | dataset | target | measured | met |", "| --- | --- | ---: | ---: | --- |"]
    for label, ds, limit, d, ok in targets:
        lines.append(f"| {label} | {ds} | +{limit}% | {d:+.3f}% | {'yes' if ok else '**no**'} |")
    lines += ["", "Notes: " + "; ".join(notes) + ".", END]
    generated = "\n".join(lines)
    # Only the measured part between the markers is rewritten; the written analysis around it
    # stays.
    out = os.path.join(ROOT, args.out)
    text = f"# KV-cache quantization accuracy\n\n{generated}\n\n## Analysis\n\n(to be written)\n"
    if os.path.exists(out):
        with open(out) as f:
            old = f.read()
        if BEGIN in old and END in old:
            text = old[:old.index(BEGIN)] + generated + old[old.index(END) + len(END):]
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
