"""Conversion targets: (exported graph, preset) -> artifact file. One module per target, registered by name.

Every target writes into a private temporary path and returns it; the pipeline moves it into place only once
the artifact has run, so a failure never leaves a half-written file in the output directory.
"""

from __future__ import annotations
