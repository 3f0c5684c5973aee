"""Compiled bit-sliced steps (gzoo.ca.bitkernel): the generated step against the eager step on
every rule kind and layout, real ``torch.compile`` kernels against the byte path, and the
policy around them — when they are built, the check that drops a wrong one, the fallback when
compiling fails, the bounded cache."""

from __future__ import annotations

import importlib
import os
import random
import shutil

import pytest
import torch

import gzoo.ca.bitkernel as bitkernel
import gzoo.ca.bitslice as bitslice
from conftest import circuit_rules, soup
from gzoo._system import advise_huge_pages
from gzoo.ca import Rule, simulate, step
from gzoo.ca.bitslice import BitBoards

# (batch, height, width): one word with a short tail (nw = 1, r < 64), exactly one word,
# several words with and without a tail, a single column, and the batch layout (≥ 64 boards)
SHAPES = [(1, 5, 7), (2, 3, 64), (3, 9, 130), (1, 4, 128), (2, 6, 1), (1, 1, 65),
          (64, 5, 7), (70, 3, 4)]


def rules() -> list[Rule]:
    return circuit_rules(7)


@pytest.fixture(autouse=True)
def fresh_kernels(monkeypatch):
    """Each test starts with no kernels, nothing asked, nothing broken (restored after)."""
    monkeypatch.setattr(bitkernel, "_spent", {})
    monkeypatch.setattr(bitkernel, "_last", {})
    monkeypatch.setattr(bitkernel, "_cache", {})
    monkeypatch.setattr(bitkernel, "_broken", None)
    monkeypatch.setattr(bitkernel, "COMPILE_AFTER", 2.0)


@pytest.fixture
def no_compiler(monkeypatch):
    """``torch.compile`` as the identity: the generated Python itself runs (fast)."""
    calls = []

    def identity(fn, **kwargs):
        calls.append(kwargs)
        return fn

    monkeypatch.setattr(torch, "compile", identity)
    return calls


# ---------------------------------------------------------------------- the generated step
@pytest.mark.parametrize("rule", rules(), ids=str)
def test_generated_step_is_the_eager_step_word_for_word(rule):
    """The source, run as plain PyTorch, computes exactly the eager step's words (halo and
    don't-care bits included): the compiled kernel's check compares whole words."""
    program = bitslice._program(rule)
    for i, (b, h, w) in enumerate(SHAPES):
        packed = BitBoards.pack(soup((b, h, w), seed=i))
        fn = bitkernel._exec(bitkernel.kernel_source(program, w, packed.batch_layout))
        src = packed.words
        for _ in range(3):
            want = torch.empty_like(src)
            bitslice._step_words(src, want, program, w, packed.batch_layout)
            got = fn(src)
            assert torch.equal(got, want), (b, h, w)
            src = got


def test_source_reads_like_the_circuit():
    program = bitslice._program(Rule.parse("B3/S23"))
    src = bitkernel.kernel_source(program, 70, False)
    assert src.startswith("def halo(y):") and "def step(s):" in src
    assert sum(line.lstrip().startswith("g") for line in src.splitlines()) == len(
        program.circuit.gates)


@pytest.mark.parametrize("rule", rules()[:6], ids=str)
def test_every_path_runs_the_kernels_when_hot(no_compiler, rule):
    """With kernels on from the first update, step/simulate/BitBoards.step and make-like batches
    all agree with the byte path, and kernels were really used."""
    bitkernel.COMPILE_AFTER = 0
    multi = 0
    for i, shape in enumerate([(2, 6, 70), (64, 4, 5), (5, 9)]):
        x = soup(shape, seed=i)
        want = simulate(x, rule, 4, backend="bytes")
        assert torch.equal(simulate(x, rule, 4, backend="bits"), want)
        assert torch.equal(step(x, rule, backend="bits"), want[1])
        packed = BitBoards.pack(x)
        assert torch.equal(packed.step(rule, 4).unpack(), want[-1])
        multi += 2 <= bitkernel.steps_per_call(bitslice._program(rule), packed.words) <= 4
        f = x.float()
        assert torch.equal(simulate(f, rule, 2, backend="bits"), want[:3].float())
    # a step kernel per shape, "once" for the 64 boards, a k-step one where 4 steps allow it
    assert len(bitkernel._cache) == 3 + 1 + multi and bitkernel._broken is None


