"""Live demo: the dense and the pruned models answer the same tweet, side by side.

The notebook (06_demo) wraps `build_widget`; outside Jupyter the same comparison prints with

    python -m utils.face.demo "@united thanks, the crew was great"

Only saved models are loaded (no training), each with `utils.saved.load`: by default the
fine-tuned baseline, the compact model `python -m utils.face.bench` derives from the pruned snapshot
it chose on validation, and the bundle models/tweet-sentiment-int8 (`utils.saved.export`: that model
with its unused vocabulary removed, int8 TFLite) which the benchmark publishes. A copy of that
bundle is committed, so a fresh clone can demo before any training: `load_models(
allow_missing=True)` answers with what exists and `MissingModelsError` says which command makes
the rest.

Anything typed is answered without a traceback: a text with nothing to classify (empty, or only
whitespace, invisible or control characters; `utils.saved.readable_text`, the check of every
prediction path) or non-string input gives a message instead of predictions, and undecodable
bytes are read as U+FFFD; the text goes through the same normalisation as the training tweets
(mentions -> @USER, links -> HTTPURL, emoji -> :names:); text longer than the models' 64 tokens
is truncated, and each answer lists what was done to the text (`notes`).

Notebook 06 times the models (`measure_latency`) and keeps the record (`write_latency_record`:
results/demo.json and figures/06_demo_latency.png) only when it timed every model of
DEFAULT_MODELS: a demo of the committed bundle alone, on a fresh clone, leaves the committed
record of a full run as it is.
"""
from __future__ import annotations

import html
import logging
import re
import sys
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from utils import saved
from utils.common import cli, sizes
from utils.common.io import REPO_ROOT
from utils.data import batching
from utils.data import corpus as data
from utils.data.corpus import EXAMPLES, LABELS
from utils.encoder import hub
from utils.face import bench
from utils.measurement import timing
from utils.saved import SavedModelError, export

log = logging.getLogger("utils.face.demo")   # also under `python -m`

MAX_LENGTH = 64            # tokens, as in training (utils.training.train.TrainConfig.max_length)
MAX_CHARS = 5000           # longer input is cut before tokenising, so a paste cannot stall the demo
TIMING_REPEATS = 3         # latency shown = median of this many forward passes

# name -> (directory relative to the repository, what it is, the command that creates it)
# The pruned snapshot is chosen on validation by the benchmark (utils.pruning.sweep.choose_snapshot),
# which saves the derived models the demo loads; results/benchmark.json says which snapshot.
BENCH = "notebooks/05_benchmark.ipynb (or `python -m utils.face.bench`)"
DEFAULT_MODELS = {
    "dense": ("checkpoints/baseline/best", "fine-tuned MiniLM, float32",
              "make run (notebooks 01_data_prep and 02_baseline_finetune)"),
    "compact": ("checkpoints/bench/compact",
                "block-pruned snapshot chosen on validation, empty heads and FFN neurons "
                "removed, float32",
                f"notebooks 03-04, then {BENCH}"),
    "compact+int8": ("models/tweet-sentiment-int8",
                     "compact + unused vocabulary removed, int8 weights (TFLite dynamic range); "
                     "a bundle that runs without this repository",
                     f"notebooks 03-04, then {BENCH}; a copy is committed"),
}



class MissingModelsError(FileNotFoundError):
    pass


@dataclass
class DemoModel:
    name: str
    description: str
    saved: object            # utils.saved.SavedModel: logits(input_ids, attention_mask), tokenizer

    def __getattr__(self, attribute):
        """The saved model's directory, tokenizer, parameters, disk_bytes, ..."""
        if attribute == "saved":   # not set yet (copy, pickle): no recursion
            raise AttributeError(attribute)
        return getattr(self.saved, attribute)


@dataclass
class ModelAnswer:
    model: str
    label: str = ""
    probabilities: dict = field(default_factory=dict)
    latency_ms: float = float("nan")
    unknown_tokens: int = 0   # word pieces outside this model's (possibly pruned) vocabulary
    error: str = ""


