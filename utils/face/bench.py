"""Benchmark: is the pruned model genuinely smaller and faster? `python -m utils.face.bench --help`

Variants (each saved with utils.saved, the TFLite ones as utils.saved.export bundles, and loaded back
with `utils.saved.load` before it is measured):
  dense                 the fine-tuned baseline (--dense)
  masked                the pruned model: zeros in pruned groups, same shapes (--pruned)
  compact               heads / FFN neurons physically removed (utils.compression.compact)
  compact+vocab         + word-embedding rows of tokens never seen in training removed
  compact+vocab+first   same model, last layer computed at position 0 only (speed only)
  compact+vocab+int8    + Keras int8 weights (utils.compression.quantize)
  dense+tflite-int8     the baseline exported to TFLite with dynamic-range int8 weights
  compact+vocab+tflite  compact+vocab exported to TFLite, float32 (utils.compression.tflite)
  compact+vocab+tflite-int8   the same with dynamic-range int8 weights
  dense+onnx            the baseline in ONNX Runtime, float32 (utils.compression.onnx_graph)
  dense+onnx-int8       the same with ONNX Runtime's dynamic int8: what a user who never heard
                        of pruning would ship (the route Sentence-Transformers / Optimum document)
  compact+vocab+onnx-int8     compact+vocab in ONNX Runtime, dynamic int8
Runtime variants (TFLite in the LiteRT interpreter, ai_edge_litert; ONNX Runtime's CPU provider)
run with RUNTIME_THREADS = os.cpu_count() threads (TF's default intra-op thread count here), one
tweet at a time; their "weights" bytes are the model file's size. Bytes on disk are the model's
own files (spec + weights, or a bundle's model file + bundle.json), tokenizer files excluded for
every variant. With --bundle-out (--onnx-bundle-out), compact+vocab+tflite-int8
(compact+vocab+onnx-int8) is also published there with its model card (`make run` publishes
models/tweet-sentiment-int8 and models/tweet-sentiment-onnx-int8).

Per variant: parameters, non-zero parameters, bytes on disk (raw and gzipped), bytes of weights
in memory, resident-memory growth when loading and predicting (psutil RSS, in a fresh
subprocess per variant, measured against the same process before loading), CPU latency at batch
1 (median over test tweets) and throughput at batch 32 -- all variants timed in ONE process,
round-robin over several rounds, ratios vs dense from that run -- analytic FLOPs per token, and
test accuracy / macro-F1 / macro-recall. Writes results/benchmark.json and .md atomically.
"""
from __future__ import annotations

import argparse
import gc
import gzip
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from utils import saved
from utils.common import cli, sizes
from utils.common.io import REPO_ROOT, git_commit, write_json, write_text
from utils.common.machine import describe_cpu, machine_facts
from utils.data import corpus as data_lib
from utils.encoder import hub
from utils.measurement.timing import time_variants
from utils.saved import SavedModelError, export

# `--help` answers in a fraction of a second: TensorFlow, Keras and scikit-learn
# (utils.training.evaluation) are imported in `run`.

VARIANTS = ("dense", "masked", "compact", "compact+vocab", "compact+vocab+first",
            "compact+vocab+int8", "dense+tflite-int8", "compact+vocab+tflite",
            "compact+vocab+tflite-int8", "dense+onnx", "dense+onnx-int8",
            "compact+vocab+onnx-int8", "sparser+vocab+tflite-int8", "sparser+vocab+onnx-int8")
# The sparser snapshot's bundles exist only when the snapshot within DEPLOY_FAR_GAP of dense on
# validation is another than the one within SNAPSHOT_TOLERANCE_POINTS (`far_snapshot`).
SPARSER = ("sparser+vocab+tflite-int8", "sparser+vocab+onnx-int8")
RUNTIME_THREADS = os.cpu_count()   # TFLite and ONNX Runtime; Keras uses TF's own default
ONNX_BUNDLE_NAME = "tweet-sentiment-onnx-int8"
# The bundles `--*-bundle-out` publish: the pruned model for each runtime, and the dense model
# quantized the same way (TFLite int8, full vocabulary), which the demo shows beside the pruned
# one on a fresh clone so that what pruning adds over quantization alone is seen, not claimed.
PUBLISHED = (("--bundle-out", "compact+vocab+tflite-int8"),
             ("--onnx-bundle-out", "compact+vocab+onnx-int8"),
             ("--dense-bundle-out", "dense+tflite-int8"))


log = logging.getLogger("utils.face.bench")   # also under `python -m`




# ------------------------------------------------------------------------------ inputs

SMOKE_WORDS = ("good bad happy sad love hate great awful okay fine flight delay crew seat "
               "thanks never again best worst service late early nice rude bag lost").split()


