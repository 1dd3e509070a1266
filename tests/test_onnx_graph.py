"""utils.compression.onnx_graph: the hand-written ONNX graph computes what the Keras classifier
computes (float parity across batch shapes, padding, removed heads / neurons / whole sublayers,
BERT and RoBERTa positions); the dynamic int8 file stays within a stated tolerance, is ~4x
smaller, and the evaluation helpers accept the runner."""
import numpy as np
import pytest

import utils  # noqa: F401
from utils.compression import onnx_graph as O
from utils.compression import quantize as Q
from utils.data import batching
from utils.encoder import model as M
from utils.training import train

from helpers import TWEETS, random_model


def batches_of(tokenizer, texts, batch_size):
    encoded, _ = batching.encode_texts(tokenizer, texts, 64)
    return [batching.pad_batch(encoded[i:i + batch_size], tokenizer.pad_token_id)
            for i in range(0, len(encoded), batch_size)]


def pruned_config(vocab_size, model_type):
    """Three layers: different head counts and widths, one attention and one FFN removed."""
    tiny = M.tiny_config(vocab_size, model_type=model_type)
    return M.EncoderConfig(**{**tiny.to_dict(), "num_heads": [2, 0, 1],
                              "intermediate_sizes": [64, 8, 0]})


@pytest.fixture(scope="module", params=[("bert", "tiny"), ("roberta", "tiny"),
                                        ("bert", "pruned"), ("roberta", "pruned")])
def exported(request, tokenizer, tmp_path_factory):
    model_type, shape = request.param
    config = (M.tiny_config(len(tokenizer), model_type=model_type) if shape == "tiny"
              else pruned_config(len(tokenizer), model_type))
    model = random_model(config, seed=3)
    directory = tmp_path_factory.mktemp(f"{model_type}_{shape}")
    return (model, O.export_onnx(model, directory / "float.onnx", quantize=None),
            O.export_onnx(model, directory / "int8.onnx", quantize="dynamic_range"))


def test_float_graph_matches_keras_across_batch_shapes(tokenizer, exported):
    model, float_path, _ = exported
    classifier = O.OnnxClassifier(float_path, num_threads=1)
    batches = batches_of(tokenizer, TWEETS, 3) + batches_of(tokenizer, TWEETS[:2], 5)
    assert len({b["input_ids"].shape for b in batches}) >= 3
    for batch in batches:
        np.testing.assert_allclose(classifier.predict_on_batch(batch), np.asarray(model(batch)),
                                   atol=O.FLOAT_TOLERANCE, rtol=0)
    # padding must not leak: a tweet alone and padded inside a longer batch agree
    alone = classifier(batches_of(tokenizer, TWEETS[3:4], 1)[0])
    padded = classifier(batches_of(tokenizer, TWEETS[2:4], 2)[0])[1:]
    np.testing.assert_allclose(alone, padded, atol=O.FLOAT_TOLERANCE, rtol=0)


def test_dynamic_int8_within_tolerance_and_smaller(tokenizer, exported):
    model, float_path, int8_path = exported
    classifier = O.OnnxClassifier(int8_path)
    texts = [f"{t} {i}" for i, t in enumerate(TWEETS * 4)]
    batches = batches_of(tokenizer, texts, 8)
    reference = np.concatenate([np.asarray(model(b)) for b in batches])
    logits = np.concatenate([classifier.predict_on_batch(b) for b in batches])
    error = Q.logit_error(reference, logits)
    assert error["max_relative"] < O.DYNAMIC_RANGE_RELATIVE_TOLERANCE, error
    assert error["prediction_agreement"] >= 0.9, error
    assert int8_path.stat().st_size < 0.3 * float_path.stat().st_size


def test_graph_holds_only_the_kept_units(tokenizer, exported):
    """Removed heads and neurons are absent from the file, not zero-filled."""
    import onnx
    model, float_path, _ = exported
    shapes = {t.name: tuple(t.dims) for t in onnx.load(str(float_path)).graph.initializer}
    config = model.encoder_config
    for i, (heads, width) in enumerate(zip(config.num_heads, config.intermediate_sizes)):
        if heads:
            assert shapes[f"layer_{i}/attention/query/kernel"] == (32, heads * 16)
        else:
            assert f"layer_{i}/attention/query/kernel" not in shapes
        if width:
            assert shapes[f"layer_{i}/ffn/input/kernel"] == (32, width)
        else:
            assert f"layer_{i}/ffn/input/kernel" not in shapes
    # every parameter once, but of the token-type table only row 0 (every token has type 0)
    weights = O.onnx_weights(model)
    stored = sum(int(np.prod(shapes[name])) for name in weights if name in shapes)
    assert stored + 32 == M.count_parameters(model) - 32 * (config.type_vocab_size - 1)
    assert shapes["embeddings/token_type_0"] == (32,)


