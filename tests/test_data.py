"""Tests for utils/data/corpus.py and utils/data/mojibake.py: repair, normalisation, Deflategate, splits, TweetEval, I/O."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.data import corpus as data  # noqa: E402
from utils.data import mojibake

# Bytes as they occur in the real file: MacRoman, CRLF record ends, a bare CR inside a
# quoted tweet, an HTML entity, "’" corrupted twice (E4 F3 BB = "‰Ûª") and an emoji
# whose lead byte was lost ("_Ù÷ç" = F0 9F 98 8D, smiling face with heart-eyes).
FIXTURE_CSV = (
    b"sentiment,confidence,text\r\n"
    b'negative,1,"Line one\rline two &amp; more"\r\n'
    b"positive,0.9,I\xe4\xf3\xbbm so happy _\xf4\xd6\x8d\r\n"
    b"neutral,0.5,Caf\x8e au lait @bob http://t.co/x\r\n"
)


@pytest.fixture
def fixture_csv(tmp_path):
    path = tmp_path / data.CROWDFLOWER_FILE
    path.write_bytes(FIXTURE_CSV)
    return path


@pytest.fixture(scope="module")
def crowdflower():
    """The real corpus, loaded once (about 10 s)."""
    return data.load_sentiment_dataset(return_stats=True, verbose=False)


# ---- encoding repair ------------------------------------------------------------------

def test_raw_reader_handles_macroman_and_mixed_line_ends(fixture_csv):
    raw = data.read_crowdflower_raw(fixture_csv)
    assert len(raw) == 3
    assert raw["text"][0] == "Line one\rline two &amp; more"
    assert raw["text"][2].startswith("Café")


def test_fixture_texts_are_repaired(fixture_csv):
    frame, stats = data.load_crowdflower_frame(fixture_csv)
    assert stats["raw_rows"] == 3
    assert list(frame["text"]) == ["Line one\rline two & more", "I\u2019m so happy \U0001F60D",
                                   "Café au lait @bob http://t.co/x"]
    assert list(frame["label"]) == [0, 2, 1]


@pytest.mark.parametrize("mojibake_text, expected", [
    ("don\u2030\u00db\u00aat", "don\u2019t"),            # 2 rounds: ’
    ("\u2030\u00db\u00cf@united", "\u201c@united"),       # 2 rounds: “
    ("I\u00e4\u00f3\u00bbm", "I\u2019m"),                 # 3 rounds: ’
    ("Google\u2019\u00a2_\u00e4\u0152_\u00dc\u00a2s", "Google\u2019s"),  # 4 rounds + cp1252 layer
    ("fianc\u00ed\u00a9e", "fiancée"),                    # é, 3 rounds
    ("\u0152\u00a3130", "£130"),
    ("S\u00e3o Paulo", "S\u00e3o Paulo"),                 # already fine (repairs to itself)
    ("snake_case stays", "snake_case stays"),
])
def test_repair_mojibake_examples(mojibake_text, expected):
    assert mojibake.repair_mojibake(mojibake_text) == expected


def test_repair_mojibake_rejects_non_str():
    with pytest.raises(TypeError, match="bytes"):
        mojibake.repair_mojibake(b"abc")


# ---- normalisation --------------------------------------------------------------------

def test_normalize_tweet_mentions_urls_emoji_whitespace():
    text = "@Bob_1 look\r\nhttps://t.co/abc  and www.example.com \U0001F602!! email a@b.c"
    assert data.normalize_tweet(text) == (
        "@USER look HTTPURL and HTTPURL :face_with_tears_of_joy: !! email a@b.c")


def test_normalize_tweet_type_error_names_type():
    with pytest.raises(TypeError, match="float"):
        data.normalize_tweet(1.5)


def test_clean_and_deduplicate_counts_and_errors():
    texts = ["hi @a", "hi @b", "   ", "other", "HI @a"]
    kept, labels, stats = data.clean_and_deduplicate(texts, [0, 2, 1, 1, 0])
    assert kept == ["hi @USER", "other", "HI @USER"]
    assert labels == [0, 1, 0]
    assert stats["empty_rows"] == 1 and stats["duplicate_rows"] == 1
    assert stats["duplicates_with_other_label"] == 1
    with pytest.raises(TypeError, match="NoneType"):
        data.clean_and_deduplicate(["ok", None], [0, 1])
    with pytest.raises(ValueError, match="empty"):
        data.clean_and_deduplicate([], [])
    with pytest.raises(ValueError, match="empty"):
        data.clean_and_deduplicate([" ", "\r\n"], [0, 1])


def test_unknown_label_is_an_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"sentiment,confidence,text\r\nmixed,1,hello\r\n")
    with pytest.raises(ValueError, match=r"'mixed'.*negative"):
        data.load_crowdflower_frame(path)


def test_header_only_file_is_an_error(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"sentiment,confidence,text\r\n")
    with pytest.raises(ValueError, match="no tweets"):
        data.read_crowdflower_raw(path)


# ---- Deflategate ----------------------------------------------------------------------

def test_deflategate_mask_marks_the_block_not_stray_hits():
    texts = (["apple is great"] * 5 + ["Brady and the #DeflateGate"] * 3 + ["no keyword here"]
             + ["Patriots cheated"] * 3 + ["coachella lineup"] * 5 + ["stray NFL tweet"]
             + ["more apple"] * 5)
    mask = data.deflategate_mask(texts, max_gap=2, min_block_rows=5)
    expected = np.zeros(len(texts), dtype=bool)
    expected[5:12] = True  # the block, including its keyword-less tweet
    assert mask.tolist() == expected.tolist()


def test_deflategate_block_size_on_real_file(crowdflower):
    _, stats = crowdflower
    assert 9000 <= stats["deflategate_rows"] <= 9800
    assert stats["raw_rows"] == 38158


# ---- splits ---------------------------------------------------------------------------

def test_real_dataset_schema_and_size(crowdflower):
    dataset, stats = crowdflower
    assert set(dataset) == {"train", "validation", "test"}
    assert dataset["train"].column_names == ["text", "label"]
    assert 26000 <= stats["final_rows"] <= 29500
    assert sum(len(ds) for ds in dataset.values()) == stats["final_rows"]
    assert set(dataset["test"]["label"]) == {0, 1, 2}


def test_stratified_proportions(crowdflower):
    dataset, _ = crowdflower
    shares = {s: np.bincount(ds["label"], minlength=3) / len(ds) for s, ds in dataset.items()}
    for split in ("validation", "test"):
        assert np.abs(shares[split] - shares["train"]).max() < 0.01
    sizes = np.array([len(dataset[s]) for s in data.SPLITS]) / sum(map(len, dataset.values()))
    assert np.allclose(sizes, [0.8, 0.1, 0.1], atol=0.005)


def test_no_text_in_two_splits(crowdflower):
    dataset, _ = crowdflower
    seen = [set(dataset[s]["text"]) for s in data.SPLITS]
    assert all(len(seen[i]) == len(dataset[s]) for i, s in enumerate(data.SPLITS))
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])


def test_split_is_reproducible_and_seeded():
    texts = [f"tweet number {i}" for i in range(200)]
    labels = [i % 3 for i in range(200)]
    a = data.stratified_split(texts, labels, seed=1)
    b = data.stratified_split(texts, labels, seed=1)
    c = data.stratified_split(texts, labels, seed=2)
    assert a["test"]["text"] == b["test"]["text"]
    assert a["test"]["text"] != c["test"]["text"]


def test_subsample_sizes_and_labels(crowdflower):
    dataset, _ = crowdflower
    small = data.subsample(dataset, {"train": 90, "validation": 30}, seed=0)
    assert len(small["train"]) == 90 and len(small["validation"]) == 30
    assert len(small["test"]) == len(dataset["test"])
    assert set(small["train"]["label"]) == {0, 1, 2}


def test_unknown_source_lists_valid_ones():
    with pytest.raises(ValueError, match="crowdflower.*tweet_eval"):
        data.load_sentiment_dataset(source="imdb")


# ---- TweetEval ------------------------------------------------------------------------

def _write_tweet_eval(directory, n=6):
    directory.mkdir(exist_ok=True)
    for prefix in ("train", "val", "test"):
        texts = [f"{prefix} tweet {i} @someone http://x.co/{i}" for i in range(n)]
        (directory / f"{prefix}_text.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
        (directory / f"{prefix}_labels.txt").write_text(
            "\n".join(str(i % 3) for i in range(n)) + "\n")
    return directory


def test_tweet_eval_local_directory(tmp_path):
    directory = _write_tweet_eval(tmp_path / "te")
    (directory / "test_text.txt").write_text(  # a test tweet that train already has
        "train tweet 0 @a http://y.co\n" + "\n".join(f"t{i}" for i in range(1, 6)) + "\n")
    dataset, stats = data.load_sentiment_dataset(source=str(directory), return_stats=True,
                                                 verbose=False)
    assert [len(dataset[s]) for s in data.SPLITS] == [6, 6, 5]
    assert dataset["train"][0] == {"text": "train tweet 0 @USER HTTPURL", "label": 0}
    assert stats["per_split_cleaning"]["test"]["removed_as_in_earlier_split"] == 1
    same = data.load_sentiment_dataset(source="tweet_eval", data_dir=directory, verbose=False)
    assert same["validation"]["text"] == dataset["validation"]["text"]


def test_tweet_eval_missing_file(tmp_path):
    directory = _write_tweet_eval(tmp_path / "te")
    (directory / "val_labels.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"val_labels\.txt.*must contain"):
        data.read_tweet_eval_dir(directory)


def test_tweet_eval_mismatched_counts(tmp_path):
    directory = _write_tweet_eval(tmp_path / "te")
    (directory / "train_labels.txt").write_text("0\n1\n")
    with pytest.raises(ValueError, match="6 lines.*2"):
        data.read_tweet_eval_dir(directory)


def test_tweet_eval_bad_label(tmp_path):
    directory = _write_tweet_eval(tmp_path / "te")
    (directory / "test_labels.txt").write_text("0\n1\n2\n3\n0\n1\n")
    with pytest.raises(ValueError, match="'3'"):
        data.read_tweet_eval_dir(directory)


# ---- save / load ----------------------------------------------------------------------

def test_save_load_round_trip(tmp_path):
    texts = ["NA", "null", 'has "quotes", commas', "multi word :red_heart:", "x", "y"]
    dataset = data.stratified_split(texts * 5 + [f"u{i}" for i in range(30)],
                                    [i % 3 for i in range(60)], seed=0)
    out = data.save_splits(dataset, tmp_path / "splits", stats={"note": "test"})
    loaded = data.load_splits(out)
    for split in data.SPLITS:
        assert loaded[split]["text"] == dataset[split]["text"]
        assert loaded[split]["label"] == dataset[split]["label"]
    stats = data.load_split_stats(out)
    assert stats["note"] == "test" and stats["splits"]["train"]["rows"] == len(dataset["train"])


def test_load_splits_missing_says_how_to_make_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="01_data_prep"):
        data.load_splits(tmp_path / "nowhere")
    (tmp_path / "partial").mkdir()
    with pytest.raises(FileNotFoundError, match="train.csv.*make data"):
        data.load_splits(tmp_path / "partial")


# ---- tokenizer helper -----------------------------------------------------------------

def test_token_lengths_with_minilm():
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(data.default_tokenizer_dir()))
    lengths = data.token_lengths(["hello world", "a much longer tweet than the first one"],
                                 tokenizer)
    assert lengths.dtype.kind == "i" and lengths[0] == 4 and lengths[1] > lengths[0]
