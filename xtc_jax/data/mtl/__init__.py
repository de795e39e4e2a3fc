"""Multi-task data: NYUv2 (MTAN layout), Cityscapes (official layout) and the built-in data,
as records of decoded arrays ("rgb", "seg", "depth", optional "normal"), and their transform."""
