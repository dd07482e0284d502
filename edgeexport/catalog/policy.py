"""Which preset suits a device (``--preset auto``) and which preset/target/device combinations cannot work."""

from __future__ import annotations

from edgeexport.catalog.model import ComputeUnit, DeviceProfile, Preset
from edgeexport.catalog.presets import load_preset
from edgeexport.errors import UnsupportedError

_ACCELERATORS = ("npu", "tpu", "dsp")
# The nearest equivalent on the other target, offered as a suggestion when a preset has no recipe for a target.
_EQUIVALENT = {
    ("int8", "coreml"): "w8a8", ("int8-io", "coreml"): "w8a8", ("dynamic-int8", "coreml"): "w8",
    ("int16x8", "coreml"): "fp16", ("w8", "tflite"): "dynamic-int8", ("w8a8", "tflite"): "int8",
    ("palettize-6", "tflite"): "dynamic-int8", ("palettize-4", "tflite"): "dynamic-int8",
}
# TFLite Micro has no float16 kernels and no hybrid (dynamic-range) kernels.
_MCU_TFLITE_REFUSED = {"fp16": "TFLite Micro has no float16 kernels", "dynamic-int8": "TFLite Micro has no "
                       "hybrid (dynamic-range) kernels"}


def usable_units(device: DeviceProfile, target: str) -> list[ComputeUnit]:
    """Units a ``target`` artifact can run on (a unit with no ``targets`` serves all of the device's targets)."""
    return [u for u in device.units if not u.targets or target in u.targets]


def best_gops(unit: ComputeUnit, family: str = "conv") -> tuple[float, str]:
    """The unit's highest sustained throughput for ``family`` (peak x efficiency) in GOP/s, and its dtype."""
    rate, dtype = max((unit.peak_gops[d] * unit.efficiency_for(family), d) for d in unit.peak_gops)
    return rate, dtype


def _deployment_number(target: str | None) -> int:
    return int(target[3:]) if target and target.startswith("iOS") else 0


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


# A float32 model file holds ~4 bytes per weight, so int8 weights take about a quarter of it; TFLite Micro and the
# application need flash too, so a model whose int8 weights take over half the flash is treated as not fitting.
# Both are rules of thumb (file overhead and the runtime's size vary), said as such in the reason.
_FLASH_SHARE_FOR_MODEL = 0.5


def _mcu_lowrank_reason(device: DeviceProfile, model_bytes: int | None) -> str | None:
    """Why an MCU needs low-rank on top of int8 (the int8 model would not fit), or None when it fits."""
    budget = device.flash_bytes or device.ram_bytes
    if not model_bytes or not budget or model_bytes / 4 <= _FLASH_SHARE_FOR_MODEL * budget:
        return None
    where = "flash" if device.flash_bytes else "RAM"
    why = (f"{device.name} is a microcontroller with {_size(budget)} {where}; the {_size(model_bytes)} float model "
           f"has about {_size(model_bytes // 4)} of int8 weights, more than half of it, so lowrank-25 keeps 25% of "
           "each factorized layer's parameters before integer-only int8 I/O quantization")
    if model_bytes / 16 > _FLASH_SHARE_FOR_MODEL * budget:
        # A quarter of the int8 weights still over the share: factorization alone will not make it fit.
        why += "; even a quarter may not fit: train a smaller architecture with `edgeexport distill`"
    return why


def choose_preset(device: DeviceProfile, target: str, *, calibration: bool = True,
                  model_bytes: int | None = None) -> tuple[Preset, str]:
    """The preset ``--preset auto`` picks for ``device`` and ``target``, and the reason in one sentence.

    Rules: fp32 on the host; int8 I/O plus channel pruning on microcontrollers; elsewhere the candidate preset
    (fp32, fp16, int8; Core ML: fp32, fp16, w8a8) that ``simulate`` runs fastest on the device, on the unit its
    placement picks (simulate.preset_choice: a more exact one within 5 % wins), so the pick and the estimate
    agree. Only a device the simulator cannot place anything on uses the peak-throughput rules (int8 for an
    int8 NPU/TPU/DSP, fp16 for a GPU or the Neural Engine, int8 for a CPU with twice the int8 peak, else fp32). On a microcontroller, when ``model_bytes`` (the float model file's size)
    says the int8 weights would take over half the flash, low-rank factorization (lowrank-25) replaces channel
    pruning. With ``calibration=False`` (no calibration data) a preset that needs it is
    replaced by dynamic-range int8 (TFLite) or int8 weights (Core ML). Raises ``UnsupportedError`` when the device
    cannot run the target at all."""
    if target not in device.targets:
        raise _target_error(device, target)
    units = usable_units(device, target)
    if device.device_class == "host":
        return load_preset("fp32"), f"{device.name} is this machine: fp32 keeps results comparable with the reference"
    if device.device_class == "mcu":
        lowrank_why = _mcu_lowrank_reason(device, model_bytes)
        if lowrank_why is not None:
            spec = "lowrank-25+int8-io"
            return _without_calibration(load_preset(spec), spec, lowrank_why, target, calibration, fallback="fp32")
        spec = "prune-channels-25+int8-io"
        why = (f"{device.name} is a microcontroller with {_size(device.ram_bytes)} RAM"
               + (f" and {_size(device.flash_bytes)} flash" if device.flash_bytes else "")
               + ": TFLite Micro wants integer-only int8 I/O and removing 25% of channels shrinks flash and RAM")
        return _without_calibration(load_preset(spec), spec, why, target, calibration, fallback="fp32")
    simulated = _simulated_choice(device, target, calibration)
    if simulated is not None:
        return simulated
    # a device the simulator cannot place anything on falls back to the peak-throughput rules
    fastest = max(units, key=lambda u: best_gops(u)[0])
    rate, dtype = best_gops(fastest)
    if fastest.kind in _ACCELERATORS and dtype == "int8" and target == "tflite":
        why = (f"the fastest unit of {device.name} is its int8 {fastest.kind.upper()} "
               f"({fastest.runtime}, ~{rate:.0f} GOP/s on convs)")
        # a graph too small to amortize the accelerator's invoke cost stays on the CPU (simulate says so):
        # say whether int8 still pays off there
        cpu = next((u for u in units if u.kind == "cpu"), None)
        if cpu is not None and cpu.peak_gops.get("int8", 0.0) >= 2 * cpu.peak_gops.get("fp32", float("inf")):
            why += (f"; models too small for it stay on the CPU, whose int8 peak is "
                    f"{cpu.peak_gops['int8'] / cpu.peak_gops['fp32']:.0f}x its fp32 peak")
        else:
            why += "; models too small for it stay on the CPU (see `edgeexport simulate`)"
        return _without_calibration(load_preset("int8"), "int8", why, target, calibration)
    if fastest.kind in ("gpu", "ane", *_ACCELERATORS):
        name = "Neural Engine" if fastest.kind == "ane" else fastest.kind.upper()
        why = f"the fastest unit of {device.name} for {target} is its {name}, which runs fp16 natively"
        return load_preset("fp16"), why
    if "int8" in fastest.peak_gops and fastest.peak_gops["int8"] >= 2 * fastest.peak_gops.get("fp32", 0.0):
        if target == "coreml":
            return load_preset("w8"), f"{device.name} runs Core ML on its CPU: int8 weights halve memory traffic"
        ratio = fastest.peak_gops["int8"] / fastest.peak_gops["fp32"]
        why = (f"the fastest unit of {device.name} for {target} is its CPU, "
               f"whose int8 peak is {ratio:.0f}x its fp32 peak")
        return _without_calibration(load_preset("int8"), "int8", why, target, calibration)
    return load_preset("fp32"), f"{device.name} runs {target} on its CPU without a faster int8 path: fp32 is exact"


