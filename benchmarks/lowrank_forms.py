"""Which split of a k x k conv keeps accuracy better at the same parameter budget: SVD (k x k conv to r channels,
then 1x1) or Tucker-2 (1x1, k x k core, 1x1)? Measured on the digits sample, before and after distillation.

    .venv/bin/python benchmarks/lowrank_forms.py [--epochs 30 60]

For each form and keep share: the factorized Keras model's parameters, MACs and test accuracy (digits.npz test
split, 360 labelled images) right after factorization and after distilling against the original on the 300
unlabelled calibration images (compress/finetune.py, the same step `convert` runs). Deterministic (seed 0).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, nargs="+", default=[30])
    parser.add_argument("--keep", type=float, nargs="+", default=[0.5, 0.25])
    parser.add_argument("--loss", choices=("mse", "kd"), default="kd",
                        help="mse: compress/finetune.py (pruning's step); kd: compress/distill.py (T=4, mixup), "
                             "with the settings `convert` uses after factorization")
    parser.add_argument("--lr", type=float, default=None, help="kd only: initial learning rate (default: convert's)")
    args = parser.parse_args()
    print(f"command: python benchmarks/lowrank_forms.py --epochs {' '.join(map(str, args.epochs))} "
          f"--keep {' '.join(map(str, args.keep))} --loss {args.loss}" + (f" --lr {args.lr}" if args.lr else ""))
    import keras

    from edgeexport.compress.distill import distill_student
    from edgeexport.compress.finetune import distill
    from edgeexport.compress.keras_lowrank import FINETUNE_LEARNING_RATE, factorize_keras_model, finetune_config

    teacher = keras.saving.load_model(ROOT / "sample_models" / "digits_cnn.keras", compile=False)
    with np.load(ROOT / "sample_models" / "digits.npz") as data:
        calib, test, labels = data["calibration__image"], data["test__image"], data["test__labels"]

    def accuracy(model: object) -> float:
        return float(np.mean(np.argmax(model.predict(test, verbose=0), axis=1) == labels))  # type: ignore[attr-defined]

    print(f"teacher: {teacher.count_params():,} params, test accuracy {accuracy(teacher):.4f}")
    print(f"{'form':8} {'keep':>5} {'params':>7} {'MACs':>8} {'acc raw':>8} " + " ".join(f"{'acc @' + str(e):>8}"
                                                                                     for e in args.epochs))
    for keep in args.keep:
        for form in ("svd", "tucker2"):
            row = []
            for epochs in args.epochs:
                student, stats = factorize_keras_model(teacher, keep=keep, form=form)
                raw = accuracy(student)
                if args.loss == "mse":
                    distill(student, teacher, {"image": calib}, ("image",), epochs=epochs)
                else:
                    config = replace(finetune_config(epochs), learning_rate=args.lr or FINETUNE_LEARNING_RATE)
                    distill_student(student, teacher, {"image": calib}, ("image",), config=config)
                row.append(accuracy(student))
            print(f"{form:8} {keep:5.2f} {stats.params_after:7,d} {stats.macs_after:8,d} {raw:8.4f} "
                  + " ".join(f"{a:8.4f}" for a in row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
