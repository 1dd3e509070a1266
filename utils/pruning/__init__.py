"""Block-structured pruning and its comparison, lowest module first:

    block        the method: group lasso over blocks, its penalty in the loss, the proximal
                 step's masks, thresholding, the masked optimizer, the pruning fit
    units        heads and FFN neurons as groups (types, masks, selection, importance) and
                 progressive unit pruning
    sweep        prune at several sparsities, evaluate, recover; snapshots
    baselines    magnitude, head importance, layer drop, FFN neurons
    cofi         CoFi's L0 gates          fisher_mask  Kwon et al.'s Fisher mask search
    methods      the registry of every method the comparison runs, at one budget

May import every layer up to `utils.measurement`."""
