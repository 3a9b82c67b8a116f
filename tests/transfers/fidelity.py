"""The fidelity matrix (``docs/fidelity-matrix.yaml``): loading it, checking it, showing it.

The matrix is data: for each operator × format × source type, whether a value arrives
``exact``, ``converted`` (and how) or is ``refused``. ``tests/transfers/test_fidelity.py``
measures every cell against the real servers and compares; this module holds what that test
and the README guard share.
"""

from __future__ import annotations

import datetime
import decimal
import math
import uuid
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
MATRIX = ROOT / "docs" / "fidelity-matrix.yaml"
README = ROOT / "README.md"
LEVELS = ("exact", "converted", "refused")
START, END = "<!-- fidelity-matrix:start -->", "<!-- fidelity-matrix:end -->"


def load() -> dict[str, Any]:
    return yaml.safe_load(MATRIX.read_text())


def cells(matrix: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, str]]:
    """``(operator, format, source type)`` → ``{"level": …, "how": …}``, for every cell."""
    found = {}
    for source in matrix["sources"].values():
        for operator, formats in source["cells"].items():
            for file_format, by_type in formats.items():
                for type_name, cell in by_type.items():
                    cell = {"level": cell} if isinstance(cell, str) else cell
                    found[(operator, file_format, type_name)] = cell
    return found


def same(a: Any, b: Any) -> bool:
    """Equal values of the same kind: 1 is not True, "1" is not 1, NaN is NaN, 1.5 may be Decimal('1.5')."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    numbers = (int, float, decimal.Decimal)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        if isinstance(a, float | decimal.Decimal) and isinstance(b, float | decimal.Decimal):
            a_nan = a.is_nan() if isinstance(a, decimal.Decimal) else math.isnan(a)
            b_nan = b.is_nan() if isinstance(b, decimal.Decimal) else math.isnan(b)
            if a_nan or b_nan:
                return a_nan and b_nan
        if isinstance(a, float) != isinstance(b, float) and isinstance(a, float | decimal.Decimal) and isinstance(
                b, float | decimal.Decimal):
            # A decimal read from text equals a float if it is that float's shortest form (JSON's
            # "0.1" is the double 0.1), or that float exactly.
            f, d = (a, b) if isinstance(a, float) else (b, a)
            return d == decimal.Decimal(repr(f)) or d == decimal.Decimal(f)
        return a == b
    kinds = (str, bytes, bool, datetime.datetime, datetime.date, datetime.time, datetime.timedelta, uuid.UUID,
             type(None))
    for kind in kinds:
        if isinstance(a, kind) or isinstance(b, kind):
            if not (isinstance(a, kind) and isinstance(b, kind)):
                return False
            if kind is datetime.datetime and (a.tzinfo is None) != (b.tzinfo is None):
                return False
            return a == b
    return type(a) is type(b) and a == b


def render(matrix: dict[str, Any]) -> str:
    """The matrix as Markdown tables, one per source, for the README."""
    marks = {"exact": "exact", "converted": "conv.", "refused": "**refused**"}
    out: list[str] = []
    for source in matrix["sources"].values():
        columns = [(op, fmt) for op, formats in source["cells"].items() for fmt in formats]
        out.append(f"**{source['title']}**\n")
        out.append("| type | " + " | ".join(f"{op} {fmt}" for op, fmt in columns) + " |")
        out.append("| --- |" + " --- |" * len(columns))
        notes: dict[str, int] = {}
        for type_name in source["samples"]:
            row = []
            for op, fmt in columns:
                cell = source["cells"][op][fmt][type_name]
                cell = {"level": cell} if isinstance(cell, str) else cell
                mark = marks[cell["level"]]
                if how := cell.get("how"):
                    mark += f" [{notes.setdefault(how, len(notes) + 1)}]"
                row.append(mark)
            out.append(f"| `{type_name}` | " + " | ".join(row) + " |")
        out.append("")
        out.extend(f"{number}. {note}" for note, number in notes.items())
        out.append("")
    return "\n".join(out).strip() + "\n"


def readme_section() -> str:
    text = README.read_text()
    return text[text.index(START) + len(START):text.index(END)].strip() + "\n"


def write_readme_section() -> None:
    """Put the matrix's current rendering between the README's markers."""
    text = README.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{render(load())}{END}{tail}")


if __name__ == "__main__":  # python -m tests.transfers.fidelity: after editing the matrix
    write_readme_section()
