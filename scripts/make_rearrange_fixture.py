"""Write tests/fixtures/kwon_rearrange.npz: the reference's mask rearrangement on random cases.

The reference is prune/rearrange.py of github WoosukKwon/retraining-free-pruning (PyTorch). It
is read from a checkout at run time, not copied here. Run from the repository root with the
throwaway torch venv of scripts/make_parity_fixtures.py:

    /tmp/torchenv/bin/python scripts/make_rearrange_fixture.py --reference CHECKOUT_DIR

where CHECKOUT_DIR holds prune/rearrange.py (a bare mirror works too: `--reference` may be a
git directory, the file is then read from its HEAD). The fixture holds, per case, the masks
(layers x units, 1 = kept), the per-batch mask gradients (batches x layers x units) and the
reference's rearranged masks; tests/test_fisher_mask.py compares utils.pruning.fisher_mask's
`rearrange_masks` against them.
"""
import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent


def load_reference(reference):
    reference = Path(reference)
    source = reference / "prune" / "rearrange.py"
    if source.exists():
        text = source.read_text()
    else:
        text = subprocess.run(["git", "--git-dir", str(reference), "show", "HEAD:prune/rearrange.py"],
                              check=True, capture_output=True, text=True).stdout
    namespace = {}
    exec(compile(text, "prune/rearrange.py", "exec"), namespace)
    return namespace["rearrange_mask"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True)
    args = parser.parse_args()
    rearrange_mask = load_reference(args.reference)
    rng = np.random.default_rng(0)
    out = {}
    cases = [(4, 3, 6), (8, 2, 12), (5, 4, 9)]      # batches, layers, units
    for c, (batches, layers, units) in enumerate(cases):
        grads = rng.normal(size=(batches, layers, units)) * rng.exponential(size=(1, layers, units))
        mask = np.ones((layers, units))
        for layer in range(layers):              # 0 .. units pruned, at random positions
            pruned = rng.choice(units, size=[0, units // 3, units // 2, units][layer % 4], replace=False)
            mask[layer, pruned] = 0
        result = rearrange_mask(torch.tensor(mask, dtype=torch.float64),
                                torch.tensor(grads, dtype=torch.float64)).numpy()
        out[f"mask_{c}"], out[f"grads_{c}"], out[f"rearranged_{c}"] = mask, grads, result
    path = REPO_ROOT / "tests" / "fixtures" / "kwon_rearrange.npz"
    np.savez(path, **out)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
