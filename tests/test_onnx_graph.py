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
