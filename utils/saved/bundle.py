"""Reading deployable bundles (model.tflite, tokenizer.json, labels.json, preprocessing.json,
a model card, bundle.json with every file's sha256): checked file by file, loaded as a
`SavedModel`. Writing them is `utils.saved.export`."""
from __future__ import annotations

from pathlib import Path

from utils.common.fingerprint import file_sha256
from utils.common.io import REPO_ROOT, read_json
from utils.compression.tflite import TFLiteClassifier
from utils.saved.predictor import SavedModel, SavedModelError

BUNDLE_VERSION = 1


BUNDLE_FILES = ("model.tflite", "tokenizer.json", "labels.json", "preprocessing.json",
                "model_card.md")   # every bundle has them


MANIFEST = "bundle.json"


EXAMPLES_FILE = "examples.json"   # optional: probabilities of fixed tweets (write_examples)


DEFAULT_BUNDLE = REPO_ROOT / "models" / "tweet-sentiment-int8"


MAKE_COMMAND = ("`make run` (the benchmark, notebook 05, publishes models/tweet-sentiment-int8), "
                "or `python -m utils.saved.export SAVED_MODEL_DIR OUT` from a saved model")


class BundleError(SavedModelError):
    """A bundle directory that is missing, incomplete or corrupt."""


def is_bundle(directory):
    return (Path(directory) / MANIFEST).exists()


def looks_like_bundle(directory):
    """Whether `directory` is a bundle, with or without its manifest: a lost bundle.json is
    named as such, not as a missing saved-model spec."""
    return is_bundle(directory) or (Path(directory) / "model.tflite").exists()


def manifest_files(directory):
    """The files a manifest of `directory` lists: every bundle file, and examples.json when
    there is one."""
    optional = [EXAMPLES_FILE] if (Path(directory) / EXAMPLES_FILE).exists() else []
    return [*BUNDLE_FILES, *optional]


def check_bundle(directory):
    """The manifest of `directory`; BundleError unless every bundle file, and every file the
    manifest lists, is there and matches its sha256, and no bundle file is unlisted."""
    directory = Path(directory)
    hint = f"make it with: {MAKE_COMMAND}"
    if not (directory / MANIFEST).exists():
        what = ("its manifest is missing" if looks_like_bundle(directory)
                else "not a model bundle")
        raise BundleError(f"{directory} is {what} (no {MANIFEST}); {hint}")
    try:
        manifest = read_json(directory / MANIFEST)
        files = manifest["files"]
        listed = {name: entry["sha256"] for name, entry in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise BundleError(f"{directory / MANIFEST} is unreadable ({type(error).__name__}: "
                          f"{error}); {hint}") from None
    for name in dict.fromkeys([*BUNDLE_FILES, *listed, *manifest_files(directory)]):
        path = directory / name
        if not path.is_file():
            raise BundleError(f"{directory} lacks {name}: the bundle is incomplete; {hint}")
        if name not in listed:
            raise BundleError(f"{path} is not in {MANIFEST} (added or replaced after the "
                              f"export); {hint}")
        if file_sha256(path) != listed[name]:
            raise BundleError(f"{path} does not match {MANIFEST} (truncated or replaced); "
                              f"{hint}")
    return manifest


class BundleTokenizer:
    """`__call__(texts, add_special_tokens=True, truncation=False) -> {"input_ids"}` and the
    special token ids, over a bundle's tokenizer.json. (transformers' PreTrainedTokenizerFast
    cannot wrap it: it rebuilds the vocabulary from id -> token, and a pruned vocabulary maps
    many tokens to the unknown token's id.)"""

    def __init__(self, path, special_tokens):
        from tokenizers import Tokenizer
        self.truncating = Tokenizer.from_file(str(path))
        self.full = Tokenizer.from_file(str(path))
        self.full.no_truncation()
        for name, token in special_tokens.items():
            token_id = self.full.token_to_id(token)
            if token_id is None:
                raise BundleError(f"{path}: special token {token!r} ({name}) is not in its "
                                  "vocabulary")
            setattr(self, name, token)
            setattr(self, f"{name}_id", token_id)

    def __call__(self, texts, add_special_tokens=True, truncation=False, **_):
        tokenizer = self.truncating if truncation else self.full
        encodings = tokenizer.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        return {"input_ids": [e.ids for e in encodings]}


def load_bundle(directory=DEFAULT_BUNDLE, num_threads=None):
    """A utils.saved.SavedModel (kind "tflite") of the bundle in `directory`, checked file by
    file against its manifest; it predicts texts one at a time, as the standalone script."""
    from utils.encoder.model import EncoderConfig  # Keras: loaded only when needed
    directory = Path(directory)
    manifest = check_bundle(directory)
    labels = read_json(directory / "labels.json")
    if not (isinstance(labels, list) and len(labels) >= 2
            and all(isinstance(label, str) for label in labels)):
        raise BundleError(f"{directory / 'labels.json'} must be a list of class names, "
                          f"got {labels!r}")
    preprocessing = read_json(directory / "preprocessing.json")
    tokenizer = BundleTokenizer(directory / "tokenizer.json",
                                preprocessing.get("special_tokens", {}))
    classifier = TFLiteClassifier(directory / "model.tflite", num_threads=num_threads)
    encoder = manifest.get("encoder")
    return SavedModel(directory, "tflite", classifier, tokenizer,
                            EncoderConfig.from_dict(encoder) if encoder else None,
                            manifest.get("parameters") or 0,
                            manifest.get("nonzero_parameters") or 0,
                            [directory / "model.tflite", directory / MANIFEST],
                            text_batch_size=1, labels=labels,
                            max_length=preprocessing.get("max_length", 64),
                            quantization=manifest.get("quantize"))
