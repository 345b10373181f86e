"""int8 inference on CPUs with VNNI: post-training static quantization with ONNX Runtime.

`--precision int8` (evaluate, predict, export --format onnx) exports the model's plain
fp32 form to ONNX, calibrates its activation ranges on a stated number of images — the run's
own training images, any folder of images given with `--calibration DIR` (no labels, any
layout), or else the images it scores — and quantizes it with ONNX Runtime's
`quantize_static`: QDQ format, weights int8 per output channel, activations uint8 (U8S8,
which VNNI's `vpdpbusd` multiplies without the saturation older AVX-512 has), min–max
calibration; the classifier (the last matrix product) stays fp32. The quantized file is
kept beside the run (`RUN/int8/`) or in the cache (`~/.cache/convnet/int8/`), keyed by the
weights' SHA-256 and the calibration, so calibrating and optimizing are paid once; with it,
a JSON note of how it agrees with fp32 on held-out images.

Why ONNX Runtime (docs/benchmarks.md, "int8 inference"): on this 2-core AMD EPYC it ran
resnet18 2.05× convnet's bf16 path, beside 2.10× for PyTorch's PT2E quantization with the
Inductor backend and 2.36× for OpenVINO; it is already how `convnet export` files are run and
tested, adds ~20 MB (OpenVINO ~100 MB, PT2E needs torchao and a compiler toolchain), and its
setup takes seconds where PT2E's compile took 11–81 s.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from convnet.errors import UserError
from convnet.files import atomic_write_bytes, atomic_write_json

# Calibration images by default: min–max ranges settle within a few hundred images (LeNet-5:
# 256 and 1,024 give the same MNIST test error to 0.01 points); more only costs setup time.
CALIBRATION_IMAGES = 256
# Held-out images on which a new int8 model is compared with fp32 once, when it is made.
CHECK_IMAGES = 512
# Instructions that multiply uint8 by int8 into int32 in one step (VNNI); named as in
# /proc/cpuinfo. Without them ONNX Runtime's int8 kernels are slower than fp32 on x86.
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
VERSION = 2  # of the recipe below: a change makes new files rather than reusing old ones


def cpu_has_vnni() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return any(flag in flags for flag in VNNI_FLAGS)


def check_int8(device: torch.device) -> None:
    """UserError, in one paragraph, where int8 inference cannot run well here."""
    if device.type != "cpu":
        raise UserError(
            f"--precision int8 runs on the CPU (ONNX Runtime's int8 kernels); this command "
            f"asked for {device.type}. Use --device cpu, or bf16/fp16 on the GPU."
        )
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise UserError(
            "--precision int8 needs ONNX Runtime: pip install onnxruntime (or install "
            "convnet with its int8 extra)."
        ) from None
    if not cpu_has_vnni():
        raise UserError(
            "--precision int8 needs a CPU with VNNI (AVX-512 VNNI, AVX-VNNI or AMX), which "
            "multiplies int8 in one instruction; this CPU has none, so int8 would run slower "
            "than fp32 here. Use --precision bf16 or fp32."
        )


class Int8Model(nn.Module):
    """An ONNX Runtime session of a quantized model, called like the nn.Module it came from:
    normalised float images (N, C, H, W) in, fp32 logits (N, K) out, on the CPU.

    `note` says how it was calibrated and how it agreed with fp32 when it was made."""

    def __init__(self, path: Path, note: dict) -> None:
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        # Its threads sleep rather than spin between operators: they share the cores with
        # the workers decoding the next batch (evaluate's loop on 2 cores: 7.7 → 7.0 s).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.path, self.note = path, note

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(images.detach().float().cpu().numpy())
        (logits,) = self.session.run(None, {self.input_name: array})
        return torch.from_numpy(logits)


def weights_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def int8_model(
    model: nn.Module,
    input_size: tuple[int, int, int],
    cache: Path,
    key: str,
    calibration: tuple[Callable[[], torch.Tensor], str],
    check: Callable[[], tuple[torch.Tensor, torch.Tensor | None, str]],
    log=print,
) -> Int8Model:
    """The int8 form of `model` (fp32, evaluation mode), from `cache` when it holds one for
    `key` (the weights' digest and the calibration), else made now: calibrated on the
    normalised images `calibration[0]()` returns (`calibration[1]` says what they are, "{}"
    for how many), then
    compared with fp32 on `check()` (images, their labels or None, and what they are). The
    images are read only when the cache has no file: a cached model costs no decoding."""
    from onnxruntime import __version__ as runtime_version

    name = hashlib.sha256(f"{key}|{runtime_version}|{VERSION}".encode()).hexdigest()[:16]
    path, note_path = cache / f"model-{name}.onnx", cache / f"model-{name}.json"
    if path.is_file() and note_path.is_file():
        try:
            return Int8Model(path, json.loads(note_path.read_text()))
        except Exception:  # a damaged cache file: make it again
            log(f"Note: {path} could not be read; quantizing again.")
    read_calibration, described = calibration
    images = read_calibration()  # an unusable image is refused before the line below
    described = described.format(len(images))
    log(f"Quantizing to int8 with ONNX Runtime, calibrated on {described}; paid once …")
    atomic_write_bytes(path, _quantized_bytes(model, input_size, images))
    quantized = Int8Model(path, {})
    note = {
        "runtime": f"onnxruntime {runtime_version}",
        "calibration": described,
        "calibration_images": len(images),
        **agreement(model, quantized, check()),
    }
    atomic_write_json(note_path, note)
    quantized.note = note
    return quantized


def _quantized_bytes(model: nn.Module, input_size: tuple, images: torch.Tensor) -> bytes:
    import tempfile

    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from convnet.engine.export import INPUT_NAME, export_model

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(images.split(32))

        def get_next(self) -> dict | None:
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch.float().numpy()}

    with tempfile.TemporaryDirectory(prefix="convnet-int8-") as folder:
        plain, prepared, quantized = (Path(folder) / name for name in ("fp32", "pre", "int8"))
        export_model(model, input_size, "onnx", plain)
        try:
            quant_pre_process(str(plain), str(prepared))
        except Exception:  # shape inference is an optimization; quantize the plain file
            prepared = plain
        try:
            quantize_static(
                str(prepared), str(quantized), Batches(), quant_format=QuantFormat.QDQ,
                per_channel=True, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=_classifier(prepared),
            )  # fmt: skip
        except Exception as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise UserError(
                f"This model cannot be quantized to int8 ({type(error).__name__}: {first}); "
                "use --precision bf16 or fp32."
            ) from None
        return quantized.read_bytes()


def _classifier(path: Path) -> list[str]:
    """The last matrix product (the classifier), left in fp32: its logits decide the class,
    and it is a sliver of the work (resnet18: 0.5 M of 1,814 M MACs). On LeNet-5 (3 epochs)
    quantizing it cost 0.05 points of MNIST test error, keeping it 0.03."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    products = [node.name for node in graph.node if node.op_type in ("Gemm", "MatMul")]
    return products[-1:]


@torch.inference_mode()
def agreement(
    model: nn.Module, quantized: Int8Model, check: tuple[torch.Tensor, torch.Tensor | None, str]
) -> dict:
    """How often int8's top-1 class is fp32's on the check images, and, where their labels
    are known, both top-1 errors."""
    images, labels, described = check
    model = model.float().eval()
    reference = torch.cat([model(batch.float()) for batch in images.split(256)])
    measured = torch.cat([quantized(batch) for batch in images.split(256)])
    same = (reference.argmax(1) == measured.argmax(1)).float().mean().item()
    note = {"checked_on": described, "checked_images": len(images), "top1_agreement": same}
    if labels is not None:
        note["fp32_top1_error"] = round(
            1 - (reference.argmax(1) == labels).float().mean().item(), 6
        )
        note["int8_top1_error"] = round(1 - (measured.argmax(1) == labels).float().mean().item(), 6)
    return note


def _sample(count: int, wanted: int, seed: int = 0) -> list[int]:
    """`wanted` positions of `count`, a seeded random sample in order (a folder's images are
    sorted by class: its first few hundred would be a class or two)."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:wanted]
    return sorted(order.tolist())


def _images(
    source, wanted: int, normalization: tuple, seed: int = 0
) -> tuple[list[int], torch.Tensor]:
    """`_sample`'s positions of `source`'s held-out images and those images as the model saw
    them, normalised. A file that cannot be decoded (which evaluation skips) is replaced by
    the next in the same seeded order: a source that can meet one has `read_eval_image`,
    which raises there; the others hold no unreadable images."""
    from convnet.data.transforms import normalize

    read = getattr(source, "read_eval_image", None)
    if read is None:
        positions = _sample(source.eval_count, wanted, seed)
        read_images = [source.eval_image(position) for position in positions]
    else:
        from convnet.data.decoding import DECODE_ERRORS

        order = torch.randperm(source.eval_count, generator=torch.Generator().manual_seed(seed))
        found: dict[int, torch.Tensor] = {}
        for position in order.tolist():
            if len(found) == wanted:
                break
            try:
                found[position] = read(position)
            except (*DECODE_ERRORS, UserError):
                continue
        positions = sorted(found)
        read_images = [found[position] for position in positions]
    return positions, torch.stack([normalize(image, *normalization) for image in read_images])


class ImageFiles:
    """Every image file under a folder, whatever its layout and without labels (found as
    class folders are: links followed once, hidden files left out), each prepared as
    `convnet predict` prepares a file for the model: the images of `--calibration DIR`."""

    def __init__(self, folder: str, loaded) -> None:
        from convnet.data.preparation import file_transform
        from convnet.data.scanning import scan_class_folders

        root = Path(folder)
        self.paths = scan_class_folders(root, {"": root}).files[""]
        if not self.paths:
            raise UserError(
                f"--calibration {folder} holds no image files, in it or in any folder under "
                "it; give a folder of images like those the model will see."
            )
        preprocessing = loaded.preprocessing
        self.transform = file_transform(
            loaded.input_size,
            loaded.photos,
            preprocessing.get("resize"),
            preprocessing.get("interpolation"),
        )
        self.eval_count = len(self.paths)

    def eval_image(self, index: int) -> torch.Tensor:
        """The `index`-th file prepared, float (C, H, W) in [0, 1]; UserError if unreadable."""
        from convnet.data.decoding import DECODE_ERRORS

        path = self.paths[index]
        try:
            return self.transform(self.transform.decode(path))
        except (*DECODE_ERRORS, UserError) as error:
            reason = str(error).strip().removeprefix(f"{path}: ").rstrip(".")
            raise UserError(
                f"--calibration: {path}: {reason or type(error).__name__}. Take it out of "
                "the folder, or calibrate on another."
            ) from None


def calibration_images(
    loaded, source, folder: str | None, count: int, data_dir: Path | None = None
) -> tuple[Callable[[], torch.Tensor], str]:
    """What calibrates, in words ("{}" for how many), and a function that reads those
    normalised images: `count` of the `--calibration` folder; else of the run's training images (a registered data set
    read from `data_dir`, else from where the run read it); else (bare weights) of the
    images scored."""
    if folder is not None:  # the folder's files, scanned once when they are also checked
        calibration = source if isinstance(source, ImageFiles) else ImageFiles(folder, loaded)
        described = f"{{}} images of {folder}"
    elif loaded.config is not None and loaded.config.data is not None:  # folders or shards
        calibration = loaded.evaluation_source(data=loaded.config.data, split="train", workers=0)
        described = "{} of the run's training images"
    elif loaded.config is not None and loaded.config.dataset is not None:
        from convnet.data.datasets import load_dataset
        from convnet.data.transforms import normalize, to_model_input

        data = load_dataset(loaded.config.dataset, "train", data_dir or _data_dir(loaded.config))
        picked = _sample(len(data.labels), count)
        read = lambda: normalize(to_model_input(data.images[picked], loaded.input_size),  # noqa: E731
                                 *loaded.normalization)  # fmt: skip
        return read, f"{{}} of the run's training images ({loaded.config.dataset})"
    else:
        calibration, described = source, "{} of the images scored (no training data known)"
    # read only where the cache has no model; files evaluation skips are left out
    return lambda: _images(calibration, count, loaded.normalization)[1], described


def _data_dir(config) -> Path | None:
    return Path(config.data_dir) if config.data_dir else None


def int8_for(loaded, source, folder: str | None = None, count: int = CALIBRATION_IMAGES,
             log=print, data_dir: Path | None = None,
             checked: str = "the images scored") -> Int8Model:  # fmt: skip
    """The int8 form of a loaded run or weights file (`LoadedModel`), scored on `source`: its
    cache lies beside the run, or in convnet's cache for bare weights. `data_dir`: where a
    registered data set's training images are read (default: where the run read them);
    `checked`: what `source`'s images are, in the note of how int8 agreed with fp32."""
    from convnet.data.datasets import default_data_dir

    weights = loaded.weights_path
    if weights is None:
        raise UserError(
            "--precision int8 quantizes a run's or a file's weights; this model has none."
        )
    cache = weights.parent / "int8" if loaded.config is not None else default_data_dir() / "int8"
    read_calibration, described = calibration_images(loaded, source, folder, count, data_dir)

    def check() -> tuple[torch.Tensor, torch.Tensor | None, str]:
        positions, images = _images(source, CHECK_IMAGES, loaded.normalization, seed=1)
        label = getattr(source, "eval_label", None)  # a source that cannot say: no labels
        labels = torch.tensor([label(index) for index in positions]) if label else None
        if labels is not None and bool((labels < 0).any()):  # unlabelled images
            labels = None
        described = f"{len(positions)} of {checked}"
        if isinstance(source, ImageFiles):  # the calibration folder: say how they overlap
            shared = len(set(positions) & set(_sample(source.eval_count, count)))
            described = f"{len(positions)} images of {folder}, {shared} of which calibrated it"
        return images, labels, described

    key = (
        f"{weights_digest(weights)}|{described.format(count)}|{tuple(loaded.input_size)}|"
        f"{loaded.normalization}"
    )
    return int8_model(
        loaded.model,
        tuple(loaded.input_size),
        cache,
        key,
        (read_calibration, described),
        check,
        log,
    )


def int8_without_data(loaded, folder: str | None, count: int = CALIBRATION_IMAGES,
                      log=print, data_dir: Path | None = None) -> Int8Model:  # fmt: skip
    """The int8 form for commands that score no data set (predict, export, serve): calibrated
    and checked on `folder`'s images where given, else on the run's own data (a registered
    data set read from `data_dir`, else from where the run read it). UserError for bare
    weights without a folder: there are no images to calibrate on."""
    if folder is not None:
        source = ImageFiles(folder, loaded)
    elif loaded.config is not None:
        where = data_dir or _data_dir(loaded.config)
        source = loaded.evaluation_source(data_dir=where, workers=0)
    else:
        raise UserError(
            "--precision int8 of bare weights needs images to calibrate on: give "
            "--calibration DIR (a folder of images like those the model will see)."
        )
    return int8_for(loaded, source, folder, count, log, data_dir, "the run's held-out images")
