"""One module per ``eraselab`` sub-command (see bench/cli.py for the contract)."""