@dataclass
class DemoAnswer:
    text: object
    normalized: str = ""
    tokens: int = 0
    notes: list = field(default_factory=list)
    answers: list = field(default_factory=list)
    error: str = ""


# ------------------------------------------------------------------------------ loading

def missing_models(models=None, root=REPO_ROOT):
    """[(name, directory, command)] of the models that are not saved (neither a utils.saved
    model directory nor a bundle)."""
    models = DEFAULT_MODELS if models is None else models
    return [(name, Path(root, path), command) for name, (path, _, command) in models.items()
            if not (saved.is_model_dir(Path(root, path))
                    or saved.looks_like_bundle(Path(root, path)))]


def missing_message(missing):
    lines = ["The demo loads saved models only; missing:"]
    lines += [f"  - {name}: {directory} -- create it with: {command}"
              for name, directory, command in missing]
    return "\n".join(lines)


def load_models(models=None, tokenizer_name=None, root=REPO_ROOT, warm_up=True,
                allow_missing=False):
    """[DemoModel] for {name: (directory, description, command)}, each loaded with
    `utils.saved.load`. A missing model raises MissingModelsError naming every missing
    directory and its command before anything is loaded; with allow_missing, the models that
    exist are loaded (the error is raised only if none does)."""
    models = DEFAULT_MODELS if models is None else models
    missing = missing_models(models, root)
    if missing and (not allow_missing or len(missing) == len(models)):
        raise MissingModelsError(missing_message(missing))
    absent = {name for name, _, _ in missing}
    for name, (path, _, _) in models.items():   # a damaged bundle: its error before seconds of loading
        if name not in absent and not saved.is_model_dir(Path(root, path)):
            saved.bundle.check_bundle(Path(root, path))
    base_tokenizer = hub.load_tokenizer(tokenizer_name or hub.DEFAULT_MODEL)
    loaded = [DemoModel(name, description, saved.load(Path(root, path).resolve(), base_tokenizer))
              for name, (path, description, _) in models.items() if name not in absent]
    if warm_up:   # trace / allocate once so the first tweet is timed like every other
        classify("warm up", loaded, repeats=1)
    return loaded


def make_smoke_models(root, tokenizer, texts):
    """Tiny random stand-ins for DEFAULT_MODELS, saved at the same paths under `root` (SMOKE
    runs and tests): a dense model, its compacted masked copy (utils.face.bench's smoke models) and
    that copy with a vocabulary pruned to `texts` as an int8 TFLite bundle."""
    import shutil
    import tempfile

    from utils.compression import compact, vocab  # Keras: only for the SMOKE stand-ins
    paths = {name: Path(root, path) for name, (path, _, _) in DEFAULT_MODELS.items()}
    with tempfile.TemporaryDirectory() as scratch:
        dense_dir, masked_dir = bench.make_smoke_models(scratch, tokenizer)
        paths["dense"].parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(paths["dense"], ignore_errors=True)
        shutil.copytree(dense_dir, paths["dense"])
        compacted = compact.compact_model(saved.load_model(masked_dir))
    saved.save(compacted, paths["compact"])
    small, remapped = vocab.prune_vocabulary(compacted, tokenizer, texts)
    export.export_bundle(small, paths["compact+int8"], tokenizer, remapped.kept_ids)
    return paths


# ------------------------------------------------------------------------------ answering

_EMOJI_NAME = re.compile(r":[a-z0-9_&'.-]+:")


def _mostly_non_latin(text):
    letters = [c for c in text if c.isalpha()]
    non_latin = [c for c in letters if not unicodedata.name(c, "").startswith("LATIN")]
    return bool(letters) and len(non_latin) > len(letters) / 2


