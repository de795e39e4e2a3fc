"""The one training loop (`loop.py`) and what it needs, for any method (`method.py`)."""
