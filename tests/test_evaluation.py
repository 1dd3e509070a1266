import numpy as np
import pytest

from utils.training import evaluation


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


def test_paired_bootstrap_matches_a_loop_over_sklearn_on_the_same_resamples():
    from sklearn.metrics import f1_score
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, size=300)
    reference = np.where(rng.random(300) < 0.8, y, rng.integers(0, 3, size=300))
    model = np.where(rng.random(300) < 0.7, y, rng.integers(0, 3, size=300))
    out = evaluation.paired_bootstrap_macro_f1(y, reference, model, resamples=250, seed=5)

    def f1(t, p):
        return f1_score(t, p, labels=[0, 1, 2], average="macro", zero_division=0)
    assert out["diff"] == pytest.approx(f1(y, model) - f1(y, reference))
    # the same resamples, drawn as the function draws them (100 at a time), scored by sklearn
    draw = np.random.default_rng(5)
    rows = np.concatenate([draw.integers(0, 300, size=(min(100, 250 - s), 300))
                           for s in range(0, 250, 100)])
    diffs = [f1(y[r], model[r]) - f1(y[r], reference[r]) for r in rows]
    low, high = np.quantile(diffs, [0.025, 0.975])
    assert (out["low"], out["high"]) == pytest.approx((low, high))
    assert out["low"] < out["diff"] < out["high"] < 0   # the weaker model is clearly worse


def test_paired_bootstrap_of_identical_predictions_is_exactly_zero():
    y = np.array([0, 1, 2, 2, 1, 0, 1])
    out = evaluation.paired_bootstrap_macro_f1(y, y, y, resamples=50)
    assert out["diff"] == out["low"] == out["high"] == 0


@pytest.mark.parametrize("kwargs, match", [({"resamples": 0}, "resamples"),
                                           ({"level": 1.0}, "level")])
def test_paired_bootstrap_rejects_bad_settings(kwargs, match):
    y = np.array([0, 1, 2])
    with pytest.raises(ValueError, match=match):
        evaluation.paired_bootstrap_macro_f1(y, y, y, **kwargs)
    with pytest.raises(ValueError, match="equal length"):
        evaluation.paired_bootstrap_macro_f1(y, y[:2], y)
