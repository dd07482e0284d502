"""Device profiles and presets: typed objects (``model``) loaded from TOML data files.

Light imports only (stdlib + edgeexport.errors), so ``edgeexport devices`` and ``edgeexport presets`` stay instant.

Public API::

    load_device(name_or_path) -> DeviceProfile        # "pixel-8" or "path/to/profile.toml"
    list_devices() -> list[DeviceProfile]
    load_preset(spec, *, extra_files=()) -> Preset     # "fp16", "prune-50+int8", user presets
    list_presets(*, extra_files=()) -> list[Preset]
    presets_from_pyproject(path) -> list[Path]         # pass the result as extra_files
    choose_preset(device, target, *, calibration=True) -> (Preset, reason)
    check_compatible(preset, target, device) -> None   # raises UnsupportedError (exit 4)
    device_to_toml(profile, *, header="") -> str       # for `edgeexport calibrate`: write a profile back
    user_device_dir() -> Path                          # where calibrated/user profiles go (replace shipped ones)
"""

from __future__ import annotations

from edgeexport.catalog.devices import (
    DEVICE_CLASSES,
    DTYPES,
    OP_FAMILIES,
    PLACEHOLDER_SOURCE,
    is_placeholder,
    list_devices,
    load_device,
    parse_device,
    user_device_dir,
)
from edgeexport.catalog.model import (
    ComputeUnit,
    DeviceProfile,
    LayerOverride,
    Preset,
    Pruning,
    Quantization,
    Tolerance,
)
from edgeexport.catalog.policy import (
    best_gops,
    check_compatible,
    choose_preset,
    usable_units,
)
from edgeexport.catalog.presets import (
    combine_tolerances,
    list_presets,
    load_preset,
    presets_from_pyproject,
)
from edgeexport.catalog.writer import device_to_toml

__all__ = [
    "DEVICE_CLASSES", "DTYPES", "OP_FAMILIES", "PLACEHOLDER_SOURCE", "ComputeUnit", "DeviceProfile",
    "LayerOverride", "Preset", "Pruning", "Quantization", "Tolerance", "best_gops", "check_compatible",
    "choose_preset", "combine_tolerances", "device_to_toml", "is_placeholder", "list_devices", "list_presets", "load_device",
    "load_preset", "parse_device", "presets_from_pyproject", "usable_units", "user_device_dir",
]
