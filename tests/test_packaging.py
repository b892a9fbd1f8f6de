"""Packaging declares what the package uses: every third-party import in tinygsm_jax, data_gen
and configs comes from a dependency setup.cfg declares, and every declared dependency is used.

Imports that only some users need are allowed by name, each tied to the extra that installs it.
"""

from __future__ import annotations

import ast
import configparser
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tinygsm_jax", "data_gen", "configs")

# top-level module -> the extra that provides it, for imports guarded where they are used
OPTIONAL = {
    "torch": "test",  # hf.py reads pytorch_model.bin files only when torch is installed
}
# declared dependencies no module imports, each with the reason it is declared anyway
RUNTIME_ONLY: dict[str, str] = {}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(line: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line.strip())
    assert match, f"cannot read a name from requirement {line!r}"
    return normalize(match.group(0))


def declared() -> tuple[set[str], dict[str, set[str]]]:
    """(install_requires names, {extra: names}) from setup.cfg."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")

    def names(text: str) -> set[str]:
        return {requirement_name(x) for x in text.splitlines() if x.strip()}

    extras = {k: names(v) for k, v in cfg["options.extras_require"].items()}
    return names(cfg["options"]["install_requires"]), extras


def third_party_imports() -> dict[str, set[str]]:
    """{top-level module: files importing it} over the shipped packages, stdlib and own excluded."""
    found: dict[str, set[str]] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    modules = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top in sys.stdlib_module_names or top in PACKAGES:
                        continue
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def providers(module: str) -> set[str]:
    """Normalised names of the installed distributions that provide a top-level module."""
    return {normalize(d) for d in importlib.metadata.packages_distributions().get(module, [])}


def test_the_walk_sees_the_imports_we_know_of():
    imports = third_party_imports()
    assert {"jax", "flax", "optax", "etils", "ml_dtypes", "aiohttp", "torch"} <= set(imports)
    assert "tinygsm_jax/checkpoint.py" in imports["etils"]
    assert "json" not in imports and "tinygsm_jax" not in imports


def test_every_import_is_a_declared_dependency():
    required, extras = declared()
    undeclared = []
    for module, files in sorted(third_party_imports().items()):
        dists = providers(module)
        assert dists, f"{module} (imported by {sorted(files)}) is not installed"
        if dists & required:
            continue
        extra = OPTIONAL.get(module)
        if extra is not None and dists & extras.get(extra, set()):
            continue
        undeclared.append(f"{module} ({', '.join(sorted(files))}; from {sorted(dists)})")
    assert not undeclared, "imported but not declared in setup.cfg: " + "; ".join(undeclared)


def test_every_declared_dependency_is_imported():
    required, _ = declared()
    used = set().union(*(providers(m) for m in third_party_imports()))
    unused = sorted(required - used - set(RUNTIME_ONLY))
    assert not unused, f"declared in setup.cfg but imported nowhere: {unused}"


def test_optional_imports_name_real_extras():
    _, extras = declared()
    for module, extra in OPTIONAL.items():
        assert providers(module) & extras.get(extra, set()), f"{module}: extra {extra!r}"


def test_the_extras_ci_and_users_rely_on_exist():
    _, extras = declared()
    assert {"test", "tpu", "gpu", "docs"} <= set(extras)
    jax_version = importlib.metadata.version("jax")
    cfg = (ROOT / "setup.cfg").read_text()
    # the accelerator extras pin the jax that is installed, so the plugins match it
    assert f"jax[tpu]=={jax_version}" in cfg and f"jax[cuda12]=={jax_version}" in cfg
    assert {"mkdocs", "mkdocs-material"} <= extras["docs"]


def test_fake_server_runs_from_the_package():
    """The docs tell users to run it for a dry run, so it ships with what it imports."""
    out = subprocess.run(
        [sys.executable, "-m", "data_gen.fake_server", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "--port" in out.stdout


@pytest.mark.parametrize(
    "line,name",
    [
        ("etils[epath]", "etils"),
        ("jax[tpu]==0.10.2", "jax"),
        ("ml_dtypes", "ml-dtypes"),
        ("tensorflow-cpu>=2.18", "tensorflow-cpu"),
        ("tensorboardX", "tensorboardx"),
    ],
)
def test_requirement_names(line, name):
    assert requirement_name(line) == name
