"""Vocabulary pruning: keep only the word-embedding rows of tokens the task can produce.

A fine-tuned tweet classifier only ever sees the word pieces that its tokenizer produces on tweets.
`prune_vocabulary` keeps the ids that occur in the tokenised training texts, plus every special
token (and every id up to the pad id, so that RoBERTa's pad-offset position ids are unchanged),
shrinks the word-embedding matrix to those rows (for MiniLM the 30522 x 384 matrix is about half
of all parameters) and returns a `RemappedTokenizer` that maps the base tokenizer's ids to the
new rows; an id that was not kept becomes the new id of the unknown token ([UNK] / <unk>), which is
exactly what feeding that unknown token to the unpruned model would do.

On disk a pruned model is a saved model (utils.saved.save(model, directory, remapped)) whose
spec records the vocabulary map (`vocab_map`: the kept base ids, in new-id order);
`utils.saved.load` rebuilds the model and the remapped tokenizer from it and the base tokenizer.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from utils.common import fingerprint
from utils.compression import compact as compact_lib

WORD_EMBEDDINGS = "encoder/embeddings/word_embeddings/embeddings"
_SPECIAL_ATTRS = ("pad", "cls", "sep", "unk", "bos", "eos", "mask")


class RemappedTokenizer:
    """A base tokenizer whose ids are renumbered to a pruned vocabulary.

    `kept_ids[new_id] = base_id`; base ids that were not kept map to the new id of the base's
    unknown token. Offers the part of the tokenizer interface the project uses:
    `__call__(texts, add_special_tokens=True, truncation=False)` -> {"input_ids": ...},
    the special token ids, `vocab_size`, `len()`, `decode`, `convert_ids_to_tokens`.
    """

    def __init__(self, base_tokenizer, kept_ids):
        kept_ids = np.asarray(kept_ids, dtype=np.int64)
        base_size = len(base_tokenizer)
        if kept_ids.ndim != 1 or len(np.unique(kept_ids)) != len(kept_ids):
            raise ValueError("kept_ids must be a 1-d list of distinct base token ids")
        if kept_ids.min() < 0 or kept_ids.max() >= base_size:
            raise ValueError(f"kept_ids must lie in [0, {base_size}) (the base tokenizer's ids)")
        unk = getattr(base_tokenizer, "unk_token_id", None)
        if unk is None:
            raise ValueError("the base tokenizer has no unknown token: ids outside the pruned "
                             "vocabulary would have nowhere to go")
        if unk not in set(kept_ids.tolist()):
            raise ValueError(f"the unknown token (id {unk}) must be kept")
        self.base = base_tokenizer
        self.kept_ids = kept_ids
        self.base_vocab_size = base_size
        self.old_to_new = np.full(base_size, -1, dtype=np.int64)
        self.old_to_new[kept_ids] = np.arange(len(kept_ids))
        self.unk_token_id = int(self.old_to_new[unk])
        self.old_to_new[self.old_to_new < 0] = self.unk_token_id
        for name in _SPECIAL_ATTRS:
            if name == "unk":
                continue
            base_id = getattr(base_tokenizer, f"{name}_token_id", None)
            setattr(self, f"{name}_token_id",
                    None if base_id is None else int(self.old_to_new[base_id]))
        self.name_or_path = getattr(base_tokenizer, "name_or_path", "")
        self.model_max_length = getattr(base_tokenizer, "model_max_length", None)

    @property
    def vocab_size(self):
        return len(self.kept_ids)

    def __len__(self):
        return len(self.kept_ids)

    @property
    def all_special_ids(self):
        return sorted({int(self.old_to_new[i]) for i in self.base.all_special_ids})

    def map_ids(self, ids):
        """Base ids (int, list, nested lists or array) -> new ids."""
        if isinstance(ids, (int, np.integer)):
            return int(self.old_to_new[ids])
        if len(ids) and not isinstance(ids[0], (int, np.integer)):
            return [self.map_ids(row) for row in ids]
        return self.old_to_new[np.asarray(ids, dtype=np.int64)].tolist()

    def __call__(self, texts, add_special_tokens=True, truncation=False, **kwargs):
        encoded = self.base(texts, add_special_tokens=add_special_tokens,
                            truncation=truncation, **kwargs)
        out = dict(encoded)
        out["input_ids"] = self.map_ids(encoded["input_ids"])
        return out

    def convert_ids_to_tokens(self, ids):
        if isinstance(ids, (int, np.integer)):
            return self.base.convert_ids_to_tokens(int(self.kept_ids[ids]))
        return self.base.convert_ids_to_tokens(self.kept_ids[np.asarray(ids)].tolist())

    def decode(self, ids, **kwargs):
        return self.base.decode(self.kept_ids[np.asarray(ids, dtype=np.int64)].tolist(),
                                **kwargs)

    def fingerprint(self):
        return tokens_fingerprint(self.base, self.kept_ids)

    def __repr__(self):
        return (f"RemappedTokenizer({self.name_or_path!r}, {self.vocab_size} of "
                f"{self.base_vocab_size} ids)")


def tokens_fingerprint(base_tokenizer, kept_ids):
    """sha256 of the kept tokens' strings: ties a vocab map to the tokenizer it was made with."""
    tokens = base_tokenizer.convert_ids_to_tokens([int(i) for i in kept_ids])
    return fingerprint.digest(["\n".join(map(str, tokens))])


