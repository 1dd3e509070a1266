"""Every entry point answers any input with a result or a one-line error naming the bad value and
the fix, never a traceback: the command lines (`python -m utils.face.demo`, `utils.saved.export`,
`utils.face.bench`, `utils.face.report`, `utils.face.pipeline`, examples/standalone_predict.py)
exit 2 with one line on stderr; the library (`SavedModel.predict_texts`) raises one ValueError.
`--help` answers without loading TensorFlow, Keras, transformers or scikit-learn. The text check
is one function (utils.saved.readable_text); the standalone script's copy agrees with it, and
the three prediction paths agree with each other on arbitrary text (hypothesis)."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from utils import saved
from utils.saved import bundle as bundle_lib

ROOT = Path(__file__).resolve().parents[1]
STANDALONE = ROOT / "examples" / "standalone_predict.py"
COMMITTED = bundle_lib.DEFAULT_BUNDLE
MODULES = ("utils.face.demo", "utils.saved.export", "utils.face.bench", "utils.face.report",
           "utils.face.pipeline")
ENTRY_POINTS = [["-m", module] for module in MODULES] + [[str(STANDALONE)]]

# Text no model can classify, and text it must answer (undecodable bytes and lone surrogates are
# read as U+FFFD, 100 KB is truncated to the model's tokens).
UNANSWERABLE = ["", " ", "\t\n\r ", "\u200b", "\u200b\u2060\ufeff\u00ad", "\x01\x1f\x7f",
                "\x00", "\u0301", "\u3000", "\ud800", "\udcff\udc80", "\ufffd", "\ud800 \ufffd",
                "\U000e0001", "\ue000"]
ANSWERABLE = ["a", "!", "😂", "great \ud800 flight", "caf\udce9 was fine", "\u200bok",
              "x" * 100_000, "@united " * 20_000, "a\x00b", "\ud83d\ude02 pair of halves"]


def load_standalone():
    spec = importlib.util.spec_from_file_location("standalone_predict", STANDALONE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def standalone():
    return load_standalone()


@pytest.fixture(scope="module")
def committed():
    return saved.load(COMMITTED)


def run(args, cwd=ROOT, timeout=300):
    """A command line (python ARGS...; ARGS may be bytes, as a shell passes them), its
    stderr decoded, never showing a traceback."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                            timeout=timeout)
    result.err = result.stderr.decode("utf-8", "replace")
    assert "Traceback" not in result.err, result.err[-3000:]
    return result


def assert_one_line_error(result, *fragments):
    lines = result.err.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.err[-2000:])
    assert len(lines) == 1, result.err[-2000:]
    assert all(fragment in lines[0] for fragment in fragments), (fragments, lines[0])
    assert not result.stdout, result.stdout[-1000:]


# ------------------------------------------------------------------------------ flags and --help

@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda e: e[-1].split("/")[-1])
def test_help_answers_and_an_unknown_flag_is_one_line(entry):
    helped = run([*entry, "--help"])
    assert helped.returncode == 0 and b"usage:" in helped.stdout and not helped.err.strip()
    positional = ["run"] if entry[-1] == "utils.face.pipeline" else ["x", "y"]
    assert_one_line_error(run([*entry, "--no-such-flag", *positional]), "--no-such-flag",
                          "--help")


@pytest.mark.parametrize("module", MODULES)
def test_help_loads_no_heavy_library(module):
    """--help must answer in a fraction of a second: TensorFlow, Keras, transformers,
    scikit-learn and matplotlib (seconds of imports between them) load after the arguments
    are parsed."""
    heavy = ["tensorflow", "keras", "transformers", "sklearn", "matplotlib"]
    probe = (f"import sys, {module} as m\n"
             "try:\n    m.main(['--help'])\nexcept SystemExit as exit:\n"
             "    assert exit.code in (0, None), exit.code\n"
             f"print(sorted(n for n in {heavy!r} if n in sys.modules))")
    result = run(["-c", probe])
    assert result.returncode == 0, result.err[-2000:]
    assert result.stdout.decode().splitlines()[-1] == "[]", (module, result.stdout.decode())


# ------------------------------------------------------------------------------ the text check

def outcome(check, text):
    try:
        return ("text", check(text))
    except ValueError as error:
        return ("refused", str(error))


@pytest.mark.parametrize("text", [*UNANSWERABLE, *ANSWERABLE, None, 42, b"bytes", ["a list"]],
                         ids=repr)
