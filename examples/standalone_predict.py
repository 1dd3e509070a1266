"""Classify tweets with an exported bundle (python -m utils.saved.export), without this repository.

    python examples/standalone_predict.py BUNDLE_DIR "text" ...   ->  JSON [{label, probabilities}]

Needs only numpy, emoji, tokenizers and the runtime of the bundle: a bundle holds model.tflite
(TFLite: ai_edge_litert, or tensorflow) or model.onnx (ONNX Runtime), and only that runtime is
imported:

    pip install numpy emoji tokenizers ai-edge-litert     # model.tflite
    pip install numpy emoji tokenizers onnxruntime        # model.onnx

Every file the bundle's manifest (bundle.json) lists is checked against its sha256 before the
model runs; a missing, damaged, replaced or unlisted file, a text with nothing to classify (empty,
whitespace, invisible or control characters only) or a bad flag is a one-line error (exit 2),
never a traceback. Undecodable bytes in a text are read as U+FFFD; a long text is truncated to the
model's max_length tokens.
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



class BundleError(ValueError):
    pass


MODEL_FILES = {"tflite": "model.tflite", "onnx": "model.onnx"}   # a bundle holds one
COMMON = ("tokenizer.json", "labels.json", "preprocessing.json", "model_card.md")
EXAMPLES = "examples.json"   # optional, but listed in bundle.json when there


def runtime_of(manifest):
    """The runtime bundle.json names (bundles made before ONNX name none: TFLite)."""
    runtime = manifest.get("runtime", "tflite")
    if runtime not in MODEL_FILES:
        raise BundleError(f"bundle.json names runtime {runtime!r}; this script runs "
                          f"{sorted(MODEL_FILES)}")
    return runtime


class TFLiteModel:
    """model.tflite in the LiteRT interpreter (or TensorFlow's)."""

    def __init__(self, path):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            try:
                from tensorflow.lite import Interpreter
            except ImportError:
                raise BundleError("this bundle needs a TFLite runtime: pip install "
                                  "ai-edge-litert") from None
        self.interpreter = Interpreter(model_path=str(path))
        self.inputs = {name: next(d["index"] for d in self.interpreter.get_input_details()
                                  if name in d["name"])
                       for name in ("input_ids", "attention_mask")}

    def logits(self, ids, mask):
        model = self.interpreter
        for name, array in (("input_ids", ids), ("attention_mask", mask)):
            model.resize_tensor_input(self.inputs[name], array.shape)
        model.allocate_tensors()
        for name, array in (("input_ids", ids), ("attention_mask", mask)):
            model.set_tensor(self.inputs[name], array)
        model.invoke()
        return model.get_tensor(model.get_output_details()[0]["index"])


class OnnxModel:
    """model.onnx in ONNX Runtime (CPU)."""

    def __init__(self, path):
        try:
            import onnxruntime
        except ImportError:
            raise BundleError("this bundle needs ONNX Runtime: pip install onnxruntime") from None
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(str(path), options,
                                                    providers=["CPUExecutionProvider"])

    def logits(self, ids, mask):
        return self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]


RUNNERS = {"tflite": TFLiteModel, "onnx": OnnxModel}


