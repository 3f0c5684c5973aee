"""How gzoo meets a user before and after installing: the bare-checkout hint."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_from_a_bare_checkout_says_how_to_install(tmp_path):
    """layers/ becomes gzoo.layers only through the install's package-dir mapping: importing
    gzoo from a checkout that is not installed says, in one line, how to install it."""
    shutil.copytree(ROOT / "gzoo", tmp_path / "gzoo",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "layers", tmp_path / "layers",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # -S: no site-packages, so no installed (or editable) gzoo is within reach
    proc = subprocess.run([sys.executable, "-S", "-c", "import gzoo"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: gzoo is not installed"), proc.stderr
    assert "`make`" in last and "`pip install -e .`" in last
    assert "No module named" not in proc.stderr
