"""Benchmarks: ``python main.py bench {scaling,conv,funnel,trial,search,amend}``, and modules
run on their own (``python -m bench.costing``, ``bench.store``, ...).

Each prints a table, writes CSV and PNG under its output folder and states the device,
thread count, torch version and repeats. Benchmarks are not tests: the suite only checks
that each runs at a tiny size (``--quick``) and writes well-formed output.
"""
