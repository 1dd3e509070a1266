"""Classify tweets with an exported bundle (python -m utils.saved.export), without this repository.

    python examples/standalone_predict.py BUNDLE_DIR "text" ...   ->  JSON [{label, probabilities}]

Needs only numpy, emoji, tokenizers and a TFLite runtime (ai_edge_litert, or tensorflow).
"""
import html, json, re, sys
from pathlib import Path

import emoji
import numpy as np
from tokenizers import Tokenizer

try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:
    import tensorflow as tf
    Interpreter = tf.lite.Interpreter


def predict(bundle, texts):
    bundle = Path(bundle)
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


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: python examples/standalone_predict.py BUNDLE_DIR \"text\" ...")
    print(json.dumps(predict(sys.argv[1], sys.argv[2:]), indent=1))
