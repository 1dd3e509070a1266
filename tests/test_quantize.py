"""utils.compression.quantize: Keras int8 reaches our nested Dense and Embedding layers, stays within a
stated tolerance of float, and saves/loads (build -> quantize -> load) in a fresh process."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import utils  # noqa: F401
from utils import saved
from utils.compression import compact as C
from utils.encoder import model as M
from utils.compression import quantize as Q
from utils.data import batching
from helpers import TWEETS, random_model


def predict_texts(model, tokenizer, texts):
    # one eager call on one padded batch: no per-model tracing, unlike keras predict
    encoded, _ = batching.encode_texts(tokenizer, texts, 64)
    return np.asarray(model(batching.pad_batch(encoded, tokenizer.pad_token_id)))


REPO = Path(__file__).resolve().parent.parent


def test_int8_reaches_nested_dense_and_embedding_layers(tokenizer):
    model = Q.quantize_model(random_model(M.tiny_config(len(tokenizer))))
    dtypes = {w.path: str(w.dtype) for w in model.weights}
    for name in M.prunable_kernels(model):
        assert dtypes[f"encoder/{name}/kernel" if name.startswith("layer")
                      else f"{name}/kernel"] == "int8"
    assert dtypes["encoder/embeddings/word_embeddings/embeddings"] == "int8"
    assert dtypes["classifier/kernel"] == "int8"
    assert dtypes["encoder/layer_0/attention/layer_norm/gamma"] == "float32"
    assert Q.quantization_mode(model) == "int8"
    float_bytes = Q.weight_bytes(random_model(M.tiny_config(len(tokenizer))))
    assert Q.weight_bytes(model) < 0.3 * float_bytes


# Keras' model.quantize takes ~4 s even for a tiny model, hence few examples.
@settings(max_examples=5, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), roberta=st.booleans(), compact=st.booleans())
def test_int8_within_tolerance(seed, roberta, compact):
    config = M.tiny_config(200, model_type="roberta" if roberta else "bert")
    model = random_model(config, seed)
    if compact:
        M.prunable_kernels(model)["layer_0/attention/value"].assign(np.zeros((32, 32), "f4"))
        model = C.compact_model(model)
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, 200, size=(8, 16)).astype(np.int32)
    mask = np.ones_like(ids)
    ids[4:, 10:], mask[4:, 10:] = config.pad_token_id, 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    error = Q.logit_error(np.asarray(model(inputs)), np.asarray(Q.quantized_copy(model)(inputs)))
    assert error["max_relative"] < Q.DEFAULT_RELATIVE_TOLERANCE, error


def test_int8_predictions_mostly_agree(tokenizer):
    model = random_model(M.tiny_config(len(tokenizer)), seed=3)
    texts = TWEETS * 4
    texts = [f"{t} {i}" for i, t in enumerate(texts)]
    error = Q.logit_error(predict_texts(model, tokenizer, texts),
                          predict_texts(Q.quantized_copy(model), tokenizer, texts))
    assert error["prediction_agreement"] >= 0.9, error
    assert error["max_abs"] < 0.1, error


LOAD_SCRIPT = """
import json, sys
import numpy as np
import utils
from utils.compression import quantize as Q
from utils import saved
directory, inputs = sys.argv[1], dict(np.load(sys.argv[2]))
model = saved.load_model(directory)
print(json.dumps({"mode": Q.quantization_mode(model), "logits": np.asarray(model(inputs)).tolist()}))
"""


def test_save_and_load_int8_in_fresh_process(tmp_path):
    model = Q.quantized_copy(random_model(M.tiny_config(80), seed=4))
    saved.save(model, tmp_path / "int8")
    spec = saved.read_spec(tmp_path / "int8")
    assert spec["quantization"] == "int8"
    assert M.EncoderConfig.from_dict(spec["encoder"]) == M.tiny_config(80)
    inputs = {"input_ids": np.array([[2, 5, 9, 11, 3, 0]], np.int32),
              "attention_mask": np.array([[1, 1, 1, 1, 1, 0]], np.int32)}
    np.savez(tmp_path / "inputs.npz", **inputs)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, str(tmp_path / "int8"),
                             str(tmp_path / "inputs.npz")], capture_output=True, text=True,
                            env=env, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["mode"] == "int8"
    np.testing.assert_array_equal(np.array(loaded["logits"], np.float32),
                                  np.asarray(model(inputs)))
    # a float directory loads as float
    saved.save(random_model(M.tiny_config(80)), tmp_path / "float")
    assert Q.quantization_mode(saved.load_model(tmp_path / "float")) is None


def test_quantize_rejects_unknown_mode_and_double_quantization():
    model = random_model(M.tiny_config(40))
    with pytest.raises(ValueError, match="supported"):
        Q.quantize_model(model, "int3")
    Q.quantize_model(model)
    with pytest.raises(ValueError, match="already"):
        Q.quantize_model(model)
