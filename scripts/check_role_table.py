#!/usr/bin/env python3
"""The README's role table (section Security) must say what the hostile_roles suite observed.

Reads the matrix the suite prints (tests/pg_regress/expected/hostile_roles.out: function, then the
outcome for owner, writer, reader, stranger, owner2) and the README rows (one or more functions in
backticks per row, then the five outcomes), and fails on any function whose outcomes differ or that
one of them lacks. The six trigger functions share one README row.
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRIGGERS = {"source_row_trigger", "source_statement_trigger", "target_fill_trigger",
            "target_statement_trigger", "reverse_row_trigger", "reverse_statement_trigger"}


def suite():
    text = (ROOT / "tests/pg_regress/expected/hostile_roles.out").read_text()
    header = re.search(r"^ +function +\| owner \| writer \| reader \| stranger \| owner2 *$", text, re.M)
    out = {}
    for line in text[header.start():].splitlines()[2:]:
        if not line.strip() or line.startswith("("):
            break
        cells = [c.strip() for c in line.split("|")]
        out[cells[0]] = cells[1:]
    return out


def readme():
    text = (ROOT / "README.md").read_text()
    section = text[text.index("| function | owner | writer |"):]
    out = {}
    for line in section.splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        names = re.findall(r"`([a-z_]+)`", cells[0].split("(")[0])
        if "the six trigger functions" in cells[0]:
            names = sorted(TRIGGERS)
        for name in names:
            out[name] = cells[1:]
    return out


observed, documented = suite(), readme()
wrong = [f"{f}: suite {observed.get(f)}, README {documented.get(f)}"
         for f in sorted(set(observed) | set(documented)) if observed.get(f) != documented.get(f)]
if wrong:
    print("README role table differs from the hostile_roles suite:\n  " + "\n  ".join(wrong))
    sys.exit(1)
print(f"README role table matches the hostile_roles suite ({len(observed)} functions)")
