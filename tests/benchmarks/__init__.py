"""Benchmarks (`make bench`, i.e. `python -m tests.benchmarks`); never collected by pytest.

Scenarios B1–B4 of issue 7. Each poller run happens in a fresh Python process (`worker.py`) so its CPU
time and peak RSS are its own; the Azure simulator (and, when asked for, the Elasticsearch test server)
run in a further child process (`services.py`) and so do not share the poller's CPU accounting.
Raw results go to `.bench/results.json`; `report.py` renders `BENCHMARKS.md` from them.
"""
