"""Converting the original PyTorch checkpoints: `.pth` reading without torch (`pth.py`)."""
