"""R's rules for printing numbers, names and tables, so summaries read exactly like lme4's.

- :func:`format_real` is R's ``format(x, digits, nsmall)``: one common number of decimals,
  chosen so that every element shows ``digits`` significant digits (trailing zeros dropped),
  in fixed notation unless scientific is narrower; all elements padded to one width.
- :func:`abbreviate` is R's ``abbreviate()`` (used for the fixed-effect correlation labels).
- :func:`print_matrix`, :func:`print_named` and :func:`cat_fill` lay text out as R's
  ``print.default`` of a character matrix, of a named vector and ``cat(..., fill = TRUE)`` do.
"""

from __future__ import annotations

import math

import numpy as np

WIDTH = 80  # getOption("width")


def _scientific(x: float, digits: int):
    """(negative, kpower, nsig, rounding_widens) of x at ``digits`` significant digits."""
    if x == 0.0:
        return False, 0, 1, False
    r = abs(x)
    mant, exp = f"{r:.{digits - 1}e}".split("e")
    kp = int(exp)
    sig = mant.replace(".", "").rstrip("0")
    nsig = max(1, len(sig))
    rgt = min(max(digits - kp, 0), 22)
    widens = 0 < kp <= 22 and r < 10.0**kp - 0.5 / 10.0**rgt
    return x < 0, kp, nsig, widens


def format_real(values, digits: int = 7, nsmall: int = 0) -> list:
    """R's ``format(x, digits = digits, nsmall = nsmall)`` of a numeric vector."""
    vals = [float(v) for v in np.ravel(values)]
    finite = [v for v in vals if math.isfinite(v)]
    if not finite:
        strs = ["NA" if math.isnan(v) else ("Inf" if v > 0 else "-Inf") for v in vals]
        w = max(map(len, strs))
        return [s.rjust(w) for s in strs]
    neg = rgt = 0
    mxsl = mxns = -(10**9)
    mxe, mne = -(10**9), 10**9
    for v in finite:
        negi, kp, nsig, widens = _scientific(v, digits)
        left = kp + 1 - (1 if widens else 0)
        sleft = negi + (1 if left <= 0 else left)
        rgt = max(rgt, nsig - left)
        mxsl = max(mxsl, sleft)
        mxns = max(mxns, nsig)
        mxe, mne = max(mxe, kp), min(mne, kp)
        neg = neg or negi
    e = 2 if (mxe >= 100 or mne <= -99) else 1
    d_sci = mxns - 1
    w_sci = neg + (d_sci > 0) + d_sci + 4 + e
    w_fix = mxsl + rgt + (rgt != 0)
    out = []
    if w_fix <= w_sci:
        rgt = max(rgt, nsmall)
        for v in vals:
            out.append(f"{v:.{rgt}f}" if math.isfinite(v) else ("NA" if math.isnan(v) else "Inf"))
    else:
        for v in vals:
            m, ex = f"{v:.{d_sci}e}".split("e")
            out.append(f"{m}e{int(ex):+0{e + 2}d}")
    w = max(map(len, out))
    return [s.rjust(w) for s in out]


def format_num(x: float, digits: int = 7) -> str:
    """One number as R's ``cat()`` or ``format()`` writes it."""
    return format_real([x], digits)[0].strip()


def zapsmall(x, digits: int):
    """R's zapsmall() as R 4.2 (which made the lme4 references) has it: round to
    ``digits - log10(max |x|)`` decimals, that number rounded to the nearest integer as
    round() does with a fractional ``digits``.  (R >= 4.4 takes the ceiling of log10 instead.)"""
    x = np.asarray(x, dtype=float)
    fin = np.isfinite(x)
    mx = np.max(np.abs(x[fin])) if fin.any() else 0.0
    d = max(0, int(math.floor(digits - math.log10(mx) + 0.5))) if mx > 0 else digits
    return np.round(x, d)


# -- abbreviate ---------------------------------------------------------------------------
def _strip_chars(s: str, minlen: int) -> str:
    buf = list(s)

    def first_char(i):  # the start of a word
        return buf[i - 1].isspace()

    def last_char(i):  # the end of a word
        return (not buf[i - 1].isspace()) and (i + 1 >= len(buf) or buf[i + 1].isspace())

    def short():
        return len(buf) - sum(c.isspace() for c in buf) <= minlen

    if len(buf) <= minlen:
        return s
    passes = [
        lambda c, i: c in "aeiou" and last_char(i),
        lambda c, i: c in "aeiou" and not first_char(i),
        lambda c, i: c.islower() and last_char(i),
        lambda c, i: c.islower() and not first_char(i),
        lambda c, i: not first_char(i) and not c.isspace(),
    ]
    for rule in passes:
        i = len(buf) - 1
        while i > 0:
            if i < len(buf) and rule(buf[i], i):
                del buf[i]
            if short():
                return "".join(c for c in buf if not c.isspace()) if len(buf) > minlen else "".join(buf)
            i -= 1
    return "".join(buf)


