"""The live demo's logic (utils.face.demo), its widget driven programmatically, and its CLI."""
import json
import math

import numpy as np
import pytest

from utils import saved
from utils.data import batching
from utils.data import corpus as data
from utils.face import demo

TEXTS = ["@united thanks the crew was great", "delayed again, lost my bag", "on my way to LAX",
         "great service today :)"]


@pytest.fixture(scope="module")
def smoke_root(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("demo")
    demo.make_smoke_models(root, tokenizer, TEXTS)
    return root


@pytest.fixture(scope="module")
def models(smoke_root):
    return demo.load_models(root=smoke_root)


@pytest.mark.parametrize("text, message", [
    ("", "empty"), ("   \n\t ", "empty"), (None, "is NoneType"), (42, "is int"),
    (["a tweet"], "is list"), ("\u200b\u2060", "nothing to classify"),
    ("\x01\x1f", "nothing to classify"), ("\ud800", "nothing to classify")])
def test_bad_input_gives_a_message_not_an_exception(models, text, message):
    answer = demo.classify(text, models)
    assert message in answer.error
    assert answer.answers == []
    assert message in demo.format_text(answer) and message in demo.format_html(answer, models)


def test_notes_say_what_was_done_to_the_text():
    _, notes = demo.prepare_text("@delta see https://t.co/xyz 😂")
    joined = " | ".join(notes)
    assert "@USER" in joined and "HTTPURL" in joined and ":face_with_tears_of_joy:" in joined
    assert demo.prepare_text("plain words")[1] == []
    assert any("non-Latin" in n for n in demo.prepare_text("今日はフライトが遅れた")[1])
    assert not any("non-Latin" in n for n in demo.prepare_text("¡Gracias por todo, señor!")[1])
    long_notes = demo.prepare_text("x" * (demo.MAX_CHARS + 10))[1]
    assert any(f"{demo.MAX_CHARS:,}" in n for n in long_notes)


def test_answers_match_the_saved_models_called_directly(models, smoke_root, tokenizer):
    """The demo's pipeline (normalise, encode, predict, softmax) against a numpy softmax of
    the dense model's own logits, loaded independently from its directory."""
    text = "@AmericanAir worst flight ever, 3 hours late https://t.co/x"
    answer = demo.classify(text, models)
    dense = saved.load_model(smoke_root / demo.DEFAULT_MODELS["dense"].path)
    ids, _ = batching.encode_texts(tokenizer, [data.clean_text(text)], 64)
    logits = np.asarray(dense.predict_on_batch(batching.pad_batch(ids, tokenizer.pad_token_id)))[0]
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    got = answer.answers[0]
    assert got.model == "dense" and not got.error
    np.testing.assert_allclose(list(got.probabilities.values()), expected, atol=1e-5)
    assert got.label == data.LABELS[int(np.argmax(expected))]
    for a in answer.answers:
        assert not a.error, a.error
        assert math.isclose(sum(a.probabilities.values()), 1.0, abs_tol=1e-5)
        assert a.latency_ms > 0
    assert [a.model for a in answer.answers] == list(demo.DEFAULT_MODELS)


def test_int8_bundles_answer_like_the_float_models_they_came_from(models, tokenizer):
    """dense-int8 is the dense model quantized; pruned-int8 the masked model compacted, its
    vocabulary pruned and quantized: each within int8's error of its float source, computed
    independently (Keras on the saved float models)."""
    import tempfile
    from utils.face import bench
    text = "on my way to LAX"
    ids, _ = batching.encode_texts(tokenizer, [text], 64)
    batch = batching.pad_batch(ids, tokenizer.pad_token_id)
    with tempfile.TemporaryDirectory() as scratch:
        sources = bench.make_smoke_models(scratch, tokenizer)   # same seed: same weights
        expected = []
        for directory in sources:
            logits = np.asarray(saved.load_model(directory).predict_on_batch(batch))[0]
            expected.append(np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum())
    by_name = {m.name: m for m in models}
    for name, probabilities in zip(("dense-int8", "pruned-int8"), expected):
        got = demo.answer_with(by_name[name], text)
        np.testing.assert_allclose(list(got.probabilities.values()), probabilities, atol=0.03)
        assert got.label == data.LABELS[int(np.argmax(probabilities))]


def test_long_text_is_truncated_and_says_so(models):
    answer = demo.classify("waiting " * 200, models)
    assert answer.tokens > demo.MAX_LENGTH
    assert any(f"first {demo.MAX_LENGTH} of {answer.tokens} tokens" in n for n in answer.notes)
    assert all(not a.error for a in answer.answers)


@pytest.mark.parametrize("text", ["😂😂😂", "今日はフライトが遅れた", "@a @b @c", "http://x.co " * 3,
                                  "a", "\u200b", "<script>alert(1)</script>", "great \ud800 crew",
                                  "caf\udce9 au lait", "x" * 100_000])
def test_anything_typed_gets_an_answer_or_a_message(models, text):
    """Lone surrogates (undecodable bytes) used to crash every model with the tokenizer's
    TypeError."""
    answer = demo.classify(text, models)
    assert answer.error or answer.answers
    if answer.error:
        assert not answer.answers
    else:
        assert all(not a.error and a.label in data.LABELS for a in answer.answers)
    assert "<script>" not in demo.format_html(answer, models)


def test_pruned_vocabulary_reports_unknown_word_pieces(models):
    answer = demo.classify("zygomorphic xylophone quartermaster", models)
    by_model = {a.model: a for a in answer.answers}
    assert by_model["pruned-int8"].unknown_tokens > by_model["dense-int8"].unknown_tokens
    assert by_model["dense-int8"].unknown_tokens == by_model["dense"].unknown_tokens
    assert any(n.startswith("pruned-int8:") and "[UNK]" in n for n in answer.notes)


def test_a_failing_model_is_reported_and_the_others_still_answer(models):
    class Broken:
        tokenizer, directory, parameters, disk_bytes = models[0].tokenizer, None, 0, 1

        def logits(self, input_ids, attention_mask):
            raise RuntimeError("interpreter exploded")
    bad = demo.DemoModel("broken", "", Broken())
    answer = demo.classify("hello", [models[0], bad])
    assert not answer.answers[0].error
    assert "interpreter exploded" in answer.answers[1].error
    assert "interpreter exploded" in demo.format_text(answer)


def test_missing_models_name_the_directory_and_the_command(tmp_path, capsys):
    with pytest.raises(demo.MissingModelsError) as error:
        demo.load_models(root=tmp_path)
    message = str(error.value)
    for name, spec in demo.DEFAULT_MODELS.items():
        assert str(tmp_path / spec.path) in message and spec.command in message
    assert demo.main(["--root", str(tmp_path), "hi"]) == 2
    assert "utils.face.bench" in capsys.readouterr().err


def test_size_lines_read_the_directories(models):
    lines = demo.size_lines(models)
    assert len(lines) == 3
    sizes = {m.name: m.disk_bytes for m in models}
    assert sizes["pruned-int8"] < sizes["dense-int8"] < sizes["dense"]
    assert f"{sizes['dense'] / 1e6:.1f} MB" in lines[0]
    assert "smaller than dense-int8" in lines[2] and "smaller" not in lines[1]


def cards(html_text):
    """{model: label or None} of the cards in the widget's HTML, in order."""
    import re
    return dict(re.findall(r'data-model="([^"]+)">.*?(?:data-label="([a-z]+)"|</div></div>)',
                           html_text))


def test_widget_driven_programmatically(models, monkeypatch):
    box = demo.build_widget(models, examples=["@delta lost my bag again", "thanks!"])
    assert list(cards(box.result.value)) == list(demo.DEFAULT_MODELS)   # before any tweet
    assert set(cards(box.result.value).values()) == {""}
    box.text.value = "@united thanks the crew was great"   # Enter commits the text: classified
    answered = cards(box.result.value)
    assert list(answered) == list(demo.DEFAULT_MODELS)
    assert all(label in data.LABELS for label in answered.values())
    assert " ms" in box.result.value and "vs dense-int8" in box.result.value
    box.button.click()                                      # the button classifies it again
    assert "vs dense-int8" in box.result.value
    box.text.value = "   "
    assert "empty" in box.result.value

    # the dropdown and the text stay in step, and the same example can be picked twice
    box.examples.value = "@delta lost my bag again"
    assert box.text.value == "@delta lost my bag again" and "@USER lost my bag" in box.result.value
    box.text.value = "something else"
    assert box.examples.value == "" and box.examples.index == 0   # the placeholder, shown
    box.examples.value = "@delta lost my bag again"
    assert "@USER lost my bag" in box.result.value

    def explode(*args, **kwargs):
        raise MemoryError("out of memory")
    monkeypatch.setattr(demo, "classify", explode)
    box.button.click()
    assert "Something went wrong" in box.result.value and "out of memory" in box.result.value


def test_cards_ratios_are_against_the_dense_int8_model(models):
    answer = demo.classify("@united thanks the crew was great", models)
    by_model = {a.model: a for a in answer.answers}
    page = demo.format_html(answer, models)
    reference = by_model["dense-int8"].latency_ms
    pruned = by_model["pruned-int8"].latency_ms
    assert f"{pruned:.1f} ms · ×{reference / pruned:.1f} vs dense-int8" in page
    sizes = {m.name: m.disk_bytes for m in models}
    assert f"×{sizes['dense-int8'] / sizes['pruned-int8']:.1f} smaller" in page


def test_a_missing_model_gets_a_card_saying_what_makes_it(models):
    present = [m for m in models if m.name != "dense"]
    missing = [("dense", None, demo.DEFAULT_MODELS["dense"].command)]
    box = demo.build_widget(present, missing=missing)
    assert list(cards(box.result.value)) == ["dense-int8", "pruned-int8"]   # the loaded ones
    assert box.result.value.index(">dense<") < box.result.value.index(">dense-int8<")
    assert "not on this machine" in box.result.value and "make run" in box.result.value
    box.text.value = "great flight"
    assert "not on this machine" in box.result.value


def test_scores_come_from_the_bundle_itself_or_the_baseline_record(models, tmp_path):
    import shutil
    assert demo.test_scores(models, tmp_path) == {}    # SMOKE bundles were never scored
    bundle = tmp_path / "bundle"
    shutil.copytree(models[2].directory, bundle)
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest["test_scores"] = {"macro_f1": 0.8123, "accuracy": 0.83, "examples": 10}
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    (tmp_path / "baseline.json").write_text(json.dumps({"test": {"macro_f1": 0.845}}))
    scored = [demo.DemoModel("dense", "", models[0].saved),
              demo.DemoModel("pruned-int8", "", saved.load(bundle, models[0].tokenizer))]
    assert demo.test_scores(scored, tmp_path) == {"dense": 0.845, "pruned-int8": 0.8123}
    page = demo.format_html(None, scored, scores=demo.test_scores(scored, tmp_path))
    assert "test macro-F1 84.5%" in page and "test macro-F1 81.2%" in page


def test_cli_prints_the_comparison(smoke_root, capsys):
    assert demo.main(["--root", str(smoke_root), "@united thanks", "caf\udce9 ok"]) == 0
    out = capsys.readouterr().out
    assert "dense-int8" in out and "pruned-int8" in out and "MB on disk" in out
    assert "vs dense-int8" in out
    assert "undecodable bytes read as" in out


def test_cli_refuses_a_text_with_nothing_to_classify_before_loading(smoke_root, capsys,
                                                                     monkeypatch):
    monkeypatch.setattr(demo, "load_models", lambda **_: pytest.fail("models loaded"))
    assert demo.main(["--root", str(smoke_root), "@united thanks", "\u200b"]) == 2
    captured = capsys.readouterr()
    assert not captured.out and captured.err.count("\n") == 1
    assert "text #1 '\\u200b' has nothing to classify" in captured.err


class _Named:
    def __init__(self, name):
        self.name = name


def test_latency_record_is_written_only_by_the_pipeline_for_every_model(tmp_path, caplog,
                                                                         monkeypatch):
    """A presenter's run, or a demo of the committed bundles alone (a fresh clone), must not
    replace the record and figure of a full run; the pipeline's run of every model writes
    both."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from utils.common import io
    results, figures = tmp_path / "results", tmp_path / "figures"
    figure = plt.figure()
    record = {"models": [{"model": "pruned-int8"}]}
    every = [_Named(n) for n in demo.DEFAULT_MODELS]
    monkeypatch.delenv(io.STEP_VARIABLE, raising=False)
    assert demo.write_latency_record(every, record, figure, results, figures) == []
    assert "not a pipeline step" in caplog.text
    monkeypatch.setenv(io.STEP_VARIABLE, "06_demo")
    assert demo.write_latency_record([_Named("dense-int8"), _Named("pruned-int8")], record,
                                     figure, results, figures) == []
    assert not results.exists() and not figures.exists()
    assert "not writing" in caplog.text and "dense not timed" in caplog.text
    written = demo.write_latency_record(every, record, figure, results, figures)
    assert written == [figures / "06_demo_latency.png", results / "demo.json"]
    assert json.loads((results / "demo.json").read_text())["models"] == record["models"]
    assert (figures / "06_demo_latency.png").stat().st_size > 0
    plt.close(figure)


def test_latency_rows_and_figure(models, tmp_path):
    rows = demo.measure_latency(models, TEXTS, repeats=1)
    assert [r["model"] for r in rows] == ["dense", "dense-int8", "pruned-int8"]
    assert rows[1]["speedup_vs_dense-int8"] == pytest.approx(1.0)
    assert rows[1]["label_agreement_with_dense-int8"] == 1.0
    assert all(r["latency_ms_median"] > 0 and r["errors"] == 0 for r in rows)
    demo.plot_latency(rows, tmp_path / "latency.png")
    assert (tmp_path / "latency.png").stat().st_size > 1000


def test_a_relative_root_gives_absolute_model_directories(smoke_root):
    import os
    loaded = demo.load_models(root=os.path.relpath(smoke_root), warm_up=False)
    assert all(m.directory.is_absolute() and m.directory.is_relative_to(smoke_root.resolve())
               for m in loaded)