def smoke_dataset(n_train=48, n_test=24, seed=0):
    rng = np.random.default_rng(seed)

    def split(n):
        texts = [" ".join(rng.choice(SMOKE_WORDS, size=rng.integers(3, 12))) + " @united"
                 for _ in range(n)]
        return {"text": texts, "label": rng.integers(0, 3, size=n).tolist()}
    return {"train": split(n_train), "validation": split(8), "test": split(n_test)}


def make_smoke_models(directory, tokenizer, seed=0):
    """A tiny random dense model and a masked copy of it (heads, neurons and block rows zeroed,
    including a value-zero head and input-zero neurons whose constants get bias-folded)."""
    from utils.encoder import model as model_lib  # Keras: only when building
    directory = Path(directory)
    config = model_lib.EncoderConfig(vocab_size=len(tokenizer), hidden_size=32,
                                     num_heads=[4, 4], intermediate_sizes=[64, 64],
                                     head_size=8, num_labels=3)
    dense = model_lib.build_classifier(config)
    rng = np.random.default_rng(seed)
    for w in dense.weights:
        if "layer_norm" not in w.path:
            w.assign(rng.normal(0, 0.2, size=w.shape).astype("float32"))
    saved.save(dense, directory / "dense")
    kernels = model_lib.prunable_kernels(dense)

    def zero(name, rows=slice(None), cols=slice(None)):
        value = np.asarray(kernels[name]).copy()
        value[rows, cols] = 0
        kernels[name].assign(value)
    zero("layer_0/attention/value", cols=slice(0, 8))       # head 0: bias-folded
    zero("layer_0/attention/output", rows=slice(8, 16))     # head 1
    zero("layer_1/attention/output")                        # every head of layer 1
    zero("layer_0/ffn/input", cols=slice(0, 24))            # neurons 0-23: bias-folded
    zero("layer_1/ffn/output", rows=slice(0, 40))
    zero("layer_0/attention/query", rows=slice(0, 16))      # zeros that stay (block rows)
    saved.save(dense, directory / "masked")
    return directory / "dense", directory / "masked"


# ------------------------------------------------------------------------------ sizes, FLOPs

def disk_bytes(loaded):
    """(raw, gzipped) bytes of a utils.saved.SavedModel's model files (tokenizer files are not
    counted for any variant)."""
    raw = loaded.disk_bytes
    zipped = sum(len(gzip.compress(f.read_bytes(), compresslevel=6)) for f in loaded.files)
    return int(raw), int(zipped)


def flops_per_token(config, mean_length, first_token=False):
    """Analytic FLOPs (multiply-add = 2) per token of the encoder + pooler/classifier.

    Per layer and token: Q/K/V projections 3 * 2*H*A, attention output 2*A*H, scores QK^T and
    probs @ V 2 * 2*T*A, FFN 2 * 2*H*I (A = heads * head_size, T = mean length). With
    first_token the last layer computes K and V for every token but the query, scores,
    output and FFN for position 0 only. Pooler + classifier run once per sequence.
    """
    hidden, size, t = config.hidden_size, config.head_size, float(mean_length)
    total = 0.0
    for i, (heads, width) in enumerate(zip(config.num_heads, config.intermediate_sizes)):
        a = heads * size
        kv = 2 * 2 * hidden * a
        rest = 2 * hidden * a + 2 * a * hidden + 2 * 2 * t * a + 2 * 2 * hidden * width
        if first_token and i == config.num_layers - 1:
            rest /= t
        total += kv + rest
    total += (2 * hidden * hidden + 2 * hidden * config.num_labels) / t
    return total


# ------------------------------------------------------------------------------ memory

def memory_child(spec):
    """Runs in a fresh process: RSS before loading, after loading, after predicting."""
    import keras
    import psutil
    from keras import ops

    process = psutil.Process()
    base_tokenizer = hub.load_tokenizer(spec["tokenizer"])
    texts = spec["texts"]
    base_tokenizer(texts[:4])
    ops.convert_to_numpy(ops.matmul(ops.ones((4, 4)), ops.ones((4, 4))))  # start the runtime
    keras.backend.clear_session()
    gc.collect()
    before = process.memory_info().rss
    model = saved.load(spec["directory"], base_tokenizer, num_threads=RUNTIME_THREADS,
                       first_token=spec["first_token"])
    gc.collect()
    loaded = process.memory_info().rss
    model.predict_logits(texts, batch_size=32)
    predicting = process.memory_info().rss
    return {"rss_before_bytes": before, "rss_growth_load_bytes": loaded - before,
            "rss_growth_predict_bytes": predicting - before}


