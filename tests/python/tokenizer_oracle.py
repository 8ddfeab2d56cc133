"""Reference tokenizer outputs for the C++ tokenizer tests.

Usage: tokenizer_oracle.py REQUEST.json RESULT.json
REQUEST: {"tokenizer_json": path|null, "sentencepiece_model": path|null,
          "texts": [str], "id_lists": [[int]]}
RESULT, from the Hugging Face `tokenizers` library for tokenizer_json:
  "hf": {"vocab_size", "encode": [{"ids", "ids_no_special", "ids_unparsed"}],
         "decode": [{"text", "text_skip_special"}], "roundtrip": [str]}
and from the `sentencepiece` library for sentencepiece_model:
  "sp": {"encode": [[int]] (plain text, no specials), "decode": [str]}
Exits non-zero if a library is missing, so the calling test fails rather than skips.
"""
import json
import sys


def hf_results(path, texts, id_lists):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(path)
    unparsed = Tokenizer.from_file(path)
    unparsed.encode_special_tokens = True
    out = {"vocab_size": tok.get_vocab_size(with_added_tokens=True), "encode": [], "decode": [],
           "roundtrip": []}
    for t in texts:
        ids = tok.encode(t).ids
        out["encode"].append({
            "ids": ids,
            "ids_no_special": tok.encode(t, add_special_tokens=False).ids,
            "ids_unparsed": unparsed.encode(t).ids,
        })
        out["roundtrip"].append(tok.decode(ids, skip_special_tokens=False))
    for ids in id_lists:
        out["decode"].append({
            "text": tok.decode(ids, skip_special_tokens=False),
            "text_skip_special": tok.decode(ids, skip_special_tokens=True),
        })
    return out


def sp_results(path, texts, id_lists):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=path)
    return {"encode": [sp.encode(t) for t in texts], "decode": [sp.decode(ids) for ids in id_lists]}


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        req = json.load(f)
    res = {}
    if req.get("tokenizer_json"):
        res["hf"] = hf_results(req["tokenizer_json"], req["texts"], req["id_lists"])
    if req.get("sentencepiece_model"):
        res["sp"] = sp_results(req["sentencepiece_model"], req["texts"], req["id_lists"])
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(res, f, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
