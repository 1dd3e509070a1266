"""Classification metrics and the TF-IDF + logistic-regression floor."""
import time

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score
from sklearn.pipeline import make_pipeline

NUM_CLASSES = 3


def classification_metrics(y_true, y_pred):
    """Accuracy, macro-F1 and macro-averaged recall (TweetEval's official metric)."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{y_true.shape[0]} labels but {y_pred.shape[0]} predictions")
    labels = list(range(NUM_CLASSES))
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro",
                                   zero_division=0)),
        "macro_recall": float(recall_score(y_true, y_pred, labels=labels, average="macro",
                                           zero_division=0)),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def tfidf_logreg_baseline(dataset, seed=42):
    """Fit word+character TF-IDF and logistic regression on train; score on test.

    A floor for the transformer: anything below it is not learning much beyond words.
    C is picked on the validation split.
    """
    train, val, test = dataset["train"], dataset["validation"], dataset["test"]
    best = None
    start = time.perf_counter()
    for c in (0.5, 1.0, 2.0, 4.0):
        pipe = make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
            LogisticRegression(C=c, max_iter=2000, class_weight="balanced", random_state=seed),
        )
        pipe.fit(train["text"], train["label"])
        f1 = classification_metrics(val["label"], pipe.predict(val["text"]))["macro_f1"]
        if best is None or f1 > best[0]:
            best = (f1, c, pipe)
    _, c, pipe = best
    metrics = classification_metrics(test["label"], pipe.predict(test["text"]))
    metrics.update({"C": c, "fit_seconds": time.perf_counter() - start})
    return metrics


def _macro_f1_rows(y_true, y_pred, rows):
    """Macro-F1 (as sklearn's, zero_division=0) of every resample: rows is (resamples, n)
    indices into y_true / y_pred."""
    t, p = y_true[rows], y_pred[rows]
    scores = []
    for c in range(NUM_CLASSES):
        tp = np.sum((t == c) & (p == c), axis=1)
        predicted, actual = np.sum(p == c, axis=1), np.sum(t == c, axis=1)
        denominator = predicted + actual
        scores.append(np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0))
    return np.mean(scores, axis=0)


def paired_bootstrap_macro_f1(y_true, pred_reference, pred_model, resamples=1000, seed=0,
                              level=0.95):
    """Macro-F1 of `pred_model` minus that of `pred_reference` on the same examples, with a
    paired percentile-bootstrap interval: both are scored on the same resampled examples, so
    the interval is that of the difference, not of two independent scores.
    Returns {"diff", "low", "high", "resamples", "level"} (in F1 units, not points)."""
    y_true, pred_reference, pred_model = (np.asarray(a) for a in
                                          (y_true, pred_reference, pred_model))
    if not (y_true.shape == pred_reference.shape == pred_model.shape) or y_true.ndim != 1:
        raise ValueError(f"labels {y_true.shape}, reference {pred_reference.shape} and model "
                         f"{pred_model.shape} predictions must be 1-d and of equal length")
    if len(y_true) == 0:
        raise ValueError("no examples to bootstrap")
    if not isinstance(resamples, int) or resamples < 1 or not 0 < level < 1:
        raise ValueError(f"resamples = {resamples!r}, level = {level!r}: need an int >= 1 "
                         "and a level in (0, 1)")
    everything = np.arange(len(y_true))[None, :]
    diff = float(_macro_f1_rows(y_true, pred_model, everything)[0]
                 - _macro_f1_rows(y_true, pred_reference, everything)[0])
    rng = np.random.default_rng(seed)
    diffs = []
    for start in range(0, resamples, 100):     # 100 resamples at a time bounds the memory
        rows = rng.integers(0, len(y_true), size=(min(100, resamples - start), len(y_true)))
        diffs.append(_macro_f1_rows(y_true, pred_model, rows)
                     - _macro_f1_rows(y_true, pred_reference, rows))
    low, high = np.quantile(np.concatenate(diffs), [(1 - level) / 2, (1 + level) / 2])
    return {"diff": diff, "low": float(low), "high": float(high), "resamples": resamples,
            "level": level}
