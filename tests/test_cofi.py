"""CoFi's hard-concrete gates and Lagrangian (utils/pruning/cofi.py) against closed forms, Monte Carlo
and a toy model."""
import math

import numpy as np
import pytest
from keras import ops

from utils.pruning import cofi
from utils.pruning import block as pruning
from utils.encoder import model as model_lib
from utils.pruning import methods as methods_lib
from helpers import toy_dataset


def test_samples_follow_the_closed_form_cdf():
    """Monte Carlo of the stretched-and-clipped samples vs Q(x): P(z <= x) = Q(x) for x in
    [0, 1), P(z = 0) = Q(0), P(z = 1) = 1 - Q(1)."""
    rng = np.random.default_rng(0)
    for log_alpha in (-2.0, 0.0, 1.5):
        z = cofi.sample_gates(log_alpha, rng.uniform(1e-6, 1 - 1e-6, 200_000))
        for x in (0.0, 0.25, 0.5, 0.9):
            assert np.mean(z <= x) == pytest.approx(cofi.cdf_qz(x, log_alpha), abs=4e-3)
        assert np.mean(z == 1.0) == pytest.approx(1 - cofi.cdf_qz(1.0 - 1e-9, log_alpha),
                                                  abs=4e-3)
        # the closed form itself, written out: sigmoid(beta * logit((x - a) / (b - a)) - log alpha)
        x = 0.3
        xn = (x + 0.1) / 1.2
        expected = 1 / (1 + math.exp(-(2 / 3 * math.log(xn / (1 - xn)) - log_alpha)))
        assert cofi.cdf_qz(x, log_alpha) == pytest.approx(expected)


def test_expected_l0_and_sparsity_match_monte_carlo():
    config = model_lib.EncoderConfig(vocab_size=10, hidden_size=8, num_heads=[2, 2],
                                     intermediate_sizes=[3, 3], head_size=4)
    rng = np.random.default_rng(1)
    log_alphas = {"heads": rng.normal(0, 2, (2, 2)), "neurons": rng.normal(0, 2, (2, 3)),
                  "attention_layers": rng.normal(1, 1, 2), "ffn_layers": rng.normal(1, 1, 2)}
    n = 100_000
    samples = {k: cofi.sample_gates(v, rng.uniform(1e-6, 1 - 1e-6, (n, *np.shape(v))))
               for k, v in log_alphas.items()}
    for k, v in log_alphas.items():
        np.testing.assert_allclose((samples[k] > 0).mean(0), cofi.prob_nonzero(v), atol=5e-3)
    head_cost, neuron_cost = cofi.unit_costs(config)          # 4*8*4 = 128, 2*8 = 16
    kept = ((samples["heads"] > 0).sum(2) * (samples["attention_layers"] > 0) * head_cost).sum(1) \
        + ((samples["neurons"] > 0).sum(2) * (samples["ffn_layers"] > 0) * neuron_cost).sum(1)
    total = 2 * (2 * 128 + 3 * 16)
    assert cofi.expected_sparsity(log_alphas, config) == pytest.approx(
        1 - kept.mean() / total, abs=5e-3)
    # the keras.ops path computes the same numbers
    assert float(cofi.expected_sparsity({k: ops.convert_to_tensor(v.astype("float32"))
                                         for k, v in log_alphas.items()}, config, ops)) == \
        pytest.approx(cofi.expected_sparsity(log_alphas, config), abs=1e-5)


def test_deterministic_gates_zero_the_expected_number():
    log_alpha = np.array([-5.0, 4.0, -4.0, 3.0, 0.1])
    expected_zeros = round(5 - cofi.prob_nonzero(log_alpha).sum())
    z = cofi.deterministic_gates(log_alpha)
    assert (z == 0).sum() == expected_zeros == 2
    assert z[0] == 0 and z[2] == 0 and np.all(z[[1, 3, 4]] > 0)


