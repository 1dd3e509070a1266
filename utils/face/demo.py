"""Live demo: the dense and the pruned models answer the same tweet, side by side.

The notebook (06_demo) wraps `build_widget`; outside Jupyter the same comparison prints with

    python -m utils.face.demo "@united thanks, the crew was great"

Only saved models are loaded (no training), each with `utils.saved.load`, as cards side by side
(DEFAULT_MODELS): the fine-tuned dense model (float32, `make run`), and two int8 TFLite bundles
that the benchmark publishes and of which copies are committed: the dense model quantized alone
and the block-pruned one (its snapshot chosen on validation, unused vocabulary removed). So a
fresh clone already compares pruned with dense on the same runtime; every ratio is against that
dense int8 bundle (REFERENCE), and the float32 model's card says which command makes it.

Anything typed is answered without a traceback: a text with nothing to classify (empty, or only
whitespace, invisible or control characters; `utils.saved.readable_text`, the check of every
prediction path) or non-string input gives a message instead of predictions, and undecodable
bytes are read as U+FFFD; the text goes through the same normalisation as the training tweets
(mentions -> @USER, links -> HTTPURL, emoji -> :names:); text longer than the models' 64 tokens
is truncated, and each answer lists what was done to the text (`notes`).

Notebook 06 times the models (`measure_latency`) and keeps the record (`write_latency_record`:
results/demo.json and figures/06_demo_latency.png) only when `make run` runs it and it timed
every model of DEFAULT_MODELS: a presenter's run, or a fresh clone with the bundles alone, leaves
the committed record of a full run as it is.
"""
from __future__ import annotations

import html
import json
import logging
import re
import sys
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from utils import saved
from utils.common import cli, logs, sizes
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



@dataclass(frozen=True)
class ModelSpec:
    path: str          # directory relative to the repository root
    title: str         # the card's subtitle, short enough for a projector
    description: str   # what it is, for the record (results/demo.json, the report)
    command: str       # what makes it


# The presenter's comparison, in card order. Both int8 bundles are committed, so a fresh clone
# compares the pruned model with the dense one quantized the same way and run by the same
# runtime: what pruning adds over quantization alone. The float32 dense model is what `make run`
# fine-tunes; on a fresh clone its card says which command makes it. The pruned snapshot is
# chosen on validation by the benchmark (utils.pruning.sweep.choose_snapshot), which publishes
# both bundles; results/benchmark.json says which snapshot.
DEFAULT_MODELS = {
    "dense": ModelSpec(
        "checkpoints/baseline/best", "float32 · Keras",
        "the fine-tuned MiniLM, float32, run by Keras",
        "make run (notebook 02_baseline_finetune saves it)"),
    "dense-int8": ModelSpec(
        "models/tweet-sentiment-dense-int8", "int8 · TFLite · nothing pruned",
        "the dense model with int8 weights (TFLite dynamic range), nothing pruned: what "
        "quantization alone gives; a committed bundle",
        "make run (notebook 05_benchmark publishes it; a copy is committed)"),
    "pruned-int8": ModelSpec(
        "models/tweet-sentiment-int8", "int8 · TFLite · block-pruned",
        "block-pruned snapshot chosen on validation, empty heads, FFN neurons and unused "
        "vocabulary removed, int8 weights (TFLite dynamic range); a committed bundle",
        "make run (notebook 05_benchmark publishes it; a copy is committed)"),
}
# Every card's speed and size ratio is against this one: the same runtime and quantization.
REFERENCE = "dense-int8"


class MissingModelsError(FileNotFoundError):
    pass


@dataclass
class DemoModel:
    name: str
    description: str
    saved: object            # utils.saved.SavedModel: logits(input_ids, attention_mask), tokenizer
    title: str = ""          # the card's subtitle (ModelSpec.title)

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
    return [(name, Path(root, spec.path), spec.command) for name, spec in models.items()
            if not (saved.is_model_dir(Path(root, spec.path))
                    or saved.looks_like_bundle(Path(root, spec.path)))]


def missing_message(missing):
    lines = ["The demo loads saved models only; missing:"]
    lines += [f"  - {name}: {directory} -- create it with: {command}"
              for name, directory, command in missing]
    return "\n".join(lines)


