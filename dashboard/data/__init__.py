"""Every query, cache and listener of the dashboard; pages only call these.

* `market`: klines, symbols, tickers and the flow's status from Redis (public data)
* `db`: PostgreSQL through a pool, each user's queries under row-level security
* `listener`: one LISTEN thread per process on channel `signals`
* `users`: accounts and argon2 password hashes
* `sources`: the per-process instances, following the KLINEFLOW_* configuration
"""
