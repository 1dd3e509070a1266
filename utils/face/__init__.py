"""What a user runs and reads: the pipelines (`pipeline`, `make run` / `make study`), the
results files' schemas (`results`), the benchmark (`bench`), the comparison's tables
(`comparison`), the binarization study (`binarization`), the report (`report` and its
template), the live demo (`demo`), the figures (`plots`) and the GPU recipe (`gpu`, `make gpu`). The top
layer."""
