"""gzoo.zoo: the pretrained checkpoint folders shipped with gzoo.

Each sub-folder (``b36s23_p8``, ...) holds ``model.safetensors``, ``config.json`` and a model
card ``README.md``. Load one with :func:`gzoo.load_pretrained`.
"""

from __future__ import annotations

from pathlib import Path

ZOO_DIR = Path(__file__).resolve().parent


def available() -> list[str]:
    """Names of the checkpoints shipped beside this file."""
    return sorted(p.name for p in ZOO_DIR.iterdir() if (p / "config.json").is_file())


def path_of(name: str) -> Path:
    """The folder of a shipped checkpoint (it may not exist; the loader reports that)."""
    return ZOO_DIR / name
