"""Native bit-sliced steps (gzoo.ca.bitnative): the generated C against the byte path on every
rule kind, board width, batch, dtype and chunking, for one step, many steps and every frame, and
against the eager step word for word on packed boards of both layouts; and the policy around it
— when it runs, the self-test and first-shape checks that drop a wrong library, the fallback
when no compiler builds it, the bounded cache."""

from __future__ import annotations

import platform
import random
import warnings

import pytest
import torch

import gzoo.ca.bitnative as bitnative
import gzoo.ca.bitslice as bitslice
from conftest import circuit_rules, soup
from gzoo._system import advise_huge_pages
from gzoo.ca import Rule, get_family, simulate, step
from gzoo.ca.bitslice import BitBoards

needs_cc = pytest.mark.skipif(bitnative._which(None) is None, reason="needs a C compiler")

# (batch, height, width): one word with a short tail, exactly one word (the rotating narrow
# step), several words with and without a tail, one column, one row, many small boards
SHAPES = [(1, 5, 7), (2, 3, 64), (3, 9, 130), (1, 4, 128), (2, 6, 1), (1, 1, 65),
          (3, 2, 200), (70, 3, 4), (1, 2, 63)]


def rules() -> list[Rule]:
    return circuit_rules(11)


@pytest.fixture(autouse=True)
def fresh_native(monkeypatch):
    """Each test starts with no libraries, no accounts, nothing broken (restored after)."""
    monkeypatch.setattr(bitnative, "_libs", {})
    monkeypatch.setattr(bitnative, "_checked", set())
    monkeypatch.setattr(bitnative, "_broken", None)
    monkeypatch.setattr(bitnative, "NATIVE_AFTER", 0)
    monkeypatch.setattr(bitnative, "_spent", {})
    monkeypatch.setattr(bitnative, "_last", {})


# ---------------------------------------------------------------------- exactness
@needs_cc
@pytest.mark.parametrize("rule", rules(), ids=str)
def test_native_step_and_history_are_the_byte_path(rule):
    """One step through ``step`` and five through ``simulate`` (every frame written natively)
    equal the byte path on every shape, including B0 rules and constant circuits."""
    for i, shape in enumerate(SHAPES):
        x = soup(shape, seed=i)
        assert torch.equal(step(x, rule, backend="bits"), step(x, rule, backend="bytes")), shape
        got = simulate(x, rule, 5, backend="bits")
        assert torch.equal(got, simulate(x, rule, 5, backend="bytes")), shape
    program = bitslice._program(rule)
    assert program in bitnative._libs and bitnative._broken is None
    assert all((program, *(s if len(s) == 3 else (1, *s))) in bitnative._checked
               for s in SHAPES)


@needs_cc
@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.int64, torch.float32])
def test_native_keeps_dtype_shape_and_layout(dtype):
    """2-D and 3-D boards of every accepted dtype, non-contiguous ones too, come back in
    their own dtype and shape with the byte path's values."""
    rule = Rule.parse("B36/S23")
    for x in (soup((40, 70)), soup((3, 66, 17)).transpose(1, 2), soup((5, 8, 9))[:, ::2]):
        x = x.to(dtype)
        got = step(x, rule, backend="bits")
        assert got.dtype == dtype and got.shape == x.shape
        assert torch.equal(got, step(x, rule, backend="bytes"))
        hist = simulate(x, rule, 3, backend="bits")
        assert hist.dtype == dtype and torch.equal(hist, simulate(x, rule, 3, backend="bytes"))


@needs_cc
def test_chunks_of_boards_change_nothing(monkeypatch):
    """Boards stepped a few at a time (small chunks) give what one chunk gives."""
    rule = Rule.from_table(random.Random(3).getrandbits(512))
    x = soup((9, 12, 70), seed=4)
    want = simulate(x, rule, 4, backend="bytes")
    for words in (1, 100, 1 << 16):
        monkeypatch.setattr(bitnative, "CHUNK_WORDS", words)
        monkeypatch.setattr(bitnative, "_checked", set())
        assert torch.equal(simulate(x, rule, 4, backend="bits"), want)