def test_the_standalone_copy_of_the_text_check_agrees(standalone, text):
    expected = outcome(saved.readable_text, text)
    assert outcome(standalone.readable_text, text) == expected
    refused = text in UNANSWERABLE or not isinstance(text, str)
    assert (expected[0] == "refused") == refused, expected
    if refused:
        assert "give the text of a tweet" in expected[1] and "\n" not in expected[1]
    else:
        assert expected[1].encode("utf-8")          # valid Unicode: the tokenizers take it


def test_predict_texts_answers_or_raises_one_value_error(committed):
    probabilities = committed.predict_texts(ANSWERABLE)
    assert probabilities.shape == (len(ANSWERABLE), 3)
    np.testing.assert_allclose(probabilities.sum(1), 1, atol=1e-9)
    for text in UNANSWERABLE:
        with pytest.raises(ValueError, match="nothing to classify") as error:
            committed.predict_texts(["a fine tweet", text])
        assert "text #1" in str(error.value)
    for texts in ("one string", [None], [b"bytes"]):
        with pytest.raises(ValueError, match="give"):
            committed.predict_texts(texts)


# ------------------------------------------------------------------------------ bad text, CLIs

@pytest.fixture(scope="module")
def bundle_root(tmp_path_factory):
    """A fresh clone's models: the committed bundle alone, under a root of its own."""
    root = tmp_path_factory.mktemp("clone")
    shutil.copytree(COMMITTED, root / COMMITTED.relative_to(bundle_lib.REPO_ROOT))
    return root


BAD_ARGUMENTS = ["", "   ", "\u200b\u200b", "\x01\x02", b"\xff\xfe", b"\xed\xa0\x80"]


@pytest.mark.parametrize("text", BAD_ARGUMENTS, ids=repr)
def test_clis_refuse_text_with_nothing_to_classify(bundle_root, text):
    bundle = bundle_root / COMMITTED.relative_to(bundle_lib.REPO_ROOT)
    for entry in (["-m", "utils.face.demo", "--root", str(bundle_root)],
                  [str(STANDALONE), str(bundle)]):
        assert_one_line_error(run([*entry, "good flight", text]), "text #1",
                              "nothing to classify", "give the text of a tweet")


def test_clis_answer_undecodable_bytes_and_100_kb(bundle_root, standalone):
    """A shell passes bytes: invalid UTF-8 is read as U+FFFD, not a crash; 100 KB of text is
    answered (truncated to the model's tokens)."""
    bundle = bundle_root / COMMITTED.relative_to(bundle_lib.REPO_ROOT)
    texts = [b"caf\xe9 was \xff great", b"worst " * 17_000]
    result = run([str(STANDALONE), str(bundle), *texts])
    assert result.returncode == 0, result.err[-2000:]
    answers = json.loads(result.stdout)
    expected = saved.load(bundle).predict_texts(
        [t.decode("utf-8", "surrogateescape") for t in texts])
    for answer, p in zip(answers, expected):
        np.testing.assert_allclose(list(answer["probabilities"].values()), p, atol=1e-6)
    result = run(["-m", "utils.face.demo", "--root", str(bundle_root), *texts])
    out = result.stdout.decode()
    assert result.returncode == 0 and out.count("pruned-int8  ") == 2, out[-2000:]
    assert "undecodable bytes read as \ufffd" in out and "first 5,000 of 102,000" in out


# ------------------------------------------------------------------------------ directories

