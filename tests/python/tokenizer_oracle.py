"""Reference tokenizer outputs for the C++ tokenizer tests.

Usage: tokenizer_oracle.py REQUEST.json RESULT.json
REQUEST: {"tokenizer_json": path|null, "sentencepiece_model": path|null,
          "texts": [str], "id_lists": [[int]]}
RESULT, from the Hugging Face `tokenizers` library for tokenizer_json:
  "hf": {"vocab_size", "encode": [{"ids", "ids_no_special", "ids_unparsed"}],
         "decode": [{"text", "text_skip_special"}], "roundtrip": [str]}
and from the `sentencepiece` library for sentencepiece_model:
  "sp": {"encode": [[int]] (plain text, no specials), "decode": [str]}
Lower-level references for the units under the tokenizers:
  "split_pattern": regex, "split_texts": [str] -> "split": [[piece]] from tokenizers'
      Split(Regex(pattern), "isolated") pre-tokenizer;
  "lossy_hex": [hex bytes] -> "lossy": [str], Python's bytes.decode("utf-8", "replace");
  "normalize_texts": [str] -> "nfc", "nfd": [str] from unicodedata.normalize;
  "unicode_classes": true -> "unicode": {"letter"|"number"|"space": [[first, last]]} code point
      ranges from unicodedata / str.isspace.
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


def split_results(pattern, texts):
    from tokenizers import Regex, pre_tokenizers

    split = pre_tokenizers.Split(Regex(pattern), "isolated")
    return [[piece for piece, _ in split.pre_tokenize_str(t)] for t in texts]


def unicode_ranges():
    import unicodedata

    preds = {
        "letter": lambda c: unicodedata.category(c).startswith("L"),
        "number": lambda c: unicodedata.category(c).startswith("N"),
        # Rust's char::is_whitespace / the regex \s: White_Space; Python's isspace adds 0x1C-0x1F.
        "space": lambda c: c.isspace() and not 0x1C <= ord(c) <= 0x1F,
    }
    out = {}
    for name, pred in preds.items():
        ranges, start = [], None
        for cp in range(sys.maxunicode + 1):
            if 0xD800 <= cp <= 0xDFFF:
                hit = False
            else:
                hit = pred(chr(cp))
            if hit and start is None:
                start = cp
            elif not hit and start is not None:
                ranges.append([start, cp - 1])
                start = None
        if start is not None:
            ranges.append([start, sys.maxunicode])
        out[name] = ranges
    return out


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
    if req.get("split_pattern"):
        res["split"] = split_results(req["split_pattern"], req["split_texts"])
    if req.get("lossy_hex") is not None:
        res["lossy"] = [bytes.fromhex(h).decode("utf-8", "replace") for h in req["lossy_hex"]]
    if req.get("normalize_texts") is not None:
        import unicodedata

        res["nfc"] = [unicodedata.normalize("NFC", t) for t in req["normalize_texts"]]
        res["nfd"] = [unicodedata.normalize("NFD", t) for t in req["normalize_texts"]]
    if req.get("unicode_classes"):
        res["unicode"] = unicode_ranges()
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(res, f, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
