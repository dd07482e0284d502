"""Test helpers shared by several test modules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeexport.api import BundleOptions, ConvertOptions, VerifyOptions
from edgeexport.api import convert as api_convert
from edgeexport.report.model import Report
from edgeexport.types import LoadOptions


def convert(model: str | Path, out: str | Path, *, targets: tuple[str, ...] | None = None, preset: str = "fp32",
            device: str | None = None, calibration: str | Path | None = None, verify: bool = True,
            verify_data: Path | None = None, verify_samples: int = 64, write_report: bool = True,
            bundle: bool = False, labels: Path | None = None, preprocess: str | None = None,
            preset_files: tuple[Path, ...] = (), finetune_epochs: int = 30, options: LoadOptions | None = None,
            coreml_precision: str = "auto", progress: Any = None, **rest: Any) -> Report:
    """``edgeexport.api.convert`` with the common options as flat keywords (tests stay short)."""
    chosen = None if calibration is None else "synthetic" if str(calibration) == "synthetic" else Path(calibration)
    opts = ConvertOptions(
        targets=targets, preset=preset, device=device, calibration=chosen, preset_files=tuple(preset_files),
        load=options or LoadOptions(),
        verify=VerifyOptions(enabled=verify, data=verify_data, samples=verify_samples,
                             coreml_precision="fp32" if coreml_precision == "fp32" else "auto"),
        finetune_epochs=finetune_epochs, write_report=write_report,
        bundle=BundleOptions(labels=labels, preprocess=preprocess) if bundle else None, **rest,
    )
    return api_convert(model, out, opts, progress=progress)
