"""`python -m flows.cli`: the cluster supervisor starts its members this way."""

from flows.cli.root import main

main()
