"""The commands README.md and docs/*.md advertise, as the product tests run them.

A command is a line of a fenced code block (``\\`` continuations joined, a ``$ `` prompt and a
trailing ``# comment`` dropped, ``;``/``&`` separated parts split) or an inline code span with
arguments, whose program is one of stnlab's: ``stnlab-*`` (also ``.venv/bin/stnlab-*``),
``python -m stnlab...`` or ``make <target>``, after any ``NAME=value`` environment prefix.
``tests/test_product.py`` runs each one or names it in its skip table with the reason.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
ENV = re.compile(r"^[A-Z_][A-Z0-9_]*=\S*$")
PROGRAM = re.compile(r"^(?:\.venv/bin/)?(stnlab-[a-z]+)$")


@dataclass(frozen=True)
class DocCommand:
    """One advertised command: where it is and its text as the docs print it."""

    path: str  # relative to the repository root
    line: int
    text: str

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def _strip_comment(line: str) -> str:
    """The line without a trailing ``# comment`` (a ``#`` after whitespace, outside quotes)."""
    quote = None
    for i, ch in enumerate(line):
        if ch in "\"'" and quote in (None, ch):
            quote = None if quote else ch
        elif ch == "#" and quote is None and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def _parts(line: str) -> list[str]:
    """A shell line split at ``;`` and ``&`` (not ``&&`` inside a command we would run)."""
    return [p.strip() for p in re.split(r"\s*(?:;|&(?!&))\s*", line) if p.strip()]


def is_ours(text: str) -> bool:
    """Whether the command's program (after ``NAME=value`` prefixes) is one of stnlab's."""
    try:
        words = shlex.split(text)
    except ValueError:
        return False
    while words and ENV.match(words[0]):
        words = words[1:]
    if not words:
        return False
    if PROGRAM.match(words[0]) or words[0] == "make":
        return True
    return words[0] in ("python", "python3") and words[1:2] == ["-m"] and \
        words[2:3] != [] and words[2].startswith("stnlab")


def _block_commands(rel: str, lines: list[str]) -> list[DocCommand]:
    out, inside, pending, start = [], False, "", 0
    for number, raw in enumerate(lines, 1):
        if raw.strip().startswith("```"):
            inside, pending = not inside, ""
            continue
        if not inside:
            continue
        line = _strip_comment(raw.strip().removeprefix("$ "))
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        full, pending = (pending + line).strip(), ""
        out += [DocCommand(rel, start, part) for part in _parts(full) if is_ours(part)]
    return out


def _inline_commands(rel: str, lines: list[str]) -> list[DocCommand]:
    """Inline code spans outside code blocks that hold a command with at least one argument (a
    bare program name is a name, not an example)."""
    out, inside = [], False
    for number, line in enumerate(lines, 1):
        if line.strip().startswith("```"):
            inside = not inside
            continue
        if inside:
            continue
        for span in (s.strip() for s in re.findall(r"`([^`]+)`", line)):
            if is_ours(span) and len(argv(span)) > (3 if argv(span)[0].startswith("python")
                                                    else 1):
                out.append(DocCommand(rel, number, span))
    return out


def extract(paths: list[Path] = DOCS) -> list[DocCommand]:
    """Every advertised command of ``paths``, in reading order (code blocks, then inline)."""
    out = []
    for path in paths:
        rel, lines = str(path.relative_to(ROOT)), path.read_text().splitlines()
        out += _block_commands(rel, lines) + _inline_commands(rel, lines)
    return out


def argv(text: str) -> list[str]:
    """The command as the argument list of a console script: ``make train ARGS="X"`` is
    ``stnlab-train X``, ``make eval ARGS=...`` is ``stnlab-eval ...``, ``.venv/bin/`` dropped,
    ``NAME=value`` prefixes dropped (the test sets the environment itself)."""
    words = shlex.split(text)
    while words and ENV.match(words[0]):
        words = words[1:]
    if words[0] == "make" and len(words) >= 2 and words[1] in ("train", "eval"):
        extra = [w.removeprefix("ARGS=") for w in words[2:] if w.startswith("ARGS=")]
        return [f"stnlab-{words[1]}", *(shlex.split(extra[0]) if extra else [])]
    found = PROGRAM.match(words[0])
    return [found.group(1), *words[1:]] if found else words
