"""ONNX conformance: the onnx wheel's own backend node tests, converted and verified against their expected outputs.

    .venv/bin/python benchmarks/onnx_conformance.py [--target tflite] [--sample 40] [--only test_abs,...] [--json F]

Every node test of the ops in ``OPS`` (``onnx/backend/test/data/node/test_*/model.onnx`` whose single node is one
of them; the ``_expanded`` variants, which decompose an op into others, are left out) goes through
``edgeexport.convert`` (plan, onnx2tf, the target converter, the smoke run, verification against onnxruntime on the
test's own inputs) and then ``verify_expected`` against the test's ``output_*.pb``. Each test ends in one of:

* ``pass``: converted, and the artifact's outputs match the expected outputs (fp32 tolerance);
* ``wrong``: converted, but the numbers (or shapes) differ (exit 5): a bug, ours or the converter's;
* ``refused``: refused with exit 4 naming the op or the reason (the target cannot run it);
* ``conv-fail``: a converter failed (exit 4, ConversionError);
* ``bad-input``: exit 3; for a valid node test this is a bug of ours;
* ``crash``: any other exception (exit 1 in the CLI): a bug of ours.

``--sample N`` picks N tests spread evenly over the op list (round-robin over the ops, in name order), which is
the "40-test sample" of issue 14. Prints one line per test, then a table op type x result with the pass share.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

# Ops of mobile CNNs, audio models, transformers and RNNs (issue 14). Keep it sorted by family; 55 op types.
OPS: tuple[str, ...] = (
    # convolutional networks
    "Conv", "ConvTranspose", "BatchNormalization", "InstanceNormalization", "MaxPool", "AveragePool",
    "GlobalAveragePool", "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "HardSigmoid", "HardSwish", "Sigmoid",
    "Tanh", "Clip", "Mish", "Softplus", "Pad", "Resize", "DepthToSpace", "SpaceToDepth", "Flatten", "Concat",
    # element-wise and reductions
    "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Log", "Abs", "Neg", "Reciprocal", "Max", "Min", "Mean",
    "Sum", "ReduceMean", "ReduceSum", "ReduceMax", "ArgMax", "CumSum", "Where",
    # transformers
    "MatMul", "Gemm", "Einsum", "Softmax", "LayerNormalization", "Erf", "Gelu", "Gather", "Reshape", "Transpose",
    "Squeeze", "Unsqueeze", "Slice", "Split", "Expand", "Tile",
    # recurrent
    "LSTM", "GRU", "RNN",
)
RESULTS = ("pass", "wrong", "refused", "conv-fail", "bad-input", "crash")


@dataclass(frozen=True)
class Outcome:
    """One node test's result; ``detail`` is the one-line reason for anything but a pass."""

    test: str
    op: str
    result: str
    detail: str
    seconds: float


def node_dir() -> Path:
    """The node-test directory inside the installed onnx wheel."""
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"


def node_tests(ops: Sequence[str] = OPS) -> dict[str, str]:
    """Test name -> op type for every single-node test of ``ops`` (``_expanded`` variants excluded)."""
    import onnx

    wanted = set(ops)
    found: dict[str, str] = {}
    for test in sorted(p.name for p in node_dir().iterdir() if p.name.startswith("test_")):
        if "expanded" in test:
            continue
        model = onnx.load(str(node_dir() / test / "model.onnx"), load_external_data=False)
        kinds = {node.op_type for node in model.graph.node}
        if len(model.graph.node) == 1 and kinds <= wanted:
            found[test] = kinds.pop()
    return found