def measure_memory(directory, first_token, texts, tokenizer_name, max_length):
    spec = {"directory": str(Path(directory).resolve()), "first_token": first_token,
            "texts": list(texts), "tokenizer": tokenizer_name, "max_length": max_length}
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "KERAS_BACKEND": "tensorflow",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-m", "utils.face.bench", "--memory-child"],
                            input=json.dumps(spec), capture_output=True, text=True, env=env,
                            cwd=REPO_ROOT, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"memory measurement of {directory} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------ timing

# ------------------------------------------------------------------------------ main

def build_variants(dense_dir, pruned_dir, work_dir, tokenizer, train_texts, sparser_dir=None):
    """Save the derived variants under work_dir (utils.saved model directories; the TFLite
    ones as utils.saved.export bundles); returns {name: (directory, first_token)} and the
    compaction report. `sparser_dir`: a second, sparser snapshot (`far_snapshot`), made into
    int8 bundles for both runtimes the same way (SPARSER)."""
    from utils.compression import compact, quantize, vocab  # Keras: only when building
    work_dir = Path(work_dir)
    log.info(f"compacting {pruned_dir}")
    masked = saved.load_model(pruned_dir)
    report = compact.compaction_report(masked)
    log.info(compact.format_report(report))
    compacted = compact.compact_model(masked)
    saved.save(compacted, work_dir / "compact")
    log.info("pruning the vocabulary to the training corpus")
    small, remapped = vocab.prune_vocabulary(compacted, tokenizer, train_texts)
    log.info(f"vocabulary {len(tokenizer)} -> {len(remapped)} ids")
    saved.save(small, work_dir / "compact_vocab", remapped)
    saved.save(quantize.quantized_copy(small), work_dir / "compact_vocab_int8", remapped)
    log.info("exporting compact+vocab to TFLite bundles (float32 and dynamic-range int8)")
    export.export_bundle(small, work_dir / "compact_vocab_tflite", tokenizer,
                         remapped.kept_ids, quantize=None)
    export.export_bundle(small, work_dir / "compact_vocab_tflite_int8", tokenizer,
                         remapped.kept_ids, quantize="dynamic_range")
    # The dense model quantized without pruning is the TFLite int8 bundle only: Keras int8 of
    # the dense model ran 0.15x dense's throughput and took 4 of the benchmark's 12 minutes, and
    # notebook 08 reports its size and accuracy; compact+vocab+int8 still shows Keras int8's speed.
    log.info("quantizing the dense model to int8 (a TFLite dynamic-range bundle)")
    dense = saved.load_model(dense_dir)
    export.export_bundle(dense, work_dir / "dense_tflite_int8", tokenizer,
                         quantize="dynamic_range")
    log.info("exporting the dense model and compact+vocab to ONNX Runtime bundles")
    for name, model_, kept, quantize in (("dense_onnx", dense, None, None),
                                         ("dense_onnx_int8", dense, None, "dynamic_range"),
                                         ("compact_vocab_onnx_int8", small, remapped.kept_ids,
                                          "dynamic_range")):
        export.export_bundle(model_, work_dir / name, tokenizer, kept, quantize=quantize,
                             runtime="onnx")
    del masked, compacted, small, dense
    sparser = {}
    if sparser_dir is not None:
        log.info(f"the sparser snapshot {sparser_dir}: compacted, vocabulary pruned, int8 bundles")
        compacted = compact.compact_model(saved.load_model(sparser_dir))
        small, remapped = vocab.prune_vocabulary(compacted, tokenizer, train_texts)
        for name, runtime in zip(SPARSER, ("tflite", "onnx")):
            directory = work_dir / name.replace("+", "_").replace("-", "_")
            export.export_bundle(small, directory, tokenizer, remapped.kept_ids,
                                 quantize="dynamic_range", runtime=runtime)
            sparser[name] = (directory, False)
        del compacted, small
    dirs = {"dense": (Path(dense_dir), False), "masked": (Path(pruned_dir), False),
            "compact": (work_dir / "compact", False),
            "compact+vocab": (work_dir / "compact_vocab", False),
            "compact+vocab+first": (work_dir / "compact_vocab", True),
            "compact+vocab+int8": (work_dir / "compact_vocab_int8", False),
            "dense+tflite-int8": (work_dir / "dense_tflite_int8", False),
            "compact+vocab+tflite": (work_dir / "compact_vocab_tflite", False),
            "compact+vocab+tflite-int8": (work_dir / "compact_vocab_tflite_int8", False),
            "dense+onnx": (work_dir / "dense_onnx", False),
            "dense+onnx-int8": (work_dir / "dense_onnx_int8", False),
            "compact+vocab+onnx-int8": (work_dir / "compact_vocab_onnx_int8", False),
            **sparser}
    return dirs, report