def prepare_text(text):
    """(normalized text, notes) or raises ValueError with a message for the presenter
    (`saved.readable_text`'s)."""
    text = saved.readable_text(text)
    notes = []
    if "\ufffd" in text:
        notes.append("undecodable bytes read as \ufffd")
    if len(text) > MAX_CHARS:
        notes.append(f"only the first {MAX_CHARS:,} of {len(text):,} characters were read")
        text = text[:MAX_CHARS]
    normalized = data.clean_text(text)
    if "@USER" in normalized:
        notes.append("mentions read as @USER, as in training")
    if "HTTPURL" in normalized:
        notes.append("links read as HTTPURL, as in training")
    emoji_name = _EMOJI_NAME.search(normalized)
    if emoji_name and emoji_name.group() not in text:
        notes.append(f"emoji read as their names, e.g. {emoji_name.group()}")
    if _mostly_non_latin(text):
        notes.append("mostly non-Latin script: the models were fine-tuned on English tweets")
    return normalized, notes


def _encode(tokenizer, text):
    ids, truncated = batching.encode_texts(tokenizer, [text], MAX_LENGTH)
    full_length = len(tokenizer([text], add_special_tokens=True)["input_ids"][0])
    batch = batching.pad_batch(ids, tokenizer.pad_token_id)
    unknown = int(np.sum(ids[0] == tokenizer.unk_token_id))
    return batch, full_length, unknown


def softmax(logits):
    z = np.exp(logits - logits.max())
    return z / z.sum()


def answer_with(model, text, repeats=TIMING_REPEATS):
    """One model's ModelAnswer for an already normalized text; errors are caught and
    reported in the answer so one broken model cannot blank the others."""
    try:
        batch, _, unknown = _encode(model.tokenizer, text)
        latency_ms, logits = timing.median_ms(
            lambda: model.saved.logits(batch["input_ids"], batch["attention_mask"]), repeats)
        probabilities = softmax(logits[0].astype(np.float64))
        return ModelAnswer(model.name, LABELS[int(np.argmax(probabilities))],
                           dict(zip(LABELS, probabilities.tolist())), latency_ms, unknown)
    except Exception as error:   # noqa: BLE001 -- shown to the presenter instead of a traceback
        return ModelAnswer(model.name, error=f"{type(error).__name__}: {error}")


def classify(text, models, repeats=TIMING_REPEATS):
    """DemoAnswer of every model for `text`; never raises for bad input (see `error`)."""
    answer = DemoAnswer(text)
    try:
        answer.normalized, answer.notes = prepare_text(text)
    except ValueError as error:
        answer.error = str(error)
        return answer
    if models:
        _, answer.tokens, _ = _encode(models[0].tokenizer, answer.normalized)
        if answer.tokens > MAX_LENGTH:
            answer.notes.append(f"truncated to the first {MAX_LENGTH} of {answer.tokens} tokens "
                                "(the models were trained on tweets up to that length)")
    answer.answers = [answer_with(m, answer.normalized, repeats) for m in models]
    for a in answer.answers:
        if a.unknown_tokens:
            answer.notes.append(f"{a.model}: {a.unknown_tokens} word piece(s) outside its "
                                "vocabulary, read as [UNK]")
    return answer


def measure_latency(models, texts, repeats=TIMING_REPEATS):
    """Per model: median / 90th-percentile latency of one tweet (batch 1) over `texts`
    (already normalized, e.g. test tweets), timed as the benchmark times (`timing.time_variants`:
    `repeats` rounds, the models' order rotated each round, so background load hits them
    alike); speed-up and label agreement relative to the first model."""
    timed = timing.time_variants({m.name: m.saved for m in models}, list(texts), MAX_LENGTH,
                                 rounds=repeats)
    answers = {m.name: [answer_with(m, text, repeats=1) for text in texts] for m in models}
    reference = models[0].name
    rows = []
    for m in models:
        rows.append({"model": m.name, "description": m.description,
                     "latency_ms_median": timed[m.name]["latency_ms_median"],
                     "latency_ms_p90": timed[m.name]["latency_ms_p90"],
                     "speedup_vs_" + reference: timed[reference]["latency_ms_median"]
                     / timed[m.name]["latency_ms_median"],
                     "label_agreement_with_" + reference: float(np.mean(
                         [a.label == r.label for a, r in zip(answers[m.name],
                                                             answers[reference])])),
                     "disk_bytes": m.disk_bytes, "disk_mb": sizes.megabytes(m.disk_bytes),
                     "parameters": m.parameters,
                     "errors": sum(bool(a.error) for a in answers[m.name])})
    return rows


