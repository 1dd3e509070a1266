"""Small fixtures shared by several test modules (pytest puts tests/ on sys.path)."""
import numpy as np

TWEETS = ["@united thanks for the great flight, crew was amazing!",
          "@AmericanAir 3 hours delayed and no one at the gate. worst service ever",
          "@SouthwestAir is my bag coming on the next flight?",
          "@JetBlue love the free wifi :)", "@USAirways cancelled flightled again...",
          "@VirginAmerica what time does boarding start for flight 404",
          "lost my luggage, customer service hung up on me", "ok flight, nothing special"]

# one clear word list per label, so a tiny model can learn the toy task in a few steps
WORDS = {0: ["awful", "terrible", "hate"], 1: ["table", "monday", "report"],
         2: ["lovely", "great", "love"]}


def random_model(config, seed=0):
    """A classifier with N(0, 0.2) weights (LayerNorms left at 1/0): logits far from uniform."""
    from utils.encoder import model as model_lib
    model = model_lib.build_classifier(config)
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if "layer_norm" not in w.path:
            w.assign(rng.normal(0, 0.2, size=w.shape).astype("float32"))
    return model


def toy_dataset(n_train=192, n_val=48, seed=0):
    """A DatasetDict whose label is given by the words of each text."""
    import datasets
    rng = np.random.default_rng(seed)

    def split(n):
        labels = rng.integers(0, 3, size=n)
        texts = [" ".join(rng.choice(WORDS[y], size=3)) + " the tweet" for y in labels]
        return datasets.Dataset.from_dict({"text": texts, "label": labels.tolist()})
    return datasets.DatasetDict(train=split(n_train), validation=split(n_val),
                                test=split(n_val))
