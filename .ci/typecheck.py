"""Type-check gzoo with mypy, each file under the module name it has once installed.

gzoo/, layers/ and zoo/ install as ``gzoo``, ``gzoo.layers`` and ``gzoo.zoo`` (the package-dir
mapping in pyproject.toml's ``[tool.setuptools]``). mypy has no such mapping and would see
``layers/engine.py`` as a module ``layers.engine`` (or twice). So this script reads the mapping
and the package list from pyproject.toml and hands mypy one build source per file with its
installed module name (``layers/engine.py`` → ``gzoo.layers.engine``); every other setting
comes from ``[tool.mypy]``. Errors name the files in the checkout.

    python .ci/typecheck.py [mypy options]      # or: make typecheck
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

from mypy import build
from mypy.errors import CompileError
from mypy.main import process_options
from mypy.modulefinder import BuildSource

ROOT = Path(__file__).resolve().parents[1]


def package_folder(package: str, mapping: dict[str, str]) -> Path:
    """The folder setuptools takes ``package`` from: the longest mapped prefix, then the rest
    of the dotted name as sub-folders (``gzoo.ca`` → ``gzoo/ca``)."""
    parts = package.split(".")
    for i in range(len(parts), 0, -1):
        head = ".".join(parts[:i])
        if head in mapping:
            return ROOT / mapping[head] / Path(*parts[i:])
    return ROOT / Path(*parts)


def sources() -> list[BuildSource]:
    """One build source per ``.py`` file of every package, named as installed."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping, found = setuptools["package-dir"], []
    for package in setuptools["packages"]:
        for path in sorted(package_folder(package, mapping).glob("*.py")):
            module = package if path.name == "__init__.py" else f"{package}.{path.stem}"
            found.append(BuildSource(str(path.relative_to(ROOT)), module, None))
    return found


def main(argv: list[str]) -> int:
    os.chdir(ROOT)  # the sources are paths relative to the checkout
    _, options = process_options(["--config-file", str(ROOT / "pyproject.toml"), *argv],
                                 require_targets=False)
    try:
        result = build.build(sources(), options)
    except CompileError as e:
        print("\n".join(e.messages), file=sys.stderr)
        return 2
    for line in result.errors:
        print(line)
    n = sum(": error:" in line for line in result.errors)
    print(f"mypy: {n} error(s) in {len(sources())} modules" if n else
          f"mypy: no issues in {len(sources())} modules")
    return 1 if n else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