def test_packed_runs_take_several_steps_per_call_on_small_boards(no_compiler, monkeypatch):
    rule = Rule.from_table(random.Random(9).getrandbits(512))
    gates = len(bitslice._program(rule).circuit.gates)
    monkeypatch.setattr(bitkernel, "STEPS_PER_CALL_GATES", 8 * gates)  # 8 steps of this table
    x = soup((64, 6, 7), seed=6)  # batch layout: 1 × 8 × 9 words
    packed = BitBoards.pack(x)
    want = packed.step(rule, 19, hot=False).unpack()
    assert not bitkernel._cache
    assert torch.equal(packed.step(rule, 19, hot=True).unpack(), want)
    assert sorted(k[-1] for k in bitkernel._cache) == [1, 8]  # 2 calls of 8 steps, then 3 of 1
    monkeypatch.setattr(bitkernel, "STEPS_PER_CALL_MAX_WORDS", 8 * 9 - 1)  # not small now
    bitkernel._cache.clear()
    assert torch.equal(packed.step(rule, 19, hot=True).unpack(), want)
    assert [k[-1] for k in bitkernel._cache] == [1]


def test_steps_per_call_shrink_with_the_circuit():
    words = BitBoards.pack(soup((64, 6, 7))).words
    life = bitslice._program(Rule.parse("B3/S23"))
    table = bitslice._program(Rule.from_table(random.Random(4).getrandbits(512)))
    assert bitkernel.steps_per_call(life, words) == bitkernel.STEPS_PER_CALL == 8
    assert bitkernel.steps_per_call(table, words) == 1  # ~240 gates: one step a call
    big = BitBoards.pack(soup((1, 300, 64 * 120))).words  # more than 2^15 words
    assert bitkernel.steps_per_call(life, big) == 1


@pytest.mark.parametrize("shape", [(64, 5, 7), (70, 3, 4), (130, 2, 9), (128, 4, 1)])
def test_many_small_boards_step_in_one_call(no_compiler, shape):
    """``step`` on many small boards, once hot: pack, step and unpack as one kernel."""
    bitkernel.COMPILE_AFTER = 0
    for i, rule in enumerate(rules()[::2]):
        x = soup(shape, seed=i)
        assert BitBoards.prefers_batch_layout(shape[0], shape[2])
        assert torch.equal(step(x, rule, backend="bits"), step(x, rule, backend="bytes")), rule
        assert torch.equal(step(x.float(), rule, backend="bits"), step(x, rule).float())
    assert {k[-1] for k in bitkernel._cache} == {"once"} and bitkernel._broken is None


# ---------------------------------------------------------------------- real torch.compile
HAS_CXX = any(shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if c)


@pytest.mark.skipif(not HAS_CXX, reason="torch.compile on CPU needs a C++ compiler")
@pytest.mark.parametrize(("rule", "shape"), [
    ("B3/S23", (2, 9, 70)),  # Moore counts, row layout, a short last word
    ("B2/S34V", (1, 7, 64)),  # von Neumann counts, exactly one word
    ("random-map", (64, 5, 6)),  # a random table, batch layout
])
def test_compiled_kernels_match_the_byte_path(rule, shape):
    bitkernel.COMPILE_AFTER = 0
    r = Rule.from_table(random.Random(5).getrandbits(512) | 1) if rule == "random-map" else rule
    x = soup(shape, seed=3)
    got = simulate(x, r, 6, backend="bits")
    assert bitkernel._broken is None, bitkernel._broken  # compiled, not a silent fallback
    assert len(bitkernel._cache) == 1
    assert torch.equal(got, simulate(x, r, 6, backend="bytes"))
    assert torch.equal(step(x, r, backend="bits"), got[1])
    many_small = BitBoards.prefers_batch_layout(shape[0], shape[2])
    assert len(bitkernel._cache) == 1 + many_small  # the same kernel, or the one-call "once"
    if rule == "B3/S23":  # and several steps in one compiled call
        assert torch.equal(BitBoards.pack(x).step(r, 9).unpack(), simulate(x, r, 9)[-1])
        assert sorted(k[-1] for k in bitkernel._cache) == [1, bitkernel.STEPS_PER_CALL]


# ---------------------------------------------------------------------- when kernels are built
def test_kernels_wait_for_enough_eager_time(no_compiler, monkeypatch):
    """Each eager step adds its time to its rule's account; the kernel is built when the account
    plus the steps still ahead in the call reaches COMPILE_AFTER seconds (clock: 1 s a step)."""
    ticks = iter(range(10**6))
    monkeypatch.setattr(bitslice, "_clock", lambda: next(ticks))
    bitkernel.COMPILE_AFTER = 10.0
    x = soup((64, 64), seed=1)
    for _ in range(9):
        step(x, "B3/S23", backend="bits")
    assert not bitkernel._cache  # 9 s spent: not yet
    step(x, "B3/S23", backend="bits")
    assert len(bitkernel._cache) == 1  # the tenth step fills the account
    assert bitkernel.hot("B3/S23", torch.device("cpu"))
    assert not bitkernel.hot("B2/S", torch.device("cpu"))
    hist = simulate(soup((64, 64), seed=2), "B2/S", 30, backend="bits")
    assert len(bitkernel._cache) == 2  # 1 s spent + 29 s ahead: compiled after the first step
    assert bitkernel.hot("B2/S", torch.device("cpu"))  # and later calls start compiled
    assert torch.equal(hist, simulate(soup((64, 64), seed=2), "B2/S", 30, backend="bytes"))


