"""Golly's RLE pattern format: read and write boards with their rule.

An RLE file is optional ``#`` comment lines (``#N`` name, ``#C`` comment, ``#O`` author, ...), a
header ``x = <width>, y = <height>[, rule = <rule>]``, then the cells row by row: ``b`` (or
``.``) a dead cell, ``o`` (or ``A``) a live one, ``$`` the end of a row, each optionally preceded
by a run count (``3o`` = three live cells, ``2$`` = end this row and skip one empty row), and
``!`` the end of the pattern. Dead cells at the end of a row and empty rows at the end may be
left out. Whitespace and line breaks between items are ignored; text after ``!`` is ignored.
Lines written by :func:`write_rle` are at most 70 characters, as Golly writes them.

Reading is strict: a header that is missing or malformed, a pattern that does not fit the
declared size, an unknown cell letter (multi-state patterns are not supported), a run count of
0 or a missing ``!`` raise :class:`RLEError` (a ``ValueError``) with the line and column.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from .rule import Rule, RuleError
from .simulate import as_uint8_boards

__all__ = ["PATTERNS", "RLEError", "load_pattern", "place_on_torus", "read_rle", "write_rle"]

_HEADER = re.compile(
    r"\s*x\s*=\s*(?P<x>\d+)\s*,\s*y\s*=\s*(?P<y>\d+)\s*(?:,\s*rule\s*=\s*(?P<rule>\S+))?\s*")
_DEAD, _ALIVE = "b.", "oA"
_MAX_CELLS = 1 << 28  # a 16384² board: refuse headers that would allocate far beyond that
_LINE = 70


class RLEError(ValueError):
    """Malformed RLE text; ``line`` and ``column`` are 1-based (``0`` when not known)."""

    def __init__(self, message: str, line: int = 0, column: int = 0, source: str = "") -> None:
        where = f"line {line}, column {column}: " if line else ""
        super().__init__(f"{source + ': ' if source else ''}{where}{message}")
        self.line = line
        self.column = column


def read_rle(text_or_path: str | os.PathLike[str]) -> tuple[torch.Tensor, Rule | None]:
    """Parse RLE text (or the file at a path) into a ``uint8 [y, x]`` board and its rule.

    A string holding a newline or starting with ``#``/``x`` is read as RLE text, anything
    else as a path; the rule is ``None`` when the header has none.
    """
    source = ""
    if isinstance(text_or_path, os.PathLike) or (
            isinstance(text_or_path, str) and "\n" not in text_or_path
            and not text_or_path.lstrip().startswith(("#", "x"))):
        path = Path(text_or_path)
        if not path.is_file():
            raise FileNotFoundError(f"no RLE file at {os.fspath(path)!r}")
        source = os.fspath(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise RLEError(f"not a text file ({e.reason})", source=source) from None
    elif isinstance(text_or_path, str):
        text = text_or_path
    else:
        raise TypeError(f"read_rle needs RLE text or a path, got {type(text_or_path).__name__}")

    lines = text.splitlines()
    k = 0
    while k < len(lines) and (lines[k].startswith("#") or not lines[k].strip()):
        k += 1
    if k == len(lines):
        raise RLEError("no header line 'x = <width>, y = <height>[, rule = <rule>]'",
                       source=source)
    m = _HEADER.fullmatch(lines[k])
    if m is None:
        raise RLEError(f"bad header {lines[k]!r}: expected 'x = <width>, y = <height>"
                       "[, rule = <rule>]'", k + 1, 1, source)
    width, height = int(m.group("x")), int(m.group("y"))
    if width < 1 or height < 1 or width * height > _MAX_CELLS:
        raise RLEError(f"pattern size {width}×{height} must be at least 1×1 and at most "
                       f"{_MAX_CELLS} cells", k + 1, 1, source)
    rule = None
    if m.group("rule") is not None:
        try:
            rule = Rule.parse(m.group("rule"))
        except RuleError as e:
            raise RLEError(str(e), k + 1, m.start("rule") + 1, source) from None

    board = torch.zeros(height, width, dtype=torch.uint8)
    row = col = 0
    count = ""
    done = False
    for li in range(k + 1, len(lines)):
        line = lines[li]
        if line.startswith("#") and not count:
            continue
        for ci, ch in enumerate(line):
            where = (li + 1, ci + 1, source)
            if ch.isspace():
                continue
            if ch.isdigit():
                count += ch
                continue
            n = int(count) if count else 1
            if count and n == 0:
                raise RLEError("a run count must be at least 1", *where)
            count = ""
            if ch in _DEAD or ch in _ALIVE:
                if row >= height:
                    raise RLEError(f"the pattern has more than its declared {height} rows",
                                   *where)
                if col + n > width:
                    raise RLEError(f"the pattern does not fit its declared size {width}×"
                                   f"{height} (row {row + 1} reaches column {col + n})", *where)
                if ch in _ALIVE:
                    board[row, col:col + n] = 1
                col += n
            elif ch == "$":
                row, col = row + n, 0
            elif ch == "!":
                done = True
                break
            else:
                raise RLEError(f"unexpected {ch!r}: cells are 'b'/'.' (dead) and 'o'/'A' "
                               "(alive), rows end with '$', the pattern with '!' (multi-state "
                               "patterns are not supported)", *where)
        if done:
            break
    if not done:
        raise RLEError("the pattern does not end with '!'", len(lines), 0, source)
    return board, rule


def _runs(row: list[int]) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for v in row:
        tag = "o" if v else "b"
        if out and out[-1][1] == tag:
            out[-1] = (out[-1][0] + 1, tag)
        else:
            out.append((1, tag))
    if out and out[-1][1] == "b":
        out.pop()  # trailing dead cells are implied
    return out


def write_rle(board: torch.Tensor, rule: Rule | str | None = None, *,
              comments: tuple[str, ...] = ()) -> str:
    """RLE text of a ``[H, W]`` board (0/1), with an optional rule and ``#C`` comment lines."""
    x = as_uint8_boards(board, "board")
    if x.dim() != 2:
        raise ValueError(f"write_rle needs one board [H, W], got shape {tuple(x.shape)}")
    height, width = x.shape
    header = f"x = {width}, y = {height}"
    if rule is not None:
        header += f", rule = {Rule.parse(rule)}"
    items: list[str] = []
    at = 0  # the row the next item starts in
    for r, cells in enumerate(x.cpu().tolist()):
        runs = _runs(cells)
        if not runs:
            continue  # empty rows are skipped by the next "n$" (or implied at the end)
        if r > at:
            items.append(f"{r - at if r - at > 1 else ''}$")
        items += [f"{n if n > 1 else ''}{tag}" for n, tag in runs]
        at = r
    items.append("!")
    body: list[str] = []
    line = ""
    for item in items:
        if len(line) + len(item) > _LINE:
            body.append(line)
            line = ""
        line += item
    body.append(line)
    for c in comments:
        if "\n" in c or "\r" in c:
            raise ValueError(f"an RLE comment must be one line, got {c!r}")
    return "\n".join([*(f"#C {c}" for c in comments), header, *body]) + "\n"


