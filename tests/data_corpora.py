"""Deterministic synthetic corpora for the token-store tests (shared with the fixture maker).

``tricky_text`` has what makes cutting a text file into documents risky for BPE: runs of blank
lines, trailing spaces, indented lines, CRLF line ends, tabs, non-ASCII letters and spaces
(NBSP, U+2028), emoji and long lines.
"""

from __future__ import annotations

import numpy as np

WORDS = ["the", "Kalo", "mi", "tenrho", "shaveldor", "quí", "ånd", "ob", "praTis", "42", "x=1;"]
PIECES = [" ", "  ", "\t", "\u00a0", "\u2028", "🙂", "'s", "'ll", "--", "...", ","]
ENDS = ["\n", "\n", "\n", "\n\n", "\n\n\n", " \n", "  \n", "\r\n", "\n ", "\n\t", "\n\n  "]


def tricky_text(n_lines: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_lines):
        n = int(rng.integers(0, 40 if rng.random() > 0.02 else 400))
        parts = []
        for _ in range(n):
            parts.append(str(rng.choice(WORDS)))
            parts.append(str(rng.choice(PIECES)) if rng.random() < 0.3 else " ")
        out.append("".join(parts).strip(" ") + str(rng.choice(ENDS)))
    return "".join(out)
