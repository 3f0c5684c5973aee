"""The READMEs stay true: their Python blocks run as written, from any working directory, and
their speed figures are the benchmark record's."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "zoo/README.md")


def python_blocks(name):
    return re.findall(r"```python\n(.*?)```", (ROOT / name).read_text(), re.S)


BLOCKS = [pytest.param(name, i, id=f"{name}:{i}") for name in DOCS
          for i in range(len(python_blocks(name)))]


def test_every_readme_has_python_blocks():
    assert {name for name, *_ in (p.values for p in BLOCKS)} == set(DOCS)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(("name", "index"), BLOCKS)
def test_python_blocks_run_as_written(name, index, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # not the checkout: a snippet must not rely on it
    exec(compile(python_blocks(name)[index], f"{name} block {index}", "exec"), {})
    capsys.readouterr()
    assert list(tmp_path.iterdir()) == []  # and it writes nothing where it runs


def test_readme_speed_figures_come_from_the_benchmark_record():
    """Every "N×" ratio the README states (not sizes such as 3×3) is one RESULTS.md records."""
    readme = (ROOT / "README.md").read_text()
    results = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    figures = re.findall(r"(\d+(?:\.\d+)?(?:–\d+(?:\.\d+)?)?)×(?![\d(])", readme)
    assert figures, "the README states no speed ratio"
    for figure in figures:  # a range may be written without its ×, "ratios 0.94–1.05"
        assert f"{figure}×" in results or ("–" in figure and figure in results), figure
