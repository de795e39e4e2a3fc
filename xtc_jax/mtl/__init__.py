"""Multi-task consistency (xtask_mt): a shared ResNet encoder, a decoder per task, and
task-transfer networks whose transferred predictions are pulled towards the direct ones."""