def test_lagrangian_and_target_schedule():
    assert cofi.lagrangian(0.3, 0.5, 2.0, 3.0) == pytest.approx(2 * -0.2 + 3 * 0.04)
    assert cofi.warmup_target(0.6, 5, 10) == pytest.approx(0.3)
    assert cofi.warmup_target(0.6, 50, 10) == 0.6 and cofi.warmup_target(0.6, 0, 0) == 0.6


def test_lagrangian_moves_expected_sparsity_to_the_target(tokenizer):
    """A tiny model, 60 steps: expected sparsity starts near 0.1 and must approach 0.5; the
    folded model is at least 50% sparse in whole heads and neurons."""
    import keras
    keras.utils.set_random_seed(0)
    model = model_lib.build_classifier(model_lib.tiny_config(tokenizer.vocab_size))
    data = toy_dataset(n_train=64, n_val=16)
    config = __import__("utils.training.train", fromlist=["TrainConfig"]).TrainConfig(
        learning_rate=1e-3, batch_size=16, max_length=16, epochs=1)
    start = cofi.expected_sparsity(cofi.initial_log_alphas(model.encoder_config),
                                   model.encoder_config)
    record = cofi.cofi_prune(model, tokenizer, data, 0.5, config, train_examples=16 * 60,
                             reg_learning_rate=0.1, lagrangian_warmup=0.2, distill_alpha=0.0)
    assert start < 0.2
    assert abs(record["history"][-1]["expected_sparsity"] - 0.5) < 0.1
    assert record["history"][-1]["lambda_1"] != 0.0
    summary = pruning.sparsity_summary(model)
    assert summary["sparsity_encoder_linear"] >= 0.5 - 1e-9
    assert record["sparsity_encoder_linear"] == pytest.approx(summary["sparsity_encoder_linear"])


