# One-off measurement oracle for docs/awq.md (not run by the tests): AutoAWQ's algorithm
# (awq/quantize/quantizer.py: _search_best_scale with duo scaling and module2inspect,
# apply_scale, _compute_best_clip, pseudo_quantize_tensor) re-written in plain PyTorch on the
# float model, layer by layer; writes the fake-quantized model (f32) for `kvcc ppl`.
#   python autoawq_search.py --model M --out OUT --calib FILE [--mode awq|rtn|clip|scale]
import argparse, json, os, random, shutil
import torch
from transformers import AutoTokenizer, LlamaForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--calib", required=True)
ap.add_argument("--samples", type=int, default=16)
ap.add_argument("--seqlen", type=int, default=512)
ap.add_argument("--group", type=int, default=128)
ap.add_argument("--mode", default="awq")  # awq | rtn | clip | scale
ap.add_argument("--bos", type=int, default=1)
a = ap.parse_args()
torch.manual_seed(0)
torch.set_num_threads(2)

G, MAXQ = a.group, 15


def pq(w):
    shape = w.shape
    w = w.reshape(-1, G)
    mx = w.amax(dim=1, keepdim=True)
    mn = w.amin(dim=1, keepdim=True)
    s = ((mx - mn).clamp(min=1e-5) / MAXQ).half().float()
    z = (-torch.round(mn / s)).clamp(0, MAXQ)
    return ((torch.clamp(torch.round(w / s) + z, 0, MAXQ) - z) * s).reshape(shape)


model = LlamaForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32, attn_implementation="eager")
model.eval()
tok = AutoTokenizer.from_pretrained(a.model)
ids = tok(open(a.calib).read(), add_special_tokens=False)["input_ids"]
rng = random.Random(0)
body = a.seqlen - (1 if a.bos else 0)
wins = []
for _ in range(a.samples):
    st = rng.randrange(0, len(ids) - body)
    w = ids[st:st + body]
    wins.append(([tok.bos_token_id] if a.bos else []) + w)
x = torch.tensor(wins)
T = x.shape[1]
mask = torch.full((T, T), float("-inf")).triu(1)[None, None]
pos = torch.arange(T)[None]
layers = model.model.layers


@torch.no_grad()
def main():
    inps = model.model.embed_tokens(x)
    pe = model.model.rotary_emb(inps, pos)
    kw = dict(position_embeddings=pe, attention_mask=mask)
    for li, layer in enumerate(layers):
        named = {n: m for n, m in layer.named_modules() if isinstance(m, torch.nn.Linear)}
        feats = {}
        hooks = [m.register_forward_hook(lambda m, i, o, n=n: feats.setdefault(n, []).append(i[0].detach()))
                 for n, m in named.items()]
        out = layer(inps, **kw)
        out = out[0] if isinstance(out, tuple) else out
        for h in hooks:
            h.remove()
        feats = {n: torch.cat(v, 0) for n, v in feats.items()}
        at, mlp = layer.self_attn, layer.mlp

        def attn_fwd(h):
            return at(h, **kw)[0]

        groups = [(layer.input_layernorm, [at.q_proj, at.k_proj, at.v_proj], feats["self_attn.q_proj"], attn_fwd)]
        if at.v_proj.weight.shape == at.o_proj.weight.shape:
            groups.append((at.v_proj, [at.o_proj], feats["self_attn.o_proj"], at.o_proj))
        groups.append((layer.post_attention_layernorm, [mlp.gate_proj, mlp.up_proj], feats["mlp.gate_proj"], mlp))
        groups.append((mlp.up_proj, [mlp.down_proj], feats["mlp.down_proj"], mlp.down_proj))
        scales = []
        if a.mode in ("awq", "scale"):
            for prev, lins, inp, fwd in groups:
                wt = torch.cat([l.weight for l in lins], 0)
                ws = wt.abs().view(-1, G)
                ws = (ws / (ws.amax(dim=1, keepdim=True) + 1e-6)).view(wt.shape)
                w_mean = ws.mean(0)
                x_mean = inp.abs().view(-1, inp.shape[-1]).mean(0)
                ref = fwd(inp)
                orig = [l.weight.clone() for l in lins]
                best, best_s = float("inf"), None
                for r in range(20):
                    r = r / 20
                    s = (x_mean.pow(r) / (w_mean.pow(1 - r) + 1e-4)).clamp(min=1e-4)
                    s = s / (s.max() * s.min()).sqrt()
                    for l in lins:
                        l.weight.mul_(s.view(1, -1))
                        l.weight.data = pq(l.weight.data) / s.view(1, -1)
                    loss = (ref - fwd(inp)).float().pow(2).mean().item()
                    if loss < best:
                        best, best_s = loss, s.clone()
                    for l, o in zip(lins, orig):
                        l.weight.data = o.clone()
                scales.append((prev, lins, best_s))
            for prev, lins, s in scales:
                if isinstance(prev, torch.nn.Linear):
                    prev.weight.div_(s.view(-1, 1))
                else:
                    prev.weight.div_(s)
                for l in lins:
                    l.weight.mul_(s.view(1, -1))
                # input_feat of the scaled linears divided (AutoAWQ apply_scale)
                for n, m in named.items():
                    if m in lins:
                        feats[n] = feats[n] / s.view(1, -1)
        if a.mode in ("awq", "clip"):
            for n, m in named.items():
                if any(k in n for k in ["q_", "k_"]):
                    continue
                w = m.weight
                co = w.shape[0]
                f = feats[n].view(-1, w.shape[1])
                f = f.reshape(1, f.shape[0], -1, G)
                f = f[:, 0::max(1, f.shape[1] // 512)]
                wr = w.reshape(co, 1, -1, G)
                bs = 256 if co % 256 == 0 else 64
                allb = []
                for b in range(co // bs):
                    wb = wr[b * bs:(b + 1) * bs]
                    om = wb.abs().amax(dim=-1, keepdim=True)
                    bm = om.clone()
                    me = torch.ones_like(om) * 1e9
                    oo = (f * wb).sum(dim=-1)
                    for i in range(10):
                        mv = om * (1 - i / 20)
                        cw = torch.clamp(wb, -mv, mv)
                        qw = pq(cw)
                        co_ = (f * qw).sum(dim=-1)
                        err = (co_ - oo).pow(2).mean(dim=1).view(me.shape)
                        idx = err < me
                        me[idx] = err[idx]
                        bm[idx] = mv[idx]
                    allb.append(bm)
                bm = torch.cat(allb, 0)
                m.weight.data = torch.clamp(wr, -bm, bm).reshape(w.shape)
        for n, m in named.items():
            m.weight.data = pq(m.weight.data)
        inps = out
        print("layer", li, "done", flush=True)
    model.save_pretrained(a.out, safe_serialization=True)
    for f in os.listdir(a.model):
        if f.startswith("tokenizer") or f in ("special_tokens_map.json", "generation_config.json"):
            shutil.copy(os.path.join(a.model, f), a.out)


main()
