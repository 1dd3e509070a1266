"""XLA on a CPU: `TrainConfig(jit_compile="auto")` compiles long fits with XLA. The training
paths that run long fits (plain and distilled fine-tuning, the penalty in the loss, progressive
block pruning, recovery with hidden-state distillation) must train the same under XLA."""
import dataclasses

import numpy as np
import pytest

import utils  # noqa: F401  (sets KERAS_BACKEND)
from utils.encoder import model as M
from utils.pruning import block as P
from utils.pruning import sweep
from utils.training import train
from utils.pruning import units as U
from helpers import random_model, toy_dataset

CONFIG = dict(num_heads=[4, 4], intermediate_sizes=[64, 64], head_size=8,
              hidden_dropout=0.0, attention_dropout=0.0)   # no dropout: the same steps


def tiny(tokenizer):
    return dataclasses.replace(M.tiny_config(tokenizer.vocab_size), **CONFIG)


def test_auto_compiles_with_xla_on_a_cpu_only_for_long_fits(tokenizer):
    assert train.resolve_jit_compile("auto", train.XLA_MIN_STEPS_CPU - 1) is False
    assert train.resolve_jit_compile("auto", train.XLA_MIN_STEPS_CPU) is True
    assert train.resolve_jit_compile(True, 1) is True
    assert train.resolve_jit_compile(False, 10 ** 6) is False
    assert train.TrainConfig().jit_compile == "auto"
    model = M.build_classifier(tiny(tokenizer))
    config = train.TrainConfig(epochs=2)
    train.compile_for_training(model, config, train.XLA_MIN_STEPS_CPU // 2)
    assert model.jit_compile is True
    train.compile_for_training(model, config, train.XLA_MIN_STEPS_CPU // 2 - 1)
    assert model.jit_compile is False


def _trained_both_ways(tokenizer, fit, seed=3):
    """The weights after `fit(model, TrainConfig)` without and with XLA, from the same start."""
    start = random_model(tiny(tokenizer), seed=seed).get_weights()
    out = []
    for jit in (False, True):
        model = M.build_classifier(tiny(tokenizer))
        model.set_weights(start)
        fit(model, train.TrainConfig(learning_rate=1e-3, epochs=1, batch_size=16, max_length=16,
                                     jit_compile=jit))
        out.append(model)
    moved = sum(not np.allclose(np.asarray(w), s) for w, s in zip(out[0].weights, start))
    assert moved > len(start) // 2
    return out


def _assert_same(plain, xla):
    for a, b in zip(plain.weights, xla.weights):
        assert a.path == b.path
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-4, rtol=1e-3,
                                   err_msg=a.path)


def test_distilled_fine_tuning_and_the_penalty_in_the_loss_train_the_same_under_xla(tokenizer):
    data = toy_dataset(n_train=64, n_val=16)
    logits = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    penalty = P.PruningConfig(num_blocks=1, mode="inner", lambda_group=4e-3, lambda_polar=1e-3,
                              distill_alpha=0.5, temperature=2.0)
    for config in (P.PruningConfig(lambda_group=0.0, lambda_polar=0.0, polarization="none",
                                   distill_alpha=0.5, temperature=2.0), penalty):
        _assert_same(*_trained_both_ways(tokenizer, lambda model, run: P.penalized_fine_tune(
            model, tokenizer, data, run, pruning=config, teacher_logits=logits, progress=False)))


def test_recovery_with_hidden_state_distillation_trains_the_same_under_xla(tokenizer):
    data = toy_dataset(n_train=64, n_val=16)
    teacher = random_model(tiny(tokenizer), seed=11)
    logits = train.predict_texts(teacher, tokenizer, data["train"]["text"], max_length=16)

    def recover(model, run):
        U.one_shot_prune(model, 0.4)   # whole units off: recovery trains the compaction
        sweep.recover(model, tokenizer, data, run, logits, teacher=teacher, hidden_alpha=1.0)
    plain, xla = _trained_both_ways(tokenizer, recover)
    _assert_same(plain, xla)
    norms = U.unit_norms(xla)
    assert any(np.any(n == 0) for n in norms.values())   # the pruned units stayed exactly 0
    for key in norms:
        np.testing.assert_array_equal(norms[key] == 0, U.unit_norms(plain)[key] == 0)


def test_progressive_pruning_under_xla_reaches_its_targets_and_holds_zeros(tokenizer):
    data = toy_dataset(n_train=96, n_val=16)
    pruners = []

    def prune(model, run):
        pruner = U.ProgressiveUnitPruning(model, [0.2, 0.5], total_steps=6, prune_fraction=0.7,
                                          every=1)
        train.fine_tune(model, tokenizer, data, run, progress=False,
                        callbacks=[pruner.keras_callback()])
        pruners.append(pruner)
    plain, xla = _trained_both_ways(tokenizer, prune)
    assert [r["target"] for r in pruners[1].reached] == [0.2, 0.5]
    assert pruners[0].alive.keys() == pruners[1].alive.keys()
    for key, alive in pruners[1].alive.items():
        np.testing.assert_array_equal(alive, pruners[0].alive[key])
        assert np.all(U.unit_norms(xla)[key][~alive] == 0)
    _assert_same(plain, xla)


def test_bad_xla_settings_get_a_clear_error(monkeypatch):
    with pytest.raises(ValueError, match="jit_compile"):
        train.TrainConfig(jit_compile="sometimes")
    monkeypatch.setenv("UTILS_JIT_COMPILE", "maybe")
    with pytest.raises(ValueError, match="UTILS_JIT_COMPILE='maybe'"):
        train.TrainConfig()


def test_xla_compiled_models_get_batches_padded_to_fewer_shapes_with_the_same_predictions(tokenizer):
    """XLA keeps a program per padded shape: an XLA-compiled model's batches are padded to
    XLA_PAD_MULTIPLE, which the attention mask makes invisible in its logits."""
    from utils.data import batching
    texts = toy_dataset(n_train=40, n_val=8)["train"]["text"]
    texts = [t + " !" * (i % 13) for i, t in enumerate(texts)]   # lengths across several widths
    start = random_model(tiny(tokenizer), seed=2).get_weights()
    plain = M.build_classifier(tiny(tokenizer))
    plain.set_weights(start)
    xla = M.build_classifier(tiny(tokenizer))
    xla.set_weights(start)
    train.compile_for_training(xla, train.TrainConfig(jit_compile=True), 1)
    logits = {}
    for name, model in (("plain", plain), ("xla", xla)):
        batches, _ = batching.make_batches(tokenizer, texts, max_length=32, batch_size=8)
        logits[name] = train.predict_logits(model, batches)
        widths = {batches[i]["input_ids"].shape[1] for i in range(len(batches))}
        multiple = train.XLA_PAD_MULTIPLE if name == "xla" else batching.PAD_MULTIPLE
        assert all(w % multiple == 0 for w in widths), (name, widths)
        if name == "plain":
            assert any(w % train.XLA_PAD_MULTIPLE for w in widths)   # the default is finer
    np.testing.assert_allclose(logits["xla"], logits["plain"], atol=1e-5, rtol=1e-4)