def far_snapshot(snapshot, args):
    """The sparsest snapshot within DEPLOY_FAR_GAP of dense on validation (the far deployment
    target's), when it is sparser than `snapshot` (the one within SNAPSHOT_TOLERANCE_POINTS,
    which the bundles ship); else None. Chosen on validation, as `snapshot` is."""
    from utils.pruning.sweep import choose_snapshot  # Keras: only when choosing
    far = choose_snapshot(args.results_dir, args.snapshots_dir,
                          latency_snapshots_dir=args.latency_snapshots_dir,
                          tolerance_points=100 * DEPLOY_FAR_GAP)
    if not far.within_tolerance or far.directory == snapshot.directory or (
            far.sparsity_encoder_linear <= snapshot.sparsity_encoder_linear):
        return None
    return far


def check_directories(args):
    """FileNotFoundError (one line, naming the option and the fix) for an input directory that
    is missing or empty, before TensorFlow loads: the splits (--data) unless --smoke, and the
    results the pruned snapshot is chosen from (--results-dir) unless --pruned names it."""
    needed = []
    if not args.smoke:
        needed.append(("--data", args.data, [f"{split}.csv" for split in data_lib.SPLITS],
                       data_lib.RUN_DATA_PREP_HINT))
    if args.dense is not None and args.pruned is None:
        needed.append(("--results-dir", args.results_dir, ["sparsity_sweep.csv",
                                                           "baseline.json"],
                       "pass the results/ of `make run` (notebooks 02 and 04 write them), or "
                       "name the pruned model with --pruned"))
    for option, directory, files, fix in needed:
        absent = [name for name in files if not (Path(directory) / name).is_file()]
        if absent:
            state = ("does not exist" if not Path(directory).exists() else
                     "is not a directory" if not Path(directory).is_dir() else
                     "is empty" if not any(Path(directory).iterdir()) else
                     f"lacks {', '.join(absent)}")
            raise FileNotFoundError(f"{option} {directory} {state}; {fix}")


