"""Resource limits: a .keras zip bomb, an ONNX external-data length of 1e12, and a full disk (issue 17, item 3/4)."""

from __future__ import annotations

import errno
import os
import shutil
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from edgeexport.errors import OutputPathError
from edgeexport.limits import disk_full
from tests.conftest import ROOT, CliResult

Run = Callable[..., CliResult]
BOMB_BYTES = 2 * 2**30


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def _zip(members: list[tuple[str, bytes, int, int]]) -> bytes:
    """A zip of (name, raw-deflated bytes, crc32, uncompressed size) entries, written by hand (no zip64 needed)."""
    body, central = b"", b""
    for name, data, crc, size in members:
        encoded = name.encode()
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(data), size,
                               len(encoded), 0, 0, 0, 0, 0, len(body)) + encoded
        body += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data), size, len(encoded), 0)
        body += encoded + data
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), len(body), 0)
    return body + central + end


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory: pytest.TempPathFactory, samples: Path) -> Path:
    """The digits model's config with a model.weights.h5 of 2 GiB of zeros that deflates to about 2 MB."""
    chunk = bytes(2**24)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    # After a full flush deflate keeps no history, so the compressed chunk can simply be repeated.
    piece = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(BOMB_BYTES // len(chunk)):
        crc = zlib.crc32(chunk, crc)
    weights = piece * (BOMB_BYTES // len(chunk)) + compressor.flush(zlib.Z_FINISH)
    members = []
    with zipfile.ZipFile(samples / "digits_cnn.keras") as original:
        for name in ("metadata.json", "config.json"):
            data = original.read(name)
            members.append((name, _raw_deflate(data), zlib.crc32(data), len(data)))
    members.append(("model.weights.h5", weights, crc, BOMB_BYTES))
    path = tmp_path_factory.mktemp("bomb") / "bomb.keras"
    path.write_bytes(_zip(members))
    return path


def test_the_zip_bomb_is_refused_in_seconds_and_little_memory(zip_bomb: Path, tmp_path: Path) -> None:
    assert zip_bomb.stat().st_size < 3 * 2**20
    with zipfile.ZipFile(zip_bomb) as archive:  # a valid archive that really declares 2 GiB
        assert archive.getinfo("model.weights.h5").file_size == BOMB_BYTES
    probe = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
             "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "edgeexport", "convert", str(zip_bomb),
                           "--out", str(tmp_path / "out")], check=False, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    seconds = time.perf_counter() - started
    code, peak_kib = (int(v) for v in done.stdout.split())
    assert code == 3 and "Traceback" not in done.stderr
    assert "model.weights.h5 declares 2.0 GiB from 2.0 MiB compressed" in done.stderr
    assert seconds < 5.0
    assert peak_kib * 1024 < 500 * 2**20
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_an_onnx_external_length_of_1e12_is_one_line(run_cli: Run, tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.arange(16, dtype=np.float32).reshape(1, 16), "w")
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "m.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="m.data",
                    size_threshold=0)
    assert run_cli("inspect", path).code == 0
    loaded = onnx.load(str(path), load_external_data=False)
    for entry in loaded.graph.initializer[0].external_data:
        if entry.key == "length":
            entry.value = str(10**12)
    onnx.save_model(loaded, str(path))
    result = run_cli("inspect", path)
    assert result.code == 3 and "Traceback" not in result.err and "MemoryError" not in result.err
    assert "tensor w declares 1,000,000,000,000 bytes at offset 0 of m.data, which holds 64 bytes" in result.err


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs (root only; skipped where mounting is not allowed)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if shutil.which("mount") is None or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                                                      check=False, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_is_exit_3_with_the_path(run_cli: Run, tiny_disk: Path, samples: Path) -> None:
    out = tiny_disk / "out"
    result = run_cli("convert", samples / "digits_cnn.keras", "--target", "tflite", "--out", out)
    assert result.code == 3 and "Traceback" not in result.err
    assert result.err.strip().splitlines()[-1] == (
        f"error: no space left on device writing the output directory {out} "
        "(free some space or choose another --out)")
    assert list(out.iterdir()) == []  # the stage is gone, nothing half-written


@pytest.mark.parametrize(("number", "reason"), [(errno.ENOSPC, "no space left on device"),
                                                 (errno.EDQUOT, "disk quota exceeded")])
def test_enospc_and_edquot_anywhere_in_a_chain_are_bad_environment(number: int, reason: str) -> None:
    cause = OSError(number, os.strerror(number), "/data/out/model.tflite")
    try:
        try:
            raise cause
        except OSError as err:
            raise RuntimeError("the converter failed") from err
    except RuntimeError as wrapped:
        found = disk_full(wrapped)
    assert isinstance(found, OutputPathError) and found.exit_code == 3
    assert found.message == f"{reason} writing /data/out/model.tflite"
    assert disk_full(RuntimeError("unrelated")) is None