def spread_sample(tests: dict[str, str], count: int, ops: Sequence[str] = OPS) -> list[str]:
    """``count`` tests spread evenly over ``ops``: ops at evenly spaced positions of the list when there are more
    ops than ``count`` (each op's first test in name order), else round-robin over the ops; the same every run."""
    present = [op for op in ops if any(o == op for o in tests.values())]
    by_op = {op: sorted(t for t, o in tests.items() if o == op) for op in present}
    if count <= len(present):
        return [by_op[present[(i * len(present)) // count]][0] for i in range(count)]
    picked: list[str] = []
    depth = 0
    while len(picked) < count and any(len(v) > depth for v in by_op.values()):
        for op in present:
            if len(by_op[op]) > depth and len(picked) < count:
                picked.append(by_op[op][depth])
        depth += 1
    return picked


# Input slots that exported models hold as initializers (weights, shapes, axes, pads, scales) but node tests feed
# as graph inputs. onnx2tf and the TFLite builtins need them constant (Conv's weights, Pad's pads, Resize's
# scales, ...), so the benchmark freezes them to the test's values, as an exporter would have written them.
PARAMETER_SLOTS: dict[str, tuple[int, ...]] = {
    "Conv": (1, 2), "ConvTranspose": (1, 2), "BatchNormalization": (1, 2, 3, 4), "InstanceNormalization": (1, 2),
    "LayerNormalization": (1, 2), "PRelu": (1,), "Clip": (1, 2), "Pad": (1, 2, 3), "Resize": (1, 2, 3),
    "Reshape": (1,), "Expand": (1,), "Tile": (1,), "Slice": (1, 2, 3, 4), "Split": (1,), "Squeeze": (1,),
    "Unsqueeze": (1,), "ReduceMean": (1,), "ReduceSum": (1,), "ReduceMax": (1,), "CumSum": (1,),
    "Gemm": (1, 2), "LSTM": (1, 2, 3, 4), "GRU": (1, 2, 3, 4), "RNN": (1, 2, 3, 4),
}


def freeze_parameters(model_path: Path, inputs: dict[str, np.ndarray], out: Path) -> tuple[Path, dict[str, np.ndarray], tuple[str, ...]]:
    """Write ``model_path`` with its parameter inputs (``PARAMETER_SLOTS``) turned into initializers holding the
    test's values; returns the new path, the remaining inputs and the frozen names (the original path when none)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(model_path), load_external_data=False)
    node = model.graph.node[0]
    slots = PARAMETER_SLOTS.get(node.op_type, ())
    frozen = tuple(node.input[i] for i in slots if i < len(node.input) and node.input[i] in inputs)
    if not frozen:
        return model_path, inputs, ()
    kept = [v for v in model.graph.input if v.name not in frozen]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    model.graph.initializer.extend(numpy_helper.from_array(inputs[name], name) for name in frozen)
    onnx.save(model, str(out))
    return out, {k: v for k, v in inputs.items() if k not in frozen}, frozen


def read_case(test: str) -> tuple[Path, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The test's model path and its data set 0 as arrays keyed by graph input / output name."""
    import onnx
    from onnx import numpy_helper

    from edgeexport.sources.onnx_checks import graph_inputs

    root = node_dir() / test
    model = onnx.load(str(root / "model.onnx"), load_external_data=False)
    names_in = [v.name for v in graph_inputs(model)]
    names_out = [v.name for v in model.graph.output]

    def arrays(prefix: str, names: list[str]) -> dict[str, np.ndarray]:
        result = {}
        for index, name in enumerate(names):
            tensor = onnx.TensorProto()
            tensor.ParseFromString((root / "test_data_set_0" / f"{prefix}_{index}.pb").read_bytes())
            result[name] = numpy_helper.to_array(tensor)
        return result

    return root / "model.onnx", arrays("input", names_in), arrays("output", names_out)


def run_case(test: str, op: str, target: str, scratch: Path) -> Outcome:
    """Convert and verify one node test; never raises."""
    from edgeexport.api import ConvertOptions, VerifyOptions, convert
    from edgeexport.errors import BadInputError, ConversionError, EdgeExportError, UnsupportedError
    from edgeexport.types import LoadOptions
    from edgeexport.verify.expected import verify_expected

    started = time.perf_counter()

    def outcome(result: str, detail: str = "") -> Outcome:
        return Outcome(test, op, result, " ".join(detail.split())[:300], round(time.perf_counter() - started, 2))

    try:
        model_path, inputs, expected = read_case(test)
        model_path, inputs, _ = freeze_parameters(model_path, inputs, scratch / f"{test}.onnx")
        shapes = _dynamic_input_shapes(model_path, inputs)
        data = scratch / f"{test}.npz"
        np.savez(data, **{k: np.atleast_1d(v) for k, v in inputs.items()})
        out = scratch / test
        report = convert(model_path, out, ConvertOptions(targets=(target,), load=LoadOptions(input_shapes=shapes),
                                                         write_report=False, verify=VerifyOptions(data=data, samples=1)))
        artifact = report.artifacts[0].artifact
        verification = verify_expected(artifact, inputs, expected, reference=f"{test} expected outputs")
    except UnsupportedError as err:
        return outcome("refused", err.one_line())
    except ConversionError as err:
        return outcome("conv-fail", err.one_line())
    except BadInputError as err:
        return outcome("bad-input", err.one_line())
    except EdgeExportError as err:
        return outcome("crash", f"{type(err).__name__}: {err.one_line()}")
    except Exception as err:  # noqa: BLE001 - the benchmark records every failure instead of stopping
        return outcome("crash", f"{type(err).__name__}: {err}")
    if verification.status == "not_verifiable":
        return outcome("refused", verification.reason)
    if not verification.passed:
        return outcome("wrong", verification.failure_line() or verification.headline())
    return outcome("pass")


def _dynamic_input_shapes(model_path: Path, inputs: dict[str, np.ndarray]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """``--input-shape`` values from the test data for inputs whose declared shape is not fully fixed."""
    import onnx

    from edgeexport.sources.onnx_checks import declared_shape, graph_inputs

    model = onnx.load(str(model_path), load_external_data=False)
    fixes = []
    for value in graph_inputs(model):
        shape = declared_shape(value)
        if any(d is None for d in shape) and inputs[value.name].ndim == len(shape):
            fixes.append((value.name, tuple(int(d) for d in inputs[value.name].shape)))
    return tuple(fixes)


def table(outcomes: Sequence[Outcome]) -> str:
    """Markdown table: one row per op type, counts per result and the pass share."""
    rows = ["| op | tests | " + " | ".join(RESULTS) + " | pass share |", "|---|---:|" + "---:|" * (len(RESULTS) + 1)]
    ops = list(dict.fromkeys(o.op for o in outcomes))
    for op in sorted(ops, key=lambda o: OPS.index(o) if o in OPS else len(OPS)):
        counts = Counter(o.result for o in outcomes if o.op == op)
        total = sum(counts.values())
        rows.append(f"| {op} | {total} | " + " | ".join(str(counts.get(r, 0) or "") for r in RESULTS)
                    + f" | {counts.get('pass', 0) / total:.0%} |")
    counts = Counter(o.result for o in outcomes)
    total = len(outcomes)
    rows.append(f"| **all** | {total} | " + " | ".join(str(counts.get(r, 0)) for r in RESULTS)
                + f" | {counts.get('pass', 0) / max(total, 1):.0%} |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="tflite", choices=("tflite", "coreml"))
    parser.add_argument("--sample", type=int, default=0, help="run N tests spread evenly over the op list (0: all)")
    parser.add_argument("--only", default="", help="comma-separated test names")
    parser.add_argument("--json", type=Path, help="write every outcome to this JSON file")
    args = parser.parse_args(argv)
    tests = node_tests()
    chosen = args.only.split(",") if args.only else (spread_sample(tests, args.sample) if args.sample else list(tests))
    print(f"# {len(chosen)} node tests of {len({tests.get(t) for t in chosen})} op types, target {args.target}, "
          f"onnx {_onnx_version()}", flush=True)
    outcomes = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeexport-conformance-") as scratch:
        for test in chosen:
            result = run_case(test, tests.get(test, "?"), args.target, Path(scratch))
            outcomes.append(result)
            print(f"{result.result:9s} {result.seconds:6.1f}s {test}  {result.detail}", flush=True)
    print()
    print(table(outcomes))
    passed = sum(o.result == "pass" for o in outcomes)
    print(f"\n{passed}/{len(outcomes)} pass ({passed / max(len(outcomes), 1):.0%}) in {time.perf_counter() - started:.0f} s")
    print("command: python benchmarks/onnx_conformance.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    if args.json:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=1))
    return 0


def _onnx_version() -> str:
    import onnx

    return str(onnx.__version__)


if __name__ == "__main__":
    sys.exit(main())
