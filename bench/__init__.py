"""relman's benchmark suite: orchestration overhead, parked releases, rollback, multi-day.

Run with ``python -m bench`` (``make bench``); ``python -m bench --smoke`` runs every
benchmark at tiny sizes. Each benchmark writes ``bench/results/<name>.json`` and the table in
``docs/benchmarks.md`` is regenerated from those files.
"""