def load_models(models=None, tokenizer_name=None, root=REPO_ROOT, warm_up=True,
                allow_missing=False):
    """[DemoModel] for {name: ModelSpec}, each loaded (with the start-up lines of TensorFlow's
    and TFLite's C++ cores silenced: `logs.native_stderr_silenced`) with
    `utils.saved.load`. A missing model raises MissingModelsError naming every missing
    directory and its command before anything is loaded; with allow_missing, the models that
    exist are loaded (the error is raised only if none does)."""
    models = DEFAULT_MODELS if models is None else models
    missing = missing_models(models, root)
    if missing and (not allow_missing or len(missing) == len(models)):
        raise MissingModelsError(missing_message(missing))
    absent = {name for name, _, _ in missing}
    for name, spec in models.items():   # a damaged bundle: its error before seconds of loading
        if name not in absent and not saved.is_model_dir(Path(root, spec.path)):
            saved.bundle.check_bundle(Path(root, spec.path))
    base_tokenizer = hub.load_tokenizer(tokenizer_name or hub.DEFAULT_MODEL)
    with logs.native_stderr_silenced():
        loaded = [DemoModel(name, spec.description,
                            saved.load(Path(root, spec.path).resolve(), base_tokenizer),
                            spec.title)
                  for name, spec in models.items() if name not in absent]
        if warm_up:   # trace / allocate once so the first tweet is timed like every other
            classify("warm up", loaded, repeats=1)
    return loaded


