"""Shipped device profiles and presets: every file loads, every reference resolves, every number has a source,
malformed profiles are refused naming the field. No framework imports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgeexport.catalog import (
    DTYPES,
    OP_FAMILIES,
    PLACEHOLDER_SOURCE,
    DeviceProfile,
    is_placeholder,
    list_devices,
    load_device,
)
from edgeexport.catalog.devices import DEVICE_DIR, parse_device
from edgeexport.catalog.model import UNIT_KINDS
from edgeexport.errors import EXIT_BAD_INPUT, ProfileError

REQUIRED = {
    "pixel-4", "pixel-7", "pixel-8", "pixel-8-pro", "galaxy-s23", "galaxy-s24", "midrange-sd778g", "iphone-xs",
    "iphone-12", "iphone-15-pro", "raspberry-pi-4", "raspberry-pi-5", "jetson-orin-nano", "coral-dev-board",
    "stm32f746", "nrf52840", "esp32-s3", "host",
    # fitted to published measurements (issue 12)
    "pixel-3", "galaxy-s25", "snapdragon-8-elite-qrd", "coral-usb-accelerator",
}
TAG = re.compile(r"^(?:Q→|Q->|[QDSUMPF])(?:\s*/\s*(?:Q→|[QDSUMPF]))*:\s*\S")


@pytest.fixture(scope="module")
def devices() -> list[DeviceProfile]:
    return list_devices()


def _number_paths(device: DeviceProfile) -> list[str]:
    paths = ["ram"] + (["flash"] if device.flash_bytes is not None else [])
    paths += ["android_api"] if device.android_api is not None else []
    paths += ["coreml_spec_version"] if device.coreml_spec_version is not None else []
    for u in device.units:
        p = f"units.{u.name}"
        paths += [f"{p}.cores", f"{p}.clock_ghz", f"{p}.memory_bandwidth_gbps", f"{p}.op_overhead_us"]
        paths += [f"{p}.peak_gops.{d}" for d in u.peak_gops] + [f"{p}.efficiency.{f}" for f in u.efficiency]
        paths += [f"{p}.power_w"] if u.power_w is not None else []
    return paths


def test_all_required_profiles_ship(devices: list[DeviceProfile]) -> None:
    names = {d.name for d in devices}
    assert REQUIRED <= names
    assert len(list(DEVICE_DIR.glob("*.toml"))) >= 17


def test_every_number_has_a_tagged_source(devices: list[DeviceProfile]) -> None:
    for device in devices:
        for path in _number_paths(device):
            source = device.sources.get(path)
            assert source, f"{device.name}: {path} has no source"
            assert source == PLACEHOLDER_SOURCE or TAG.match(source), f"{device.name}: {path}: {source!r}"


def test_references_resolve(devices: list[DeviceProfile]) -> None:
    for d in devices:
        assert d.path is not None and d.path.stem == d.name
        assert d.ram_bytes > 0
        for u in d.units:
            assert u.kind in UNIT_KINDS
            assert set(u.peak_gops) <= set(DTYPES) and set(u.dtypes) <= set(u.peak_gops), (d.name, u.name)
            assert u.op_families <= set(OP_FAMILIES) and u.op_families
            assert "default" in u.efficiency and all(0 < e <= 1 for e in u.efficiency.values())
            assert u.targets <= d.targets
        for target in d.targets:  # every target the device claims has a unit that runs it
            assert any(not u.targets or target in u.targets for u in d.units), (d.name, target)
        if d.os == "android":
            assert d.android_api is not None and 28 <= d.android_api <= 36 and d.litert_delegates
        if "coreml" in d.targets:
            assert d.os == "ios" and d.coreml_deployment_target and d.coreml_spec_version
            assert d.unit("ane") is not None
        if d.device_class == "mcu":
            assert d.flash_bytes is not None and d.ram_bytes <= 1024 * 1024


def test_derived_numbers_match_their_formula() -> None:
    # Sources describe the arithmetic; spot-check that the values obey it.
    pi5 = load_device("raspberry-pi-5").unit("cpu")
    assert pi5 is not None and pi5.peak_gops["fp32"] == pytest.approx(4 * 2.4 * 16)
    assert pi5.peak_gops["int8"] == pytest.approx(4 * pi5.peak_gops["fp32"])
    stm = load_device("stm32f746").unit("mcu")
    assert stm is not None and stm.peak_gops["int8"] == pytest.approx(stm.clock_ghz * 2 * 2)
    # The Galaxy S24 NPU is fitted to published rows (issue 12): every fitted number names its rows, the
    # residuals and the leave-one-architecture-out validation are in the profile.
    s24 = load_device("galaxy-s24")
    fit, check = s24.fits["npu"], s24.validation["npu"]
    assert fit.rows >= 8 and fit.residuals_pct and all(abs(r) < 50 for r in fit.residuals_pct.values())
    assert all(s24.sources[f"units.npu.{p}"].startswith("F: ") for p in fit.parameters)
    assert check.rows >= 8 and check.median_abs_pct <= 20 and check.ratio_p10 <= 1 <= check.ratio_p90


def test_host_is_a_marked_placeholder() -> None:
    host = load_device(DEVICE_DIR / "host.toml")
    assert is_placeholder(host)
    assert not is_placeholder(load_device("pixel-8"))


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(ProfileError) as err:
        load_device("pixel8")
    assert err.value.exit_code == EXIT_BAD_INPUT
    assert "pixel-8" in err.value.one_line()


def test_user_device_dir_overrides_shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (DEVICE_DIR / "host.toml").read_text().replace("placeholder until edgeexport calibrate",
                                                          "M: measured by edgeexport calibrate")
    (tmp_path / "host.toml").write_text(text.replace('cores = 2', 'cores = 8'))
    monkeypatch.setenv("EDGEEXPORT_DEVICE_DIR", str(tmp_path))
    host = load_device("host")
    assert host.units[0].cores == 8 and not is_placeholder(host)


BASE = (DEVICE_DIR / "raspberry-pi-5.toml").read_text()


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("cores = 4\n", "", "units.cpu.cores"),                                        # missing field
        ("cores = 4\n", 'cores = "four"\n', "units.cpu.cores"),                        # wrong type
        ("clock_ghz = 2.4\n", "clock_ghz = -2.4\n", "units.cpu.clock_ghz"),            # negative number
        ('kind = "cpu"', 'kind = "fpga"', "units.cpu.kind"),                           # unknown unit kind
        ('memory_bandwidth_gbps = "D:', 'memory_bandwidth_gbpz = "D:', "units.cpu.memory_bandwidth_gbps"),  # no source
        ("op_overhead_us = 5.0\n", "op_overhead_us = 5.0\nop_overhed_us = 1\n", "units.cpu.op_overhed_us"),  # typo
        ('ram = "6 GiB"', 'ram = "six"', "ram"),                                       # bad size
        ("conv = 0.39", "conv = 1.5", "units.cpu.efficiency.conv"),                    # efficiency > 1
        ('peak_gops.fp16 = "D: 2x fp32 (Armv8.2 FP16)"', 'peak_gops.fp16 = "2x fp32"', "units.cpu.peak_gops.fp16"),
        ('dtypes = ["fp32", "fp16", "int8"]', 'dtypes = ["fp32", "fp16", "int8", "int4"]', "units.cpu.dtypes"),
        ('targets = ["tflite"]', 'targets = ["tflite", "onnx"]', "targets"),
        ('class = "sbc"', 'class = "toaster"', "class"),
    ],
)
def test_malformed_profile_names_file_and_field(tmp_path: Path, old: str, new: str, field: str) -> None:
    assert old in BASE, old
    bad = tmp_path / "bad.toml"
    bad.write_text(BASE.replace(old, new, 1))
    with pytest.raises(ProfileError) as err:
        parse_device(bad)
    message = err.value.one_line()
    assert str(bad) in message and f"'{field}'" in message, message


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.toml"
    bad.write_text("name = \n")
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_device(str(bad))
    with pytest.raises(ProfileError, match="not found"):
        load_device(str(tmp_path / "absent.toml"))


def test_writer_round_trips_every_shipped_profile(tmp_path: Path, devices: list[DeviceProfile]) -> None:
    from dataclasses import replace

    from edgeexport.catalog.writer import device_to_toml

    for device in devices:
        path = tmp_path / f"{device.name}.toml"
        path.write_text(device_to_toml(device, header="written by a test"))
        again = parse_device(path)
        # Parent-key sources ("units.gpu.efficiency") are written per number, so compare per number.
        assert replace(again, path=None, sources={}) == replace(device, path=None, sources={}), device.name
        assert all(again.sources[p] == device.sources[p] for p in _number_paths(device)), device.name
