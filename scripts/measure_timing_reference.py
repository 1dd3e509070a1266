"""Which dense reference gives steadier speedups: the dense copy timed in the variant's own
group, or the median of the dense copies of every group?

`timing.time_compacted` times variants in groups, each with a fresh copy of the dense model.
Notebook 07's study at 43918ce read 10.05 ms for the dense copy of one group and 10.88 ms for
another's, while two variants of identical shapes (block @ 50% and fisher_mask @ 50%) in those
groups read 7.21 and 7.23 ms -- so their speedups came out 1.39x and 1.51x.

Here every variant is the same model: the pretrained MiniLM-L6 with the same half of its heads
and of its FFN neurons zeroed (compacted to 6 heads and 768 neurons per layer), saved once and
listed COPIES times, so every speedup estimate should be the same number. `time_compacted`
times them GROUP_SIZE to a group (as notebook 07 does, with 200 test-sized tweets and 3 rounds),
and each copy's batch-1 speedup is computed both ways. The reference with the smaller spread
across identical copies is the better one. TRIALS repeats the whole timing in this process.

Writes results/exploratory/timing_reference.json.

    .venv/bin/python scripts/measure_timing_reference.py
"""
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent

from utils.data import corpus as data
from utils.common import io
from utils import saved
from utils.measurement import timing
from utils.encoder import hub
from utils.encoder import hf

COPIES, GROUP_SIZE, TRIALS, ROUNDS, EXAMPLES = 6, 2, 3, 3, 200


def zero_half(model):
    """Zero the value columns and output rows of the upper half of every layer's heads, and the
    input columns of the upper half of its FFN neurons: compaction removes exactly those."""
    config = model.encoder_config
    by_path = {v.path: v for v in model.weights}
    for i in range(config.num_layers):
        att, ffn = f"encoder/layer_{i}/attention", f"encoder/layer_{i}/ffn"
        size, heads = config.head_size, config.num_heads[i]
        cut = heads // 2 * size
        value = np.array(by_path[f"{att}/value/kernel"].numpy())
        value[:, cut:] = 0
        by_path[f"{att}/value/kernel"].assign(value)
        output = np.array(by_path[f"{att}/output/kernel"].numpy())
        output[cut:, :] = 0
        by_path[f"{att}/output/kernel"].assign(output)
        kernel = np.array(by_path[f"{ffn}/input/kernel"].numpy())
        kernel[:, config.intermediate_sizes[i] // 2:] = 0
        by_path[f"{ffn}/input/kernel"].assign(kernel)
    return model


def spread(values):
    """(max - min) / median: 0 when every identical copy gets the same speedup."""
    return float((max(values) - min(values)) / statistics.median(values))


def main():
    texts = data.read_crowdflower_raw()["text"].tolist()[:EXAMPLES]
    tokenizer = hub.load_tokenizer(hub.DEFAULT_MODEL)
    trials = []
    with tempfile.TemporaryDirectory() as tmp:
        dense_dir, half_dir = Path(tmp, "dense"), Path(tmp, "half")
        saved.save(hf.from_pretrained(num_labels=3), dense_dir)
        saved.save(zero_half(hf.from_pretrained(num_labels=3)), half_dir)
        variants = {"dense": dense_dir, **{f"half #{c + 1}": half_dir for c in range(COPIES)}}
        for trial in range(TRIALS):
            started = time.perf_counter()
            frame = timing.time_compacted(variants, tokenizer, texts, rounds=ROUNDS,
                                          group_size=GROUP_SIZE)
            copies = frame[frame.variant != "dense"]
            pooled = float(frame[frame.variant == "dense"].latency_ms_median.iloc[0])
            in_group = (copies.dense_latency_ms_in_group / copies.latency_ms_median).tolist()
            against_pooled = (pooled / copies.latency_ms_median).tolist()
            trials.append({
                "seconds": time.perf_counter() - started,
                "heads": int(copies.heads.iloc[0]), "ffn_neurons": int(copies.ffn_neurons.iloc[0]),
                "dense_ms_per_group": sorted(set(copies.dense_latency_ms_in_group.round(4))),
                "dense_ms_pooled": pooled,
                "copy_ms": copies.latency_ms_median.tolist(),
                "speedup_in_group": in_group, "speedup_pooled": against_pooled,
                "spread_in_group": spread(in_group), "spread_pooled": spread(against_pooled)})
            print({k: trials[-1][k] for k in ("dense_ms_per_group", "spread_in_group",
                                               "spread_pooled")}, flush=True)
    summary = {"spread_in_group_median": statistics.median(t["spread_in_group"] for t in trials),
               "spread_pooled_median": statistics.median(t["spread_pooled"] for t in trials)}
    io.write_json(REPO / "results" / "exploratory" / "timing_reference.json", {
        "what": __doc__.split("\n\n")[0], "copies": COPIES, "group_size": GROUP_SIZE,
        "rounds": ROUNDS, "examples": EXAMPLES, "trials": trials, **summary,
        "command": ".venv/bin/python scripts/measure_timing_reference.py"})
    print(summary)


if __name__ == "__main__":
    main()