def corpus_token_ids(tokenizer, texts, batch_size=4096):
    """The set of ids `tokenizer` produces (with special tokens) on `texts`, sorted."""
    texts = list(texts)
    seen = np.zeros(len(tokenizer), dtype=bool)
    for start in range(0, len(texts), batch_size):
        ids = tokenizer(texts[start:start + batch_size], add_special_tokens=True,
                        truncation=False)["input_ids"]
        if ids:
            seen[np.concatenate([np.asarray(row, dtype=np.int64) for row in ids])] = True
    return np.flatnonzero(seen)


def kept_token_ids(tokenizer, texts, pad_token_id=None, extra_ids=()):
    """Sorted base ids to keep: those in the tokenised `texts`, every special token, every id
    up to and including the pad id (keeps the pad id's value, which RoBERTa's position ids use)
    and `extra_ids`."""
    keep = set(corpus_token_ids(tokenizer, texts).tolist())
    keep.update(int(i) for i in tokenizer.all_special_ids)
    keep.update(int(i) for i in extra_ids)
    pads = [p for p in (pad_token_id, tokenizer.pad_token_id) if p is not None]
    keep.update(range(max(pads) + 1 if pads else 0))
    return np.array(sorted(keep), dtype=np.int64)


def prune_vocabulary(model, tokenizer, texts, extra_ids=()):
    """(new model with only the kept word-embedding rows, RemappedTokenizer).

    Works on dense, masked or compact float models. `texts`: the training corpus.
    """
    config = model.encoder_config
    if len(tokenizer) > config.vocab_size:
        raise ValueError(f"tokenizer has {len(tokenizer)} ids but the model's vocabulary has "
                         f"{config.vocab_size} rows")
    kept = kept_token_ids(tokenizer, texts, config.pad_token_id, extra_ids)
    remapped = RemappedTokenizer(tokenizer, kept)
    return apply_vocab_map(model, kept), remapped


def apply_vocab_map(model, kept_ids):
    """A copy of the float `model` whose word embeddings are the rows `kept_ids` (new-id order)."""
    compact_lib._check_float(model)
    kept_ids = np.asarray(kept_ids, dtype=np.int64)
    config = model.encoder_config
    new_pad = int(np.searchsorted(kept_ids, config.pad_token_id))
    if new_pad >= len(kept_ids) or kept_ids[new_pad] != config.pad_token_id:
        raise ValueError(f"the pad id {config.pad_token_id} must be kept")
    if new_pad != config.pad_token_id:
        raise ValueError("every id up to the pad id must be kept (its value is used by "
                         "RoBERTa position ids)")
    weights = {w.path: np.asarray(w) for w in model.weights}
    weights[WORD_EMBEDDINGS] = weights[WORD_EMBEDDINGS][kept_ids]
    new_config = dataclasses.replace(config, vocab_size=len(kept_ids))
    return compact_lib.build_from_weights(new_config, weights)


def vocab_map(tokenizer):
    """The vocabulary map of a RemappedTokenizer, as utils.saved records it in a model's spec:
    the kept base ids (in new-id order) and a hash of their token strings."""
    return {"kept_ids": tokenizer.kept_ids.tolist(),
            "base_vocab_size": tokenizer.base_vocab_size,
            "base_name_or_path": str(tokenizer.name_or_path),
            "tokens_sha256": tokenizer.fingerprint()}


def tokenizer_from_map(vocab_map, base_tokenizer, vocab_size=None, where="the saved model"):
    """The RemappedTokenizer of a `vocab_map`, checked against the base tokenizer (size and
    token hash) and, if given, the model's embedding rows."""
    if len(base_tokenizer) != vocab_map["base_vocab_size"]:
        raise ValueError(f"{where} was pruned from a tokenizer with "
                         f"{vocab_map['base_vocab_size']} ids ({vocab_map['base_name_or_path']}),"
                         f" but the given one has {len(base_tokenizer)}")
    if tokens_fingerprint(base_tokenizer, vocab_map["kept_ids"]) != vocab_map["tokens_sha256"]:
        raise ValueError(f"{where}: the given tokenizer's tokens differ from those of "
                         f"{vocab_map['base_name_or_path']}, the tokenizer it was pruned with")
    tokenizer = RemappedTokenizer(base_tokenizer, vocab_map["kept_ids"])
    if vocab_size is not None and len(tokenizer) != vocab_size:
        raise ValueError(f"{where}: vocab map has {len(tokenizer)} ids, the model "
                         f"{vocab_size} embedding rows")
    return tokenizer
