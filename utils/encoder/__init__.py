"""Our Keras 3 encoder and sentence classifier (`model`: per-layer head counts and FFN widths,
so pruned structure is physically absent), where checkpoints and tokenizers come from (`hub`),
and the Hugging Face weight map (`hf`). May import `utils.common` and `utils.data`."""