def run(args):
    import keras
    import tensorflow as tf

    from utils.training import evaluation  # scikit-learn: slow to import

    tf.get_logger().setLevel("ERROR")  # one trace per variant is expected, not a problem
    started = time.time()
    machine = machine_facts()   # the CPU every latency and throughput below was measured on
    out_dir = Path(args.out_dir)
    snapshot = None
    far = None
    if args.dense is not None and args.pruned is None:   # chosen on validation, not hard-wired
        from utils.pruning.sweep import choose_snapshot  # Keras: only when choosing
        snapshot = choose_snapshot(args.results_dir, args.snapshots_dir,
                                   latency_snapshots_dir=args.latency_snapshots_dir)
        log.info(snapshot.message)
        far = far_snapshot(snapshot, args)
        if far is not None:
            log.info(f"for the {100 * DEPLOY_FAR_GAP:g}-point target: {far.message}")
    tokenizer = hub.load_tokenizer(args.tokenizer)
    if args.smoke:
        dataset = smoke_dataset()
        work_dir = Path(args.work_dir or out_dir / "bench_models")
    else:
        dataset = data_lib.load_splits(args.data)
        work_dir = Path(args.work_dir or "checkpoints/bench")
    if args.dense is None:
        log.info("smoke: building tiny random dense + masked models")
        dense_dir, pruned_dir = make_smoke_models(work_dir / "smoke", tokenizer)
    else:
        dense_dir = Path(args.dense)
        pruned_dir = snapshot.directory if snapshot is not None else Path(args.pruned)
    log.info(f"dense {dense_dir}, pruned {pruned_dir}, work dir {work_dir}")
    train_texts = list(dataset["train"]["text"])
    test_texts, test_labels = list(dataset["test"]["text"]), list(dataset["test"]["label"])
    dirs, report = build_variants(dense_dir, pruned_dir, work_dir, tokenizer, train_texts,
                                  sparser_dir=far.directory if far is not None else None)
    variants = [v for v in VARIANTS if v in (args.variants or VARIANTS) and v in dirs]

    results = {}
    loaded = {}
    logits = {}
    lengths = [len(ids) for ids in tokenizer(test_texts, add_special_tokens=True,
                                             truncation=False)["input_ids"]]
    mean_length = float(np.mean(np.minimum(lengths, args.max_length)))
    for name in variants:
        directory, first_token = dirs[name]
        log.info(f"{name}: loading {directory} and evaluating on {len(test_texts)} test tweets")
        model = saved.load(directory, tokenizer, num_threads=RUNTIME_THREADS,
                           first_token=first_token)
        mode = (f"{model.kind}-{model.quantization or 'float32'}"
                if model.kind in saved.RUNTIME_KINDS
                else model.quantization or "float32")
        config = model.encoder_config
        raw, zipped = disk_bytes(model)
        logits[name] = model.predict_logits(test_texts, batch_size=128)
        metrics = evaluation.classification_metrics(test_labels, logits[name].argmax(-1))
        results[name] = {
            "directory": str(directory), "first_token_last_layer": first_token,
            "quantization": mode,
            "num_heads": config.num_heads, "intermediate_sizes": config.intermediate_sizes,
            "vocab_size": config.vocab_size,
            "parameters": model.parameters, "nonzero_parameters": model.nonzero_parameters,
            "disk_bytes": raw, "disk_bytes_gzip": zipped, "weight_bytes": model.weight_bytes,
            "flops_per_token": flops_per_token(config, mean_length, first_token),
            **{k: metrics[k] for k in ("accuracy", "macro_f1", "macro_recall")},
        }
        loaded[name] = model
    reference = {"masked": "dense", "compact": "masked", "compact+vocab": "compact",
                 "compact+vocab+first": "compact+vocab", "compact+vocab+int8": "compact+vocab",
                 "dense+tflite-int8": "dense",
                 "compact+vocab+tflite": "compact+vocab",
                 "compact+vocab+tflite-int8": "compact+vocab",
                 "dense+onnx": "dense", "dense+onnx-int8": "dense",
                 "compact+vocab+onnx-int8": "compact+vocab"}
    for name, ref in reference.items():
        if name in logits and ref in logits:
            diff = np.abs(logits[name] - logits[ref])
            results[name]["logits_vs"] = {
                "reference": ref, "max_abs_diff": float(diff.max()),
                "prediction_agreement": float((logits[name].argmax(-1)
                                               == logits[ref].argmax(-1)).mean())}

    log.info(f"timing {len(variants)} variants in this process: {args.rounds} rounds x "
        f"{args.latency_examples} tweets at batch 1 + {args.throughput_examples} at batch 32")
    timings = time_variants(loaded, test_texts[:args.latency_examples], args.max_length,
                            args.rounds, test_texts[:args.throughput_examples])
    for name in variants:
        results[name].update(timings[name])

    memory_texts = test_texts[:args.memory_examples]
    memory_variants = variants if args.memory_variants is None else args.memory_variants
    for name in variants:
        if name in memory_variants:
            log.info(f"{name}: resident memory in a fresh process")
            directory, first_token = dirs[name]
            results[name].update(measure_memory(directory, first_token, memory_texts,
                                                args.tokenizer, args.max_length))

    if "dense" in results:
        dense = results["dense"]
        for r in results.values():
            r["latency_speedup_vs_dense"] = dense["latency_ms_median"] / r["latency_ms_median"]
            r["throughput_speedup_vs_dense"] = r["throughput_ex_per_s"] / dense["throughput_ex_per_s"]
            r["flop_reduction_vs_dense"] = dense["flops_per_token"] / r["flops_per_token"]
            r["throughput_speedup_over_flop_reduction"] = (
                r["throughput_speedup_vs_dense"] / r["flop_reduction_vs_dense"])
            r["size_ratio_vs_dense"] = r["disk_bytes"] / dense["disk_bytes"]

    output = {
        "meta": {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "git_commit": git_commit(),
                 "smoke": bool(args.smoke), "dense_dir": str(dense_dir),
                 "pruned_dir": str(pruned_dir), "tokenizer": args.tokenizer,
                 "snapshot": None if snapshot is None else snapshot.record(),
                 "sparser_snapshot": None if far is None else far.record(),
                 "test_examples": len(test_texts), "mean_test_length": mean_length,
                 "max_length": args.max_length, "rounds": args.rounds,
                 "latency_examples": min(args.latency_examples, len(test_texts)),
                 "throughput_examples": min(args.throughput_examples, len(test_texts)),
                 "machine": machine, "cpu_count": machine["logical_cpus"],
                 "tensorflow": tf.__version__, "keras": keras.__version__,
                 "tf_threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                                "inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
                 "tflite_threads": RUNTIME_THREADS, "onnx_threads": RUNTIME_THREADS,
                 "onnxruntime": onnxruntime_version(),
                 "seconds": time.time() - started},
        "compaction": report,
        "variants": results,
    }
    write_json(out_dir / "benchmark.json", output)
    write_text(out_dir / "benchmark.md", markdown_table(output))
    log.info(f"wrote {out_dir / 'benchmark.json'} and {out_dir / 'benchmark.md'} "
        f"({time.time() - started:.0f} s)")
    print(markdown_table(output), flush=True)
    for option, variant in PUBLISHED:
        out = getattr(args, option.lstrip("-").replace("-", "_"))
        if out and args.smoke and Path(out).resolve().parent == REPO_ROOT / "models":
            log.info(f"SMOKE: not replacing the committed bundle {out} with a tiny model")
        elif out:
            log.info(f"publishing the {variant} bundle to {out}")
            scores = export.publish(dirs[variant][0], out, tokenizer, args.data, out_dir,
                                    variant=variant)
            log.info(f"bundle written to {out}" + (
                f" (test macro-F1 {100 * scores['macro_f1']:.1f}%, one tweet at a time)"
                if scores else ""))
    return output


