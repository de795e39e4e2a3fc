"""Losses: masked per-domain losses (`masked.py`) and term weighting (`weighting.py`)."""
