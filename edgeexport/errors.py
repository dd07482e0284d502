"""The one exception tree of edgeexport.

Exceptions mean "could not do it"; results (verification, budgets) mean "did it, and here is how good it
was". Each class carries the process exit code the CLI uses for it, so the CLI's single error boundary
(``edgeexport.cli.main``) never has to know which stage raised.

Exit codes (see ARCHITECTURE.md):
    0 success, 1 bug, 2 usage, 3 bad input, 4 unsupported / conversion failed,
    5 verification failed, 6 budget exceeded, 7 regressed against a baseline (``check --baseline``).
"""

from __future__ import annotations

from collections.abc import Iterable

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USAGE = 2
EXIT_BAD_INPUT = 3
EXIT_UNSUPPORTED = 4
EXIT_VERIFICATION_FAILED = 5
EXIT_BUDGET_EXCEEDED = 6
EXIT_REGRESSED = 7  # check --baseline: a metric got worse than [check.regression] allows


class EdgeExportError(Exception):
    """Base of every error edgeexport raises on purpose; its message is one line meant for a user."""

    exit_code: int = EXIT_BUG

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The message and, when there is one, the hint, joined on a single line."""
        text = " ".join(self.message.split())
        if self.hint:
            text += f" ({' '.join(self.hint.split())})"
        return text


class UsageError(EdgeExportError):
    """A command-line value that names nothing the model has (e.g. ``--input-shape`` for an unknown input)."""

    exit_code = EXIT_USAGE


class BadInputError(EdgeExportError):
    """A file or value the user gave cannot be used: missing, corrupt, of the wrong format or shape."""

    exit_code = EXIT_BAD_INPUT


class ModelFormatError(BadInputError):
    """The model path is not a model edgeexport can read, or the file is corrupt."""


class UnsafeModelError(BadInputError):
    """Loading the model would run arbitrary code (Keras safe mode refused a Lambda layer or similar)."""


class DataError(BadInputError):
    """Calibration or verification data does not match the model (shape, dtype, NaN, missing input)."""


class ProfileError(BadInputError):
    """A device profile or preset file is malformed or incomplete, or names nothing we know."""


class OutputPathError(BadInputError):
    """The output directory cannot be created or written."""


class UnsupportedError(EdgeExportError):
    """Found at plan time: the model, preset and device cannot go together."""

    exit_code = EXIT_UNSUPPORTED


class UnsupportedOpError(UnsupportedError):
    """One or more ops cannot be converted or executed; ``ops`` maps op name to count."""

    def __init__(self, ops: dict[str, int] | Iterable[str], *, where: str, hint: str | None = None) -> None:
        counts = dict(ops) if isinstance(ops, dict) else dict.fromkeys(ops, 1)
        # a corrupt protobuf can hand back op names as bytes (invalid UTF-8): name them anyway
        counts = {(k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)): n for k, n in counts.items()}
        listed = ", ".join(f"{name} x{n}" if n > 1 else name for name, n in sorted(counts.items()))
        super().__init__(f"unsupported op(s) in {where}: {listed}", hint=hint)
        self.ops = counts


class ConversionError(EdgeExportError):
    """A converter ran and failed, or produced an artifact that does not run; the cause is chained."""

    exit_code = EXIT_UNSUPPORTED


class VerificationFailedError(EdgeExportError):
    """Raised only by callers that want an exception for a failed verification result."""

    exit_code = EXIT_VERIFICATION_FAILED


class BudgetExceededError(EdgeExportError):
    """Raised only by callers that want an exception for a budget check that failed."""

    exit_code = EXIT_BUDGET_EXCEEDED


class MissingExtraError(EdgeExportError):
    """A flag needs an optional extra that is not installed (``--ray`` without ``edgeexport[ray]``): a usage error."""

    exit_code = EXIT_USAGE
