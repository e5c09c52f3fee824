"""The HTML that Jupyter shows for lmmpy's results (their ``_repr_html_``): either the printed
text in a ``<pre>`` block (where the layout is the content, as in a summary) or a few header
lines above the result's table (``to_frame()``, as pandas renders it)."""

from __future__ import annotations

import html

import pandas as pd


def html_text(text: str) -> str:
    """The printed text, escaped, in a ``<pre>`` block."""
    return f"<pre>{html.escape(text)}</pre>"


def html_table(header_lines, frame: pd.DataFrame, na_rep: str = "") -> str:
    """Header lines (escaped, one per line) above the table."""
    head = "<br>\n".join(html.escape(line) for line in header_lines)
    return f"<div>\n<p>{head}</p>\n{frame.to_html(na_rep=na_rep)}\n</div>"
