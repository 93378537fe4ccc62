"""The command line: one module per command group, all talking to the admin API."""
