"""Where records come from: built shards (`shards.py`), a raw tree in place (`raw.py`), splits."""
