"""PyTorch samples, built in code and saved with ``torch.export.save`` (needs the ``edgeexport[torch]`` extra).

Run from the repository root (make_samples.py calls it when torch is installed):

    .venv/bin/python sample_models/make_torch_samples.py

Writes:
    digits_cnn.pt2    a small CNN trained on scikit-learn's digits (same split as digits_cnn.keras): input ``image``
                      float32[1,1,8,8] (NCHW, values in [0, 1], a static batch of 1 as torch.export records it),
                      output softmax probabilities float32[1,10]. Verify it with digits_nchw.npz.

``build_mobilenet_v2`` is a torchvision-style MobileNetV2 (inverted residuals, ReLU6, BatchNorm) written here so
tests need no torchvision; its weights are random (``settle_batchnorm`` gives its BatchNorms real statistics) or
briefly trained on the upsampled digits (``train_briefly``, for int8 tests: see why there). Training of the digits
CNN is deterministic (fixed seed, one thread, deterministic algorithms), so reruns give the same weights.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 1234
EPOCHS = 60


def build_digits_cnn() -> Any:
    """Conv(16) -> ReLU -> Conv(32, stride 2) -> ReLU -> global average -> Linear(10) -> softmax."""
    import torch
    from torch import nn

    class DigitsCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
            self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
            self.head = nn.Linear(32, 10)

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.conv1(image))
            x = torch.relu(self.conv2(x))
            x = x.mean(dim=(2, 3))
            return torch.softmax(self.head(x), dim=-1)

    return DigitsCNN()


def build_mobilenet_v2(num_classes: int = 10, width: float = 1.0) -> Any:
    """torchvision's MobileNetV2 layout (t, c, n, s table of the paper), random weights, eval mode."""
    from torch import nn

    def make_divisible(value: float, divisor: int = 8) -> int:
        new = max(divisor, int(value + divisor / 2) // divisor * divisor)
        return new + divisor if new < 0.9 * value else new

    def conv_bn(cin: int, cout: int, kernel: int, stride: int, groups: int = 1, act: bool = True) -> nn.Sequential:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                                   nn.BatchNorm2d(cout)]
        if act:
            layers.append(nn.ReLU6(inplace=False))
        return nn.Sequential(*layers)

    class InvertedResidual(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
            super().__init__()
            hidden = cin * expand
            layers = [conv_bn(cin, hidden, 1, 1)] if expand != 1 else []
            layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, cout, 1, 1, act=False)]
            self.block = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x: Any) -> Any:
            return x + self.block(x) if self.residual else self.block(x)

    settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    channels = make_divisible(32 * width)
    last = make_divisible(1280 * max(1.0, width))
    features: list[nn.Module] = [conv_bn(3, channels, 3, 2)]
    for t, c, n, s in settings:
        out = make_divisible(c * width)
        for i in range(n):
            features.append(InvertedResidual(channels, out, s if i == 0 else 1, t))
            channels = out
    features.append(conv_bn(channels, last, 1, 1))
    model = nn.Sequential(*features, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(last, num_classes))
    for module in model.modules():  # torchvision's initialisation, so activations neither vanish nor explode
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return model.eval()