@needs_cc
def test_many_steps_in_one_call_and_every_frame():
    """``run`` with ``steps`` returns the last state; with ``frames`` it writes every state."""
    rule = Rule.parse("B2/S")  # Seeds: every state differs
    x = soup((2, 10, 90), seed=5).to(torch.uint8)
    states = [x]
    for _ in range(6):
        states.append(step(states[-1], rule, backend="bytes"))
    assert torch.equal(bitnative.run(rule, x, 6), states[-1])
    frames = torch.zeros((6, 2, 10, 90), dtype=torch.uint8)
    assert bitnative.run(rule, x, 6, frames) is frames
    assert torch.equal(frames, torch.stack(states[1:]))


# ---------------------------------------------------------------------- when it runs
@needs_cc
def test_native_runs_once_the_rule_has_spent_its_time(monkeypatch):
    """Below ``NATIVE_AFTER`` seconds of stepping a rule, nothing is built; once the account
    (eager bit-sliced steps, or byte steps) is full, ``step`` runs natively."""
    monkeypatch.setattr(bitnative, "NATIVE_AFTER", 0.5)
    rule = Rule.parse("B36/S23")
    x = soup((8, 30))
    step(x, rule, backend="bits")
    step(x, rule, backend="bytes")
    assert not bitnative._libs and not bitnative.hot(rule, torch.device("cpu"))
    bitnative.charge(rule, 0.5, torch.device("cpu"))
    assert bitnative.hot(rule, torch.device("cpu"))
    assert torch.equal(step(x, rule, backend="bits"), step(x, rule, backend="bytes"))
    assert bitslice._program(rule) in bitnative._libs


@needs_cc
def test_a_long_simulate_goes_native_after_its_first_step(monkeypatch):
    """``simulate`` foresees its own cost: once the first eager step, times the steps still
    ahead, would fill the account, the rest of the history is written natively."""
    monkeypatch.setattr(bitnative, "NATIVE_AFTER", 0.5)
    monkeypatch.setattr(bitslice, "_clock", iter(range(0, 1000)).__next__)  # 1 s a step
    rule = Rule.parse("B3/S23")
    x = soup((3, 20, 20))
    got = simulate(x, rule, 6, backend="bits")
    assert bitslice._program(rule) in bitnative._libs
    assert bitnative.spent(bitslice._program(rule)) == 1  # one eager step, then native
    assert torch.equal(got, simulate(x, rule, 6, backend="bytes"))


@needs_cc
def test_auto_runs_bits_whenever_the_rule_runs_natively():
    """Native steps beat the byte path at every size measured, so ``auto`` takes them even on a
    board far below the eager crossover (and the result is still the byte path's)."""
    from gzoo.ca.simulate import BITS_MIN_CELLS, _use_bits

    rule = Rule.parse("B3/S23")
    x = soup((16, 16))
    assert x.numel() < min(BITS_MIN_CELLS.values())
    assert _use_bits("auto", x.view(torch.uint8), rule)
    assert torch.equal(step(x, rule), step(x, rule, backend="bytes"))
    assert bitslice._program(rule) in bitnative._libs


def test_native_is_off_on_cuda_and_when_switched_off(monkeypatch):
    assert not bitnative.available(torch.device("cuda"))
    monkeypatch.setattr(bitnative, "NATIVE_AFTER", None)
    assert not bitnative.available(torch.device("cpu"))
    assert bitnative.run("B3/S23", soup((1, 4, 4)).to(torch.uint8)) is None