def test_evaluate_accepts_the_classifier(tokenizer, exported):
    model, float_path, _ = exported
    split = {"text": TWEETS * 2, "label": [0, 1, 2, 0, 1, 2, 0, 1] * 2}
    np.testing.assert_allclose(
        train.predict_texts(O.OnnxClassifier(float_path), tokenizer, split["text"]),
        train.predict_texts(model, tokenizer, split["text"]), atol=O.FLOAT_TOLERANCE, rtol=0)
    assert (train.evaluate(O.OnnxClassifier(float_path), tokenizer, split)["accuracy"]
            == train.evaluate(model, tokenizer, split)["accuracy"])


def test_rejects_unknown_mode_and_keras_int8(tmp_path):
    model = random_model(M.tiny_config(40))
    with pytest.raises(ValueError, match="supported"):
        O.export_onnx(model, tmp_path / "m.onnx", quantize="int4")
    assert not (tmp_path / "m.onnx").exists()


# ------------------------------------------------------------------------------ ONNX bundles

def test_onnx_bundle_round_trip_and_standalone_script(tokenizer, tmp_path):
    """A vocabulary-pruned, compacted model exported as an ONNX bundle: the loader (kind "onnx")
    and the standalone script, which imports ONNX Runtime and not TFLite, give the float Keras
    model's probabilities; a flipped byte of model.onnx is caught by both."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from utils import saved
    from utils.compression import vocab as V
    from utils.saved import export
    model = random_model(pruned_config(len(tokenizer), "bert"), seed=5)
    small, remapped = V.prune_vocabulary(model, tokenizer, TWEETS)
    out = export.export_bundle(small, tmp_path / "onnx", tokenizer, remapped.kept_ids,
                               quantize=None, runtime="onnx")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["model.onnx", "tokenizer.json", "labels.json", "preprocessing.json", "model_card.md",
         "bundle.json"])
    loaded = saved.load(out)
    assert loaded.kind == "onnx" and loaded.quantization is None
    assert loaded.encoder_config == small.encoder_config
    np.testing.assert_allclose(loaded.predict_logits(TWEETS),
                               train.predict_texts(model, tokenizer, TWEETS),
                               atol=O.FLOAT_TOLERANCE, rtol=0)

    script = Path(__file__).resolve().parents[1] / "examples" / "standalone_predict.py"
    guard = tmp_path / "guard"          # `import utils` or a TFLite runtime would fail there
    for name in ("utils", "ai_edge_litert", "tensorflow"):
        (guard / name).mkdir(parents=True)
        (guard / name / "__init__.py").write_text(f"raise ImportError('{name} imported')\n")
    env = {**os.environ, "PYTHONPATH": str(guard)}
    result = subprocess.run([sys.executable, str(script), str(out), *TWEETS[:3]], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = loaded.predict_texts(TWEETS[:3])
    for answer, p in zip(json.loads(result.stdout), expected):
        np.testing.assert_allclose(list(answer["probabilities"].values()), p, atol=1e-6)

    data = bytearray((out / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 1
    (out / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(saved.SavedModelError, match="model.onnx does not match"):
        saved.load(out)
    result = subprocess.run([sys.executable, str(script), str(out), "good crew"], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "model.onnx does not match" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_int8_onnx_bundle_predicts_like_the_keras_model(tokenizer, tmp_path):
    from utils import saved
    from utils.saved import export
    model = random_model(M.tiny_config(len(tokenizer)), seed=6)
    out = export.export_bundle(model, tmp_path / "int8", tokenizer, runtime="onnx")
    loaded = saved.load(out)
    assert loaded.quantization == "dynamic_range" and loaded.kind == "onnx"
    error = Q.logit_error(train.predict_texts(model, tokenizer, TWEETS),
                          loaded.predict_logits(TWEETS))
    assert error["max_relative"] < O.DYNAMIC_RANGE_RELATIVE_TOLERANCE, error
    with pytest.raises(ValueError, match="runtime='coreml'"):
        export.export_bundle(model, tmp_path / "x", tokenizer, runtime="coreml")


def test_runners_refuse_inputs_of_different_shapes(tmp_path):
    model = random_model(M.tiny_config(40))
    runner = O.OnnxClassifier(O.export_onnx(model, tmp_path / "m.onnx", quantize=None))
    ids = np.ones((2, 5), np.int32)
    with pytest.raises(ValueError, match="must be equal"):
        runner({"input_ids": ids, "attention_mask": np.ones((2, 4), np.int32)})
    with pytest.raises(ValueError, match="must be equal"):
        runner({"input_ids": ids[0], "attention_mask": ids[0]})
    assert runner({"input_ids": ids, "attention_mask": ids.astype(np.int64)}).shape == (2, 3)