def plot_latency(rows, path=None):
    """The demo's latency and size bars (utils.face.plots, one colour scheme for all figures)."""
    from utils.face import plots  # matplotlib: not for `--help`
    return plots.plot_demo_latency(rows, path)


# ------------------------------------------------------------------------------ presenting

def size_lines(models):
    """One line per model: bytes on disk (its directory's model files) and parameters."""
    dense = models[0]
    return [f"{m.name}: {sizes.format_mb(m.disk_bytes)} on disk, {m.parameters / 1e6:.1f}M parameters"
            + ("" if m is dense else f", ×{dense.disk_bytes / m.disk_bytes:.1f} smaller than {dense.name}")
            for m in models]


def format_text(answer):
    """The comparison as plain text (the CLI's output)."""
    if answer.error:
        return answer.error
    lines = [f"text: {answer.normalized}"] + [f"note: {n}" for n in answer.notes]
    reference = next((a.latency_ms for a in answer.answers if not a.error), None)
    for a in answer.answers:
        if a.error:
            lines.append(f"{a.model:>14}  failed: {a.error}")
            continue
        probs = "  ".join(f"{k} {v:6.1%}" for k, v in a.probabilities.items())
        speed = f"  ×{reference / a.latency_ms:.1f} vs {answer.answers[0].model}" if reference else ""
        lines.append(f"{a.model:>14}  {a.label:<8}  {probs}  {a.latency_ms:7.1f} ms{speed}")
    return "\n".join(lines)


LABEL_COLOURS = {"negative": "#c0392b", "neutral": "#7f8c8d", "positive": "#27ae60"}


def format_html(answer):
    """The comparison as HTML: one card per model with a probability bar per label."""
    if answer.error:
        return f'<p style="color:#c0392b"><b>{html.escape(answer.error)}</b></p>'
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in answer.notes)
    parts = [f'<p style="color:#555">read as: <code>{html.escape(answer.normalized[:300])}</code></p>',
             f'<ul style="color:#555">{notes}</ul>' if notes else ""]
    reference = next((a.latency_ms for a in answer.answers if not a.error), None)
    for a in answer.answers:
        if a.error:
            parts.append(f'<div><b>{html.escape(a.model)}</b>: failed: {html.escape(a.error)}</div>')
            continue
        bars = "".join(
            f'<div style="display:flex;align-items:center;gap:6px">'
            f'<span style="width:70px">{label}</span>'
            f'<span style="display:inline-block;height:14px;width:{200 * p:.0f}px;'
            f'background:{LABEL_COLOURS.get(label, "#3465a4")}"></span>'
            f'<span>{p:.1%}</span></div>' for label, p in a.probabilities.items())
        speed = f" (×{reference / a.latency_ms:.1f})" if reference else ""
        parts.append(
            f'<div style="display:inline-block;vertical-align:top;margin:6px 18px 6px 0">'
            f'<b>{html.escape(a.model)}</b>: <b style="color:{LABEL_COLOURS.get(a.label, "#000")}">'
            f'{a.label}</b><br>{bars}<span style="color:#555">{a.latency_ms:.1f} ms{speed}</span></div>')
    return "".join(parts)


