"""Benchmarks: ``python main.py bench {scaling,conv,funnel,trial,search,amend}``.

Each prints a table, writes CSV and PNG under its output folder and states the device,
thread count, torch version and repeats. Benchmarks are not tests: the suite only checks
that each runs at a tiny size (``--quick``) and writes well-formed output.
"""