def test_an_interrupted_cofi_run_resumes_from_its_checkpoint(tokenizer, tmp_path, monkeypatch,
                                                              caplog):
    """CoFi checkpoints every tenth of its steps (the one checkpoint format of every training
    loop): a run cut after its first checkpoint, started again with the same settings from the
    same dense model, resumes there, ends with the full step count and history, and removes its
    checkpoint; a run with other settings is refused rather than resumed."""
    import keras

    from utils.training import checkpoint
    from utils.training.train import TrainConfig
    data = toy_dataset(n_train=64, n_val=16)
    config = TrainConfig(learning_rate=1e-3, batch_size=16, max_length=16, epochs=1)
    keras.utils.set_random_seed(0)
    dense = model_lib.build_classifier(model_lib.tiny_config(tokenizer.vocab_size)).get_weights()

    def fresh():
        model = model_lib.build_classifier(model_lib.tiny_config(tokenizer.vocab_size))
        model.set_weights(dense)
        return model
    options = dict(train_examples=16 * 20, reg_learning_rate=0.1, distill_alpha=0.0,
                   checkpoint_dir=tmp_path / "cofi")
    save = checkpoint.save

    def save_then_crash(*args, **kwargs):
        save(*args, **kwargs)
        raise KeyboardInterrupt
    monkeypatch.setattr(checkpoint, "save", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        cofi.cofi_prune(fresh(), tokenizer, data, 0.5, config, **options)
    assert checkpoint.read_state(tmp_path / "cofi")["step"] == 2      # 20 steps: every 2
    monkeypatch.setattr(checkpoint, "save", save)
    with pytest.raises(ValueError, match="delete it or pass the same settings"):
        cofi.cofi_prune(fresh(), tokenizer, data, 0.6, config, **options)
    record = cofi.cofi_prune(fresh(), tokenizer, data, 0.5, config, **options)
    assert "resuming from" in caplog.text and "at step 2 of 20" in caplog.text
    assert record["steps"] == 20 and record["history"][0]["step"] == 0
    assert record["history"][-1]["step"] == 19
    assert not (tmp_path / "cofi").exists()


def test_cofi_refuses_bad_settings(tokenizer):
    model = model_lib.build_classifier(model_lib.tiny_config(tokenizer.vocab_size))
    data = toy_dataset(n_train=32, n_val=8)
    config = __import__("utils.training.train", fromlist=["TrainConfig"]).TrainConfig(batch_size=16)
    with pytest.raises(ValueError, match="target sparsity"):
        cofi.cofi_prune(model, tokenizer, data, 1.2, config, train_examples=64)
    with pytest.raises(ValueError, match="at least one batch"):
        cofi.cofi_prune(model, tokenizer, data, 0.5, config, train_examples=3)


def test_a_zero_gate_equals_the_unit_removed(tokenizer):
    """Gating a head's output rows (and a neuron's output row) to 0 gives the outputs of the
    model with that whole head (neuron) masked: query/key/value columns and output rows."""
    import keras
    from utils.pruning import baselines
    keras.utils.set_random_seed(0)
    model = model_lib.build_classifier(model_lib.tiny_config(tokenizer.vocab_size))
    config = model.encoder_config
    gates = {"heads": np.ones((2, 2)), "neurons": np.ones((2, 64)),
             "attention_layers": np.ones(2), "ffn_layers": np.ones(2)}
    gates["heads"][0, 1] = 0.0
    gates["neurons"][1, [3, 40]] = 0.0
    inputs = {"input_ids": np.array([[2, 7, 9, 11, 3]], "int32"),
              "attention_mask": np.ones((1, 5), "int32")}
    values = cofi.gate_values([np.asarray(v) for v in model.trainable_variables],
                              cofi._gated_slots(model), gates, config.head_size, np)
    gated, _ = model.stateless_call(values, [v.value for v in model.non_trainable_variables],
                                    inputs, training=False)
    kernels = model_lib.prunable_kernels(model, include_pooler=False, as_numpy=True)
    units = {u.key: u for u in baselines.head_units(kernels, config.head_size)}
    neurons = {u.key: u for u in baselines.neuron_units(kernels)}
    pruning.apply_masks(model, baselines.units_masks(
        kernels, [units[(0, 1)], neurons[(1, 3)], neurons[(1, 40)]]))
    np.testing.assert_allclose(np.asarray(gated), model.predict_on_batch(inputs), atol=1e-5)


def test_cofi_as_a_method_of_the_sweep(tokenizer):
    """In the comparison's sweep, CoFi's pruning phase counts in the training budget of its
    rows, and its point reaches the target in whole units."""
    import keras
    from utils.pruning import sweep
    from utils.training import train
    keras.utils.set_random_seed(0)
    model = model_lib.build_classifier(model_lib.tiny_config(tokenizer.vocab_size))
    data = toy_dataset(n_train=64, n_val=16)
    config = train.TrainConfig(learning_rate=1e-3, batch_size=16, max_length=16, epochs=1)
    methods = methods_lib.make_methods(["cofi"], tokenizer, data["train"], max_length=16, cofi={
        "dataset": data, "train_config": config, "examples_for": lambda t: 32})
    frame = sweep.mask_sweep(model, tokenizer, data, "cofi", methods["cofi"].masks_fn,
                                 [0.4], config, retrain_examples=32, progress=False)
    assert frame.train_examples_total.tolist() == [32, 64]
    assert (frame.sparsity_encoder_linear >= 0.4 - 1e-9).all()
    assert 0.4 in methods_lib.method_records(methods)["cofi"]["runs"]
    with pytest.raises(ValueError, match="cofi="):
        methods_lib.make_methods(["cofi"], tokenizer, data["train"])


def test_reg_learning_rate_chosen_on_validation():
    record = {"runs": [{"reg_learning_rate": 0.01, "val_macro_f1_before_recovery": 0.77},
                       {"reg_learning_rate": 0.5, "val_macro_f1_before_recovery": 0.80},
                       {"reg_learning_rate": 0.1, "val_macro_f1_before_recovery": 0.78}]}
    assert cofi.reg_learning_rate_on_validation(record) == 0.5
    with pytest.raises(ValueError, match="explore_cofi_reg_lr"):
        cofi.reg_learning_rate_on_validation({"runs": []})
