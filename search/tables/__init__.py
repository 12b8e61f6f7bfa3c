"""Recorded tables of trained architectures: their format and exact fronts (``table``) and
NAS-Bench-201 read as one (``nb201``); a table is recorded by ``search.sweep.record``."""
