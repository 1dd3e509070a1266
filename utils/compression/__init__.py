"""What makes a trained model smaller: physical removal of pruned heads and neurons
(`compact`), vocabulary pruning (`vocab`), Keras int8 (`quantize`), TFLite (`tflite`) and
binarized weights (`binarize`). May import the layers below: `common`, `data`, `encoder`,
`training`."""
