"""utils.compression.vocab: pruning the word embeddings to the training corpus keeps the logits on
in-vocabulary text, maps unseen tokens to [UNK] exactly, works for RoBERTa's pad-offset
positions, and saves/loads with its id map."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import utils  # noqa: F401
from utils import saved
from utils.data import batching
from utils.compression import vocab as V
from utils.encoder import model as M
from utils.training.train import predict_texts

WORDS = ("delayed flight great crew lost luggage thanks amazing worst service ever love "
         "seat upgrade cancelled again gate agent rude friendly").split()
TOLERANCE = 1e-6


def random_model(config, seed=0):
    model = M.build_classifier(config)
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(rng.normal(0, 0.3, size=w.shape).astype("float32"))
    return model


def logits_on_ids(model, ids_list, pad_id):
    return np.asarray(model(batching.pad_batch([np.asarray(i, np.int32) for i in ids_list],
                                               pad_id)))


@pytest.fixture(scope="module")
def bert_model(tokenizer):
    return random_model(M.tiny_config(len(tokenizer)), seed=1)


@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(corpus=st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=6),
                       min_size=2, max_size=6))
def test_in_vocabulary_logits_unchanged(tokenizer, bert_model, corpus):
    texts = [" ".join(words) for words in corpus]
    small, remapped = V.prune_vocabulary(bert_model, tokenizer, texts)
    assert small.encoder_config.vocab_size == len(remapped) < len(tokenizer)
    np.testing.assert_allclose(predict_texts(small, remapped, texts),
                               predict_texts(bert_model, tokenizer, texts), atol=TOLERANCE)


def test_unseen_tokens_become_unk(tokenizer, bert_model):
    corpus = ["thanks for the great flight", "worst service ever"]
    small, remapped = V.prune_vocabulary(bert_model, tokenizer, corpus)
    texts = ["thanks zebra for the xylophone flight", "great quokka service"]
    base_ids = tokenizer(texts)["input_ids"]
    kept = set(remapped.kept_ids.tolist())
    as_unk = [[i if i in kept else tokenizer.unk_token_id for i in row] for row in base_ids]
    assert any(i == tokenizer.unk_token_id for row in as_unk for i in row)
    new_ids = remapped(texts)["input_ids"]
    assert all(remapped.kept_ids[i] == j for a, b in zip(new_ids, as_unk) for i, j in zip(a, b))
    np.testing.assert_allclose(logits_on_ids(small, new_ids, remapped.pad_token_id),
                               logits_on_ids(bert_model, as_unk, tokenizer.pad_token_id),
                               atol=TOLERANCE)
    assert remapped.decode(new_ids[0]).startswith("[CLS] thanks [UNK]")
    for name in ("pad", "cls", "sep", "unk"):
        new = getattr(remapped, f"{name}_token_id")
        assert remapped.kept_ids[new] == getattr(tokenizer, f"{name}_token_id")


class WordTokenizer:
    """A RoBERTa-style word-level tokenizer: <s>=0, <pad>=1, </s>=2, <unk>=3."""

    def __init__(self, words):
        self.tokens = ["<s>", "<pad>", "</s>", "<unk>", *words]
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.bos_token_id = self.cls_token_id = 0
        self.pad_token_id, self.eos_token_id, self.unk_token_id = 1, 2, 3
        self.sep_token_id = 2
        self.all_special_ids = [0, 1, 2, 3]
        self.name_or_path = "word-tokenizer"

    def __len__(self):
        return len(self.tokens)

    def __call__(self, texts, add_special_tokens=True, truncation=False):
        single = isinstance(texts, str)
        rows = [[0, *(self.index.get(w, 3) for w in t.split()), 2]
                for t in ([texts] if single else texts)]
        return {"input_ids": rows[0] if single else rows}

    def convert_ids_to_tokens(self, ids):
        return self.tokens[ids] if isinstance(ids, int) else [self.tokens[i] for i in ids]

    def decode(self, ids, **kwargs):
        return " ".join(self.tokens[i] for i in ids)


def test_roberta_layout_keeps_pad_offset_positions(tmp_path):
    tokenizer = WordTokenizer(WORDS)
    model = random_model(M.tiny_config(len(tokenizer), model_type="roberta"), seed=2)
    corpus = ["great crew", "lost luggage again", "friendly gate agent"]
    small, remapped = V.prune_vocabulary(model, tokenizer, corpus)
    assert remapped.pad_token_id == 1 == small.encoder_config.pad_token_id
    assert len(remapped) == 4 + 8
    texts = corpus + ["great crew rude"]        # "rude" is not in the corpus -> <unk>
    as_unk = [[i if i in set(remapped.kept_ids.tolist()) else 3 for i in row]
              for row in tokenizer(texts)["input_ids"]]
    np.testing.assert_allclose(logits_on_ids(small, remapped(texts)["input_ids"], 1),
                               logits_on_ids(model, as_unk, 1), atol=TOLERANCE)
    saved.save(small, tmp_path / "pruned", remapped)
    loaded = saved.load(tmp_path / "pruned", tokenizer)
    np.testing.assert_array_equal(loaded.tokenizer.kept_ids, remapped.kept_ids)
    np.testing.assert_allclose(loaded.predict_logits(texts),
                               predict_texts(small, remapped, texts), atol=1e-6)


def test_save_load_checks_the_tokenizer(tmp_path, tokenizer, bert_model):
    small, remapped = V.prune_vocabulary(bert_model, tokenizer, ["great flight"])
    saved.save(small, tmp_path / "m", remapped)
    assert saved.read_spec(tmp_path / "m")["vocabulary"]["kept_ids"] == remapped.kept_ids.tolist()
    tok = saved.load(tmp_path / "m", tokenizer).tokenizer
    assert isinstance(tok, V.RemappedTokenizer) and len(tok) == len(remapped)
    with pytest.raises(ValueError, match="tokenizer"):
        saved.load(tmp_path / "m", WordTokenizer(WORDS))
    saved.save(bert_model, tmp_path / "plain")                 # no vocab map: base tokenizer
    assert saved.load(tmp_path / "plain", tokenizer).tokenizer is tokenizer
