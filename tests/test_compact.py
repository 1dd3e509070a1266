"""utils.compression.compact: physically removing pruned heads / FFN neurons keeps the logits of the masked
model (property tests over random masks, sizes, BERT and RoBERTa layouts), bias folding by hand,
the compaction report, the first-token inference view, and save -> reload in a fresh process."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import utils  # noqa: F401  (sets KERAS_BACKEND)
from utils import saved
from utils.compression import compact as C
from utils.encoder import model as M
from utils.pruning import block as P

REPO = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-5
SETTINGS = settings(max_examples=12, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def random_model(config, seed=0, scale=0.3):
    model = M.build_classifier(config)
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(rng.normal(0, scale, size=w.shape).astype("float32"))
    return model


def random_inputs(config, seed=0, batch=3, length=9):
    rng = np.random.default_rng(seed)
    pad = config.pad_token_id
    ids = rng.integers(0, config.vocab_size, size=(batch, length))
    ids[ids == pad] = (pad + 1) % config.vocab_size
    mask = np.ones((batch, length), dtype=np.int32)
    for row in range(1, batch):           # padded rows of different lengths
        cut = int(rng.integers(2, length))
        ids[row, cut:], mask[row, cut:] = pad, 0
    return {"input_ids": ids.astype(np.int32), "attention_mask": mask}


def apply_random_mask(model, rng):
    """Zero random heads (value columns, output rows or both), neurons (input column, output
    row or both) and some block rows of query/key kernels that compaction cannot remove."""
    config = model.encoder_config
    kernels = {n: np.asarray(k).copy() for n, k in M.prunable_kernels(model).items()}
    size = config.head_size
    for i in range(config.num_layers):
        for h in range(config.num_heads[i]):
            cols = slice(h * size, (h + 1) * size)
            kind = rng.integers(0, 4)     # 0 keep, 1 value zero, 2 output zero, 3 both
            if kind in (1, 3):
                kernels[f"layer_{i}/attention/value"][:, cols] = 0
            if kind in (2, 3):
                kernels[f"layer_{i}/attention/output"][cols, :] = 0
        for j in range(config.intermediate_sizes[i]):
            kind = rng.integers(0, 4)
            if kind in (1, 3):
                kernels[f"layer_{i}/ffn/input"][:, j] = 0
            if kind in (2, 3):
                kernels[f"layer_{i}/ffn/output"][j, :] = 0
        query = kernels[f"layer_{i}/attention/query"]
        query[rng.random(query.shape[0]) < 0.3, :] = 0
    for name, value in kernels.items():
        M.prunable_kernels(model)[name].assign(value)
    return kernels


@st.composite
def configs(draw):
    layers = draw(st.integers(1, 3))
    roberta = draw(st.booleans())
    return M.EncoderConfig(
        vocab_size=50, hidden_size=draw(st.sampled_from([8, 16])),
        num_heads=draw(st.lists(st.integers(1, 3), min_size=layers, max_size=layers)),
        intermediate_sizes=draw(st.lists(st.integers(1, 10), min_size=layers,
                                         max_size=layers)),
        head_size=draw(st.sampled_from([4, 8])), max_position_embeddings=40,
        model_type="roberta" if roberta else "bert", pad_token_id=1 if roberta else 0,
        type_vocab_size=1 if roberta else 2, layer_norm_eps=1e-5 if roberta else 1e-12)


@SETTINGS
@given(config=configs(), seed=st.integers(0, 2**16))
def test_compact_matches_masked_model(config, seed):
    model = random_model(config, seed)
    kernels = apply_random_mask(model, np.random.default_rng(seed))
    compact = C.compact_model(model)
    inputs = random_inputs(config, seed)
    np.testing.assert_allclose(np.asarray(compact(inputs)), np.asarray(model(inputs)),
                               atol=TOLERANCE, rtol=0)
    heads, neurons = P.removable_heads_and_neurons(kernels, config)
    new = compact.encoder_config
    for i in range(config.num_layers):
        assert new.num_heads[i] == config.num_heads[i] - len(heads[i])
        assert new.intermediate_sizes[i] == config.intermediate_sizes[i] - len(neurons[i])
    report = C.compaction_report(model)
    assert report["heads_removed"] == sum(len(h) for h in heads.values())
    assert report["neurons_removed"] == sum(len(n) for n in neurons.values())
    assert report["parameters_after"] == M.count_parameters(compact)
    assert report["parameters_before"] == M.count_parameters(model)
    # the first-token view of the compact model gives the same logits
    view = C.first_token_classifier(compact)
    np.testing.assert_allclose(np.asarray(view(inputs)), np.asarray(model(inputs)),
                               atol=TOLERANCE, rtol=0)


def test_bias_folding_by_hand():
    config = M.EncoderConfig(vocab_size=10, hidden_size=4, num_heads=[2], intermediate_sizes=[3],
                             head_size=2)
    model = random_model(config, seed=1)
    att = M.transformer_layers(model)[0].attention
    ffn = M.transformer_layers(model)[0].ffn
    value = np.asarray(att.value.kernel).copy()
    value[:, 0:2] = 0                              # head 0: value columns zero
    att.value.kernel.assign(value)
    att.value.bias.assign(np.array([1.0, 2.0, 0.5, 0.5], np.float32))
    w_o = np.arange(16, dtype=np.float32).reshape(4, 4) / 10
    att.output_dense.kernel.assign(w_o)
    att.output_dense.bias.assign(np.array([0.1, 0.2, 0.3, 0.4], np.float32))
    w_in = np.asarray(ffn.input_dense.kernel).copy()
    w_in[:, 0] = 0                                 # neuron 0: input column zero
    ffn.input_dense.kernel.assign(w_in)
    ffn.input_dense.bias.assign(np.array([0.5, 0.0, 0.0], np.float32))
    w_out = np.asarray(ffn.output_dense.kernel).copy()
    w_out[0] = [1.0, -1.0, 2.0, 0.0]
    ffn.output_dense.kernel.assign(w_out)
    ffn.output_dense.bias.assign(np.zeros(4, np.float32))

    compact = C.compact_model(model)
    assert compact.encoder_config.num_heads == [1]
    assert compact.encoder_config.intermediate_sizes == [2]
    new_att = M.transformer_layers(compact)[0].attention
    new_ffn = M.transformer_layers(compact)[0].ffn
    # b_o + b_v[head 0] @ W_o[rows 0:2] = [.1,.2,.3,.4] + 1*[0,.1,.2,.3] + 2*[.4,.5,.6,.7]
    np.testing.assert_allclose(np.asarray(new_att.output_dense.bias),
                               [0.9, 1.3, 1.7, 2.1], atol=1e-6)
    np.testing.assert_array_equal(np.asarray(new_att.value.kernel), value[:, 2:4])
    np.testing.assert_array_equal(np.asarray(new_att.output_dense.kernel), w_o[2:4])
    gelu_half = 0.5 * 0.5 * (1 + math.erf(0.5 / math.sqrt(2)))       # 0.3457...
    np.testing.assert_allclose(np.asarray(new_ffn.output_dense.bias),
                               [gelu_half, -gelu_half, 2 * gelu_half, 0.0], atol=1e-6)
    inputs = random_inputs(config, seed=2)
    np.testing.assert_allclose(np.asarray(compact(inputs)), np.asarray(model(inputs)),
                               atol=TOLERANCE)


def test_fully_pruned_layer_becomes_pass_through():
    config = M.EncoderConfig(vocab_size=30, hidden_size=8, num_heads=[2, 2],
                             intermediate_sizes=[6, 6], head_size=4)
    model = random_model(config, seed=3)
    kernels = M.prunable_kernels(model)
    kernels["layer_0/attention/value"].assign(np.zeros((8, 8), np.float32))   # folded
    kernels["layer_0/ffn/input"].assign(np.zeros((8, 6), np.float32))         # folded
    kernels["layer_1/attention/output"].assign(np.zeros((8, 8), np.float32))
    compact = C.compact_model(model)
    assert compact.encoder_config.num_heads == [0, 0]
    assert compact.encoder_config.intermediate_sizes == [0, 6]
    inputs = random_inputs(config, seed=4)
    np.testing.assert_allclose(np.asarray(compact(inputs)), np.asarray(model(inputs)),
                               atol=TOLERANCE)
    # layer 0 is LayerNorm(LayerNorm(x + b_att) + b_ffn): every weight matrix gone
    assert "layer_0/attention/query" not in M.prunable_kernels(compact)
    assert "layer_0/ffn/input" not in M.prunable_kernels(compact)


def test_report_lists_zeros_that_stay():
    config = M.EncoderConfig(vocab_size=30, hidden_size=32, num_heads=[2],
                             intermediate_sizes=[16], head_size=16)
    model = random_model(config)
    query = np.asarray(M.prunable_kernels(model)["layer_0/attention/query"]).copy()
    query[:16] = 0                                 # block rows: not removable
    M.prunable_kernels(model)["layer_0/attention/query"].assign(query)
    report = C.compaction_report(model)
    entry = report["residual_zeros"]["layer_0/attention/query"]
    assert entry["zeros"] == 16 * 32 and entry["dense_bytes"] == 32 * 32 * 4
    assert entry["sparse_bytes"] < entry["dense_bytes"]
    assert report["heads_removed"] == 0 and report["parameters_after"] == report["parameters_before"]
    assert "layer 0" in C.format_report(report)


def test_compaction_refuses_quantized_models():
    from utils.compression import quantize
    model = quantize.quantize_model(random_model(M.tiny_config(40)))
    with pytest.raises(ValueError, match="float model"):
        C.compact_model(model)


RELOAD_SCRIPT = """
import json, sys
import numpy as np
import utils
from utils import saved
spec = json.loads(sys.argv[1])
out = {}
for name, directory in spec["dirs"].items():
    inputs = dict(np.load(spec["inputs"][name]))
    out[name] = np.asarray(saved.load_model(directory)(inputs)).tolist()
