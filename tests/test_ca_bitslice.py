"""The bit-sliced backend (gzoo.ca.bitslice) against the byte path: every rule family, odd
shapes, batches, dtypes, chunking; the compiled circuits against their tables."""

from __future__ import annotations

import importlib
import random

import pytest
import torch

import gzoo.ca.bitslice as bitslice
from conftest import CUDA
from gzoo.ca import FAMILIES, RULES, Rule, RuleError, get_family, make_dataset, simulate, step
from gzoo.ca.bitslice import BitBoards, Circuit, compile_table

sim = importlib.import_module("gzoo.ca.simulate")  # the module (gzoo.ca.simulate is the function)

WIDTHS = [1, 2, 3, 63, 64, 65, 127, 128, 130]
HEIGHTS = [1, 2, 3, 17]
SHAPES = [(b, h, w) for i, w in enumerate(WIDTHS) for b, h in [(1 + i % 3, HEIGHTS[i % 4])]]


def soup(shape, p=0.4, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) < p


def random_rule(rng: random.Random, hood: str, b0: bool = False) -> Rule:
    top = 8 if hood == "moore" else 4
    birth = {n for n in range(top + 1) if rng.random() < 0.4} | ({0} if b0 else set())
    survival = {n for n in range(top + 1) if rng.random() < 0.4}
    return Rule(birth, survival, hood)


def bytes_history(board: torch.Tensor, rule: Rule, steps: int) -> torch.Tensor:
    return simulate(board, rule, steps, backend="bytes").bool()


def random_rule_of(family: str, rng: random.Random) -> Rule:
    fam = get_family(family)
    return Rule.from_table(fam.table([rng.randint(0, 1) for _ in range(fam.n_classes)]))


def table_of(fn) -> int:
    """The 512-entry table of ``fn(cells)`` with ``cells[r][c]`` the 3×3 pattern (by definition)."""
    t = 0
    for n in range(512):
        cells = [[(n >> (3 * r + c)) & 1 for c in range(3)] for r in range(3)]
        t |= int(bool(fn(cells))) << n
    return t


