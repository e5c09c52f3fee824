"""Write a benchmark's table into bench/README.md between its markers (``<!-- name -->`` and
``<!-- /name -->``), replacing the last run's, or appended under ``heading`` the first time."""

import os

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "README.md")


def write_section(name: str, body: str, heading: str = "") -> None:
    text = open(README).read() if os.path.exists(README) else ""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    section = f"{start}\n{body}\n{end}"
    if start in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + (f"## {heading}\n\n" if heading else "") + section + "\n"
    with open(README, "w") as fh:
        fh.write(text)
