"""`python -m flows.cli`: the cluster supervisor starts its members this way."""

from flows.cli import main

main()
