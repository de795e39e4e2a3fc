"""User-facing tools built on the exports: the demo."""
