import numpy as np
import pytest

from utils.data import batching


def test_encode_truncates_and_keeps_closing_token(tokenizer):
    long_text = "word " * 200
    encoded, truncated = batching.encode_texts(tokenizer, ["short one", long_text], 16)
    assert truncated == 1
    assert len(encoded[1]) == 16
    assert encoded[1][0] == tokenizer.cls_token_id and encoded[1][-1] == tokenizer.sep_token_id
    assert list(encoded[0]) == tokenizer("short one")["input_ids"]


@pytest.mark.parametrize("bad", ["", "   ", None, 3, float("nan")])
def test_bad_texts_are_named(tokenizer, bad):
    with pytest.raises(ValueError, match="text #1"):
        batching.encode_texts(tokenizer, ["fine", bad], 16)


def test_max_length_validated(tokenizer):
    with pytest.raises(ValueError, match="max_length=2"):
        batching.encode_texts(tokenizer, ["fine"], 2)


def test_pad_batch_pads_to_multiple_of_8():
    out = batching.pad_batch([np.array([5, 6, 7]), np.array([1] * 9)], pad_token_id=0)
    assert out["input_ids"].shape == (2, 16)
    assert out["attention_mask"].sum(axis=1).tolist() == [3, 9]
    assert out["input_ids"][0, :3].tolist() == [5, 6, 7] and out["input_ids"][0, 3:].sum() == 0


def test_bucketing_covers_every_example_once_and_reduces_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 60, size=1000)
    batches = batching.bucketed_batch_indices(lengths, 32, shuffle=True, seed=1)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    padded = sum(len(b) * lengths[b].max() for b in batches)
    random_batches = np.array_split(rng.permutation(1000), len(batches))
    padded_random = sum(len(b) * lengths[b].max() for b in random_batches)
    assert padded < 0.8 * padded_random
    again = batching.bucketed_batch_indices(lengths, 32, shuffle=True, seed=1)
    assert all((a == b).all() for a, b in zip(batches, again))


def test_batches_restore_original_order(tokenizer):
    texts = ["a b c d e f g", "x", "hello there my friend", "ok ok"]
    batches, _ = batching.make_batches(tokenizer, texts, [0, 1, 2, 1], max_length=32,
                                       batch_size=3)
    seen = np.concatenate([b[1] for b in batches])
    restored = np.empty_like(seen)
    restored[batches.order()] = seen
    assert restored.tolist() == [0, 1, 2, 1]


def test_label_count_mismatch(tokenizer):
    with pytest.raises(ValueError, match="2 texts but 1 labels"):
        batching.make_batches(tokenizer, ["a", "b"], [0])
