"""MkDocs hook of the documentation site (vignettes/mkdocs.yml): the README becomes the home page
and the vignettes their pages, read from where they live rather than copied into docs/."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

HERE = Path(__file__).resolve().parent  # vignettes/
ROOT = HERE.parent


def on_files(files, config):
    """Add README.md as index.md and every vignettes/*.md as vignettes/<name>.md."""
    files.append(File.generated(config, "index.md", abs_src_path=str(ROOT / "README.md")))
    for page in sorted(HERE.glob("*.md")):
        files.append(File.generated(config, f"vignettes/{page.name}", abs_src_path=str(page)))
    return files
