"""Taskonomy's transfer taxonomy (Zamir et al., CVPR 2018): win-rate tournaments, AHP
affinities and the supervision BIP (taskonomy.md §4)."""