def settle_batchnorm(model: Any, images: Any) -> Any:
    """Set every BatchNorm's running statistics from ``images`` (one pass in train mode, cumulative average).

    With random weights and the initial statistics (mean 0, variance 1) a deep network's activations shrink
    layer after layer (MobileNetV2's logits came out near 1e-10), which makes every int8 comparison meaningless;
    with statistics of real activations each block is normalised and the logits vary from input to input."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    with torch.no_grad():
        model(images)
    return model.eval()


def digits_images(size: int = 64) -> tuple[Any, Any, Any, Any]:
    """The digits split of ``make_samples.digits_split`` as NCHW RGB images of ``size`` x ``size`` (bilinear
    upsampling of the 8x8 grey digits, values in [0, 1]): train images, train labels, test images, test labels."""
    import torch

    sys.path.insert(0, str(HERE))
    from make_samples import digits_split

    x_train, y_train, x_test, y_test = digits_split()

    def images(x: Any) -> Any:
        nchw = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        return torch.nn.functional.interpolate(nchw, size=(size, size), mode="bilinear",
                                               align_corners=False).repeat(1, 3, 1, 1)

    return images(x_train), torch.from_numpy(y_train).long(), images(x_test), torch.from_numpy(y_test).long()


def train_briefly(model: Any, images: Any, labels: Any, steps: int = 80, seed: int = 0) -> Any:
    """``steps`` Adam steps (batch 64, lr 2e-3) of ``model`` on ``images``/``labels``; returns it in eval mode.

    Why a MobileNetV2 for int8 tests is trained at all (measured 2026-12-03, benchmarks/RESULTS.md, issue 14): with
    random weights, even with ``settle_batchnorm``, the network amplifies a perturbation ~30 dB from its first
    layer to its logits (Gaussian noise at 40 dB SQNR after layer 0 leaves 10.9 dB at the logits, in PyTorch
    alone), so int8 rounding in the first layers (39 dB there) ends at 6.7 dB whatever the converter does. 80
    steps on the digits bring that to 27.6 dB. At 64x64 (``digits_images(64)``) 80 steps reach only 65.6 % test
    accuracy and Core ML w8a8 still flips 3 of 32 top-1 answers; the int8 tests train 300 steps (95.8 %), which
    pass on both targets (measured 2026-12-04, benchmarks/RESULTS.md issue 14)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(steps):
        index = torch.randint(0, len(images), (64,), generator=generator)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images[index]), labels[index]).backward()
        optimizer.step()
    return model.eval()


def save_program(model: Any, example: Any, path: Path) -> Path:
    """``torch.export.export`` ``model`` (eval mode) on ``example`` and save it to ``path``."""
    import torch

    program = torch.export.export(model.eval(), (example,))
    torch.export.save(program, str(path))
    _fixed_zip_times(path)
    return path


def _fixed_zip_times(path: Path) -> None:
    """Rewrite the archive with every entry dated 1980-01-01: torch.export.save stamps the current time, which
    was the only difference between two runs (same entries, same bytes inside)."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in entries:
            fixed = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            fixed.compress_type = info.compress_type
            fixed.external_attr = info.external_attr
            archive.writestr(fixed, data)


def main() -> int:
    started = time.perf_counter()
    import torch

    sys.path.insert(0, str(HERE))
    from make_samples import digits_split

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    x_train, y_train, x_test, y_test = digits_split()
    to_nchw = (0, 3, 1, 2)
    train_x = torch.from_numpy(np.ascontiguousarray(x_train.transpose(to_nchw)))
    train_y = torch.from_numpy(y_train)
    model = build_digits_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    order = torch.Generator().manual_seed(SEED)
    for _ in range(EPOCHS):
        permutation = torch.randperm(len(train_x), generator=order)
        for start in range(0, len(train_x), 64):
            index = permutation[start:start + 64]
            optimizer.zero_grad()
            probs = model(train_x[index])
            loss = torch.nn.functional.nll_loss(torch.log(probs + 1e-9), train_y[index])
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        predicted = model(torch.from_numpy(np.ascontiguousarray(x_test.transpose(to_nchw)))).argmax(-1).numpy()
    accuracy = float((predicted == y_test).mean())
    save_program(model, torch.zeros(1, 1, 8, 8), HERE / "digits_cnn.pt2")
    (HERE / "digits_cnn_pt2.accuracy.json").write_text(json.dumps(
        {"model": "digits_cnn.pt2", "test_accuracy": round(accuracy, 4), "test_samples": len(y_test),
         "data": "sklearn.datasets.load_digits, seed 1234 split", "torch": torch.__version__}, indent=2) + "\n")
    print(f"digits_cnn.pt2 test accuracy {accuracy:.4f} ({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