def abbreviate(names, minlength: int = 4) -> list:
    """R's ``abbreviate(names, minlength)`` (method "left.kept", not strict: lengthened
    until the abbreviations are unique)."""
    names = [n.strip() for n in names]
    uniq = list(dict.fromkeys(names))
    abbr = {n: _strip_chars(n, minlength) for n in uniq}
    todo = [n for n in uniq]
    m = minlength
    while True:
        vals = [abbr[n] for n in uniq]
        dups = {v for v in vals if vals.count(v) > 1}
        if not dups:
            break
        m += 1
        todo = [n for n in uniq if abbr[n] in dups]
        for n in todo:
            abbr[n] = _strip_chars(n, m)
    return [abbr[n] for n in names]


# -- layouts -------------------------------------------------------------------------------
def print_matrix(cells, rownames, colnames, right: bool = False, width: int = WIDTH) -> str:
    """R's print.default() of a character matrix with quote = FALSE: columns split into
    blocks no wider than ``width``, the column labels justified as the cells are."""
    nr, nc = len(rownames), len(colnames)
    rlabw = max([len(r) for r in rownames], default=0)
    w = [max([len(colnames[j])] + [len(cells[i][j]) for i in range(nr)]) for j in range(nc)]
    just = (lambda s, n: s.rjust(n)) if right else (lambda s, n: s.ljust(n))
    lines, jmin = [], 0
    while jmin < nc:
        tot, jmax = rlabw, jmin
        while True:
            tot += w[jmax] + 1
            jmax += 1
            if not (jmax < nc and tot + w[jmax] + 1 < width):
                break
        lines.append(" " * rlabw + "".join(" " + just(colnames[j], w[j]) for j in range(jmin, jmax)))
        for i in range(nr):
            lines.append(rownames[i].ljust(rlabw) + "".join(" " + just(cells[i][j], w[j]) for j in range(jmin, jmax)))
        jmin = jmax
    return "\n".join(lines)


def print_named(names, strings, width: int = WIDTH) -> str:
    """R's print() of a named vector (entries already formatted): right-justified fields
    each followed by one space."""
    w = max(max(map(len, names)), max(map(len, strings)))
    per_line = max(1, width // (w + 1))
    lines = []
    for s in range(0, len(names), per_line):
        lines.append("".join(n.rjust(w) + " " for n in names[s : s + per_line]))
        lines.append("".join(v.rjust(w) + " " for v in strings[s : s + per_line]))
    return "\n".join(lines)


def cat_fill(items, width: int = WIDTH, sep: str = " ") -> str:
    """R's ``cat(..., fill = TRUE)``: items joined by ``sep``, a new line before an item
    that would pass ``width``."""
    out, cur = "", 0
    for k, item in enumerate(items):
        if k:
            out += sep
            if cur + len(item) + len(sep) > width:
                out += "\n"
                cur = 0
        out += item
        cur += len(item) + len(sep)
    return out + "\n"


EPS = 2.220446049250313e-16  # .Machine$double.eps


def format_pval(pv, digits: int = 3, eps: float = EPS) -> list:
    """R's format.pval(): fixed or scientific by size, values below eps as "<2e-16"."""
    pv = np.asarray(pv, dtype=float)
    out = [""] * pv.size
    small = pv < eps
    rest = np.flatnonzero(~small)
    if rest.size:
        expo = np.floor(np.log10(np.where(pv[rest] > 0, pv[rest], 1e-50)))
        fixp = (expo >= -3) | ((expo == -4) & (digits > 1)) | (pv[rest] == 0)  # R >= 4.2's rule
        for group in (rest[fixp], rest[~fixp]):
            if group.size:
                for i, txt in zip(group, format_real(pv[group], digits)):
                    out[i] = txt
    if small.any():
        d = max(1, digits - 2)
        if rest.size:
            nc = max(len(out[i]) for i in rest)
            if d > 1 and d + 6 > nc:
                d = max(1, nc - 7)
            sep = "" if (d == 1 and nc <= 6) else " "
        else:
            sep = "" if d == 1 else " "
        for i in np.flatnonzero(small):
            out[i] = "<" + sep + format_real([eps], d)[0].strip()
    return out


def signif_stars(pv) -> list:
    """R's symnum() significance codes, padded to one width as format() does."""
    codes = []
    for p in np.asarray(pv, dtype=float):
        codes.append("***" if p <= 0.001 else "**" if p <= 0.01 else "*" if p <= 0.05 else "." if p <= 0.1 else " ")
    w = max(map(len, codes))
    return [c.ljust(w) for c in codes]


SIGNIF_LEGEND = "---\nSignif. codes:  0 \u2018***\u2019 0.001 \u2018**\u2019 0.01 \u2018*\u2019 0.05 \u2018.\u2019 0.1 \u2018 \u2019 1"
