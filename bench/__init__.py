"""relman's benchmark suite: orchestration overhead, parked releases, rollback, multi-day,
and the checks per decision and per target (signature verification, AWS preflight).

Run with ``python -m bench`` (``make bench``); ``python -m bench --smoke`` runs every
benchmark at tiny sizes. Each benchmark writes ``bench/results/<name>.json`` and the table in
``docs/benchmarks.md`` is regenerated from those files.
"""
