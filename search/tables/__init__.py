"""Recorded tables of trained architectures: their format, the recorder, NAS-Bench-201."""
