"""Classify tweets with an exported bundle (python -m utils.saved.export), without this repository.

    python examples/standalone_predict.py BUNDLE_DIR "text" ...   ->  JSON [{label, probabilities}]

Needs only numpy, emoji, tokenizers and a TFLite runtime (ai_edge_litert, or tensorflow):

    pip install numpy emoji tokenizers ai-edge-litert

Every file the bundle's manifest (bundle.json) lists is checked against its sha256 before the
model runs; a missing, damaged or replaced file, an empty text or a bad flag is a one-line error
(exit 2), never a traceback.
"""
import argparse
import hashlib
import html
import json
import re
import sys
import unicodedata
from pathlib import Path

import emoji
import numpy as np
from tokenizers import Tokenizer

try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:
    import tensorflow as tf
    Interpreter = tf.lite.Interpreter


class BundleError(ValueError):
    pass


def check(bundle):
    """The bundle's manifest, once every file it lists matches its sha256."""
    bundle = Path(bundle)
    hint = "export the bundle again (python -m utils.saved.export) or copy it again"
    try:
        files = json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise BundleError(f"{bundle} is not a readable bundle: bundle.json "
                          f"({type(error).__name__}); {hint}") from None
    for name, entry in files.items():
        try:
            digest = hashlib.sha256((bundle / name).read_bytes()).hexdigest()
        except OSError:
            raise BundleError(f"{bundle / name} is missing; {hint}") from None
        if digest != entry.get("sha256"):
            raise BundleError(f"{bundle / name} does not match bundle.json (damaged or "
                              f"replaced); {hint}")
    return files


def clean_argument(text):
    """A command-line text as valid Unicode (undecodable bytes become U+FFFD); ValueError when
    nothing is left to classify (empty, whitespace, zero-width or control characters only)."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if not any(unicodedata.category(c)[0] not in "CZ" for c in text):
        raise ValueError(f"{text!r} has nothing to classify: give the text of a tweet")
    return text


def predict(bundle, texts):
    bundle = Path(bundle)
    check(bundle)
    prep = json.loads((bundle / "preprocessing.json").read_text())
    labels = json.loads((bundle / prep["labels_file"]).read_text())
    tokenizer = Tokenizer.from_file(str(bundle / "tokenizer.json"))  # truncates to max_length
    model = Interpreter(model_path=str(bundle / "model.tflite"))
    inputs = {name: next(d["index"] for d in model.get_input_details() if name in d["name"])
              for name in ("input_ids", "attention_mask")}
    out = []
    for text in texts:  # one tweet at a time, unpadded, as in training normalisation
        text = html.unescape(text) if prep["html_unescape"] else text
        for pattern, replacement, flag in prep["substitutions"]:
            text = re.sub(pattern, replacement, text, flags=re.IGNORECASE if flag else 0)
        text = emoji.demojize(text, delimiters=tuple(prep["emoji_demojize_delimiters"]))
        text = re.sub(prep["collapse_whitespace"], " ", text).strip()
        ids = np.array([tokenizer.encode(text).ids], dtype=np.int32)
        for name, array in (("input_ids", ids), ("attention_mask", np.ones_like(ids))):
            model.resize_tensor_input(inputs[name], array.shape)
        model.allocate_tensors()
        for name, array in (("input_ids", ids), ("attention_mask", np.ones_like(ids))):
            model.set_tensor(inputs[name], array)
        model.invoke()
        z = model.get_tensor(model.get_output_details()[0]["index"])[0].astype(np.float64)
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        out.append({"label": labels[int(p.argmax())], "probabilities": dict(zip(labels, p.tolist()))})
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", help="the bundle directory (e.g. models/tweet-sentiment-int8)")
    parser.add_argument("texts", nargs="+", help="tweets to classify")
    args = parser.parse_args(argv)   # a bad flag: usage and exit 2
    try:
        texts = [clean_argument(text) for text in args.texts]
        print(json.dumps(predict(args.bundle, texts), indent=1, ensure_ascii=False))
    except (BundleError, ValueError, OSError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
