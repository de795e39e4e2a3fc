"""Data: Taskonomy trees (real or synthetic) -> array_record shards -> Grain -> device arrays."""
