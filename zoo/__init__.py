"""gzoo.zoo: the pretrained checkpoint folders shipped with gzoo.

Each sub-folder (``b36s23_p8``, ``rotmnist_p4``, ...) holds ``model.safetensors``,
``config.json`` and a model card ``README.md``. Load one with :func:`gzoo.load_pretrained`.
"""

from __future__ import annotations

import json
from pathlib import Path

ZOO_DIR = Path(__file__).resolve().parent


def available(task: str | None = None) -> list[str]:
    """Names of the checkpoints shipped beside this file; with ``task``, only those of that task
    (``"ca"``: cellular automata, the default of a config without one; ``"rotmnist"``: digit
    classifiers)."""
    names = sorted(p.name for p in ZOO_DIR.iterdir() if (p / "config.json").is_file())
    if task is None:
        return names
    return [n for n in names if _task(ZOO_DIR / n / "config.json") == task]


def _task(config: Path) -> str | None:
    try:
        value = json.loads(config.read_text(encoding="utf-8")).get("task", "ca")
    except (OSError, ValueError, AttributeError):
        return None  # unreadable: gzoo.load_pretrained says why
    return value if isinstance(value, str) else None


def path_of(name: str) -> Path:
    """The folder of a shipped checkpoint (it may not exist; the loader reports that)."""
    return ZOO_DIR / name
