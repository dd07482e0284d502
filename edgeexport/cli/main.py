"""Entry point and the single error boundary of edgeexport.

Only this module catches exceptions: an ``EdgeExportError`` becomes a one-line message and its exit code;
anything else is a bug (exit 1) shown with its traceback and a request to report it. Command modules are
imported lazily so that ``edgeexport --help`` and ``edgeexport devices`` never pay for TensorFlow.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

import click

from edgeexport import __version__
from edgeexport.errors import EXIT_BUG, EdgeExportError
from edgeexport.limits import disk_full

# command name -> (module under edgeexport.cli.commands, one-line help shown by `edgeexport --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "convert": ("convert", "Convert a model to TFLite and/or Core ML, verify it and report."),
    "inspect": ("inspect", "Show a model's inputs, outputs, op histogram, parameters and MACs."),
    "verify": ("verify", "Check an artifact numerically against its reference model or golden outputs."),
    "check": ("check", "Run the conversion/verification/budget matrix of edgeexport.toml (CI gate)."),
    "simulate": ("simulate", "Estimate on-device latency, memory and size of an artifact per device."),
    "bench": ("bench", "Measure real latency of an artifact on this machine."),
    "calibrate": ("calibrate", "Fit this machine's device profile from micro-benchmarks."),
    "devices": ("devices", "List device profiles, or show one with the source of every number."),
    "presets": ("presets", "List quantization, pruning and low-rank presets with their tolerances."),
    "distill": ("distill", "Train a smaller Keras model to mimic a teacher (knowledge distillation) and compare."),
    "bundle": ("bundle", "Write app-ready bundles (artifact + manifest.json) from an output directory."),
    "evidence": ("evidence", "Re-hash a check run's evidence bundle and report any file that changed."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when invoked (or when their own help is asked)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name, (module, _) in COMMANDS.items() if _module_exists(module)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None or not _module_exists(entry[0]):
            return None
        module = importlib.import_module(f"edgeexport.cli.commands.{entry[0]}")
        command: click.Command = module.command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _module_exists(module: str) -> bool:
    here = os.path.join(os.path.dirname(__file__), "commands", f"{module}.py")
    return os.path.exists(here)


EPILOG = """\b
Examples:
  edgeexport convert sample_models/digits_cnn.keras --out build/digits
  edgeexport convert model.keras --device pixel-8 --preset auto --calibration data.npz --out out/
  edgeexport inspect model.keras
  edgeexport devices

\b
Exit codes: 0 ok, 1 bug, 2 usage, 3 bad input, 4 unsupported or conversion failed,
5 verification failed, 6 budget exceeded, 7 regressed against a baseline.
"""


@click.group(cls=LazyGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeexport")
def cli() -> None:
    """edgeexport: make a trained model ready to ship on phones and small devices."""


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and exit with the code that matches the outcome (see ARCHITECTURE.md)."""
    from edgeexport import interrupt

    handlers = interrupt.install()
    try:
        code = cli.main(args=argv, prog_name="edgeexport", standalone_mode=False)
    except EdgeExportError as err:
        err = disk_full(err) or err  # a converter's "No space left on device" is the environment's fault (3)
        click.echo(f"error: {err.one_line()}", err=True)
        sys.exit(err.exit_code)
    except click.exceptions.Abort as err:
        # click turns KeyboardInterrupt (and our SIGTERM's Terminated) into Abort, keeping it as the cause.
        code = interrupt.exit_code(err.__cause__) if isinstance(err.__cause__, KeyboardInterrupt) else 130
        _leave_interrupted(code, fast=argv is None)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except KeyboardInterrupt as err:
        _leave_interrupted(interrupt.exit_code(err), fast=argv is None)
    except Exception as err:
        full = disk_full(err)
        if full is not None:
            click.echo(f"error: {full.one_line()}", err=True)
            sys.exit(full.exit_code)
        traceback.print_exc()
        click.echo(
            "edgeexport hit a bug (exit 1). Please report it with the traceback above and the command you ran.",
            err=True,
        )
        sys.exit(EXIT_BUG)
    finally:
        interrupt.restore(handlers)
    sys.exit(code if isinstance(code, int) else 0)


def _leave_interrupted(code: int, *, fast: bool) -> None:
    """Exit 130/143 after a signal. As the program (``fast``), skip interpreter shutdown: TensorFlow's can take
    seconds, and the user asked to stop now; the stage folder is already gone and the converter child stopped."""
    from edgeexport import interrupt

    click.echo("interrupted" if code == 130 else "terminated", err=True)
    if fast:
        interrupt.run_cleanups()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
