"""MkDocs hooks of the documentation site (vignettes/mkdocs.yml): the README becomes the home page
and the vignettes their pages, read from where they live rather than copied into docs/, and the
nav's "Vignettes" section lists every vignette (so that a new one needs no edit here)."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

HERE = Path(__file__).resolve().parent  # vignettes/
ROOT = HERE.parent


def vignettes() -> list:
    """vignettes/*.md, getting-started first, then by name."""
    return sorted(HERE.glob("*.md"), key=lambda p: (p.stem != "getting-started", p.name))


def on_config(config):
    """Fill the nav's "Vignettes" section: each vignette under the title of its first heading."""
    for section in config["nav"]:
        if isinstance(section, dict) and "Vignettes" in section:
            section["Vignettes"] = [
                {page.read_text(encoding="utf-8").splitlines()[0].lstrip("# ").strip(): f"vignettes/{page.name}"}
                for page in vignettes()
            ]
    return config


def on_files(files, config):
    """Add README.md as index.md and every vignettes/*.md as vignettes/<name>.md."""
    files.append(File.generated(config, "index.md", abs_src_path=str(ROOT / "README.md")))
    for page in vignettes():
        files.append(File.generated(config, f"vignettes/{page.name}", abs_src_path=str(page)))
    return files