def _simulated_choice(device: DeviceProfile, target: str, calibration: bool) -> tuple[Preset, str] | None:
    """The candidate preset the simulator runs fastest on ``device`` (simulate.preset_choice), with its reason;
    None when no candidate can be simulated there."""
    from edgeexport.simulate.preset_choice import pick, reason, simulate_candidates

    def runs(name: str) -> bool:
        try:
            check_compatible(load_preset(name), target, device)
        except UnsupportedError:
            return False
        return True

    candidates = [c for c in simulate_candidates(device, target) if runs(c.preset)]
    if not candidates:
        return None
    chosen = pick(candidates)
    why = reason(device, chosen, candidates, on_reference=True)
    return _without_calibration(load_preset(chosen.preset), chosen.preset, why, target, calibration)


def _without_calibration(preset: Preset, spec: str, why: str, target: str, calibration: bool,
                         fallback: str | None = None) -> tuple[Preset, str]:
    if calibration or not preset.quantization.requires_calibration:
        return preset, why
    # Microcontrollers pass fallback="fp32": TFLite Micro has no hybrid kernels, so dynamic-int8 would not run.
    fallback = fallback or ("dynamic-int8" if target == "tflite" else "w8")
    pruning = [p for p in preset.parts if load_preset(p).pruning is not None]
    fallback_spec = "+".join([*pruning, fallback])
    return load_preset(fallback_spec), f"{why}; no calibration data was given, so {fallback} replaces {spec}"


def _target_error(device: DeviceProfile, target: str) -> UnsupportedError:
    runs = ", ".join(sorted(device.targets))
    if target == "coreml":
        hint = "Core ML needs an Apple device, e.g. iphone-15-pro; use --target tflite for this one"
    else:
        hint = f"use --target {runs}"
    return UnsupportedError(f"device {device.name} cannot run {target} artifacts (it runs {runs})", hint=hint)


def check_compatible(preset: Preset, target: str, device: DeviceProfile | None) -> None:
    """Raise ``UnsupportedError`` (exit 4) with the reason and a suggestion when ``preset`` cannot produce a
    ``target`` artifact, or when ``device`` cannot run it. Returns None when the combination is fine."""
    if target not in preset.targets:
        quant_part = next((p for p in preset.parts if (p, target) in _EQUIVALENT), preset.name)
        equivalent = _EQUIVALENT.get((quant_part, target))
        hint = (f"try --preset {preset.name.replace(quant_part, equivalent)}" if equivalent
                else f"presets for {target}: run `edgeexport presets`")
        raise UnsupportedError(f"preset {preset.name} has no {target} recipe (it targets "
                               f"{', '.join(sorted(preset.targets))})", hint=hint)
    if device is None:
        return
    if target not in device.targets:
        raise _target_error(device, target)
    if target == "tflite" and device.device_class == "mcu":
        mode = preset.quantization.tflite_mode or ""
        if mode in _MCU_TFLITE_REFUSED:
            auto, _ = choose_preset(device, target)
            raise UnsupportedError(f"preset {preset.name} cannot run on microcontroller {device.name}: "
                                   f"{_MCU_TFLITE_REFUSED[mode]}", hint=f"use --preset int8-io or {auto.name}")
    if target == "coreml" and preset.min_coreml_deployment_target:
        need = _deployment_number(preset.min_coreml_deployment_target)
        have = _deployment_number(device.coreml_deployment_target)
        if have < need:
            raise UnsupportedError(
                f"preset {preset.name} needs Core ML deployment target {preset.min_coreml_deployment_target}+, "
                f"{device.name} has {device.coreml_deployment_target}", hint="use --preset fp16 or w8")
