"""What a user runs and reads: the pipelines (`pipeline`, `make run` / `make study`), the
results files' schemas (`results`), the benchmark (`bench`), the comparison's tables
(`comparison`), the binarization study (`binarization`), the report (`report` and its
template), the live demo (`demo`) and the figures (`plots`). The top layer."""