def make_smoke_models(root, tokenizer, texts):
    """Tiny random stand-ins for DEFAULT_MODELS, saved at the same paths under `root` (SMOKE
    runs and tests): a dense model (utils.face.bench's smoke models), it as an int8 TFLite
    bundle, and its compacted masked copy with a vocabulary pruned to `texts` as another. The
    returned paths add "compact", that copy before the vocabulary (notebook 08's pruned model),
    saved where the benchmark saves it."""
    import shutil
    import tempfile

    from utils.compression import compact, vocab  # Keras: only for the SMOKE stand-ins
    paths = {name: Path(root, spec.path) for name, spec in DEFAULT_MODELS.items()}
    with tempfile.TemporaryDirectory() as scratch:
        dense_dir, masked_dir = bench.make_smoke_models(scratch, tokenizer)
        paths["dense"].parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(paths["dense"], ignore_errors=True)
        shutil.copytree(dense_dir, paths["dense"])
        compacted = compact.compact_model(saved.load_model(masked_dir))
    export.export_bundle(saved.load_model(paths["dense"]), paths["dense-int8"], tokenizer)
    paths["compact"] = Path(root, "checkpoints", "bench", "compact")
    saved.save(compacted, paths["compact"])
    small, remapped = vocab.prune_vocabulary(compacted, tokenizer, texts)
    export.export_bundle(small, paths["pruned-int8"], tokenizer, remapped.kept_ids)
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
    alike); speed-up and label agreement relative to `reference_model(models)`."""
    timed = timing.time_variants({m.name: m.saved for m in models}, list(texts), MAX_LENGTH,
                                 rounds=repeats)
    answers = {m.name: [answer_with(m, text, repeats=1) for text in texts] for m in models}
    reference = reference_model(models).name
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

def reference_model(models):
    """The model every ratio is against: REFERENCE (the dense model quantized as the pruned one
    is) when loaded, else the first."""
    return next((m for m in models if m.name == REFERENCE), models[0])


def size_lines(models):
    """One line per model: bytes on disk (its directory's model files) and parameters."""
    reference = reference_model(models)
    return [f"{m.name}: {sizes.format_mb(m.disk_bytes)} on disk, {m.parameters / 1e6:.1f}M parameters"
            + ("" if m is reference
               else f", ×{reference.disk_bytes / m.disk_bytes:.1f} smaller than {reference.name}")
            for m in models]


def test_scores(models, results_dir=REPO_ROOT / "results"):
    """{model name: test macro-F1} where it is known for that very model: a bundle's own
    (`utils.saved.export.publish` writes it into bundle.json), the dense model's from
    results/baseline.json (notebook 02 scores the checkpoint it saves)."""
    scores = {}
    for m in models:
        manifest = Path(m.directory, saved.bundle.MANIFEST)
        try:
            if manifest.is_file():
                value = json.loads(manifest.read_text())["test_scores"]["macro_f1"]
            elif m.name == "dense":
                value = json.loads(Path(results_dir, "baseline.json").read_text())[
                    "test"]["macro_f1"]
            else:
                continue
        except (OSError, ValueError, KeyError, TypeError):
            continue
        scores[m.name] = value
    return scores


def format_text(answer):
    """The comparison as plain text (the CLI's output); ratios against REFERENCE."""
    if answer.error:
        return answer.error
    lines = [f"text: {answer.normalized}"] + [f"note: {n}" for n in answer.notes]
    timed = {a.model: a.latency_ms for a in answer.answers if not a.error}
    reference = REFERENCE if REFERENCE in timed else next(iter(timed), None)
    for a in answer.answers:
        if a.error:
            lines.append(f"{a.model:>12}  failed: {a.error}")
            continue
        probs = "  ".join(f"{k} {v:6.1%}" for k, v in a.probabilities.items())
        speed = (f"  ×{timed[reference] / a.latency_ms:.1f} vs {reference}"
                 if reference and a.model != reference else "")
        lines.append(f"{a.model:>12}  {a.label:<8}  {probs}  {a.latency_ms:7.1f} ms{speed}")
    return "\n".join(lines)


LABEL_COLOURS = {"negative": "#c0392b", "neutral": "#5d6d7e", "positive": "#1e8449"}
# Sized for a projector: the label and latency are read from the back of a room.
STYLE = """<style>
.demo-input input[type="text"] {font-size: 22px !important; height: 46px !important}
.demo-examples select {font-size: 17px !important; height: 36px !important}
.demo-button {font-size: 18px !important}
.demo-cards {display: flex; flex-wrap: wrap; gap: 16px; margin-top: 8px}
.demo-card {border: 2px solid #d5d8dc; border-radius: 10px; padding: 12px 16px; width: 330px;
            font-size: 17px; line-height: 1.35; color: #1b2631; background: #fff}
.demo-card.demo-missing {border-style: dashed; color: #566573; background: #f8f9f9}
.demo-name {font-size: 22px; font-weight: 700}
.demo-title {font-size: 15px; color: #566573; margin-bottom: 6px}
.demo-label {font-size: 34px; font-weight: 800; margin: 4px 0}
.demo-bar {display: flex; align-items: center; gap: 8px; font-size: 16px}
.demo-bar > span:first-child {width: 80px}
.demo-latency {font-size: 21px; font-weight: 700; margin-top: 8px}
.demo-facts {font-size: 16px; margin-top: 4px}
.demo-message {font-size: 20px; font-weight: 700; color: #c0392b}
.demo-read {font-size: 15px; color: #566573}
</style>"""


def _card(model, answer, reference, reference_ms, score, missing_command=None):
    """One model's card: name, label, probability bars, latency with its ratio to the
    reference, size and parameters with theirs, test macro-F1."""
    name = html.escape(model if missing_command else model.name)
    if missing_command:
        spec = DEFAULT_MODELS.get(model)
        return (f'<div class="demo-card demo-missing"><div class="demo-name">{name}</div>'
                f'<div class="demo-title">{html.escape(spec.title if spec else "")}</div>'
                f'not on this machine: <code>{html.escape(missing_command)}</code> makes it'
                '</div>')
    parts = [f'<div class="demo-card" data-model="{name}"><div class="demo-name">{name}</div>'
             f'<div class="demo-title">{html.escape(model.title)}</div>']
    if answer is None:
        parts.append('<div class="demo-label" style="color:#aeb6bf">…</div>')
    elif answer.error:
        parts.append(f'<div class="demo-message">failed: {html.escape(answer.error)}</div>')
    else:
        parts.append(f'<div class="demo-label" data-label="{answer.label}" '
                     f'style="color:{LABEL_COLOURS.get(answer.label, "#000")}">{answer.label}</div>')
        parts += [f'<div class="demo-bar"><span>{label}</span>'
                  f'<span style="display:inline-block;height:16px;width:{170 * p:.0f}px;'
                  f'background:{LABEL_COLOURS.get(label, "#3465a4")}"></span>'
                  f'<span>{p:.0%}</span></div>' for label, p in answer.probabilities.items()]
        ratio = ("" if model is reference or not reference_ms else
                 f" · ×{reference_ms / answer.latency_ms:.1f} vs {html.escape(reference.name)}")
        parts.append(f'<div class="demo-latency">{answer.latency_ms:.1f} ms{ratio}</div>')
    size_ratio = ("" if model is reference else
                  f" · ×{reference.disk_bytes / model.disk_bytes:.1f} smaller")
    parts.append(f'<div class="demo-facts">{sizes.format_mb(model.disk_bytes)}{size_ratio} · '
                 f'{model.parameters / 1e6:.1f}M parameters'
                 + (f' · test macro-F1 {100 * score:.1f}%' if score is not None else "")
                 + '</div></div>')
    return "".join(parts)


def format_html(answer, models=(), missing=(), scores=None):
    """The comparison as HTML: one card per model (`models`, then one per `missing` entry of
    `missing_models`, saying what makes it), each with its label, probability bars, latency
    and size, ratios against REFERENCE. `answer` None: the cards before the first tweet."""
    scores = scores or {}
    if answer is not None and answer.error:
        return f'<p class="demo-message">{html.escape(answer.error)}</p>'
    by_model = {a.model: a for a in answer.answers} if answer is not None else {}
    reference = reference_model(models) if models else None
    reference_answer = by_model.get(reference.name) if reference else None
    reference_ms = (reference_answer.latency_ms if reference_answer and not reference_answer.error
                    else None)
    head = ""
    if answer is not None:
        notes = "; ".join(html.escape(n) for n in answer.notes)
        head = (f'<div class="demo-read">read as: <code>{html.escape(answer.normalized[:300])}'
                f'</code>{" — " + notes if notes else ""}</div>')
    cards = {m.name: _card(m, by_model.get(m.name), reference, reference_ms,
                           scores.get(m.name)) for m in models}
    cards.update({name: _card(name, None, None, None, None, missing_command=command)
                  for name, _, command in missing})
    order = [name for name in DEFAULT_MODELS if name in cards]
    order += [name for name in cards if name not in order]
    return head + '<div class="demo-cards">' + "".join(cards[n] for n in order) + "</div>"


def build_widget(models, examples=EXAMPLES, missing=(), scores=None):
    """The ipywidgets interface, for a presenter: an example dropdown and a one-line text box
    (Enter classifies, as does the button), then one card per model side by side (`missing`
    models get a card saying what makes them). Returns the container; its parts are reachable
    for tests as `.text`, `.examples`, `.button`, `.result`.

    The dropdown and the text stay in step: picking an example puts it in the box and
    classifies it; editing the box returns the dropdown to its placeholder, so the same example
    can be picked again."""
    import ipywidgets as widgets
    text = widgets.Text(placeholder="Type a tweet, then press Enter", continuous_update=False,
                        layout=widgets.Layout(width="680px"))
    text.add_class("demo-input")
    # the placeholder's value is "", not None: ipywidgets turns a value of None into no
    # selection at all, a blank box
    options = [("Example tweets…", "")] + [(e if len(e) < 80 else e[:77] + "…", e)
                                           for e in examples]
    dropdown = widgets.Dropdown(options=options, value="", layout=widgets.Layout(width="680px"))
    dropdown.add_class("demo-examples")
    button = widgets.Button(description="classify", button_style="primary",
                            layout=widgets.Layout(height="46px", width="120px"))
    button.add_class("demo-button")
    result = widgets.HTML(format_html(None, models, missing, scores))
    result.add_class("demo-result")

    def show(_=None):
        try:
            result.value = format_html(classify(text.value, models), models, missing, scores)
        except Exception as error:   # noqa: BLE001 -- never a traceback in the presenter's cell
            result.value = (f'<p class="demo-message">Something went wrong: '
                            f'{html.escape(type(error).__name__)}: {html.escape(str(error))}</p>')

    def typed(change):   # Enter (or leaving the box) commits the text: classify it
        if dropdown.value and change["new"] != dropdown.value:
            dropdown.value = ""   # the placeholder: the same example can be picked again
        show()

    def picked(change):
        if not change["new"]:
            return
        if text.value == change["new"]:
            show()
        else:
            text.value = change["new"]   # `typed` classifies it

    button.on_click(show)
    text.observe(typed, names="value")
    dropdown.observe(picked, names="value")
    box = widgets.VBox([widgets.HTML(STYLE), dropdown, widgets.HBox([text, button]), result])
    box.text, box.examples, box.button, box.result = text, dropdown, button, result
    return box


# ------------------------------------------------------------------------------ record

def write_latency_record(models, record, figure, results_dir, figures_dir):
    """Write `record` (the facts of a timing run; `measure_latency`'s rows under "models") to
    results_dir/demo.json and `figure` (`plot_latency`'s) to figures_dir/06_demo_latency.png,
    only when the pipeline runs the notebook (`make run`: io.STEP_VARIABLE is set) and `models`
    are every model of DEFAULT_MODELS: a presenter's run, or a demo of the committed bundles
    alone on a fresh clone, must not replace the record of a full run. Returns the paths
    written, or [] after one log line saying why nothing was."""
    import os

    from utils.common import io
    from utils.face.plots import save_figure
    timed = [m.name for m in models]
    absent = [name for name in DEFAULT_MODELS if name not in timed]
    target = Path(results_dir) / "demo.json"
    if not os.environ.get(io.STEP_VARIABLE):
        log.info(f"not writing {io.shown(target)} nor the latency figure: the record is "
                 "`make run`'s (this run is not a pipeline step)")
        return []
    if absent:
        log.warning(f"not writing {io.shown(target)} nor the latency figure: "
                    f"{', '.join(absent)} not timed (only {', '.join(timed) or 'no model'}); "
                    "`make run` makes every model of the record")
        return []
    paths = [save_figure(figure, Path(figures_dir) / "06_demo_latency.png"), target]
    io.write_json(target, {**record, "git_commit": io.git_commit()})
    return paths


# ------------------------------------------------------------------------------ presenting

NOTEBOOK = REPO_ROOT / "notebooks" / "06_demo.ipynb"
VOILA_PORT = 8866


def voila_command(port=VOILA_PORT, open_browser=True):
    """The command that presents notebook 06 (`make demo`): Voila shows its text, the widget
    and the outputs with the code hidden, bound to this machine only (127.0.0.1); progressive
    rendering puts the widget on screen before the record cells below it have run. Voila never
    writes the notebook, so presenting leaves `git status` clean."""
    return ([sys.executable, "-m", "voila", str(NOTEBOOK), "--Voila.ip=127.0.0.1",
             f"--port={port}", "--progressive_rendering=True", "--theme=light"]
            + ([] if open_browser else ["--no-browser"]))


# ------------------------------------------------------------------------------ command line

def main(argv=None):
    parser = cli.argument_parser("utils.face.demo", "Classify tweets with the dense and the "
                                 "pruned models and compare their answers and latency.")
    parser.add_argument("texts", nargs="*", help="tweets (default: the built-in examples)")
    parser.add_argument("--root", default=str(REPO_ROOT),
                        help="repository root the model directories are relative to")
    parser.add_argument("--present", action="store_true",
                        help="serve notebook 06 in Voila on http://127.0.0.1:PORT instead "
                             "(`make demo`)")
    parser.add_argument("--port", type=int, default=VOILA_PORT, help="with --present")
    parser.add_argument("--no-browser", action="store_true", help="with --present")
    args = parser.parse_args(argv)
    if args.present:
        import subprocess
        command = voila_command(args.port, open_browser=not args.no_browser)
        print(f"presenting {NOTEBOOK.relative_to(REPO_ROOT)} at http://127.0.0.1:{args.port}/ "
              "(Ctrl+C stops it)", flush=True)
        try:
            return subprocess.call(command, cwd=NOTEBOOK.parent)
        except KeyboardInterrupt:
            return 0
    try:   # every text and the root before the models load (seconds)
        texts = [saved.readable_text(text, i) for i, text in enumerate(args.texts)] or EXAMPLES
        missing = missing_models(root=args.root)
        if not Path(args.root).is_dir() or len(missing) == len(DEFAULT_MODELS):
            raise MissingModelsError(
                f"--root {args.root} holds none of the demo's models ("
                + ", ".join(spec.path for spec in DEFAULT_MODELS.values()) + "): pass the "
                "repository root (a clone has the two int8 bundles), or make them: `make run`, or "
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
