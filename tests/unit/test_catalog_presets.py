"""Presets: shipped files, composition, user presets (TOML and pyproject), `auto` choice and compatibility."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeexport.catalog import (
    check_compatible,
    choose_preset,
    list_devices,
    list_presets,
    load_device,
    load_preset,
    presets_from_pyproject,
)
from edgeexport.catalog.devices import DEVICE_DIR
from edgeexport.catalog.model import COREML_WEIGHTS, TFLITE_MODES
from edgeexport.errors import (
    EXIT_BAD_INPUT,
    EXIT_UNSUPPORTED,
    ProfileError,
    UnsupportedError,
)

SHIPPED = {"fp32", "fp16", "dynamic-int8", "int8", "int8-io", "int16x8", "w8", "palettize-6", "palettize-4",
           "w8a8", "prune-50", "prune-75", "prune-2:4", "prune-channels-25", "lowrank-50", "lowrank-25",
           "lowrank-energy-95"}


def test_every_shipped_preset_loads_and_resolves() -> None:
    presets = {p.name: p for p in list_presets()}
    assert set(presets) == SHIPPED
    for p in presets.values():
        assert p.description and p.targets <= {"tflite", "coreml"} and p.parts == (p.name,)
        assert any(v is not None for v in vars(p.tolerance).values()), p.name
        if "tflite" in p.targets:
            assert p.quantization.tflite_mode in TFLITE_MODES
        if "coreml" in p.targets:
            assert p.quantization.coreml_precision in ("fp32", "fp16")
        assert p.quantization.coreml_weights in (None, *COREML_WEIGHTS)
        assert load_preset(p.name) == p
    assert presets["fp32"].targets == presets["fp16"].targets == frozenset({"tflite", "coreml"})
    assert presets["fp32"].tolerance.cosine_min == pytest.approx(0.9999)
    assert presets["fp16"].tolerance.cosine_min == pytest.approx(0.999)
    assert presets["int8"].quantization.requires_calibration
    assert not presets["dynamic-int8"].quantization.requires_calibration
    w8a8, two_four = presets["w8a8"], presets["prune-2:4"]
    assert w8a8.quantization.requires_calibration and w8a8.min_coreml_deployment_target == "iOS17"
    assert two_four.pruning is not None and (two_four.pruning.n, two_four.pruning.m) == (2, 4)
    # pruning changes the function: judged by top-1 / accuracy only
    assert presets["prune-50"].tolerance.cosine_min is None and presets["prune-50"].tolerance.top1_agreement_min


def test_composition_combines_parts_and_loosens_tolerance() -> None:
    combo = load_preset("prune-50+int8")
    prune, int8 = load_preset("prune-50"), load_preset("int8")
    assert combo.parts == ("prune-50", "int8") and combo.targets == frozenset({"tflite"})
    assert combo.pruning == prune.pruning and combo.quantization == int8.quantization
    assert combo.tolerance.accuracy_drop_max == pytest.approx(4.0)         # 2 + 2 points
    assert combo.tolerance.top1_agreement_min == pytest.approx(0.85)       # 1 - (0.10 + 0.05)
    assert combo.tolerance.cosine_min is None                              # pruning does not check it
    pal = load_preset("prune-50+palettize-4")
    assert pal.targets == frozenset({"coreml"}) and pal.quantization.coreml_weights == "palettize-4"
    assert pal.pruning is not None and pal.min_coreml_deployment_target == "iOS16"
    assert pal.quantization.tflite_mode is None


@pytest.mark.parametrize("spec", ["int8+fp16", "prune-50+prune-2:4", "int8+", "fp16+fp16", "prune-50+int9"])
def test_bad_compositions_are_bad_input(spec: str) -> None:
    with pytest.raises(ProfileError) as err:
        load_preset(spec)
    assert err.value.exit_code == EXIT_BAD_INPUT


def test_unknown_preset_suggests_close_names() -> None:
    with pytest.raises(ProfileError) as err:
        load_preset("int-8")
    assert "did you mean" in err.value.one_line() and "int8" in (err.value.hint or "")


def test_user_preset_file_with_base_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        '[presets.int8-keep-head]\nbase = "int8"\ndescription = "int8, last Dense kept in fp32"\n'
        "[presets.int8-keep-head.tolerance]\ncosine_min = 0.99\n"
        '[[presets.int8-keep-head.overrides]]\nop_type = "Dense"\nname = "head*"\nkeep = "fp32"\n'
        '[presets.tflite-prune]\ndescription = "prune for tflite only"\ntargets = ["tflite"]\n'
        '[presets.tflite-prune.pruning]\nmethod = "magnitude"\nsparsity = 0.3\n'
        "[presets.tflite-prune.tolerance]\ntop1_agreement_min = 0.9\n"
    )
    mine = load_preset("int8-keep-head", extra_files=[path])
    assert mine.quantization.tflite_mode == "int8" and mine.quantization.requires_calibration
    assert mine.tolerance.cosine_min == 0.99 and mine.tolerance.sqnr_db_min == 15.0   # merged with the base
    assert mine.overrides[0].op_type == "Dense" and mine.overrides[0].name == "head*"
    assert mine.source == str(path)
    assert "int8-keep-head" in {p.name for p in list_presets(extra_files=[path])}
    combo = load_preset("tflite-prune+int8-keep-head", extra_files=[path])
    assert combo.pruning is not None and combo.pruning.sparsity == pytest.approx(0.3) and combo.overrides
    with pytest.raises(ProfileError, match="no target in common"):
        load_preset("tflite-prune+w8", extra_files=[path])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('[presets.int8]\ndescription = "x"\ntargets = ["tflite"]\n', "presets.int8"),         # shadows a shipped one
        ('[presets.x]\nbase = "int9"\n', "presets.x.base"),
        ('[presets.x]\nbase = "int8"\n[[presets.x.overrides]]\nop_type = "Dense"\nkeep = "int4"\n',
         "presets.x.overrides[0].keep"),
        ('[presets.x]\ndescription = "d"\ntargets = ["tflite"]\n[presets.x.quantization]\ntflite_mode = "int4"\n'
         "[presets.x.tolerance]\ncosine_min = 0.9\n", "presets.x.quantization.tflite_mode"),
        ('[presets.x]\ndescription = "d"\ntargets = ["tflite"]\n[presets.x.quantization]\ntflite_mode = "int8"\n',
         "presets.x.tolerance"),
    ],
)
def test_bad_user_presets_name_the_field(tmp_path: Path, body: str, field: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(body)
    with pytest.raises(ProfileError) as err:
        load_preset("x" if "presets.x" in field else "int8", extra_files=[path])
    assert f"'{field}'" in err.value.one_line() and str(path) in err.value.one_line()


def test_presets_from_pyproject(tmp_path: Path) -> None:
    (tmp_path / "extra.toml").write_text(
        '[presets.fp16-strict]\nbase = "fp16"\ndescription = "fp16, stricter"\n'
        "[presets.fp16-strict.tolerance]\ncosine_min = 0.9995\n"
    )
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "app"\n[tool.edgeexport]\npreset_files = ["extra.toml"]\n'
        '[tool.edgeexport.presets.w8-app]\nbase = "w8"\ndescription = "app weights"\n'
    )
    files = presets_from_pyproject(pyproject)
    assert files == [pyproject, (tmp_path / "extra.toml").resolve()]
    assert load_preset("w8-app", extra_files=files).quantization.coreml_weights == "w8"
    assert load_preset("fp16-strict", extra_files=files).tolerance.cosine_min == 0.9995
    assert presets_from_pyproject(tmp_path / "missing.toml") == []


def test_auto_differs_between_npu_neural_engine_and_mcu() -> None:
    npu, why_npu = choose_preset(load_device("galaxy-s24"), "tflite")
    tpu, _ = choose_preset(load_device("pixel-8"), "tflite")
    ane, why_ane = choose_preset(load_device("iphone-15-pro"), "coreml")
    mcu, why_mcu = choose_preset(load_device("stm32f746"), "tflite")
    host, _ = choose_preset(load_device(str(DEVICE_DIR / "host.toml")), "tflite")
    assert (npu.name, tpu.name, host.name) == ("int8", "int8", "fp32")
    assert ane.name in ("fp16", "w8a8")  # whichever the simulator runs faster on the Neural Engine (test_preset_choice)
    assert mcu.quantization.tflite_mode == "int8-io" and mcu.pruning is not None
    assert len({npu.name, ane.name, mcu.name, host.name}) == 4
    assert "NPU" in why_npu and "Neural Engine" in why_ane and "microcontroller" in why_mcu
    for why in (why_npu, why_ane, why_mcu):
        assert ". " not in why and "\n" not in why   # one sentence


def test_auto_without_calibration_data_falls_back() -> None:
    preset, why = choose_preset(load_device("pixel-8"), "tflite", calibration=False)
    assert preset.name == "dynamic-int8" and "calibration" in why
    mcu, why = choose_preset(load_device("nrf52840"), "tflite", calibration=False)
    assert mcu.pruning is not None and mcu.quantization.tflite_mode == "fp32" and "fp32 replaces" in why


def test_auto_result_is_always_compatible() -> None:
    for device in list_devices():
        for target in device.targets:
            for calibration in (True, False):
                preset, _ = choose_preset(device, target, calibration=calibration)
                check_compatible(preset, target, device)
                assert calibration or not preset.quantization.requires_calibration


@pytest.mark.parametrize(
    ("spec", "target", "device", "reason", "suggestion"),
    [
        ("fp16", "tflite", "stm32f746", "float16", "int8-io"),
        ("dynamic-int8", "tflite", "esp32-s3", "hybrid", "int8-io"),
        ("int8-io", "coreml", "iphone-15-pro", "no coreml recipe", "w8a8"),
        ("prune-50+int8", "coreml", None, "no coreml recipe", "prune-50+w8a8"),
        ("int8+prune-2:4", "coreml", None, "no coreml recipe", "w8a8+prune-2:4"),
        ("palettize-4", "tflite", "pixel-8", "no tflite recipe", "dynamic-int8"),
        ("fp16", "coreml", "pixel-8", "cannot run coreml", "Apple device"),
        ("fp32", "coreml", "raspberry-pi-5", "cannot run coreml", "--target tflite"),
    ],
)
def test_check_compatible_refuses_with_a_suggestion(spec: str, target: str, device: str | None, reason: str,
                                                    suggestion: str) -> None:
    profile = load_device(device) if device else None
    with pytest.raises(UnsupportedError) as err:
        check_compatible(load_preset(spec), target, profile)
    assert err.value.exit_code == EXIT_UNSUPPORTED
    assert reason in err.value.message and suggestion in (err.value.hint or ""), err.value.one_line()


def test_w8a8_needs_ios17(tmp_path: Path) -> None:
    old = tmp_path / "iphone-old.toml"
    text = (DEVICE_DIR / "iphone-xs.toml").read_text().replace('name = "iphone-xs"', 'name = "iphone-old"')
    old.write_text(text.replace('coreml_deployment_target = "iOS18"', 'coreml_deployment_target = "iOS16"'))
    device = load_device(str(old))
    check_compatible(load_preset("w8"), "coreml", device)            # iOS16 is enough for weight compression
    with pytest.raises(UnsupportedError, match="iOS17"):
        check_compatible(load_preset("w8a8"), "coreml", device)
    check_compatible(load_preset("w8a8"), "coreml", load_device("iphone-15-pro"))
