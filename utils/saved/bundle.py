"""Reading deployable bundles (one model file: model.tflite for TFLite / LiteRT or model.onnx
for ONNX Runtime; tokenizer.json, labels.json, preprocessing.json, a model card, bundle.json
with every file's sha256): checked file by file, loaded as a `SavedModel`. Writing them is
`utils.saved.export`."""
from __future__ import annotations

from pathlib import Path

from utils.common.fingerprint import file_sha256
from utils.common.io import REPO_ROOT, read_json
from utils.compression.onnx_graph import ONNX_FILE, OnnxClassifier
from utils.compression.tflite import TFLITE_FILE, TFLiteClassifier
from utils.saved.predictor import SavedModel, SavedModelError

BUNDLE_VERSION = 1


# the runtime a bundle is for -> its one model file, and the class that runs it
MODEL_FILES = {"tflite": TFLITE_FILE, "onnx": ONNX_FILE}
RUNNERS = {"tflite": TFLiteClassifier, "onnx": OnnxClassifier}
COMMON_FILES = ("tokenizer.json", "labels.json", "preprocessing.json", "model_card.md")


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
    return is_bundle(directory) or any((Path(directory) / name).exists()
                                       for name in MODEL_FILES.values())


def runtime_of(directory, manifest=None):
    """"tflite" or "onnx": the runtime the bundle's manifest names (bundles made before ONNX
    name none: TFLite), else the one whose model file is there."""
    if manifest is not None:
        runtime = manifest.get("runtime", "tflite")
        if runtime not in MODEL_FILES:
            raise BundleError(f"{Path(directory) / MANIFEST} names runtime {runtime!r}; this "
                              f"code runs {sorted(MODEL_FILES)}")
        return runtime
    present = [r for r, name in MODEL_FILES.items() if (Path(directory) / name).exists()]
    if len(present) != 1:
        raise BundleError(f"{directory} holds {len(present)} model files "
                          f"({', '.join(MODEL_FILES.values())}): a bundle holds exactly one")
    return present[0]


def bundle_files(runtime):
    """The files every bundle for `runtime` has."""
    return (MODEL_FILES[runtime], *COMMON_FILES)


def manifest_files(directory):
    """The files a manifest of `directory` lists: every bundle file, and examples.json when
    there is one."""
    optional = [EXAMPLES_FILE] if (Path(directory) / EXAMPLES_FILE).exists() else []
    return [*bundle_files(runtime_of(directory)), *optional]


def manifest_entry(entry):
    """A manifest's file entry as (bytes, sha256); ValueError unless it holds exactly those,
    typed (a damaged key must not pass as an entry the checks below ignore)."""
    if not isinstance(entry, dict) or set(entry) != {"bytes", "sha256"} \
            or isinstance(entry["bytes"], bool) or not isinstance(entry["bytes"], int) \
            or not isinstance(entry["sha256"], str):
        raise ValueError(f"a file entry holds bytes (int) and sha256 (str), not {entry!r}")
    return entry["bytes"], entry["sha256"]


def check_bundle(directory):
    """The manifest of `directory`; BundleError unless every bundle file, and every file the
    manifest lists, is there and matches its size and sha256, and no bundle file is unlisted."""
    directory = Path(directory)
    hint = f"make it with: {MAKE_COMMAND}"
    if not (directory / MANIFEST).exists():
        what = ("its manifest is missing" if looks_like_bundle(directory)
                else "not a model bundle")
        raise BundleError(f"{directory} is {what} (no {MANIFEST}); {hint}")
    try:
        manifest = read_json(directory / MANIFEST)
        files = manifest["files"]
        listed = {name: manifest_entry(entry) for name, entry in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise BundleError(f"{directory / MANIFEST} is unreadable ({type(error).__name__}: "
                          f"{error}); {hint}") from None
    required = bundle_files(runtime_of(directory, manifest))
    optional = [EXAMPLES_FILE] if (directory / EXAMPLES_FILE).exists() else []
    for name in dict.fromkeys([*required, *listed, *optional]):
        path = directory / name
        if not path.is_file():
            raise BundleError(f"{directory} lacks {name}: the bundle is incomplete; {hint}")
        if name not in listed:
            raise BundleError(f"{path} is not in {MANIFEST} (added or replaced after the "
                              f"export); {hint}")
        if (path.stat().st_size, file_sha256(path)) != listed[name]:
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
    """A utils.saved.SavedModel (kind "tflite" or "onnx", the bundle's runtime) of the bundle in
    `directory`, checked file by file against its manifest; it predicts texts one at a time, as
    the standalone script."""
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
    runtime = runtime_of(directory, manifest)
    model_file = directory / MODEL_FILES[runtime]
    classifier = RUNNERS[runtime](model_file, num_threads=num_threads)
    encoder = manifest.get("encoder")
    return SavedModel(directory, runtime, classifier, tokenizer,
                            EncoderConfig.from_dict(encoder) if encoder else None,
                            manifest.get("parameters") or 0,
                            manifest.get("nonzero_parameters") or 0,
                            [model_file, directory / MANIFEST],
                            text_batch_size=1, labels=labels,
                            max_length=preprocessing.get("max_length", 64),
                            quantization=manifest.get("quantize"))