def onnxruntime_version():
    import onnxruntime
    return onnxruntime.__version__


def rss_growth_bytes(row):
    """A benchmark row's resident-memory growth after predicting, in bytes, or None when it was
    not measured; a row of older code stored it in MiB (`rss_growth_predict_mb`)."""
    if row.get("rss_growth_predict_bytes") is not None:
        return row["rss_growth_predict_bytes"]
    if row.get("rss_growth_predict_mb") is not None:
        return row["rss_growth_predict_mb"] * sizes.MIB
    return None


# What a user would ship without pruning: the dense model in ONNX Runtime, dynamic int8.
USER_ALTERNATIVE = "dense+onnx-int8"
RUNTIMES = {"tflite": "TFLite", "onnx": "ONNX Runtime"}
# The deployment targets (issue 40): the shipped pruned bundle >= 2x faster at batch 1 than the
# dense int8 model on its runtime and than dense ONNX Runtime int8, at <= 1 point below dense;
# at <= 2 points below dense, >= 3x faster than dense ONNX Runtime int8; each model file < 10 MB.
DEPLOY_SPEEDUP, DEPLOY_GAP = 2.0, 0.01
DEPLOY_FAR_SPEEDUP, DEPLOY_FAR_GAP = 3.0, 0.02
DEPLOY_FILE_LIMIT_BYTES = 10 * sizes.MB


def _ratio(slow, fast):
    """slow / fast latency at batch 1 (median over tweets), with the range of the per-round
    ratios: both were timed in the same rounds, so a round's ratio cancels its drift."""
    pairs = list(zip(slow.get("latency_ms_round_medians") or [],
                     fast.get("latency_ms_round_medians") or []))
    per_round = [a / b for a, b in pairs if b]
    return {"ratio": slow["latency_ms_median"] / fast["latency_ms_median"],
            "round_low": min(per_round) if per_round else None,
            "round_high": max(per_round) if per_round else None,
            "throughput_ratio": (fast["throughput_ex_per_s"] / slow["throughput_ex_per_s"]
                                 if fast.get("throughput_ex_per_s")
                                 and slow.get("throughput_ex_per_s") else None)}


def _against(variants, fast, name):
    slow = variants[name]
    return {**_ratio(slow, fast), "latency_ms": slow["latency_ms_median"],
            "macro_f1_diff": fast["macro_f1"] - slow["macro_f1"]}


def deployment(variants):
    """Per runtime, the pruned int8 bundle against the dense model quantized the same way and
    against the user's alternative (dense ONNX Runtime int8): latency ratios at batch 1 (with the
    per-round range), throughput ratios at batch 32, test macro-F1 differences (points), and the
    deployment targets. The far target (DEPLOY_FAR_*) is read off the sparser snapshot's bundle
    of that runtime when the benchmark has one (`sparser`: the same comparisons), else off the
    pruned bundle. [] when the benchmark has no runtime pair (older records)."""
    dense = variants.get("dense")
    rows = []
    for runtime, runtime_name in RUNTIMES.items():
        pruned_name, same_name = f"compact+vocab+{runtime}-int8", f"dense+{runtime}-int8"
        pruned = variants.get(pruned_name)
        if pruned is None or dense is None:
            continue
        compared = [n for n in dict.fromkeys([same_name, USER_ALTERNATIVE]) if n in variants]
        row = {"runtime": runtime, "runtime_name": runtime_name, "pruned": pruned_name,
               "latency_ms": pruned["latency_ms_median"],
               "file_bytes": pruned.get("weight_bytes"),
               "gap_vs_dense": dense["macro_f1"] - pruned["macro_f1"],
               "against": {n: _against(variants, pruned, n) for n in compared}, "sparser": None}
        sparser_name = f"sparser+vocab+{runtime}-int8"
        if sparser_name in variants:
            sparser = variants[sparser_name]
            row["sparser"] = {"name": sparser_name, "latency_ms": sparser["latency_ms_median"],
                              "gap_vs_dense": dense["macro_f1"] - sparser["macro_f1"],
                              "against": {n: _against(variants, sparser, n) for n in compared}}
        versus = [row["against"].get(n, {}).get("ratio") for n in (same_name, USER_ALTERNATIVE)]
        far = row["sparser"] or {"name": pruned_name, **row}
        user = far["against"].get(USER_ALTERNATIVE, {}).get("ratio")
        row["targets"] = {
            "near": {"met": (None not in versus and min(versus) >= DEPLOY_SPEEDUP
                             and row["gap_vs_dense"] <= DEPLOY_GAP),
                     "speedup": DEPLOY_SPEEDUP, "gap_points": 100 * DEPLOY_GAP},
            "far": {"met": (user is not None and user >= DEPLOY_FAR_SPEEDUP
                            and far["gap_vs_dense"] <= DEPLOY_FAR_GAP),
                    "speedup": DEPLOY_FAR_SPEEDUP, "gap_points": 100 * DEPLOY_FAR_GAP,
                    "variant": far["name"], "gap": 100 * far["gap_vs_dense"],
                    "ratio": user},
            "file": {"met": (row["file_bytes"] is not None
                             and row["file_bytes"] < DEPLOY_FILE_LIMIT_BYTES),
                     "limit": sizes.format_mb(DEPLOY_FILE_LIMIT_BYTES, 0)}}
        rows.append(row)
    return rows