def place_on_torus(pattern: torch.Tensor, size: int | tuple[int, int] | None = None
                   ) -> torch.Tensor:
    """A ``uint8`` torus board with ``pattern`` (``[h, w]``) at its centre.

    ``size`` is the board side or ``(H, W)``; by default the board is fitted to the pattern with
    room around it: ``(2h + 16, 2w + 16)``. A board smaller than the pattern is a ``ValueError``.
    """
    from gzoo._checks import check_int

    x = as_uint8_boards(pattern, "pattern")
    if x.dim() != 2:
        raise ValueError(f"pattern must be one board [h, w], got shape {tuple(x.shape)}")
    h, w = x.shape
    if size is None:
        height, width = 2 * h + 16, 2 * w + 16
    elif isinstance(size, tuple):
        if len(size) != 2:
            raise ValueError(f"size must be an int or (H, W), got {size!r}")
        height, width = check_int("size[0]", size[0]), check_int("size[1]", size[1])
    else:
        height = width = check_int("size", size)
    if height < h or width < w:
        raise ValueError(f"a {height}×{width} board cannot hold the {h}×{w} pattern")
    board = torch.zeros(height, width, dtype=torch.uint8)
    top, left = (height - h) // 2, (width - w) // 2
    board[top:top + h, left:left + w] = x
    return board


_PATTERN_DIR = Path(__file__).resolve().parent / "patterns"


def _shipped() -> list[str]:
    return sorted(p.stem for p in _PATTERN_DIR.glob("*.rle"))


def load_pattern(name: str) -> tuple[torch.Tensor, Rule | None]:
    """A pattern shipped with gzoo by name (see :data:`PATTERNS`): ``(board, rule)``."""
    if name not in _shipped():
        raise ValueError(f"unknown pattern {name!r}; shipped: {', '.join(_shipped())}")
    return read_rle(_PATTERN_DIR / f"{name}.rle")


#: names of the patterns shipped with gzoo (glider, gosper_gun, replicator)
PATTERNS: tuple[str, ...] = tuple(_shipped())
