"""Reports: the typed Report and its renderers (terminal, JSON; JUnit, Markdown and HTML as they land)."""
