"""Did moving `utils` into sub-packages (issue 37) change any number? The same operations, from
the same seeded start, under the old flat layout (de35404) and the new one: one sha256 prefix of
the resulting weights per operation (masks for the Fisher search). Run from the repository root,
after a SMOKE `make run` under --root DIR (it reads DIR's data and dense model):

    git worktree add OLD_CHECKOUT de35404          # any directory outside this one
    PYTHONPATH=OLD_CHECKOUT .venv/bin/python scripts/layout_parity.py old DIR > old.json
    .venv/bin/python scripts/layout_parity.py new DIR > new.json

The model is built right after keras.utils.set_random_seed: its dropout layers draw their seeds
from Python's `random` when they are built, so an unseeded build differs run to run."""
import hashlib, json, sys
import numpy as np
variant, ROOT = sys.argv[1], sys.argv[2]
import utils  # noqa: F401  (sets KERAS_BACKEND before keras is imported)
import keras
if variant == "old":
    from utils import units, train, saved, data as corpus, model as model_lib, sweep, cofi, binarize, fisher_mask, baselines
    from utils import pruning as block
    tok = model_lib.load_tokenizer(model_lib.DEFAULT_MODEL)
    def penalized(model, ds, cfg, **kw): return train.fine_tune(model, tok, ds, cfg, progress=False, **kw)
    labelled = baselines._labelled_batches
else:
    from utils.pruning import units, block, sweep, cofi, fisher_mask, importance
    from utils.training import train
    from utils.compression import binarize
    from utils import saved
    from utils.data import corpus
    from utils.encoder import hub
    tok = hub.load_tokenizer(hub.DEFAULT_MODEL)
    def penalized(model, ds, cfg, **kw): return block.penalized_fine_tune(model, tok, ds, cfg, progress=False, **kw)
    labelled = importance.labelled_batches
ds = corpus.subsample(corpus.load_splits(f"{ROOT}/data"), {"train": 160, "validation": 40, "test": 40}, seed=42)
BASE = f"{ROOT}/checkpoints/baseline/best"
def fresh():
    keras.utils.set_random_seed(0)
    return saved.load_model(BASE)
def digest(model):
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()[:16]
cfg = train.TrainConfig(learning_rate=1e-4, epochs=1, batch_size=32, max_length=64, patience=1, seed=42)
out = {}
m = fresh(); teacher = train.predict_texts(m, tok, ds["train"]["text"], max_length=64)
m = fresh(); train.fine_tune(m, tok, ds, cfg, progress=False); out["plain"] = digest(m)
pen = block.PruningConfig(num_blocks=1, mode="inner", lambda_group=4e-3, lambda_polar=1e-3, distill_alpha=0.5, temperature=2.0)
m = fresh(); s = penalized(m, ds, cfg, pruning=pen, teacher_logits=teacher); out["penalty"] = digest(m); out["penalty_terms"] = len(s["loss_terms"])
for sel in ("rms", "fisher"):
    m = fresh()
    units.progressive_prune(m, tok, ds, [0.3, 0.6], cfg, f"{ROOT}/layout_parity_{variant}_{sel}", teacher_logits=teacher,
                            distill_alpha=0.5, temperature=2.0, prune_fraction=0.8, every=2, selection=sel,
                            fisher_examples=64)
    out[f"progressive_{sel}"] = digest(m)
    snap = m
keras.utils.set_random_seed(1)
sweep.recover(snap, tok, ds, cfg, teacher_logits=teacher, distill_alpha=0.5); out["recover"] = digest(snap)
m = fresh(); cofi.cofi_prune(m, tok, ds, 0.5, cfg, train_examples=32 * 6, teacher_logits=teacher, reg_learning_rate=0.1); out["cofi"] = digest(m)
m = fresh(); b = binarize.BinarizedClassifier(m, distill_alpha=0.5)
binarize.train_binarized(b, tok, ds["train"]["text"], ds["train"]["label"], cfg, teacher_logits=teacher, progress=False)
out["binarized"] = digest(b.to_float())
m = fresh(); batches = labelled(tok, ds["train"], 64, 64, 32, 42)
masks = fisher_mask.FisherMaskPruner(batches)(m, 0.5); out["fisher_mask"] = hashlib.sha256(json.dumps({k: np.asarray(v).tolist() for k, v in sorted(masks.items())}).encode()).hexdigest()[:16]
print(json.dumps(out, indent=0))