def deployment_table(rows):
    """Markdown lines: one row per (runtime, comparison)."""
    lines = ["| runtime | pruned bundle | against | its latency ms | bundle latency ms | "
             "speedup at batch 1 (range over rounds) | at batch 32 | macro-F1 diff (points) |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        shown = [(row["pruned"], row)] + ([(row["sparser"]["name"], row["sparser"])]
                                          if row["sparser"] else [])
        for bundle, of in shown:
            for name, a in of["against"].items():
                spread = (f" ({a['round_low']:.2f}-{a['round_high']:.2f})"
                          if a["round_low"] is not None else "")
                batched = f"{a['throughput_ratio']:.2f}x" if a["throughput_ratio"] else "–"
                lines.append(f"| {row['runtime_name']} | `{bundle}` | `{name}` | "
                             f"{a['latency_ms']:.2f} | {of['latency_ms']:.2f} | "
                             f"{a['ratio']:.2f}x{spread} | {batched} | "
                             f"{100 * a['macro_f1_diff']:+.1f} |")
    return lines


def markdown_table(output):
    meta, rows = output["meta"], output["variants"]

    def mb(x):
        return sizes.format_mb(x, unit=False) if x is not None else "–"

    def rss(r):
        growth = rss_growth_bytes(r)
        return sizes.format_mib(growth, unit=False) if growth is not None else "–"

    def opt(r, key, fmt):
        return fmt.format(r[key]) if r.get(key) is not None else "–"
    lines = [
        f"Benchmark ({'SMOKE, tiny random models' if meta['smoke'] else 'test split'}; "
        f"{describe_cpu(meta.get('machine'), meta.get('cpu_count'))}; TF {meta['tensorflow']}, "
        f"Keras {meta['keras']}; mean "
        f"length {meta['mean_test_length']:.1f} tokens; latency = median over "
        f"{meta['latency_examples']} tweets x {meta['rounds']} rounds at batch 1, throughput at "
        f"batch 32; all variants timed round-robin in one process; RSS = growth of resident "
        f"memory over a fresh process before loading, after predicting; MB = 10^6 bytes, "
        f"MiB = 2^20 bytes).",
        "",
        "| Variant | Params | Non-zero | Disk MB | gzip MB | Weights MB | RSS +MiB | "
        "Latency ms (x) | Throughput ex/s (x) | MFLOPs/token (x fewer) | Speedup / FLOP cut | "
        "Accuracy | Macro-F1 | Macro-recall |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['parameters']:,} | {r['nonzero_parameters']:,} | "
            f"{mb(r['disk_bytes'])} | {mb(r['disk_bytes_gzip'])} | {mb(r['weight_bytes'])} | "
            f"{rss(r)} | "
            f"{r['latency_ms_median']:.2f} ({opt(r, 'latency_speedup_vs_dense', '{:.2f}')}) | "
            f"{r['throughput_ex_per_s']:.0f} ({opt(r, 'throughput_speedup_vs_dense', '{:.2f}')})"
            f" | {r['flops_per_token'] / 1e6:.2f} ({opt(r, 'flop_reduction_vs_dense', '{:.2f}')})"
            f" | {opt(r, 'throughput_speedup_over_flop_reduction', '{:.2f}')} | "
            f"{r['accuracy']:.4f} | {r['macro_f1']:.4f} | {r['macro_recall']:.4f} |")
    rows = deployment(output["variants"])
    if rows:
        lines += ["", f"Deployed: the pruned int8 bundles against the dense model quantized the "
                  f"same way and against `{USER_ALTERNATIVE}` (what a user would ship without "
                  f"pruning); threads: {meta.get('tflite_threads')} (TFLite), "
                  f"{meta.get('onnx_threads')} (ONNX Runtime).", "", *deployment_table(rows)]
    t = output["compaction"]["residual_totals"]
    lines += ["", f"Compaction removed {output['compaction']['heads_removed']} heads and "
              f"{output['compaction']['neurons_removed']} FFN neurons; {t['zeros']:,} zeros "
              f"remain inside kept weights (block-sparse storage would save "
              f"{sizes.format_mb(t['sparse_saves_bytes'], 2)} of "
              f"{sizes.format_mb(t['linear_dense_bytes'], 2)} of linear weights)."]
    return "\n".join(lines) + "\n"