# ---------------------------------------------------------------------- packing
@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.int64, torch.float32])
def test_pack_unpack_round_trip(dtype):
    for b, h, w in SHAPES:
        board = soup((b, h, w), seed=w).to(dtype)
        packed = BitBoards.pack(board)
        assert packed.words.shape == (b, h + 2, -(-w // 64) + 2)
        assert packed.words.dtype == torch.int64
        back = packed.unpack(dtype)
        assert back.dtype == dtype and torch.equal(back, board), (b, h, w)
        assert torch.equal(BitBoards.pack(board[0]).unpack(dtype), board[0])


def test_pack_reads_non_contiguous_boards():
    board = soup((3, 70, 90), seed=1)
    view = board.transpose(1, 2)[:, 5:]  # strided, odd offset
    assert torch.equal(BitBoards.pack(view).unpack(), view)
    assert torch.equal(step(view, "B3/S23", backend="bits"), step(view, "B3/S23", backend="bytes"))


def row_words_by_definition(x: torch.Tensor) -> torch.Tensor:
    """int64 ``[B, H, ⌈W/64⌉]``: bit ``k`` of word ``w`` is cell ``64w + k`` (module docstring)."""
    b, h, w = x.shape
    nw = -(-w // 64)
    padded = torch.zeros(b, h, 64 * nw, dtype=torch.int64)
    padded[..., :w] = x.long()
    return (padded.view(b, h, nw, 64) << torch.arange(64)).sum(-1)  # bits never overlap


def batch_words_by_definition(x: torch.Tensor) -> torch.Tensor:
    """int64 ``[⌈B/64⌉, H, W]``: bit ``k`` of word ``(g, i, j)`` is cell ``(i, j)`` of board
    ``64g + k``."""
    b, h, w = x.shape
    ng = -(-b // 64)
    padded = torch.zeros(64 * ng, h, w, dtype=torch.int64)
    padded[:b] = x.long()
    return (padded.view(ng, 64, h, w) << torch.arange(64).view(1, 64, 1, 1)).sum(1)


IO_SHAPES = [(1, 1, 1), (2, 3, 5), (1, 4, 8), (3, 2, 63), (1, 5, 64), (2, 3, 65), (1, 2, 100),
             (2, 1, 128), (1, 3, 129), (3, 4, 200)]


@pytest.mark.parametrize(("b", "h", "w"), IO_SHAPES)
def test_numpy_and_torch_packing_agree_with_the_layout(b, h, w):
    """np.packbits/unpackbits (CPU) and the PyTorch gather/spread (other devices) write and read
    the same words: the layout's definition, zeros above the last cell."""
    x = soup((b, h, w), seed=7 * w + h).to(torch.uint8)
    expected = row_words_by_definition(x)
    nw = expected.shape[-1]
    for pack in (bitslice._pack, bitslice._pack_numpy):
        out = torch.full((b, h + 2, nw + 2), -1, dtype=torch.int64)  # garbage around
        pack(x, out[:, 1:-1, 1:-1])
        assert torch.equal(out[:, 1:-1, 1:-1], expected), pack.__name__
        assert (out[:, 0] == -1).all() and (out[..., 0] == -1).all()  # nothing outside written
    strided = soup((b, w, 2 * h), seed=w).to(torch.uint8).transpose(1, 2)[:, ::2]  # [b, h, w]
    out = torch.empty(b, h, nw, dtype=torch.int64)
    bitslice._pack_numpy(strided, out)
    assert torch.equal(out, row_words_by_definition(strided))
    g = torch.Generator().manual_seed(w)
    words = torch.randint(-(2**63), 2**63 - 1, (b, h + 2, nw + 2), generator=g)  # bits above W
    inner = words[:, 1:-1, 1:-1]  # are don't-cares: ignored
    cells = bitslice._unpack_numpy(inner, w)
    assert cells.dtype == torch.uint8 and cells.shape == (b, h, w)
    r = w - 64 * (nw - 1)  # cells in the last word
    mask = torch.full((nw,), -1, dtype=torch.int64)
    mask[-1] = -1 if r == 64 else (1 << r) - 1
    assert torch.equal(row_words_by_definition(cells), inner & mask)
    for dtype in (torch.bool, torch.float32):
        ref = torch.empty(b, h, w, dtype=dtype)
        bitslice._unpack(inner, ref)
        assert torch.equal(ref, cells.to(dtype))


@pytest.mark.parametrize(("b", "h", "w"), [(64, 2, 4), (64, 3, 3), (100, 4, 5), (130, 2, 8),
                                          (200, 1, 1)])
def test_batch_layout_packing_follows_its_definition(b, h, w):
    x = soup((b, h, w), seed=b + w).to(torch.uint8)  # H·W % 8 == 0 or not: int64 or byte lanes
    ng = -(-b // 64)
    words = torch.full((ng, h + 2, w + 2), 5, dtype=torch.int64)
    bitslice._pack_batch(x, words)
    assert torch.equal(words[:, 1:-1, 1:-1], batch_words_by_definition(x))
    assert (words[:, 0] == 5).all() and (words[..., -1] == 5).all()
    g = torch.Generator().manual_seed(b)
    words = torch.randint(-(2**63), 2**63 - 1, (ng, h + 2, w + 2), generator=g)
    for dtype in (torch.bool, torch.uint8, torch.int32):
        out = torch.empty(b, h, w, dtype=dtype)
        bitslice._unpack_batch(words, out)  # bits of boards ≥ b are don't-cares
        kept = batch_words_by_definition(out.to(torch.uint8))
        mask = -1 if b % 64 == 0 else (1 << (b % 64)) - 1
        last = words[-1:, 1:-1, 1:-1] & mask
        assert torch.equal(kept, torch.cat([words[:-1, 1:-1, 1:-1], last])), dtype


def test_torch_io_path_runs_like_the_numpy_path(monkeypatch):
    """The PyTorch pack/unpack (CUDA, big-endian hosts) through BitBoards, on CPU."""
    boards = [soup((3, 9, w), seed=w) for w in (5, 64, 70)] + [soup((70, 6, 6), seed=1)]
    rule = Rule.from_table(random.Random(3).getrandbits(512))
    results = {}
    for flag in (True, False):
        monkeypatch.setattr(bitslice, "_NUMPY_IO", flag)
        results[flag] = [(p.words, p.unpack(), p.unpack(torch.float64), p.step(rule, 2).unpack())
                         for p in map(BitBoards.pack, boards)]
    for a, b in zip(results[True], results[False], strict=True):
        assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


# ---------------------------------------------------------------------- outer-totalistic rules
@pytest.mark.parametrize("hood", ["moore", "von_neumann"])
@pytest.mark.parametrize("seed", range(5))
def test_random_outer_totalistic_rules_match_bytes(hood, seed):
    rng = random.Random(seed)
    rule = random_rule(rng, hood, b0=seed % 2 == 1)
    for b, h, w in SHAPES:
        board = soup((b, h, w), p=rng.random(), seed=seed + w)
        bits = simulate(board, rule, 9, backend="bits")
        assert torch.equal(bits, simulate(board, rule, 9, backend="bytes")), (rule, b, h, w)


@pytest.mark.parametrize("rule", [*RULES, "B0/S", "B0/S8", "B0123478/S34678", "B01/S4V", "B/S"])
def test_named_and_b0_rules_match_bytes(rule):
    board = soup((3, 7, 65), p=0.45, seed=4)
    assert torch.equal(
        simulate(board, rule, 20, backend="bits"), simulate(board, rule, 20, backend="bytes")
    )
    empty = torch.zeros(2, 5, 70, dtype=torch.uint8)  # B0 strobes literally on either path
    assert torch.equal(step(empty, rule, backend="bits"), step(empty, rule, backend="bytes"))


def test_glider_crosses_word_boundaries_and_the_torus():
    board = torch.zeros(9, 67, dtype=torch.bool)  # 67 columns: two words, 3 bits in the last
    board[0, 1] = board[1, 2] = board[2, 0] = board[2, 1] = board[2, 2] = True
    hist = simulate(board, "B3/S23", 4 * 70, backend="bits")
    for k in range(1, 71):
        assert torch.equal(hist[4 * k], board.roll((k, k), (0, 1)))


# ---------------------------------------------------------------------- 512-entry tables
@pytest.mark.parametrize("seed", range(6))
def test_random_tables_match_byte_table_path(seed):
    rng = random.Random(100 + seed)
    rule = Rule.from_table(rng.getrandbits(512) | (seed % 2))  # odd: empty pattern born (B0)
    assert not rule.is_outer_totalistic
    for b, h, w in SHAPES[seed % 3 :: 2]:
        board = soup((b, h, w), p=rng.random(), seed=seed + w)
        packed = BitBoards.pack(board)
        got = [packed.unpack()] + [s.unpack() for s in packed._evolve(rule, 5)]
        assert torch.equal(torch.stack(got), bytes_history(board, rule, 5)), (b, h, w)
        assert torch.equal(packed.step(rule, 5).unpack(), got[-1])


@pytest.mark.parametrize("family", FAMILIES)
def test_random_rules_of_every_family_match_bytes(family):
    rng = random.Random(len(family))
    board = soup((2, 33, 100), seed=3)
    for _ in range(2):
        rule = random_rule_of(family, rng)
        assert torch.equal(simulate(board, rule, 5, backend="bits"), bytes_history(board, rule, 5))


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (lambda c: c[1][1], lambda x: x),  # identity: the centre
        (lambda c: c[1][0], lambda x: x.roll(1, -1)),  # x'[i, j] = x[i, j − 1]
        (lambda c: c[0][1], lambda x: x.roll(1, -2)),  # x'[i, j] = x[i − 1, j]
        (lambda c: c[2][2], lambda x: x.roll((-1, -1), (-2, -1))),  # x[i + 1, j + 1]
        (lambda c: c[0][0] ^ c[2][1], lambda x: x.roll((1, 1), (-2, -1)) ^ x.roll(-1, -2)),
        (lambda c: 0, lambda x: torch.zeros_like(x)),
        (lambda c: 1, lambda x: torch.ones_like(x)),
    ],
)
def test_tables_with_known_meaning(fn, expected):
    """Pattern bit 3r + c is the cell at offset (r − 1, c − 1), on the bit path too."""
    rule = Rule.from_table(table_of(fn))
    board = soup((2, 5, 66), seed=9)
    assert torch.equal(step(board, rule, backend="bits"), expected(board))


@pytest.mark.parametrize("rule", list(RULES))
def test_table_circuits_of_counting_rules_run_like_their_counts(rule):
    """The nine-plane table circuit and the adder path are independent: they must agree."""
    r = Rule.parse(rule)
    program = bitslice._Program("table", compile_table(r.table))
    board = soup((2, 9, 70), p=0.4, seed=5)
    src = BitBoards.pack(board).words
    dst = torch.empty_like(src)
    bitslice._step_words(src, dst, program, 70)
    assert torch.equal(BitBoards(dst, board.shape).unpack(), step(board, r, backend="bits"))


# ---------------------------------------------------------------------- circuits
def var_planes(n: int) -> list[torch.Tensor]:
    """Input ``k`` over all ``2ⁿ`` assignments, packed as int64 words (bit i = bit k of i)."""
    size = max(64, 1 << n)
    i = torch.arange(size)
    bits = ((i[None] >> torch.arange(n)[:, None]) & 1).view(n, size // 64, 64)
    return [(row.long() << torch.arange(64)).sum(-1) for row in bits]


def words_to_int(words: torch.Tensor, n: int) -> int:
    value = sum((int(w) & (2**64 - 1)) << (64 * k) for k, w in enumerate(words.tolist()))
    return value & ((1 << (1 << n)) - 1)


@pytest.mark.parametrize(("batch", "height", "width"),
                         [(64, 64, 64), (100, 7, 9), (130, 5, 1), (64, 1, 1), (200, 3, 33)])
def test_batch_layout_matches_bytes_for_every_rule_kind(batch, height, width):
    g = torch.Generator().manual_seed(batch + width)
    x = (torch.rand(batch, height, width, generator=g) < 0.4).to(torch.uint8)
    packed = BitBoards.pack(x)
    assert packed.batch_layout and packed.words.shape[0] == -(-batch // 64)
    assert torch.equal(packed.unpack(torch.uint8), x)
    table = Rule.from_table(random.Random(batch).getrandbits(512))
    for rule in ("B3/S23", "B13/S012V", "B0/S8", "B3/S2-i34q", table):
        got = packed.step(rule, 3).unpack(torch.uint8)
        assert torch.equal(got, simulate(x, rule, 3, backend="bytes")[3]), str(rule)
    assert not BitBoards.pack(x[:63]).batch_layout  # fewer boards than bits in a word


@pytest.mark.parametrize("n", [1, 2, 3, 5, 9])
def test_compiled_circuits_compute_their_tables(n):
    rng = random.Random(n)
    for trial in range(4):
        table = rng.getrandbits(1 << n)
        care = None if trial % 2 == 0 else rng.getrandbits(1 << n)
        circuit = compile_table(table, n, care)
        mask = (1 << (1 << n)) - 1 if care is None else care
        assert (circuit.truth_table() ^ table) & mask == 0
        planes = var_planes(n)
        out = circuit(planes, torch.empty_like(planes[0]))
        assert (words_to_int(out, n) ^ table) & mask == 0
        assert all(torch.equal(p, q) for p, q in zip(planes, var_planes(n), strict=True))


def test_circuits_are_small_and_shared():
    life = Rule.parse("B3/S23").table
    assert len(compile_table(life).gates) < 100  # symmetric functions have small circuits
    assert len(compile_table(random.Random(0).getrandbits(512)).gates) < 300
    assert compile_table(life) is compile_table(life)  # compiled once per table
    counts = bitslice._counts_program(frozenset({3}), frozenset({2, 3}), "moore").circuit
    assert len(counts.gates) <= 12 and counts.inputs_used <= {0, 1, 2, 3}  # T₃ is not needed


def test_constant_and_input_circuits():
    planes = var_planes(3)
    out = torch.empty_like(planes[0])
    assert compile_table(0, 3).gates == () and int(compile_table(0, 3)(planes, out)[0]) == 0
    assert int(compile_table(255, 3)(planes, out)[0]) == -1
    ident = compile_table(0b11110000, 3)  # input 2
    assert ident.gates == () and torch.equal(ident(planes, out), planes[2])


# ---------------------------------------------------------------------- the public dispatch
@pytest.mark.parametrize(
    "dtype", [torch.bool, torch.uint8, torch.int32, torch.int64, torch.float32, torch.float64]
)
@pytest.mark.parametrize("shape", [(1, 1), (1, 70), (70, 1), (4, 64, 65), (2, 1, 1)])
def test_backends_agree_and_keep_dtype_and_shape(dtype, shape):
    board = soup(shape, seed=sum(shape)).to(dtype)
    before = board.clone()
    for rule in ("B36/S23", "B2/S013V", "B0/S8"):
        bits = simulate(board, rule, 5, backend="bits")
        assert bits.dtype == dtype and bits.shape == (6, *shape)
        assert torch.equal(bits, simulate(board, rule, 5, backend="bytes"))
        one = step(board, rule, backend="bits")
        assert one.dtype == dtype and torch.equal(one, bits[1])
        assert torch.equal(step(board, rule), one)  # auto
    assert torch.equal(board, before)


def test_chunked_steps_and_io(monkeypatch):
    """Small chunk sizes force row blocks inside a board and boards grouped per block."""
    board = soup((3, 40, 200), seed=2)
    expected = simulate(board, "B3678/S34678", 6, backend="bytes")
    rule = Rule.from_table(random.Random(1).getrandbits(512))
    expected_table = bytes_history(board, rule, 3)
    for words, cells in [(8, 64), (64, 512), (700, 10_000)]:
        monkeypatch.setattr(bitslice, "CHUNK_WORDS", words)
        monkeypatch.setattr(bitslice, "_IO_CHUNK_CELLS", cells)
        assert torch.equal(simulate(board, "B3678/S34678", 6, backend="bits"), expected)
        got = BitBoards.pack(board).step(rule, 3).unpack()
        assert torch.equal(got, expected_table[-1])


def test_auto_backend_follows_the_threshold(monkeypatch):
    calls = []
    real = BitBoards._from_uint8.__func__

    def spy(cls, x, shape):
        calls.append(x.numel())
        return real(cls, x, shape)

    monkeypatch.setattr(BitBoards, "_from_uint8", classmethod(spy))
    monkeypatch.setitem(sim.BITS_MIN_CELLS, "counts", 2048)
    monkeypatch.setitem(sim.BITS_MIN_CELLS, "table", 512)
    table_rule = Rule.parse("B3/S2-i34q")
    small, big = soup((4, 8, 16), seed=1), soup((2, 32, 32), seed=1)
    step(small, "B3/S23")
    assert calls == []
    step(big, "B3/S23")
    step(small, table_rule)  # 512 cells: enough for a table rule
    assert calls == [big.numel(), small.numel()]
    step(big, "B3/S23", backend="bytes")
    step(small[0], "B3/S23", backend="bits")
    assert calls == [big.numel(), small.numel(), small[0].numel()]


@pytest.mark.parametrize("rule", ["B36/S23", "B3/S2-i34q"])
def test_make_dataset_through_the_dispatch(monkeypatch, rule):
    kwargs = dict(rule=rule, n_boards=3, size=(20, 70), steps=4, burn_in=5, seed=3)
    monkeypatch.setattr(sim, "BITS_MIN_CELLS", {"counts": 0, "table": 0})
    bits = make_dataset(**kwargs)  # every step bit-sliced
    monkeypatch.setattr(sim, "BITS_MIN_CELLS", {"counts": 1 << 60, "table": 1 << 60})
    ref = make_dataset(**kwargs)  # bytes only
    assert torch.equal(bits.x, ref.x) and torch.equal(bits.y, ref.y)
    assert torch.equal(bits.y, step(bits.x, rule, backend="bytes"))


@pytest.mark.parametrize(
    ("backend", "error", "match"),
    [("fast", ValueError, r"'auto', 'bytes', 'bits'.*'fast'"), (1, TypeError, "str.*int")],
)
def test_bad_backend_is_an_error(backend, error, match):
    board = soup((4, 4))
    with pytest.raises(error, match=match):
        step(board, "B3/S23", backend=backend)
    with pytest.raises(error, match=match):
        simulate(board, "B3/S23", 2, backend=backend)


def test_bad_arguments_are_errors():
    packed = BitBoards.pack(soup((5, 5)))
    with pytest.raises(RuleError, match=r"invalid rule 3\.5"):
        packed.step(3.5)  # type: ignore[arg-type]
    with pytest.raises(RuleError, match="invalid rule 'B9'"):
        packed.step("B9")
    with pytest.raises(ValueError, match="steps"):
        packed.step("B3/S23", -1)
    with pytest.raises(TypeError, match="steps"):
        packed.step("B3/S23", 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"out must have shape \(5, 5\)"):
        packed.unpack(out=torch.empty(5, 6))
    with pytest.raises(ValueError, match="binary"):
        BitBoards.pack(torch.full((3, 3), 2))
    with pytest.raises(ValueError, match="n_inputs"):
        compile_table(1, 0)
    with pytest.raises(ValueError, match=r"table must be an int in \[0, 2\*\*8\)"):
        compile_table(256, 3)
    with pytest.raises(ValueError, match="takes 3 input planes, got 2"):
        compile_table(0b10010110, 3)(var_planes(3)[:2], torch.empty(1, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"gate 0 must be \(op, a, b\).*'nand'"):
        Circuit(2, (("nand", 2, 3),), 4)
    with pytest.raises(ValueError, match=r"gate 1 .*0 ≤ a, b < 5"):
        Circuit(2, (("and", 2, 3), ("or", 5, 2)), 5)
    with pytest.raises(ValueError, match="output must be a signal"):
        Circuit(2, (), 4)
    assert Circuit(2, (("xor", 2, 3),), 4).truth_table() == 0b0110


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("rule", ["B3/S23", "B2/S013V", "B0/S8", "table"])
def test_cuda_bits_match_cpu(rule):
    board = soup((3, 33, 130), seed=6)
    if rule == "table":
        rule = Rule.from_table(random.Random(2).getrandbits(512))
    hist = simulate(board.cuda(), rule, 10, backend="bits")
    assert hist.device.type == "cuda"
    assert torch.equal(hist.cpu(), simulate(board, rule, 10, backend="bytes"))