print(json.dumps(out))
"""


def run_in_fresh_process(script, *args):
    env = {**os.environ, "PYTHONPATH": str(REPO), "KERAS_BACKEND": "tensorflow",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                            text=True, env=env, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_save_and_reload_in_fresh_process(tmp_path):
    expected, spec = {}, {"dirs": {}, "inputs": {}}
    for model_type in ("bert", "roberta"):
        config = M.tiny_config(60, model_type=model_type)
        config.num_heads, config.intermediate_sizes = [2, 2, 2], [64, 64, 64]
        model = random_model(config, seed=5)
        apply_random_mask(model, np.random.default_rng(7))
        kernels = M.prunable_kernels(model)
        kernels["layer_2/attention/value"].assign(np.zeros((32, 32), np.float32))
        compact = C.compact_model(model)
        assert compact.encoder_config.num_heads[2] == 0
        saved.save(compact, tmp_path / model_type)
        written = saved.read_spec(tmp_path / model_type)
        assert M.EncoderConfig.from_dict(written["encoder"]) == compact.encoder_config
        inputs = random_inputs(config, seed=6)
        np.savez(tmp_path / f"{model_type}.npz", **inputs)
        spec["dirs"][model_type] = str(tmp_path / model_type)
        spec["inputs"][model_type] = str(tmp_path / f"{model_type}.npz")
        expected[model_type] = np.asarray(model(inputs))
    reloaded = run_in_fresh_process(RELOAD_SCRIPT, json.dumps(spec))
    for model_type, logits in expected.items():
        np.testing.assert_allclose(np.array(reloaded[model_type]), logits, atol=TOLERANCE)


def remove_units(model, rng, share=0.5):
    """Zero whole heads (Q/K/V columns, biases, output rows) and neurons (input column, bias,
    output row) at random, as method `block` does: compaction removes them, nothing is folded.
    Keeps one head and one neuron per layer so every sublayer has weights left to train."""
    config, size = model.encoder_config, model.encoder_config.head_size
    w = {v.path: np.asarray(v).copy() for v in model.weights}
    for i in range(config.num_layers):
        att, ffn = f"encoder/layer_{i}/attention", f"encoder/layer_{i}/ffn"
        for h in range(1, config.num_heads[i]):
            if rng.random() < share:
                cols = slice(h * size, (h + 1) * size)
                for m in ("query", "key", "value"):
                    w[f"{att}/{m}/kernel"][:, cols] = 0
                    w[f"{att}/{m}/bias"][cols] = 0
                w[f"{att}/output/kernel"][cols, :] = 0
        for j in range(1, config.intermediate_sizes[i]):
            if rng.random() < share:
                w[f"{ffn}/input/kernel"][:, j] = 0
                w[f"{ffn}/input/bias"][j] = 0
                w[f"{ffn}/output/kernel"][j, :] = 0
    for v in model.weights:
        v.assign(w[v.path])


@SETTINGS
@given(config=configs(), seed=st.integers(0, 2**16))
def test_expand_into_inverts_compaction(config, seed):
    """Trained weights of the compaction, written back, land where they came from: compacting
    again gives them exactly, the removed units stay zero, and the outputs agree."""
    model = random_model(config, seed)
    remove_units(model, np.random.default_rng(seed))
    before = {v.path: np.asarray(v).copy() for v in model.weights}
    _, _, info = C.compaction_plan(model)
    small = C.compact_model(model)
    rng = np.random.default_rng(seed + 1)
    for v in small.weights:                       # "training": every weight moves
        v.assign(np.asarray(v) + rng.normal(0, 0.1, size=v.shape).astype("float32"))
    C.expand_into(model, small, info)
    again = C.compact_model(model)
    assert again.encoder_config == small.encoder_config
    for a, b in zip(again.weights, small.weights):
        assert a.path == b.path
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for name, kernel in M.prunable_kernels(model).items():   # zeros where they were
        was = before[kernel.path]
        assert np.all(np.asarray(kernel)[was == 0] == 0), name
    inputs = random_inputs(config, seed)
    np.testing.assert_allclose(np.asarray(small(inputs)), np.asarray(model(inputs)),
                               atol=TOLERANCE, rtol=0)


def test_expand_into_refuses_folded_units_and_training_falls_back():
    config = M.EncoderConfig(vocab_size=30, hidden_size=8, num_heads=[2],
                             intermediate_sizes=[6], head_size=4)
    model = random_model(config, seed=5)
    value = M.prunable_kernels(model)["layer_0/attention/value"]
    value.assign(np.concatenate([np.zeros((8, 4)), np.asarray(value)[:, 4:]], 1).astype("float32"))
    _, _, info = C.compaction_plan(model)
    assert info[0]["folded_heads"] == [0]
    with pytest.raises(ValueError, match="folded"):
        C.expand_into(model, C.compact_model(model), info)
    with C.compacted_for_training(model) as trainee:
        assert trainee is model
    assert C.smallest_equivalent(random_model(config)) .encoder_config == config


def test_training_the_compaction_is_masked_training(tokenizer):
    """Recovery trains the compaction of a unit-pruned model and writes it back: the same
    optimisation as training the masked full-width model (no dropout, so the same steps)."""
    import dataclasses
    from helpers import toy_dataset
    from utils.pruning import sweep
    from utils.training import train
    config = dataclasses.replace(M.tiny_config(tokenizer.vocab_size), num_heads=[4, 4],
                                 intermediate_sizes=[64, 64], head_size=8,
                                 hidden_dropout=0.0, attention_dropout=0.0)
    data = toy_dataset(n_train=64, n_val=16)
    start = random_model(config, seed=7, scale=0.1)
    remove_units(start, np.random.default_rng(7))
    weights = start.get_weights()
    assert C.compact_model(start).encoder_config != config
    run = train.TrainConfig(learning_rate=1e-3, epochs=1, batch_size=16, max_length=16)
    full = M.build_classifier(config)
    full.set_weights(weights)
    P.penalized_fine_tune(full, tokenizer, data, run, masks=P.current_masks(full), progress=False)
    compacted = M.build_classifier(config)
    compacted.set_weights(weights)
    sweep.recover(compacted, tokenizer, data, run)
    moved = 0
    for a, b, w in zip(full.weights, compacted.weights, weights):
        assert a.path == b.path
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=2e-5, rtol=1e-4,
                                   err_msg=a.path)
        moved += not np.allclose(np.asarray(a), w)
    assert moved > len(weights) // 2
    for name, kernel in M.prunable_kernels(compacted).items():
        assert np.all(np.asarray(kernel)[np.asarray(M.prunable_kernels(start)[name]) == 0] == 0)
