"""The one progress reporter: a bar on a terminal, timed plain lines without one."""

import io

from gzoo._progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_every_interval_without_a_terminal():
    out, clock = io.StringIO(), Clock()
    with Progress("simulate", 200, stream=out, interval=5.0, clock=clock) as p:
        for step in range(1, 201):
            clock.now = 100 + step / 10  # 20 s in all: a line at 5, 10, 15 and 20 s
            p.update(step, "steps", force=True)  # force redraws a bar only
    lines = out.getvalue().splitlines()
    assert lines == ["simulate: 50/200 (25 %) steps [5 s]",
                     "simulate: 100/200 (50 %) steps [10 s]",
                     "simulate: 150/200 (75 %) steps [15 s]",
                     "simulate: 200/200 (100 %) steps [20 s]", "simulate: done [20 s]"]


def test_a_short_job_prints_nothing_without_a_terminal():
    out, clock = io.StringIO(), Clock()
    with Progress("gif", 10, stream=out, interval=5.0, clock=clock) as p:
        for i in range(10):
            clock.now += 0.4
            p.update(i + 1)
    assert out.getvalue() == ""


def test_bar_on_a_terminal():
    out, clock = Tty(), Clock()
    with Progress("attempt 1/2", 100, stream=out, clock=clock) as p:
        p.update(50, "loss 0.25")
        clock.now += 0.01
        p.update(60)  # within 0.1 s: not drawn
        p.update(70, "acc 99.50%", force=True)
    text = out.getvalue()
    assert text.startswith("\rattempt 1/2 [############............] 50/100 loss 0.25")
    assert "60/100" not in text and "70/100 acc 99.50%" in text and text.endswith("\n")


def test_disabled_is_silent():
    out = Tty()
    with Progress("x", 1, enabled=False, stream=out) as p:
        p.update(1, force=True)
    assert out.getvalue() == ""
