import numpy as np
import pytest

from utils import evaluation


def test_metrics_against_hand_computation():
    y_true = np.array([0, 0, 1, 1, 2, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0, 2])
    m = evaluation.classification_metrics(y_true, y_pred)
    assert m["accuracy"] == pytest.approx(5 / 7)
    # per-class recall 1/2, 2/2, 2/3 ; precision 1/2, 2/3, 2/2
    recalls = np.array([1 / 2, 1, 2 / 3])
    precisions = np.array([1 / 2, 2 / 3, 1])
    f1 = 2 * precisions * recalls / (precisions + recalls)
    assert m["macro_recall"] == pytest.approx(recalls.mean())
    assert m["macro_f1"] == pytest.approx(f1.mean())
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 2]]


def test_metrics_shape_mismatch():
    with pytest.raises(ValueError):
        evaluation.classification_metrics([0, 1], [0])


def test_tfidf_baseline_learns_separable_words():
    import datasets
    words = {0: "awful terrible", 1: "table chair", 2: "lovely great"}
    rng = np.random.default_rng(0)

    def split(n):
        labels = rng.integers(0, 3, size=n)
        return datasets.Dataset.from_dict({
            "text": [f"{words[y]} filler{rng.integers(100)}" for y in labels],
            "label": labels.tolist()})
    dd = datasets.DatasetDict(train=split(120), validation=split(30), test=split(30))
    m = evaluation.tfidf_logreg_baseline(dd)
    assert m["macro_f1"] == pytest.approx(1.0)
