import pytest
import torch

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def devices() -> list:
    """CPU always; CUDA as a marked parameter that skips cleanly without a GPU."""
    return ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, CUDA])]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _no_surprise_kernels(monkeypatch):
    """No test builds a native step because earlier tests stepped a rule for 0.5 s in all
    (gzoo.ca.bitnative's tier); the tests of native steps switch them on themselves."""
    import gzoo.ca.bitnative as bitnative

    monkeypatch.setattr(bitnative, "NATIVE_AFTER", None)


@pytest.fixture
def one_thread():
    """Run with one torch thread (training is bit-reproducible per thread count)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def snapshot(root) -> dict:
    """Everything under ``root`` (hidden files included): relative path → (mode, bytes), with
    ``None`` bytes for folders; two equal snapshots mean nothing there was touched."""
    from pathlib import Path

    root = Path(root)
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        data = None if p.is_dir() and not p.is_symlink() else (
            str(p.readlink()) if p.is_symlink() else p.read_bytes())
        out[str(p.relative_to(root))] = (st.st_mode, data)
    return out


@pytest.fixture
def user_files(tmp_path):
    """A user's files around the place a checkpoint is written: a git checkout with sources
    beside it, notes and a hidden file; tests assert that none of them changes."""
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / "src.py").write_text("print('mine')\n")
    (tmp_path / "notes.txt").write_text("do not lose\n")
    (tmp_path / ".hidden").write_text("x\n")
    return tmp_path


def soup(shape, p=0.4, seed=0) -> torch.Tensor:
    """A seeded random bool board (or boards) of ``shape``, live with probability ``p``."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) < p


def circuit_rules(seed: int) -> list:
    """Rules of every kind a bit-sliced circuit meets: B/S with B0 and the constant 0, von
    Neumann, isotropic (tlife and a seeded random one), random MAP tables (one with B0), the
    constant 1, and a table that is its centre input."""
    import random

    from gzoo.ca import Rule, get_family

    rng = random.Random(seed)
    iso = get_family("isotropic")
    return [
        Rule.parse("B3/S23"), Rule.parse("B0/S8"), Rule.parse("B/S"),  # B0, constant 0
        Rule.parse("B13/S012V"), Rule.parse("B0124/S3V"),
        Rule.parse("B3/S2-i34q"),
        Rule.from_table(iso.table([rng.randint(0, 1) for _ in range(iso.n_classes)])),
        Rule.from_table(rng.getrandbits(512)), Rule.from_table(rng.getrandbits(512) | 1),
        Rule.from_table((1 << 512) - 1),  # constant 1
        Rule.from_table(sum(1 << n for n in range(512) if n >> 4 & 1)),  # the centre: an input
    ]