def build_widget(models, examples=EXAMPLES):
    """The ipywidgets interface: text box, example dropdown, classify button, one card per
    model and the size line. Returns the container; its children are reachable for tests
    as `.text`, `.examples`, `.button`, `.result`."""
    import ipywidgets as widgets
    text = widgets.Textarea(placeholder="Type a tweet…", layout=widgets.Layout(width="640px"))
    options = [("(example tweets)", None)] + [(e if len(e) < 70 else e[:67] + "…", e)
                                               for e in examples]
    dropdown = widgets.Dropdown(options=options, value=None, layout=widgets.Layout(width="640px"))
    button = widgets.Button(description="classify", button_style="primary")
    result = widgets.HTML()
    sizes = widgets.HTML('<p style="color:#555">' + "<br>".join(html.escape(line) for line in
                                                         size_lines(models)) + "</p>")

    def show(_=None):
        try:
            result.value = format_html(classify(text.value, models))
        except Exception as error:   # noqa: BLE001 -- never a traceback in the presenter's cell
            result.value = (f'<p style="color:#c0392b">Something went wrong: '
                            f'{html.escape(type(error).__name__)}: {html.escape(str(error))}</p>')

    def pick(change):
        if change["new"] is not None:
            text.value = change["new"]
            show()

    button.on_click(show)
    dropdown.observe(pick, names="value")
    box = widgets.VBox([dropdown, text, button, result, sizes])
    box.text, box.examples, box.button, box.result = text, dropdown, button, result
    return box


# ------------------------------------------------------------------------------ record

def write_latency_record(models, record, figure, results_dir, figures_dir):
    """Write `record` (the facts of a timing run; `measure_latency`'s rows under "models") to
    results_dir/demo.json and `figure` (`plot_latency`'s) to figures_dir/06_demo_latency.png,
    only when `models` are every model of DEFAULT_MODELS, the set `make run` makes: a demo of
    fewer (a fresh clone has only the committed bundle) must not replace the record of a full
    run. Returns the paths written, or [] after one log line saying why nothing was."""
    from utils.common import io
    from utils.face.plots import save_figure
    timed = [m.name for m in models]
    absent = [name for name in DEFAULT_MODELS if name not in timed]
    if absent:
        log.warning(f"not writing {Path(results_dir) / 'demo.json'} nor the latency figure: "
                    f"{', '.join(absent)} not timed (only {', '.join(timed) or 'no model'}); "
                    "`make run` makes every model of the record")
        return []
    paths = [save_figure(figure, Path(figures_dir) / "06_demo_latency.png"),
             Path(results_dir) / "demo.json"]
    io.write_json(paths[1], {**record, "git_commit": io.git_commit()})
    return paths


# ------------------------------------------------------------------------------ command line

def main(argv=None):
    parser = cli.argument_parser("utils.face.demo", "Classify tweets with the dense and the "
                                 "pruned models and compare their answers and latency.")
    parser.add_argument("texts", nargs="*", help="tweets (default: the built-in examples)")
    parser.add_argument("--root", default=str(REPO_ROOT),
                        help="repository root the model directories are relative to")
    args = parser.parse_args(argv)
    try:   # every text and the root before the models load (seconds)
        texts = [saved.readable_text(text, i) for i, text in enumerate(args.texts)] or EXAMPLES
        missing = missing_models(root=args.root)
        if not Path(args.root).is_dir() or len(missing) == len(DEFAULT_MODELS):
            raise MissingModelsError(
                f"--root {args.root} holds none of the demo's models ("
                + ", ".join(path for path, _, _ in DEFAULT_MODELS.values()) + "): pass the "
                "repository root (a clone has the bundle), or make them: `make run`, or "
                "notebooks 01-04 then `python -m utils.face.bench`")
        start = time.perf_counter()
        models = load_models(root=args.root, allow_missing=True)
    except (MissingModelsError, SavedModelError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if missing:
        print(missing_message(missing) + "\nAnswering with the models that are here.")
    print(f"models loaded in {time.perf_counter() - start:.1f} s")
    for text in texts:
        print()
        print(format_text(classify(text, models)))
    print()
    print("\n".join(size_lines(models)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
