"""Deployable bundles: a pruned classifier anyone can run without this repository.

    python -m utils.export SRC OUT [--tokenizer NAME] [--data-dir data] [--results-dir results]

SRC is a TFLite model directory of `utils.tflite` (for example the benchmark's
checkpoints/bench/compact_vocab_tflite_int8, vocabulary-pruned, int8) or a Keras model directory
of `utils.model` (exported here to TFLite with dynamic-range int8). OUT becomes a bundle with
these files:

- `model.tflite`: inputs input_ids and attention_mask (int32, [batch, length]); output logits
  [batch, 3].
- `tokenizer.json`: a Hugging Face `tokenizers` file whose ids are the model's embedding rows.
  For a pruned vocabulary every base token keeps its place in the WordPiece or BPE vocabulary,
  but its id becomes the row kept for it, or the unknown token's row if it was dropped. Text is
  therefore split exactly as by the base tokenizer, and the ids are exactly those of
  `utils.vocab.RemappedTokenizer`. It truncates to the model's 64 tokens, keeping the closing
  special token, as `utils.batching.encode_texts` does.
- `labels.json`: the class names in logit order.
- `preprocessing.json`: the normalisation applied to tweets before tokenising, as data: the
  regular expressions of `utils.data.normalize_tweet` with their replacements, the emoji
  delimiters, HTML unescaping, and max_length.
- `model_card.md`: data, test scores of this bundle, size, measured latency, and how it was
  pruned. The figures come from results/ and from evaluating the bundle here.
- `bundle.json`: format version, and the sha256 and size of every file, so that a truncated or
  replaced file is detected on load.

`--format hf` writes a standard Hugging Face BERT checkpoint instead (models whose layers all
have the same widths), `--format keras` Keras' own model.keras with the tokenizer files.

`load_bundle(directory)` gives a `Bundle` with `predict_texts(texts) -> probabilities`. It runs
one text at a time, unpadded, as examples/standalone_predict.py does: dynamic-range int8
quantises activations per batch, so padding would move the numbers. A missing or corrupt bundle
raises `BundleError`, naming the directory and the command that makes it.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from .io import REPO_ROOT, atomic_path, read_json, write_json

BUNDLE_VERSION = 1
BUNDLE_FILES = ("model.tflite", "tokenizer.json", "labels.json", "preprocessing.json",
                "model_card.md")
MANIFEST = "bundle.json"
EXAMPLES_FILE = "examples.json"   # optional: probabilities of fixed tweets (write_examples)
DEFAULT_BUNDLE = REPO_ROOT / "models" / "tweet-sentiment-int8"
MAKE_COMMAND = ("python -m utils.export checkpoints/bench/compact_vocab_tflite_int8 "
                "models/tweet-sentiment-int8 (after `make run`)")


class BundleError(ValueError):
    """A bundle directory that is missing, incomplete or corrupt."""


# ------------------------------------------------------------------------------ tokenizer

def bundle_tokenizer_json(base_tokenizer, kept_ids=None, max_length=64):
    """The base tokenizer's `tokenizers` JSON with ids renumbered to the pruned embedding rows
    (`kept_ids[new_id] = base_id`; dropped tokens -> the unknown token's new id), truncation to
    `max_length`, and no padding."""
    spec = json.loads(base_tokenizer.backend_tokenizer.to_str())
    spec["padding"] = None
    spec["truncation"] = {"direction": "Right", "max_length": int(max_length),
                          "strategy": "LongestFirst", "stride": 0}
    if kept_ids is None:
        return json.dumps(spec, ensure_ascii=False)
    from .vocab import RemappedTokenizer
    new_id = RemappedTokenizer(base_tokenizer, kept_ids).old_to_new

    def renumber(i):
        return int(new_id[int(i)])
    vocab = spec["model"]["vocab"]
    if not isinstance(vocab, dict):
        raise ValueError(f"cannot renumber a {spec['model']['type']} vocabulary "
                         f"({type(vocab).__name__}); only WordPiece/BPE token -> id maps")
    spec["model"]["vocab"] = {token: renumber(i) for token, i in vocab.items()}
    for token in spec.get("added_tokens") or []:
        token["id"] = renumber(token["id"])
    processor = spec.get("post_processor") or {}
    processors = processor.get("processors", [processor])   # a Sequence holds several
    for p in processors:
        for special in (p.get("special_tokens") or {}).values():   # TemplateProcessing
            special["ids"] = [renumber(i) for i in special["ids"]]
        for key in ("sep", "cls"):                                  # Bert/RobertaProcessing
            if isinstance(p.get(key), list):
                p[key] = [p[key][0], renumber(p[key][1])]
    return json.dumps(spec, ensure_ascii=False)


# ------------------------------------------------------------------------------ preprocessing

def preprocessing_spec(base_tokenizer, max_length=64):
    """utils.data's tweet normalisation as data, for code that cannot import this repository,
    and the tokenizer's special tokens."""
    from . import data
    return {"html_unescape": True,
            "special_tokens": {f"{k}_token": getattr(base_tokenizer, f"{k}_token")
                               for k in ("unk", "pad", "cls", "sep")
                               if getattr(base_tokenizer, f"{k}_token", None)},
            "substitutions": [[data._URL.pattern, "HTTPURL", "IGNORECASE"],
                              [data._MENTION.pattern, "@USER", ""]],
            "emoji_demojize_delimiters": [" :", ": "],
            "collapse_whitespace": data._WHITESPACE.pattern,
            "max_length": int(max_length),
            "labels_file": "labels.json"}


# ------------------------------------------------------------------------------ writing

def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def export_bundle(source, out, base_tokenizer, card="", max_length=64):
    """Write the bundle of model directory `source` (TFLite or Keras) to `out`, all or nothing.
    Returns the output path."""
    from . import tflite, vocab
    from . import model as model_lib
    from .data import LABELS
    source = Path(source)
    if not (source / model_lib.CONFIG_FILE).exists():
        raise BundleError(f"{source} is not a model directory (no {model_lib.CONFIG_FILE}): "
                          "pass a TFLite or Keras model directory such as "
                          "checkpoints/bench/compact_vocab_tflite_int8")
    kept_ids = None
    if (source / vocab.VOCAB_MAP_FILE).exists():
        kept_ids = vocab.read_vocab_map(source, base_tokenizer).kept_ids
    with atomic_path(Path(out)) as tmp:
        tmp.mkdir(parents=True)
        if tflite.is_tflite_dir(source):
            shutil.copyfile(source / tflite.TFLITE_FILE, tmp / "model.tflite")
        else:
            model = model_lib.load_model(source)
            (tmp / "model.tflite").write_bytes(tflite.convert(model, "dynamic_range"))
        (tmp / "tokenizer.json").write_text(
            bundle_tokenizer_json(base_tokenizer, kept_ids, max_length), encoding="utf-8")
        write_json(tmp / "labels.json", list(LABELS))
        write_json(tmp / "preprocessing.json", preprocessing_spec(base_tokenizer, max_length))
        (tmp / "model_card.md").write_text(card or "# Tweet sentiment classifier\n",
                                           encoding="utf-8")
        metadata = source / tflite.METADATA_FILE
        parameters = (read_json(metadata).get("parameters") if metadata.exists()
                      else model_lib.count_parameters(model_lib.load_model(source)))
        _write_manifest(tmp, parameters)
    return Path(out)


def _write_manifest(directory, parameters=None):
    if parameters is None:   # keep what an earlier export recorded
        parameters = read_json(Path(directory) / MANIFEST).get("parameters")
    write_json(Path(directory) / MANIFEST, {
        "format": "tweet-sentiment-bundle", "version": BUNDLE_VERSION, "parameters": parameters,
        "files": {name: {"sha256": _sha256(Path(directory) / name),
                         "bytes": (Path(directory) / name).stat().st_size}
                  for name in BUNDLE_FILES}})


def write_card(directory, card):
    """Replace a bundle's model card (and its manifest entry)."""
    with atomic_path(Path(directory) / "model_card.md") as tmp:
        tmp.write_text(card, encoding="utf-8")
    _write_manifest(directory)


def export_hf(source, out, base_tokenizer):
    """A standard Hugging Face BERT checkpoint of the Keras model directory `source` (dense, or
    any model whose layers all have the same widths): config.json, model.safetensors and the
    tokenizer files, loadable by transformers' BertForSequenceClassification. All or nothing."""
    from safetensors.numpy import save_file
    from . import model as model_lib
    from .data import LABELS
    model = model_lib.load_model(source)
    tensors = model_lib.hf_tensors(model)
    with atomic_path(Path(out)) as tmp:
        tmp.mkdir(parents=True)
        write_json(tmp / "config.json", model_lib.hf_config(model.encoder_config, LABELS))
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        base_tokenizer.save_pretrained(str(tmp))
    return Path(out)


def export_keras(source, out, base_tokenizer):
    """The Keras model directory `source` as Keras' own `model.keras` (any widths; reading it
    needs `import utils.model`, which registers the encoder's layers), with the tokenizer files
    (for a pruned vocabulary: the renumbered tokenizer.json of the bundle) and labels.json."""
    from . import model as model_lib
    from . import vocab
    from .data import LABELS
    source = Path(source)
    model, tokenizer = vocab.load_pruned(source, base_tokenizer)
    with atomic_path(Path(out)) as tmp:
        tmp.mkdir(parents=True)
        model_lib.save_keras(model, tmp / "model.keras")
        if isinstance(tokenizer, vocab.RemappedTokenizer):
            (tmp / "tokenizer.json").write_text(
                bundle_tokenizer_json(base_tokenizer, tokenizer.kept_ids), encoding="utf-8")
        else:
            base_tokenizer.save_pretrained(str(tmp))
        write_json(tmp / "labels.json", list(LABELS))
    return Path(out)


# ------------------------------------------------------------------------------ loading

def check_bundle(directory):
    """Raise BundleError unless `directory` holds every bundle file, unchanged."""
    directory = Path(directory)
    hint = f"make it with: {MAKE_COMMAND}"
    if not (directory / MANIFEST).exists():
        raise BundleError(f"{directory} is not a model bundle (no {MANIFEST}); {hint}")
    try:
        manifest = read_json(directory / MANIFEST)
        files = manifest["files"]
    except (ValueError, KeyError, TypeError) as error:
        raise BundleError(f"{directory / MANIFEST} is unreadable ({error}); {hint}") from None
    for name in BUNDLE_FILES:
        path = directory / name
        if not path.exists():
            raise BundleError(f"{directory} lacks {name}: the bundle is incomplete; {hint}")
        if name not in files or _sha256(path) != files[name]["sha256"]:
            raise BundleError(f"{path} does not match {MANIFEST} (truncated or replaced); "
                              f"{hint}")
    return manifest


class Bundle:
    """A loaded bundle: `predict_texts(texts) -> probabilities` [n, classes], `labels`,
    `disk_bytes`, `parameters` (from the model card's source, when known)."""

    def __init__(self, directory, num_threads=None):
        from tokenizers import Tokenizer
        from .tflite import TFLiteClassifier
        self.directory = Path(directory)
        self.manifest = check_bundle(self.directory)
        self.labels = read_json(self.directory / "labels.json")
        self.preprocessing = read_json(self.directory / "preprocessing.json")
        if not (isinstance(self.labels, list) and len(self.labels) >= 2
                and all(isinstance(label, str) for label in self.labels)):
            raise BundleError(f"{self.directory / 'labels.json'} must be a list of class names, "
                              f"got {self.labels!r}")
        self.tokenizer = Tokenizer.from_file(str(self.directory / "tokenizer.json"))
        self.classifier = TFLiteClassifier(self.directory / "model.tflite",
                                           num_threads=num_threads)
        self.disk_bytes = sum(f["bytes"] for f in self.manifest["files"].values())
        self.parameters = int(self.manifest.get("parameters") or 0)

    def hf_tokenizer(self):
        """tokenizer.json behind the part of the transformers tokenizer interface that
        utils.batching and the demo call."""
        return BundleTokenizer(self.directory / "tokenizer.json",
                               self.preprocessing.get("special_tokens", {}))

    def encode(self, text):
        """{input_ids, attention_mask} [1, length] of one tweet, normalised as in training."""
        from .data import clean_text
        ids = np.asarray([self.tokenizer.encode(clean_text(text)).ids], dtype=np.int32)
        return {"input_ids": ids, "attention_mask": np.ones_like(ids)}

    def logits(self, text):
        return np.asarray(self.classifier.predict_on_batch(self.encode(text)))[0]

    def predict_texts(self, texts):
        from .batching import check_texts
        from .demo import softmax
        rows = []
        for text in check_texts(list(texts)):
            rows.append(softmax(self.logits(text).astype(np.float64)))
        if rows and len(rows[0]) != len(self.labels):
            raise BundleError(f"{self.directory}: the model gives {len(rows[0])} classes but "
                              f"labels.json names {len(self.labels)}")
        return np.stack(rows) if rows else np.zeros((0, len(self.labels)))


class BundleTokenizer:
    """`__call__(texts, add_special_tokens=True, truncation=False) -> {"input_ids"}` and the
    special token ids, over a bundle's tokenizer.json. (transformers' PreTrainedTokenizerFast
    cannot wrap it: it rebuilds the vocabulary from id -> token, and a pruned vocabulary maps
    many tokens to the unknown token's id.)"""

    def __init__(self, path, special_tokens):
        from tokenizers import Tokenizer
        self.truncating = Tokenizer.from_file(str(path))
        self.full = Tokenizer.from_file(str(path))
        self.full.no_truncation()
        for name, token in special_tokens.items():
            token_id = self.full.token_to_id(token)
            if token_id is None:
                raise BundleError(f"{path}: special token {token!r} ({name}) is not in its "
                                  "vocabulary")
            setattr(self, name, token)
            setattr(self, f"{name}_id", token_id)

    def __call__(self, texts, add_special_tokens=True, truncation=False, **_):
        tokenizer = self.truncating if truncation else self.full
        encodings = tokenizer.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        return {"input_ids": [e.ids for e in encodings]}


def load_bundle(directory=DEFAULT_BUNDLE, num_threads=None):
    return Bundle(directory, num_threads)


# ------------------------------------------------------------------------------ model card

def model_card(bundle_dir, source, results_dir, test_scores=None):
    """The card's markdown, from results/ (benchmark, thresholding, baseline) and this bundle's
    own test scores; facts that are missing are left out, never guessed."""
    results_dir = Path(results_dir)

    def read(name):
        path = results_dir / name
        return read_json(path) if path.exists() else None
    bench, baseline = read("benchmark.json"), read("baseline.json")
    lines = ["# Tweet sentiment classifier (block-pruned, int8 TFLite)", "",
             "Three classes (negative, neutral, positive) for English tweets. Made by "
             "`python -m utils.export` from the model directory "
             f"`{Path(source).as_posix()}` of the repository \"Improving BERT Memory "
             "Efficiency\".", ""]
    if baseline:
        lines += [f"- **Base model**: `{baseline.get('model', '?')}`, fine-tuned on "
                  f"`{baseline.get('dataset', '?')}`."]
    snapshot = (bench or {}).get("meta", {}).get("snapshot")
    if snapshot:
        chosen = snapshot.get("message") or f"snapshot {snapshot.get('directory')}"
        lines.append(f"- **Pruning**: block pruning (progressive unit pruning with a group-lasso "
                     f"proximal step) to {100 * snapshot.get('sparsity_encoder_linear', 0):.1f}% "
                     f"of the encoder's linear weights; chosen on validation: {chosen}. Empty "
                     "heads and FFN neurons removed, unused vocabulary removed, int8 weights "
                     "(TFLite dynamic range).")
    if test_scores:
        lines.append(f"- **Test scores of this bundle** ({test_scores['examples']:,} tweets): "
                     f"macro-F1 {100 * test_scores['macro_f1']:.1f}%, accuracy "
                     f"{100 * test_scores['accuracy']:.1f}%.")
    size = sum(p.stat().st_size for p in Path(bundle_dir).iterdir() if p.is_file()) \
        if Path(bundle_dir).exists() else None
    if size:
        lines.append(f"- **Size on disk**: {size / 1e6:.1f} MB.")
    variant = (bench or {}).get("variants", {}).get("compact+vocab+tflite-int8")
    if variant:
        facts = {k: variant.get(k) for k in ("latency_ms_median", "latency_speedup_vs_dense",
                                             "macro_f1")}
        if facts["latency_ms_median"]:
            lines.append(f"- **Latency** (batch 1, {bench['meta'].get('cpu_count', '?')} CPU "
                         f"cores): {facts['latency_ms_median']:.2f} ms median"
                         + (f", {facts['latency_speedup_vs_dense']:.2f}x the dense model"
                            if facts["latency_speedup_vs_dense"] else "") + ".")
    lines += ["", "Inputs are normalised as in training (preprocessing.json: links -> HTTPURL, "
              "mentions -> @USER, emoji -> :names:), tokenised with tokenizer.json (truncated "
              "to 64 tokens) and run one tweet at a time. See examples/standalone_predict.py.",
              ""]
    return "\n".join(lines)


def write_examples(directory, texts=None):
    """examples.json beside the bundle's files: its probabilities for a few fixed tweets (the
    demo's examples), so a copy can be checked against what it gave when it was made."""
    from .demo import EXAMPLES
    texts = list(EXAMPLES if texts is None else texts)
    bundle = load_bundle(directory)
    write_json(Path(directory) / EXAMPLES_FILE, {
        "labels": bundle.labels, "texts": texts,
        "probabilities": bundle.predict_texts(texts).round(8).tolist()})


def evaluate_bundle(bundle, split):
    """Macro-F1 and accuracy of a Bundle on a labelled split ({"text", "label"})."""
    from .evaluation import classification_metrics
    predicted = bundle.predict_texts(split["text"]).argmax(axis=1)
    metrics = classification_metrics(split["label"], predicted)
    return {"macro_f1": metrics["macro_f1"], "accuracy": metrics["accuracy"],
            "examples": int(len(predicted))}


# ------------------------------------------------------------------------------ command line

def main(argv=None):
    from . import model as model_lib
    parser = argparse.ArgumentParser(prog="python -m utils.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="TFLite or Keras model directory")
    parser.add_argument("out", help="directory to write (replaced if it exists)")
    parser.add_argument("--format", choices=("bundle", "hf", "keras"), default="bundle",
                        help="bundle: TFLite + tokenizer + labels + card (default); hf: a "
                             "Hugging Face BERT checkpoint (models whose layers all have the "
                             "same widths, e.g. the dense baseline); keras: Keras' model.keras "
                             "(any widths; needs `import utils.model` to read)")
    parser.add_argument("--tokenizer", default=model_lib.DEFAULT_MODEL,
                        help="the base tokenizer the model was trained with")
    parser.add_argument("--data-dir", default=str(REPO_ROOT / "data"),
                        help="prepared splits; the bundle is scored on its test split "
                             "(skipped if absent)")
    parser.add_argument("--results-dir", default=str(REPO_ROOT / "results"))
    args = parser.parse_args(argv)
    try:
        base = model_lib.load_tokenizer(args.tokenizer)
        if args.format in ("hf", "keras"):
            write = export_hf if args.format == "hf" else export_keras
            print(f"{args.format} export written to {write(args.source, args.out, base)}")
            return 0
        out = export_bundle(args.source, args.out, base)
        from . import data
        try:
            test = data.load_splits(args.data_dir)["test"]
        except FileNotFoundError as error:
            print(f"not scoring the bundle: {error}", file=sys.stderr)
            test = None
        scores = evaluate_bundle(load_bundle(out), test) if test is not None else None
        write_card(out, model_card(out, args.source, args.results_dir, scores))
        write_examples(out)
    except (BundleError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"bundle written to {out}" + (f" (test macro-F1 {100 * scores['macro_f1']:.1f}%)"
                                        if scores else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
