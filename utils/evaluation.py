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