def at_least(minimum):
    """An argparse type: an int >= minimum (else argparse's one-line error naming the value)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}: give {minimum} or more")
        return value
    return parse


def main(argv=None):
    parser = cli.argument_parser("utils.face.bench", __doc__)
    parser.add_argument("--dense", default="checkpoints/baseline/best",
                        help="dense baseline model directory (utils.encoder.model.save_model)")
    parser.add_argument("--pruned", default=None,
                        help="masked pruned model directory (default: utils.pruning.sweep."
                             "choose_snapshot, the sparsest snapshot under --snapshots-dir or "
                             "--latency-snapshots-dir whose validation macro-F1 is within 1 "
                             "point of dense)")
    parser.add_argument("--snapshots-dir", default="checkpoints/pruned",
                        help="where notebook 04 saved its sparsity_XX snapshots")
    parser.add_argument("--latency-snapshots-dir", default="checkpoints/pruned_latency",
                        help="where notebook 04 saved its latency-targeted cost_XX snapshots")
    parser.add_argument("--results-dir", default="results",
                        help="where sparsity_sweep.csv, latency_sweep.csv and baseline.json are")
    parser.add_argument("--data", default="data", help="directory of the CSV splits")
    parser.add_argument("--tokenizer", default=None, help="tokenizer (default: MiniLM)")
    parser.add_argument("--out-dir", default="results")
    parser.add_argument("--work-dir", default=None,
                        help="where derived variants are saved (default checkpoints/bench)")
    parser.add_argument("--bundle-out", default=None,
                        help="also publish the compact+vocab+tflite-int8 variant as a bundle "
                             "here (utils.saved.export, with model card and examples), e.g. "
                             "models/tweet-sentiment-int8, which the demo loads")
    parser.add_argument("--onnx-bundle-out", default=None,
                        help="also publish the compact+vocab+onnx-int8 variant as an ONNX "
                             f"Runtime bundle here, e.g. models/{ONNX_BUNDLE_NAME}")
    parser.add_argument("--dense-bundle-out", default=None,
                        help="also publish the dense+tflite-int8 variant (the dense model "
                             "quantized as the bundle is) here, e.g. models/"
                             "tweet-sentiment-dense-int8, the demo's dense card")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=None)
    parser.add_argument("--memory-variants", nargs="*", choices=VARIANTS, default=None,
                        help="variants to measure RSS for (default all; none: skip)")
    parser.add_argument("--latency-examples", type=at_least(1), default=200)
    parser.add_argument("--throughput-examples", type=at_least(1), default=1024)
    parser.add_argument("--memory-examples", type=at_least(1), default=256)
    parser.add_argument("--rounds", type=at_least(1), default=5)
    parser.add_argument("--max-length", type=at_least(3), default=64,
                        help="tokens per tweet, two special tokens included")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny random models (unless --dense/--pruned are given explicitly) "
                             "and a few synthetic tweets")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if args.memory_child:
        print(json.dumps(memory_child(json.loads(sys.stdin.read()))), flush=True)
        return
    args.tokenizer = args.tokenizer or hub.DEFAULT_MODEL
    if args.smoke:
        if "--dense" not in (argv if argv is not None else sys.argv):
            args.dense = None
        args.latency_examples = min(args.latency_examples, 8)
        args.throughput_examples = min(args.throughput_examples, 16)
        args.memory_examples = min(args.memory_examples, 8)
        args.rounds = min(args.rounds, 2)
        if args.memory_variants is None:   # a fresh process per variant is most of a SMOKE run
            args.memory_variants = ["compact+vocab"]
    try:
        check_directories(args)
        return run(args)
    except (FileNotFoundError, SavedModelError) as error:   # a missing model or results file: say which, no traceback
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
