"""Models on disk: the one saved-model directory format and its loader (`models`), the loaded
model every caller predicts with (`predictor`), deployable bundles read (`bundle`) and written
(`export`, also `python -m utils.saved.export`). May import `common`, `data`, `encoder`,
`training`, `compression`.

The everyday names are here: `saved.save`, `saved.load`, `saved.load_model`, ...
"""
from utils.saved.bundle import BundleError, is_bundle, load_bundle, looks_like_bundle
from utils.saved.models import (
                                PACKED_FILE,
                                SPEC_FILE,
                                WEIGHTS_FILE,
                                is_model_dir,
                                load,
                                load_model,
                                read_spec,
                                save,
                                tokenizer_of,
)
from utils.saved.predictor import (
                                RUNTIME_KINDS,
                                TIMING_RUNTIMES,
                                SavedModel,
                                SavedModelError,
                                in_memory,
                                parameter_counts,
                                readable_text,
)

__all__ = ["BundleError", "PACKED_FILE", "RUNTIME_KINDS", "TIMING_RUNTIMES", "SPEC_FILE", "SavedModel", "SavedModelError",
           "WEIGHTS_FILE", "in_memory", "is_bundle", "is_model_dir", "load", "load_bundle",
           "load_model", "looks_like_bundle", "parameter_counts", "read_spec", "readable_text",
           "save", "tokenizer_of"]
