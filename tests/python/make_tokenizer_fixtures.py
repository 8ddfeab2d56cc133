"""Trains the small tokenizer.json fixtures in tests/data/tokenizers/ with the PyPI `tokenizers`
library, so the C++ tokenizer is checked on the same pipeline shapes as GPT-2, SmolLM, Llama-3,
Qwen2 and Llama-2 without downloading any real tokenizer.

Run from the repository root: .venv/bin/python tests/python/make_tokenizer_fixtures.py
The outputs are committed; rerunning may reorder ties in training but the tests compare the C++
implementation with `tokenizers` on whatever files are present, so any regenerated set works.
"""
import json
import os
import sys

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers import trainers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(ROOT, "..", "shared", "data")
OUT = os.path.join(ROOT, "tests", "data", "tokenizers")

# The published pre-tokenizer patterns (GPT-2 ByteLevel, Llama-3, Qwen2 tokenizer.json files).
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# Text with some unicode besides English so merges and byte fallback both get exercised.
EXTRA = [
    "Café naïve résumé façade coöperate Ångström São Paulo Zürich",
    "中文分词测试，这是一个句子。日本語のテキストです。한국어 문장입니다.",
    "def main(argv):\n    return {'a': [1, 2, 3]}  # comment\n\tprint(x)",
    "Emoji 🙂🚀 and symbols ±×÷ → ← ≤ ≥ ∑ ∫ €100 £20 ¥3000",
]


def corpus():
    lines = []
    with open(os.path.join(SHARED, "tinystories", "TinyStories-valid.txt"), encoding="utf-8") as f:
        lines += [l.rstrip("\r\n") for l in f]
    with open(os.path.join(SHARED, "wikitext-2-raw", "wiki.test.raw"), encoding="utf-8") as f:
        lines += [l.rstrip("\r\n") for i, l in enumerate(f) if i < 400]
    return [l for l in lines if l] + EXTRA * 20


def save(tok, name, string_merges=False):
    data = json.loads(tok.to_str())
    if string_merges:  # the older "left right" form, as in GPT-2's and stories260K's files
        data["model"]["merges"] = [" ".join(m) for m in data["model"]["merges"]]
    path = os.path.join(OUT, name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)
        f.write("\n")
    # Loadable by the reference library as written.
    Tokenizer.from_file(path)
    print(f"{path}: {os.path.getsize(path)} bytes, vocab {tok.get_vocab_size()}")


def byte_level(name, pre, specials, vocab_size, string_merges=False, ignore_merges=False,
               bos=None, non_special=(), normalizer=None):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus(), trainer)
    if non_special:
        tok.add_tokens(list(non_special))
    procs = [processors.ByteLevel(trim_offsets=False)]
    if bos is not None:
        procs.append(processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                   special_tokens=[(bos, tok.token_to_id(bos))]))
    tok.post_processor = processors.Sequence(procs) if len(procs) > 1 else procs[0]
    save(tok, name, string_merges=string_merges)


def llama2_style(name):
    """SentencePiece-style BPE as transformers' LlamaConverter writes it: Prepend/Replace
    normalizer, no pre-tokenizer, byte fallback with <0x00>..<0xFF> at ids 3..258."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    # Train on words (as SentencePiece does: pieces never span a "▁" boundary).
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    trainer = trainers.BpeTrainer(vocab_size=900, special_tokens=["<unk>", "<s>", "</s>"],
                                  limit_alphabet=120, show_progress=False)
    tok.train_from_iterator(corpus(), trainer)
    data = json.loads(tok.to_str())
    trained = sorted(data["model"]["vocab"].items(), key=lambda kv: kv[1])
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece, _ in trained:
        if piece not in vocab:
            vocab[piece] = len(vocab)
    data["model"]["vocab"] = vocab
    data["added_tokens"] = [
        {"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True} for i, c in enumerate(["<unk>", "<s>", "</s>"])]
    data["pre_tokenizer"] = None
    data["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    data["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
    save(Tokenizer.from_str(json.dumps(data)), name)


def metaspace_style(name):
    """SentencePieceBPETokenizer's layout: Metaspace pre-tokenizer and decoder, chatml specials
    with lstrip/rstrip flags set."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    trainer = trainers.BpeTrainer(vocab_size=800, special_tokens=["<unk>", "<s>", "</s>"],
                                  limit_alphabet=150, show_progress=False)
    tok.train_from_iterator(corpus(), trainer)
    from tokenizers import AddedToken
    tok.add_special_tokens([AddedToken("<|im_start|>", lstrip=True, normalized=False),
                            AddedToken("<|im_end|>", rstrip=True, normalized=False)])
    save(tok, name)


def main():
    os.makedirs(OUT, exist_ok=True)
    byte_level("gpt2_bytelevel.json", pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
               ["<|endoftext|>"], 1000, string_merges=True, non_special=["<|user|>", " hello world"])
    byte_level("smollm_bytelevel.json", pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]),
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], 1000)
    byte_level("llama3_bytelevel.json", pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
        ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
         "<|eot_id|>"], 1200, ignore_merges=True, bos="<|begin_of_text|>")
    byte_level("qwen2_bytelevel.json", pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], 1000, normalizer=normalizers.NFC())
    llama2_style("llama2_spm_bpe.json")
    metaspace_style("metaspace_bpe.json")


if __name__ == "__main__":
    sys.exit(main())
