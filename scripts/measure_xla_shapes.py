"""XLA compiles one program per padded batch shape, and a process keeps them all. Batches are
padded to a multiple of `batching.PAD_MULTIPLE` (8: up to 8 shapes at max_length 64); a
coarser multiple means fewer programs (less memory, less compilation) but more padding
(more compute). Each variant runs in a fresh process: one fit of 4,800 stratified training
tweets (150 steps, distilled from fixed logits, from the pretrained checkpoint), with its wall
time, the process's peak resident memory (ru_maxrss) and the mean padded length of its batches.

Writes results/exploratory/xla_shapes.json.

    .venv/bin/python scripts/measure_xla_shapes.py
"""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VARIANTS = {"plain, pad 8": (False, 8), "xla, pad 8": (True, 8), "xla, pad 16": (True, 16),
            "xla, pad 32": (True, 32)}

CHILD = r"""
import json, resource, sys, time
import numpy as np
from utils.common import sizes   # ru_maxrss is KiB on Linux; peak_rss_mb is MiB
from utils.data import batching
from utils.data import corpus as data
from utils.encoder import model as model_lib
from utils.encoder import hub
from utils.encoder import hf
from utils.pruning import block as pruning
from utils.pruning import sweep
from utils.training import train
jit, multiple = json.loads(sys.argv[1])
batching.PAD_MULTIPLE = multiple
tokenizer = hub.load_tokenizer("sentence-transformers/all-MiniLM-L6-v2")
dataset = data.load_splits("data")
dataset["validation"] = dataset["validation"].select(range(512))
sample, _ = sweep.recovery_data(dataset, tokenizer, None, 4800, 42, 64)
logits = np.random.default_rng(0).normal(size=(len(sample["train"]), 3)).astype("float32")
batches, _ = batching.make_batches(tokenizer, sample["train"]["text"], sample["train"]["label"],
                                   max_length=64, batch_size=32, shuffle=True, seed=42)
widths = [b[0]["input_ids"].shape[1] for b in batches]
config = train.TrainConfig(learning_rate=1e-4, epochs=1, max_length=64, patience=1, jit_compile=jit)
distill = pruning.PruningConfig(lambda_group=0.0, lambda_polar=0.0, polarization="none",
                                distill_alpha=0.5, temperature=2.0)
model = hf.from_pretrained("sentence-transformers/all-MiniLM-L6-v2", num_labels=3)
started = time.perf_counter()
state = train.fine_tune(model, tokenizer, sample, config, progress=False, pruning=distill,
                        teacher_logits=logits)
print("RESULT " + json.dumps({
    "wall_seconds": time.perf_counter() - started, "train_seconds": state["train_seconds"],
    "steps": len(batches), "shapes": len(set(widths)), "mean_padded_length": float(np.mean(widths)),
    "peak_rss_mb": sizes.mebibytes(1024 * resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
    "val_macro_f1": state["history"][-1]["val_macro_f1"]}))
"""

rows = []
for name, (jit, multiple) in VARIANTS.items():
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps([jit, multiple])], cwd=REPO,
                          env=os.environ, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
    rows.append({"variant": name, "jit_compile": jit, "pad_multiple": multiple,
                 **json.loads(done.stdout.split("RESULT ", 1)[1])})
    print(rows[-1], flush=True)

from utils.common import io
out = REPO / "results/exploratory/xla_shapes.json"
io.write_json(out, {"rows": rows, "git_commit": io.git_commit(),
                    "note": "one fresh process per variant, run one after another on this machine"})
print(f"wrote {out}")