def test_kernels_off_and_off_device(no_compiler):
    bitkernel.COMPILE_AFTER = None
    program = bitslice._program(Rule.parse("B3/S23"))
    assert not bitkernel.spend(program, 1e9, 10, torch.device("cpu"))
    assert not bitkernel.hot(program, torch.device("cpu"))
    simulate(soup((8, 70)), "B3/S23", 3, backend="bits")
    assert not bitkernel._cache
    bitkernel.COMPILE_AFTER = 0
    assert not bitkernel.hot(program, torch.device("cuda"))  # CUDA stays eager
    assert bitkernel.hot(program, torch.device("cpu"))


def test_auto_backend_takes_bits_sooner_once_hot(no_compiler, monkeypatch):
    sim = importlib.import_module("gzoo.ca.simulate")
    x = soup((64, 64)).view(torch.uint8)
    rule = Rule.parse("B3/S23")
    monkeypatch.setattr(sim, "BITS_MIN_CELLS", {"counts": 1 << 20, "table": 1 << 20})
    monkeypatch.setattr(sim, "KERNEL_MIN_CELLS", {"counts": 1 << 12, "table": 1 << 12})
    assert not sim._use_bits("auto", x, rule)
    bitkernel.COMPILE_AFTER = 0
    assert sim._use_bits("auto", x, rule)
    assert not sim._use_bits("auto", x[:32], rule)  # below KERNEL_MIN_CELLS
    assert not sim._use_bits("bytes", x, rule)


def test_the_cache_is_bounded(no_compiler, monkeypatch):
    monkeypatch.setattr(bitkernel, "CACHE_SIZE", 2)
    bitkernel.COMPILE_AFTER = 0
    for w in (5, 6, 7):
        step(soup((3, w)), "B3/S23", backend="bits")
    assert len(bitkernel._cache) == 2
    assert [k[1][-1] for k in bitkernel._cache] == [3, 3]  # (words incl. halo: nw + 2)


# ---------------------------------------------------------------------- never lie
def test_a_kernel_that_disagrees_is_dropped_and_the_step_stays_exact(no_compiler, monkeypatch):
    real = bitkernel.kernel_source

    def wrong(program, width, batch_layout, steps=1):  # x' = x everywhere
        return real(program, width, batch_layout, steps) + "def step(s):\n    return s.clone()\n"

    monkeypatch.setattr(bitkernel, "kernel_source", wrong)
    bitkernel.COMPILE_AFTER = 0
    x = soup((3, 9, 70), seed=4)
    with pytest.warns(RuntimeWarning, match="disagreed with the eager step"):
        got = simulate(x, "B3/S23", 5, backend="bits")
    assert torch.equal(got, simulate(x, "B3/S23", 5, backend="bytes"))
    assert bitkernel._broken and not bitkernel._cache
    assert not bitkernel.hot("B3/S23", torch.device("cpu"))


def test_a_compiler_that_fails_falls_back_with_one_warning(monkeypatch):
    def broken(fn, **kwargs):
        def run(*args):
            raise RuntimeError("no C++ compiler here\nmore detail")
        return run

    monkeypatch.setattr(torch, "compile", broken)
    bitkernel.COMPILE_AFTER = 0
    x = soup((2, 5, 66), seed=2)
    with pytest.warns(RuntimeWarning, match=r"failed \(RuntimeError: no C\+\+ compiler here\)"):
        got = step(x, "B36/S23", backend="bits")
    assert torch.equal(got, step(x, "B36/S23", backend="bytes"))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning: kernels are off now
        assert torch.equal(simulate(x, "B3/S23", 3, backend="bits"),
                           simulate(x, "B3/S23", 3, backend="bytes"))


# ---------------------------------------------------------------------- huge pages
def test_huge_page_hint_keeps_contents_and_skips_small_tensors():
    small = torch.ones(1000, dtype=torch.uint8)
    assert advise_huge_pages(small) is False
    big = torch.arange(1 << 20, dtype=torch.int64)  # 8 MiB, written before the hint
    took = advise_huge_pages(big)
    assert isinstance(took, bool)
    assert torch.equal(big, torch.arange(1 << 20, dtype=torch.int64))
    assert advise_huge_pages(torch.empty(1 << 24, dtype=torch.uint8, device="meta")) is False
