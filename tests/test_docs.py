"""The docs show only commands that exist: every `python -m MODULE [SUBCOMMAND ...]` in a code
block of README.md or docs/*.md must answer `--help` with exit status 0. And the site builds
with `mkdocs build --strict` (broken links and anchors fail), where mkdocs is installed.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(`{3,}|~{3,})[^\n]*\n(.*?)^\1[ \t]*$", re.S | re.M)
# `python -m module`, then the words that name subcommands (not options, paths or values)
COMMAND = re.compile(r"\bpython3?\s+-m\s+([A-Za-z_][\w.]*)((?:[ \t]+[a-z][a-z_-]*\b(?![./=]))*)")


def code_blocks(text: str) -> list[str]:
    return [m.group(2) for m in FENCE.finditer(text)]


def commands_in(text: str) -> set[tuple[str, ...]]:
    """{(module, subcommand, ...)} shown in the fenced code blocks of one page."""
    found = set()
    for block in code_blocks(text):
        for m in COMMAND.finditer(block):
            found.add((m.group(1), *m.group(2).split()))
    return found


def shown_commands() -> dict[tuple[str, ...], list[str]]:
    shown: dict[tuple[str, ...], list[str]] = {}
    for page in PAGES:
        for command in commands_in(page.read_text()):
            shown.setdefault(command, []).append(page.name)
    return shown


SHOWN = shown_commands()


def test_the_parser_reads_commands_as_written():
    text = (
        "prose python -m not.shown\n"
        "```bash\n"
        "python -m data_gen batch prepare --seeds s.jsonl --out run\n"
        "JAX_PLATFORMS=cpu python -m tinygsm_jax.aot --config configs/phi1_5.py\n"
        "python -m tinygsm_jax.data inspect data/tinygsm\n"
        "python3 -m venv .venv && . .venv/bin/activate\n"
        "python -m tinygsm_jax.verifier_data \\\n    --n 48\n"
        "```\n"
    )
    assert commands_in(text) == {
        ("data_gen", "batch", "prepare"),
        ("tinygsm_jax.aot",),
        ("tinygsm_jax.data", "inspect"),
        ("venv",),
        ("tinygsm_jax.verifier_data",),
    }


def test_the_docs_show_the_pipeline_commands():
    modules = {command[0] for command in SHOWN}
    assert {"tinygsm_jax.demo", "tinygsm_jax.train", "tinygsm_jax.eval", "data_gen"} <= modules
    assert ("data_gen", "batch", "collect") in SHOWN and ("tinygsm_jax.data", "build") in SHOWN
    assert len(SHOWN) >= 20


@pytest.mark.parametrize("command", sorted(SHOWN), ids=" ".join)
def test_shown_command_answers_help(command):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(
        [sys.executable, "-m", *command, "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    where = ", ".join(SHOWN[command])
    assert out.returncode == 0, f"python -m {' '.join(command)} --help ({where}): {out.stderr}"
    assert "usage" in out.stdout.lower(), f"{' '.join(command)} ({where}) printed no usage"


def test_every_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        assert re.search(rf":\s*{re.escape(page.name)}\s*$", nav, re.M), f"{page.name} not in nav"


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="needs the docs extra")
def test_mkdocs_build_strict(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    assert (tmp_path / "sandbox" / "index.html").exists()


def github_slug(heading: str) -> str:
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def mkdocs_slug(heading: str) -> str:
    text = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> set[str]:
    """Anchors of a page's headings that GitHub and mkdocs both generate."""
    text = FENCE.sub("", page.read_text())
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.M)
    return {github_slug(h) for h in headings} & {mkdocs_slug(h) for h in headings}


def test_the_readme_is_a_landing_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for heading in ("## Results", "## Quickstart", "## The pipeline", "## Where to go next"):
        assert heading in readme
    linked = set(re.findall(r"\]\((docs/[\w-]+\.md)", readme))
    assert linked == {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")} - {"docs/index.md"}


def test_the_readme_links_resolve():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    local = [link for link in links if not re.match(r"[a-z]+:", link)]
    assert len(local) >= 20
    for link in local:
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.exists(), f"README links to missing {path}"
        if anchor:
            assert anchor in anchors(target), f"README links to missing anchor {link}"
