"""Notebook 08's comparison of storage formats: binarize a model, score it before and after
STE training, save it packed and score what loads back (`binarize_variant`); one row per
variant with its exact bytes on disk (`variant_row`)."""
from __future__ import annotations

import time
from pathlib import Path

from utils import saved
from utils.common import sizes
from utils.compression import vocab
from utils.compression.binarize import BinarizedClassifier, train_binarized
from utils.training.evaluation import classification_metrics


def variant_row(name, loaded, test_split, dense_parameters, **extra):
    """One row of the bits-per-weight comparison: test metrics of the utils.saved.SavedModel
    `loaded` and the exact bytes of its model files (as utils.face.bench counts them)."""
    metrics = classification_metrics(test_split["label"],
                                     loaded.predict_logits(test_split["text"]).argmax(-1))
    disk = loaded.disk_bytes
    return {"variant": name, "macro_f1": metrics["macro_f1"], "accuracy": metrics["accuracy"],
            "macro_recall": metrics["macro_recall"], "disk_bytes": disk,
            "disk_mb": sizes.megabytes(disk), "bits_per_dense_weight": 8 * disk / dense_parameters, **extra}


def binarize_variant(name, model, tokenizer, train_split, teacher_logits, config, directory,
                     test_split, dense_parameters, embeddings, granularity="row", clip=1.0,
                     distill_alpha=0.5, temperature=2.0, progress=True):
    """Binarize `model` (its weights are the latent start), score it as is, train it with the
    STE (and distillation), save it packed and score what loads back. Two comparison rows."""
    binarized = BinarizedClassifier(model, embeddings=embeddings, granularity=granularity,
                                    clip=clip, distill_alpha=distill_alpha, temperature=temperature)
    options = {"embeddings": embeddings, "granularity": granularity}
    base = tokenizer.base if isinstance(tokenizer, vocab.RemappedTokenizer) else tokenizer
    rows = []
    saved.save(binarized, Path(directory) / "untrained", tokenizer)
    rows.append(variant_row(name, saved.load(Path(directory) / "untrained", base), test_split,
                            dense_parameters, trained=False, **options))
    start = time.perf_counter()
    train_binarized(binarized, tokenizer, train_split["text"], train_split["label"], config,
                    teacher_logits=teacher_logits, checkpoint_dir=Path(directory) / "last",
                    progress=progress)
    seconds = time.perf_counter() - start
    saved.save(binarized, Path(directory) / "trained", tokenizer)
    rows.append(variant_row(name, saved.load(Path(directory) / "trained", base), test_split,
                            dense_parameters, trained=True, train_seconds=seconds, **options))
    return rows
