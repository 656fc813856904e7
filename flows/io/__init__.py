"""Where trades come from and where klines, signals and reports go: the endpoint base
classes (`flows.io.contracts`), an in-memory endpoint of each kind (`flows.io.memory`), and
the product's own (files, Redis, PostgreSQL). See `flows.io.contracts` for the contract."""
