"""Cross-task consistency (CVPR 2020) as a method: plan, graph, step, selection, experiment."""
