"""Measuring models on this CPU: round-robin timing (`timing`), the latency table of heads,
neurons and sublayers (`latency`), and which points dominate which (`dominance`: the Pareto
front and the front check). May import every layer up to `utils.saved`."""