def check(bundle):
    """The bundle's manifest, once every file it lists (and every bundle file) is there and
    matches its size and sha256."""
    bundle = Path(bundle)
    hint = "export the bundle again (python -m utils.saved.export) or copy it again"
    try:
        manifest = json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))
        listed = {}
        for name, entry in manifest["files"].items():
            if set(entry) != {"bytes", "sha256"} or type(entry["bytes"]) is not int \
                    or not isinstance(entry["sha256"], str):   # a damaged key must not pass
                raise ValueError(name)
            listed[name] = (entry["bytes"], entry["sha256"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise BundleError(f"{bundle} is not a readable bundle: bundle.json "
                          f"({type(error).__name__}); {hint}") from None
    required = (MODEL_FILES[runtime_of(manifest)], *COMMON)
    optional = [EXAMPLES] if (bundle / EXAMPLES).exists() else []
    for name in dict.fromkeys([*required, *listed, *optional]):
        try:
            data = (bundle / name).read_bytes()
        except OSError:
            raise BundleError(f"{bundle / name} is missing; {hint}") from None
        if name not in listed:
            raise BundleError(f"{bundle / name} is not in bundle.json (added or replaced after "
                              f"the export); {hint}")
        if (len(data), hashlib.sha256(data).hexdigest()) != listed[name]:
            raise BundleError(f"{bundle / name} does not match bundle.json (damaged or "
                              f"replaced); {hint}")
    return manifest


_SURROGATE = re.compile("[\ud800-\udfff]")
_REPLACEMENT = "\ufffd"


def readable_text(text, index=None):
    """`text` as valid Unicode for the tokenizer, or a ValueError naming it and the fix: lone
    surrogates (undecodable bytes of sys.argv, broken UTF-16) become U+FFFD; a text with nothing
    to classify (empty, or only whitespace, control, format, combining or undecodable
    characters) is refused. A copy of utils.saved.predictor.readable_text (this script imports
    nothing of the repository); the repository's tests hold the two equal."""
    which = "text" if index is None else f"text #{index}"
    if not isinstance(text, str):
        raise ValueError(f"{which} is {type(text).__name__} ({text!r:.80}), expected str: "
                         "give the text of a tweet")
    text = _SURROGATE.sub(_REPLACEMENT, text)
    if not any(unicodedata.category(c)[0] in "LNPS" and c != _REPLACEMENT for c in text):
        raise ValueError(f"{which} {text!r:.80} has nothing to classify (empty, or only "
                         "whitespace, invisible, control or undecodable characters): give the "
                         "text of a tweet")
    return text


def predict(bundle, texts):
    """[{label, probabilities}] of each text; ValueError (BundleError for the bundle) naming
    what is wrong."""
    if isinstance(texts, (str, bytes)):
        raise ValueError(f"texts is a single {type(texts).__name__} ({texts!r:.80}): give a list "
                         "of tweets, e.g. [text]")
    texts = [readable_text(text, i) for i, text in enumerate(texts)]
    bundle = Path(bundle)
    runtime = runtime_of(check(bundle))
    prep = json.loads((bundle / "preprocessing.json").read_text())
    labels = json.loads((bundle / prep["labels_file"]).read_text())
    tokenizer = Tokenizer.from_file(str(bundle / "tokenizer.json"))  # truncates to max_length
    model = RUNNERS[runtime](bundle / MODEL_FILES[runtime])
    out = []
    for text in texts:  # one tweet at a time, unpadded, as in training normalisation
        text = html.unescape(text) if prep["html_unescape"] else text
        for pattern, replacement, flag in prep["substitutions"]:
            text = re.sub(pattern, replacement, text, flags=re.IGNORECASE if flag else 0)
        text = emoji.demojize(text, delimiters=tuple(prep["emoji_demojize_delimiters"]))
        text = re.sub(prep["collapse_whitespace"], " ", text).strip()
        ids = np.array([tokenizer.encode(text).ids], dtype=np.int32)
        z = model.logits(ids, np.ones_like(ids))[0].astype(np.float64)
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        out.append({"label": labels[int(p.argmax())], "probabilities": dict(zip(labels, p.tolist()))})
    return out


class Parser(argparse.ArgumentParser):
    def error(self, message):
        """A bad flag or a missing argument: one line and exit 2, as every other error."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv=None):
    parser = Parser(description=__doc__.split("\n\n")[0],
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", help="the bundle directory (e.g. models/tweet-sentiment-int8)")
    parser.add_argument("texts", nargs="+", help="tweets to classify")
    args = parser.parse_args(argv)
    try:
        print(json.dumps(predict(args.bundle, args.texts), indent=1, ensure_ascii=False))
    except (BundleError, ValueError, OSError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
