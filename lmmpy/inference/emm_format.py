r"""emmeans' printed tables (``print.summary_emm``), so that results read as R prints them.

Every numeric column is first zapsmall'ed (7 digits); ``df`` is rounded to 2 decimals; t/z
ratios are rounded to 3 decimals and p values to 4 (fixed notation, ``<.0001`` below); then all numeric columns
are formatted with one number of significant digits, d = max over rows of
round(1.51 - log10(dz)) (at least 3), with dz the relative range of (est - 2 SE, est, est + 2 SE)
(emmeans' ``.opt.dig``).  Label columns are left-justified, numbers right-justified; by-groups
are printed one after the other under ``var = level:`` headings, then the notes.
"""

from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd

from ..results.rformat import format_real, zapsmall

TEST_STATS = ("t.ratio", "z.ratio")


def _opt_digits(est, se) -> int:
    best = 3
    for e, s in zip(est, se):
        x = np.array([e - 2 * s, e, e + 2 * s])
        if not np.all(np.isfinite(x)) or np.max(np.abs(x)) == 0:
            continue
        z = np.array([x.min(), x.max()]) / np.max(np.abs(x))
        dz = zapsmall(np.array([z[1] - z[0], *z]), 8)[0]
        zz = 3 if dz == 0 else int(math.floor(1.51 - math.log10(dz) + 0.5))
        best = max(best, zz)
    return best


def _label(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "TRUE" if v else "FALSE"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _cells(frame: pd.DataFrame, est_name: str) -> dict:
    """Column -> (justification, strings)."""
    numeric = [
        c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and c not in TEST_STATS + ("p.value",)
    ]
    label_cols = [c for c in frame.columns if c not in numeric and c not in TEST_STATS + ("p.value",)]
    est = frame[est_name].to_numpy(float)
    se = frame["SE"].to_numpy(float) if "SE" in frame else np.zeros_like(est)
    digits = _opt_digits(est, se)
    out = {}
    for c in frame.columns:
        if c in label_cols:
            out[c] = ("L", [_label(v) for v in frame[c]])
            continue
        x = frame[c].to_numpy(float)
        if c in TEST_STATS:
            out[c] = ("R", format_real(np.round(zapsmall(x, 7), 3), 7, nsmall=3))
        elif c == "p.value":
            # fixed notation always (emmeans: "0.0006", never R's "6e-04"), "<.0001" below
            s = ["NA" if math.isnan(v) else f"{v:.4f}" for v in np.round(zapsmall(x, 7), 4)]
            s = ["<.0001" if t == "0.0000" else t for t in s]
            width = max(map(len, s))
            out[c] = ("R", [t.rjust(width) for t in s])
        else:
            fin = np.isfinite(x)
            vals = zapsmall(x, 7) if fin.any() else x
            if c == "df":
                vals = np.round(vals, 2)
            s = format_real(vals, digits)
            if c == est_name and np.isnan(x).any():
                s = ["nonEst" if math.isnan(v) else t for v, t in zip(x, s)]
            out[c] = ("R", s)
    return out


def _table(cols: dict, names: list, rows: list) -> str:
    lines, widths = [], {}
    for c in names:
        just, s = cols[c]
        widths[c] = max([len(c)] + [len(s[i].strip() if just == "L" else s[i]) for i in range(len(s))])
    header = " ".join(c.ljust(widths[c]) if cols[c][0] == "L" else c.rjust(widths[c]) for c in names)
    lines.append(" " + header)
    for i in rows:
        cells = []
        for c in names:
            just, s = cols[c]
            cells.append(s[i].strip().ljust(widths[c]) if just == "L" else s[i].rjust(widths[c]))
        lines.append(" " + " ".join(cells))
    return "\n".join(lines) + "\n"


def emm_text(frame: pd.DataFrame, est_name: str, by_vars: list, notes: list) -> str:
    """The table as emmeans prints it, by-groups and notes included."""
    cols = _cells(frame, est_name)
    if not by_vars:
        out = _table(cols, list(frame.columns), list(range(len(frame)))) + "\n"
    else:
        names = [c for c in frame.columns if c not in by_vars]
        shown = {}  # by-values as format.data.frame writes them: labels padded to one width
        for b in by_vars:
            just, s = cols[b]
            w = max(len(t.strip()) for t in s)
            shown[b] = [t.strip().ljust(w) for t in s] if just == "L" else s
        keys = [", ".join(f"{b} = {shown[b][i]}" for b in by_vars) for i in range(len(frame))]
        out = ""
        for key in dict.fromkeys(keys):
            rows = [i for i, k in enumerate(keys) if k == key]
            out += f"{key}:\n" + _table(cols, names, rows) + "\n"
    return out + "".join(f"{n} \n" for n in notes)


def emm_html(frame: pd.DataFrame, notes: list) -> str:
    """An HTML table of the results and the notes under it."""
    body = frame.to_html(index=False, na_rep="nonEst", float_format=lambda v: f"{v:.6g}")
    return body + "".join(f"<p>{html.escape(n)}</p>" for n in notes)
