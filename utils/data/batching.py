"""Tokenisation, dynamic padding and length-bucketed batches.

Tweets are short and vary a lot in length; padding each batch only to its own
longest tweet (rounded up to a multiple of 8 so that compiled graphs are reused)
and grouping similar lengths together keeps most of the compute on real tokens.
"""
import math

import numpy as np

PAD_MULTIPLE = 8


def check_texts(texts):
    """Raise a ValueError naming the first text that is not a non-empty string."""
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"text #{i} is {type(text).__name__} ({text!r}), expected str; "
                             "convert or drop it before tokenising")
        if not text.strip():
            raise ValueError(f"text #{i} is empty or whitespace only; drop it before tokenising")
    return texts


def encode_texts(tokenizer, texts, max_length):
    """Token ids (with special tokens) for each text, truncated to `max_length`.

    Returns (list of int32 arrays, number of texts that were truncated).
    """
    if not isinstance(max_length, int) or max_length < 3:
        raise ValueError(f"max_length={max_length!r}: must be an int >= 3 "
                         "(two special tokens plus at least one word piece)")
    texts = check_texts(texts)
    full = tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
    truncated = sum(len(ids) > max_length for ids in full)
    encoded = []
    for ids in full:
        if len(ids) > max_length:
            # keep the closing special token ([SEP] / </s>) so the input stays well formed
            ids = ids[:max_length - 1] + ids[-1:]
        encoded.append(np.asarray(ids, dtype=np.int32))
    return encoded, truncated


def pad_batch(sequences, pad_token_id, multiple=PAD_MULTIPLE):
    """Stack variable-length id arrays into input_ids / attention_mask, padded on the right
    to a multiple of `multiple` tokens."""
    longest = max(len(s) for s in sequences)
    width = int(math.ceil(longest / multiple) * multiple)
    input_ids = np.full((len(sequences), width), pad_token_id, dtype=np.int32)
    attention_mask = np.zeros((len(sequences), width), dtype=np.int32)
    for row, ids in enumerate(sequences):
        input_ids[row, :len(ids)] = ids
        attention_mask[row, :len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def int32_inputs(inputs, names=("input_ids", "attention_mask")):
    """{name: contiguous int32 array} of a padded batch for a runtime (TFLite, ONNX Runtime);
    ValueError unless every array is [batch, length] with the same shape."""
    arrays = {name: np.ascontiguousarray(np.asarray(inputs[name]), dtype=np.int32)
              for name in names}
    shapes = {name: array.shape for name, array in arrays.items()}
    first = shapes[names[0]]
    if len(first) != 2 or any(shape != first for shape in shapes.values()):
        raise ValueError(f"inputs {shapes} must be equal [batch, length]")
    return arrays


def bucketed_batch_indices(lengths, batch_size, shuffle, seed=0, bucket_batches=50):
    """Group example indices into batches of similar length.

    With shuffle, examples are shuffled, cut into chunks of `bucket_batches` batches,
    sorted by length inside each chunk, batched, and the batch order is shuffled:
    batches stay random while padding stays small. Without shuffle, batches follow
    length order (best for inference); callers restore the original order.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: must be a positive int")
    lengths = np.asarray(lengths)
    if not shuffle:
        order = np.argsort(lengths, kind="stable")
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    chunk = batch_size * bucket_batches
    batches = []
    for start in range(0, len(order), chunk):
        part = order[start:start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i:i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


class TweetBatches:
    """Batches of encoded tweets as (inputs, labels) pairs, re-bucketed every epoch.

    Used as a Keras PyDataset (see `as_keras_dataset`) for training and as a plain
    iterable for prediction. `pad_multiple` (settable) is the padding granularity.
    """
    pad_multiple = PAD_MULTIPLE

    def __init__(self, encoded, labels, batch_size, pad_token_id, shuffle, seed=0,
                 teacher_logits=None):
        if labels is not None and len(labels) != len(encoded):
            raise ValueError(f"{len(encoded)} texts but {len(labels)} labels")
        if teacher_logits is not None and (labels is None or len(teacher_logits) != len(encoded)):
            raise ValueError("teacher_logits need labels and one row per text")
        self.encoded = encoded
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int32)
        self.teacher_logits = None if teacher_logits is None else np.asarray(teacher_logits,
                                                                             np.float32)
        self.batch_size = batch_size
        self.pad_token_id = pad_token_id
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.lengths = np.array([len(s) for s in encoded])
        self._make_batches()

    def _make_batches(self):
        self.batches = bucketed_batch_indices(self.lengths, self.batch_size, self.shuffle,
                                              seed=self.seed + self.epoch)

    def next_epoch(self):
        self.epoch += 1
        if self.shuffle:
            self._make_batches()

    def __len__(self):
        return len(self.batches)

    def epoch_batches(self, epoch):
        """The batches (example-index arrays) of `epoch`, without changing the current one."""
        if not self.shuffle or epoch == self.epoch:
            return self.batches
        return bucketed_batch_indices(self.lengths, self.batch_size, self.shuffle,
                                      seed=self.seed + epoch)

    def __getitem__(self, i):
        return self.batch(self.batches[i])

    def batch(self, idx):
        """The padded inputs (and labels, teacher logits) of the examples `idx`."""
        inputs = pad_batch([self.encoded[j] for j in idx], self.pad_token_id, self.pad_multiple)
        if self.labels is None:
            return inputs
        if self.teacher_logits is not None:
            return inputs, {"label": self.labels[idx], "teacher": self.teacher_logits[idx]}
        return inputs, self.labels[idx]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def order(self):
        """Example indices in batch order, to put predictions back in input order."""
        return np.concatenate(self.batches) if self.batches else np.zeros(0, dtype=int)

    @property
    def num_tokens(self):
        return int(self.lengths.sum())


def make_batches(tokenizer, texts, labels=None, max_length=64, batch_size=32, shuffle=False,
                 seed=0, teacher_logits=None):
    """Tokenise `texts` and return (TweetBatches, number of truncated texts)."""
    encoded, truncated = encode_texts(tokenizer, texts, max_length)
    batches = TweetBatches(encoded, labels, batch_size, tokenizer.pad_token_id, shuffle, seed,
                           teacher_logits)
    return batches, truncated