# ---------------------------------------------------------------------- trust
def test_without_a_compiler_steps_run_as_before_silently(monkeypatch):
    """No compiler is an ordinary machine, not an error: no warning, nothing built, exact."""
    monkeypatch.setenv("CC", "gzoo-no-such-compiler")
    rule = Rule.parse("B3/S23")
    x = soup((2, 9, 70))
    assert not bitnative.available(torch.device("cpu"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(step(x, rule, backend="bits"), step(x, rule, backend="bytes"))
        assert torch.equal(simulate(x, rule, 3, backend="bits"),
                           simulate(x, rule, 3, backend="bytes"))
    assert not bitnative._libs and bitnative._broken is None


@needs_cc
def test_a_failing_build_warns_once_and_steps_stay_exact(monkeypatch):
    """A compiler that fails (here ``$CC`` is ``false``) turns native steps off with one
    warning; every later step runs as before."""
    monkeypatch.setenv("CC", "false")
    rule = Rule.parse("B3/S23")
    x = soup((2, 9, 70))
    with pytest.warns(RuntimeWarning, match="building a native bit-sliced step failed"):
        got = step(x, rule, backend="bits")
    assert torch.equal(got, step(x, rule, backend="bytes"))
    assert bitnative._broken is not None and not bitnative.available(torch.device("cpu"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: no second warning
        assert torch.equal(simulate(x, rule, 3, backend="bits"),
                           simulate(x, rule, 3, backend="bytes"))


@needs_cc
def test_cc_may_name_a_command_with_arguments(monkeypatch):
    """``$CC`` is split like a shell word list (``ccache gcc``-style): here the compiler found
    first, with an extra flag."""
    cc = bitnative._which(None)
    assert cc is not None
    monkeypatch.setenv("CC", f"{cc[0]} -O2")
    assert bitnative._compiler() == [cc[0], "-O2"]
    rule = Rule.parse("B36/S23")
    x = soup((2, 9, 70))
    assert torch.equal(step(x, rule, backend="bits"), step(x, rule, backend="bytes"))
    assert bitslice._program(rule) in bitnative._libs


@needs_cc
def test_a_wrong_library_fails_its_self_test(monkeypatch):
    """A library whose cell function is wrong (here: negated) is never used."""
    source = bitnative.c_source

    def wrong(program):
        return source(program).replace("    return g", "    return ~g", 1)

    monkeypatch.setattr(bitnative, "c_source", wrong)
    rule = Rule.parse("B3/S23")
    x = soup((2, 9, 70))
    with pytest.warns(RuntimeWarning, match="self-test"):
        got = step(x, rule, backend="bits")
    assert torch.equal(got, step(x, rule, backend="bytes"))
    assert not bitnative._libs


@needs_cc
def test_a_shape_that_disagrees_is_caught_on_its_first_step(monkeypatch):
    """The first step on each new shape is compared with the eager step: a library that passed
    its self-test but is wrong on this shape (simulated) is dropped before any result is used."""
    rule = Rule.parse("B3/S23")
    x = soup((1, 16, 300)).to(torch.uint8)
    bitnative.run(rule, soup((1, 4, 4)).to(torch.uint8))  # built and self-tested
    call = bitnative._call

    def wrong_on_300(fn, boards, *args):
        out = call(fn, boards, *args)
        return out ^ 1 if boards.shape[-1] == 300 else out

    monkeypatch.setattr(bitnative, "_call", wrong_on_300)
    with pytest.warns(RuntimeWarning, match="disagreed"):
        assert bitnative.run(rule, x) is None
    assert torch.equal(step(x, rule, backend="bits"), step(x, rule, backend="bytes"))


@needs_cc
def test_c_source_reads_like_the_circuit():
    """One C line per gate of the rule's circuit, in order, ending in its output."""
    rule = Rule.parse("B3/S2-i34q")
    circuit = bitslice._program(rule).circuit
    src = bitnative.c_source(bitslice._program(rule))
    gates = [line for line in src.splitlines() if line.startswith("    u64 g")]
    assert len(gates) == len(circuit.gates)
    assert f"return g{len(circuit.gates) - 1};" in src or circuit.output < 2 + 9


def test_run_checks_its_boards_and_frames():
    """``run`` is public: boards that are not uint8/bool ``[B, H, W]`` and frames of the wrong
    dtype, shape or layout are typed errors naming what was given, never written past."""
    x = soup((2, 5, 6)).to(torch.uint8)
    with pytest.raises(TypeError, match="float32"):
        bitnative.run("B3/S23", x.float())
    with pytest.raises(TypeError, match=r"\(5, 6\)"):
        bitnative.run("B3/S23", x[0])
    with pytest.raises(ValueError, match=r"\(3, 2, 5, 6\)"):
        bitnative.run("B3/S23", x, 3, torch.empty((2, 2, 5, 6), dtype=torch.uint8))
    with pytest.raises(ValueError, match="contiguous"):
        bitnative.run("B3/S23", x, 3, torch.empty((3, 2, 6, 5), dtype=torch.uint8).transpose(2, 3))
    with pytest.raises(ValueError, match="uint8"):
        bitnative.run("B3/S23", x, 3, torch.empty((3, 2, 5, 6), dtype=torch.bool))


@needs_cc
@pytest.mark.parametrize("seed", range(4))
def test_random_rules_of_every_family_on_random_boards(seed):
    """Property test: a random rule of each family (random B/S or von Neumann counts, with B0 on
    odd seeds; random isotropic, rotational and MAP tables) on random boards — any width from 1
    to 200, any height, batches, any density — steps natively as the byte path does."""
    rng = random.Random(1000 + seed)
    top, hood = rng.choice([(8, "moore"), (4, "von_neumann")])
    birth = {n for n in range(top + 1) if rng.random() < 0.4} | ({0} if seed % 2 else set())
    survival = {n for n in range(top + 1) if rng.random() < 0.4}
    tables = [get_family(f).table([rng.randint(0, 1) for _ in range(get_family(f).n_classes)])
              for f in ("isotropic", "rotational", "map")]
    for rule in (Rule(birth, survival, hood), *(Rule.from_table(t) for t in tables)):
        for _ in range(3):
            shape = (rng.randint(1, 5), rng.randint(1, 20), rng.randint(1, 200))
            x = soup(shape, p=rng.random(), seed=rng.randrange(1 << 30))
            got = simulate(x, rule, 4, backend="bits")
            assert torch.equal(got, simulate(x, rule, 4, backend="bytes")), (str(rule), shape)
    assert bitnative._broken is None and len(bitnative._libs) == 4


@needs_cc
@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 flags")
@pytest.mark.parametrize("arch", ["-march=x86-64-v4", "-march=x86-64-v3", "-march=x86-64"])
def test_every_packing_path_is_exact(monkeypatch, arch):
    """The AVX-512, AVX2 and portable packing (chosen by the target the library is built for)
    each give the byte path's steps — run where this CPU has the instructions, so a machine
    without AVX-512 is not the first to run that code."""
    flags = {"-march=x86-64-v4": "avx512bw", "-march=x86-64-v3": "avx2"}
    need = flags.get(arch)
    if need is not None and need not in open("/proc/cpuinfo").read():
        pytest.skip(f"this CPU has no {need}")
    monkeypatch.setattr(bitnative, "_ARCH_FLAGS", ([arch],))
    rule = Rule.from_table(random.Random(5).getrandbits(512))
    for i, shape in enumerate([(2, 9, 200), (3, 7, 64), (70, 3, 33)]):
        x = soup(shape, seed=i)
        want = simulate(x, rule, 3, backend="bytes")
        assert torch.equal(simulate(x, rule, 3, backend="bits"), want), shape
    assert bitnative._broken is None and bitslice._program(rule) in bitnative._libs


# ---------------------------------------------------------------------- packed boards
# (batch, height, width): one word with a short tail (nw = 1, r < 64), exactly one word,
# several words with and without a tail, a single column, and the batch layout (≥ 64 boards)
PACKED = [(1, 5, 7), (2, 3, 64), (3, 9, 130), (1, 4, 128), (2, 6, 1), (1, 1, 65),
          (64, 5, 7), (70, 3, 4)]


@needs_cc
@pytest.mark.parametrize("rule", rules(), ids=str)
def test_packed_steps_are_the_eager_steps_word_for_word(rule):
    """``step_words`` on ``BitBoards`` words (row and batch layout) equals the eager step word
    for word — halo and don't-care bits included — for one and several steps."""
    program = bitslice._program(rule)
    for i, shape in enumerate(PACKED):
        packed = BitBoards.pack(soup(shape, seed=i))
        assert packed.batch_layout == (shape[0] >= 64)
        for steps in (1, 4):
            got = bitnative.step_words(rule, packed.words, packed.width, packed.batch_layout,
                                       steps)
            want = bitnative._eager_words(program, packed.words, packed.width,
                                          packed.batch_layout, steps)
            assert torch.equal(got, want), (shape, steps)


@needs_cc
@pytest.mark.parametrize("rule", rules()[:6], ids=str)
def test_every_path_runs_natively_when_hot(rule, monkeypatch):
    """Hot from the first update, ``step``, ``simulate`` (every dtype) and ``BitBoards.step``
    agree with the byte path, and each ran in C (one call per ``BitBoards.step``)."""
    calls = []
    words = bitnative._call_words
    monkeypatch.setattr(bitnative, "_call_words", lambda *a: calls.append(a[-1]) or words(*a))
    for i, shape in enumerate([(2, 6, 70), (64, 4, 5), (5, 9)]):
        x = soup(shape, seed=i)
        want = simulate(x, rule, 4, backend="bytes")
        assert torch.equal(simulate(x, rule, 4, backend="bits"), want)
        assert torch.equal(step(x, rule, backend="bits"), want[1])
        calls.clear()
        assert torch.equal(BitBoards.pack(x).step(rule, 4).unpack(), want[-1])
        assert 4 in calls  # all four steps in one call (after a one-step check on a new shape)
        assert torch.equal(simulate(x.float(), rule, 2, backend="bits"), want[:3].float())
    assert bitnative._broken is None


@needs_cc
def test_evolve_goes_native_mid_call(monkeypatch):
    """Tiered: once the first eager step, times the steps ahead, would fill the account, the
    remaining states are stepped natively — the same states."""
    monkeypatch.setattr(bitnative, "NATIVE_AFTER", 0.5)
    monkeypatch.setattr(bitslice, "_clock", iter(range(0, 1000)).__next__)  # 1 s a step
    rule = Rule.parse("B36/S23")
    x = soup((2, 12, 80), seed=3)
    states = [s.unpack() for s in BitBoards.pack(x)._evolve(rule, 6)]
    assert bitnative.spent(bitslice._program(rule)) == 1 and bitnative._libs  # one eager step
    assert torch.equal(torch.stack(states), simulate(x, rule, 6, backend="bytes")[1:])


@needs_cc
def test_a_packed_step_that_disagrees_is_dropped(monkeypatch):
    rule = Rule.parse("B3/S23")
    packed = BitBoards.pack(soup((2, 16, 300), seed=8))
    bitnative.run(rule, soup((1, 4, 4)).to(torch.uint8))  # built and self-tested
    words = bitnative._call_words
    monkeypatch.setattr(bitnative, "_call_words", lambda *a: words(*a) ^ 1)
    with pytest.warns(RuntimeWarning, match="disagreed"):
        got = packed.step(rule, 3)
    assert torch.equal(got.unpack(), packed.step(rule, 3, hot=False).unpack())
    assert bitnative._broken is not None


@needs_cc
def test_the_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(bitnative, "CACHE_SIZE", 2)
    for rule in ("B3/S23", "B36/S23", "B2/S"):
        step(soup((3, 9)), rule, backend="bits")
    assert [str(p.inputs) for p in bitnative._libs] == ["moore", "moore"]
    assert bitslice._program("B2/S") in bitnative._libs
    assert bitslice._program("B3/S23") not in bitnative._libs  # the oldest went first


def test_huge_page_hint_keeps_contents_and_skips_small_tensors():
    small = torch.ones(1000, dtype=torch.uint8)
    assert advise_huge_pages(small) is False
    big = torch.arange(1 << 20, dtype=torch.int64)  # 8 MiB, written before the hint
    took = advise_huge_pages(big)
    assert isinstance(took, bool)
    assert torch.equal(big, torch.arange(1 << 20, dtype=torch.int64))
    assert advise_huge_pages(torch.empty(1 << 24, dtype=torch.uint8, device="meta")) is False


def test_step_words_checks_the_words_it_is_given():
    """Packed words that do not fit the width and layout (a hand-made ``BitBoards``) are a
    ``ValueError``, never read past their end by the C code."""
    packed = BitBoards.pack(soup((2, 5, 70)))
    with pytest.raises(ValueError, match=r"int64 \[B, H \+ 2, 4\]"):
        bitnative.step_words("B3/S23", packed.words[..., :3], 70, False)
    with pytest.raises(ValueError, match="int32"):
        bitnative.step_words("B3/S23", packed.words.int(), 70, False)
    with pytest.raises(ValueError, match="batch layout"):
        bitnative.step_words("B3/S23", packed.words, 70, True)
    with pytest.raises(ValueError, match=r"\(2, 7, 3\)"):
        BitBoards(packed.words[..., :3], (2, 5, 70)).step("B3/S23", hot=True)