def test_clis_refuse_missing_or_empty_directories(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = tmp_path / "missing"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for directory, state in ((missing, "does not exist"), (empty, "is empty")):
        assert_one_line_error(run(["-m", "utils.face.bench", "--data", str(directory)]),
                              f"--data {directory} {state}", "01_data_prep")
        assert_one_line_error(run(["-m", "utils.face.bench", "--data", str(ROOT / "data"),
                                   "--results-dir", str(directory)]), "--")
        assert_one_line_error(run(["-m", "utils.face.demo", "--root", str(directory), "hi"]),
                              f"--root {directory} holds none", "make run")
        assert_one_line_error(run(["-m", "utils.face.report", "--results-dir", str(directory),
                                   "--out-dir", str(tmp_path / "report")]),
                              f"{directory} holds no results file")
        assert_one_line_error(run(["-m", "utils.face.report", "--data-dir", str(directory),
                                   "--results-dir", str(ROOT / "results"),
                                   "--out-dir", str(tmp_path / "report")]),
                              f"--data-dir {directory}")
    assert_one_line_error(run(["-m", "utils.face.pipeline", "run", "--root", str(a_file)]),
                          "is a file, not a directory")
    assert not (tmp_path / "report").exists()


# ------------------------------------------------------------------------------ damaged bundles

DAMAGES = ("missing", "truncated", "tampered")


def damage(path, how):
    if how == "missing":
        path.unlink()
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:max(1, path.stat().st_size // 2)])
    else:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", DAMAGES)
def test_every_bundle_file_damaged_is_one_line_error(tmp_path, standalone, how):
    """Each file of the committed bundle (examples.json and bundle.json included), missing,
    truncated or with one bit flipped: the loader and the standalone script both refuse it with
    one line naming the file."""
    copy = tmp_path / "bundle"
    shutil.copytree(COMMITTED, copy)
    names = sorted(p.name for p in COMMITTED.iterdir())
    assert bundle_lib.EXAMPLES_FILE in names and bundle_lib.MANIFEST in names
    for name in names:
        damage(copy / name, how)
        for load in (saved.load, bundle_lib.load_bundle):
            with pytest.raises(saved.SavedModelError) as error:
                load(copy)
            message = str(error.value)
            assert "\n" not in message and (name in message or bundle_lib.MANIFEST in message)
            assert "model_spec.json" not in message, message     # a bundle, not a saved model
        with pytest.raises(standalone.BundleError) as error:
            standalone.predict(copy, ["good flight"])
        assert "\n" not in str(error.value) and name in str(error.value)
        shutil.copy2(COMMITTED / name, copy / name)
    assert saved.load(copy).predict_texts(["good flight"]).shape == (1, 3)


def test_damaged_bundle_through_every_cli(tmp_path, bundle_root):
    root = tmp_path / "root"
    shutil.copytree(bundle_root, root)
    bundle = root / COMMITTED.relative_to(bundle_lib.REPO_ROOT)
    damage(bundle / bundle_lib.EXAMPLES_FILE, "tampered")
    for args in ([str(STANDALONE), str(bundle), "good flight"],
                 ["-m", "utils.face.demo", "--root", str(root), "good flight"],
                 ["-m", "utils.saved.export", str(bundle), str(tmp_path / "out")]):
        assert_one_line_error(run(args), "examples.json does not match bundle.json")
    (bundle / bundle_lib.EXAMPLES_FILE).unlink()
    (bundle / bundle_lib.MANIFEST).unlink()
    for args in ([str(STANDALONE), str(bundle), "good flight"],
                 ["-m", "utils.face.demo", "--root", str(root), "good flight"],
                 ["-m", "utils.saved.export", str(bundle), str(tmp_path / "out")]):
        assert_one_line_error(run(args), "bundle.json")
    assert not (tmp_path / "out").exists()


def test_an_unlisted_examples_file_is_refused(tmp_path):
    """A bundle whose manifest predates examples.json (as the committed one did) does not let a
    replaced examples.json pass unnoticed."""
    copy = tmp_path / "bundle"
    shutil.copytree(COMMITTED, copy)
    manifest = json.loads((copy / bundle_lib.MANIFEST).read_text())
    del manifest["files"][bundle_lib.EXAMPLES_FILE]
    (copy / bundle_lib.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(bundle_lib.BundleError, match="examples.json is not in bundle.json"):
        saved.load(copy)
    with pytest.raises(ValueError, match="examples.json is not in bundle.json"):
        load_standalone().predict(copy, ["good flight"])


# ------------------------------------------------------------------------------ property-based

TEXTS = st.one_of(
    st.text(alphabet=st.characters(exclude_categories=()), max_size=200),   # surrogates too
    st.text(alphabet=st.characters(categories=("Cc", "Cf", "Zs", "Zl", "Mn")), max_size=20),
    st.binary(max_size=200).map(lambda b: b.decode("utf-8", "surrogateescape")))

PROPERTY = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def answer(predict, text):
    """("refused", None) for the one ValueError of unanswerable text, else ("answer", p)."""
    try:
        return "answer", np.asarray(predict(text), dtype=np.float64)
    except ValueError as error:
        assert "nothing to classify" in str(error), error
        return "refused", None


@PROPERTY
@given(text=TEXTS)
def test_standalone_and_loader_agree_on_any_text(standalone, committed, text):
    """The committed int8 bundle through examples/standalone_predict.py and through
    utils.saved.load: the same refusal, or the same label and probabilities within 1e-6 (the
    same flatbuffer on the same token ids)."""
    refused = outcome(saved.readable_text, text)[0] == "refused"
    loader = answer(lambda t: committed.predict_texts([t])[0], text)
    script = answer(lambda t: [standalone.predict(COMMITTED, [t])[0]["probabilities"][label]
                               for label in committed.labels], text)
    assert loader[0] == script[0] == ("refused" if refused else "answer")
    if not refused:
        assert loader[1].argmax() == script[1].argmax()
        np.testing.assert_allclose(loader[1], script[1], atol=1e-6)


@pytest.fixture(scope="module")
def keras_and_bundle(tmp_path_factory, tokenizer):
    """A tiny random Keras classifier saved, and its float32 bundle (quantize=None)."""
    from helpers import random_model
    from utils.encoder import model as model_lib
    from utils.saved import export
    root = tmp_path_factory.mktemp("tiny")
    model = random_model(model_lib.tiny_config(len(tokenizer)), seed=3)
    saved.save(model, root / "keras")
    export.export_bundle(model, root / "bundle", tokenizer, quantize=None)
    return saved.load(root / "keras", tokenizer), saved.load(root / "bundle")


@PROPERTY
@given(text=TEXTS)
def test_keras_model_and_its_bundle_agree_on_any_text(keras_and_bundle, text):
    """The Keras path (utils.saved.load of a saved model) and its own float32 TFLite bundle:
    the same refusal, probabilities within 1e-5 (float32 vs float32 TFLite), and the same label
    wherever the top two probabilities are further apart than that."""
    keras_model, bundle = keras_and_bundle
    keras_answer = answer(lambda t: keras_model.predict_texts([t])[0], text)
    bundle_answer = answer(lambda t: bundle.predict_texts([t])[0], text)
    assert keras_answer[0] == bundle_answer[0]
    if keras_answer[0] == "answer":
        np.testing.assert_allclose(keras_answer[1], bundle_answer[1], atol=1e-5)
        top_two = np.sort(keras_answer[1])[-2:]
        if top_two[1] - top_two[0] > 2e-5:
            assert keras_answer[1].argmax() == bundle_answer[1].argmax()


def test_native_stderr_is_silenced_only_inside_the_block():
    """TensorFlow's C++ start-up lines go to file descriptor 2 whatever TF_CPP_MIN_LOG_LEVEL
    says; the demo loads its models inside `logs.native_stderr_silenced`."""
    code = ("import os, sys\n"
            "from utils.common import logs\n"
            "os.write(2, b'before\\n')\n"
            "with logs.native_stderr_silenced():\n"
            "    os.write(2, b'native noise\\n')\n"
            "    print('python output', file=sys.stdout, flush=True)\n"
            "os.write(2, b'after\\n')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0
    assert result.stderr == "before\nafter\n" and result.stdout == "python output\n"


@pytest.mark.parametrize("entry", [{"byues": 1, "sha256": "x"}, {"bytes": "1", "sha256": "x"},
                                   {"bytes": 1, "sha256": "x", "extra": 0}, ["bytes", "sha256"]])
def test_a_damaged_manifest_entry_is_refused_not_ignored(tmp_path, standalone, entry):
    """A flipped bit in a key of bundle.json's file entries (e.g. "bytes" -> "byues") must not
    leave an entry the checks skip: the loader and the standalone script refuse the manifest."""
    copy = tmp_path / "bundle"
    shutil.copytree(COMMITTED, copy)
    manifest = json.loads((copy / bundle_lib.MANIFEST).read_text())
    manifest["files"][bundle_lib.EXAMPLES_FILE] = entry
    (copy / bundle_lib.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(saved.SavedModelError, match="bundle.json is unreadable"):
        bundle_lib.load_bundle(copy)
    with pytest.raises(standalone.BundleError, match="bundle.json"):
        standalone.predict(copy, ["good flight"])


def test_a_file_of_another_size_than_the_manifest_says_is_refused(tmp_path, standalone):
    copy = tmp_path / "bundle"
    shutil.copytree(COMMITTED, copy)
    manifest = json.loads((copy / bundle_lib.MANIFEST).read_text())
    manifest["files"][bundle_lib.EXAMPLES_FILE]["bytes"] += 1   # the digest still matches
    (copy / bundle_lib.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(saved.SavedModelError, match="does not match bundle.json"):
        bundle_lib.load_bundle(copy)
    with pytest.raises(standalone.BundleError, match="does not match bundle.json"):
        standalone.predict(copy, ["good flight"])
