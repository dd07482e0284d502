"""The command-line skin over the library: parses flags, calls the API, renders results, maps exit codes."""
