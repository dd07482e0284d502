"""One module per CLI command; each exposes ``command: click.Command``. No heavy imports at module level."""
