"""The import layering of DESIGN.md holds: every `pacsd` import (also inside functions) points
down the table, read from the source with `ast`: net never imports storage or web, web never net,
config never storage, services never net or web, and so on.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parent.parent / "src" / "pacsd"

# Top-level modules every layer may use (they import no package above `dicom`).
SHARED = {"pacsd", "errors", "config", "pathnames", "area_paths", "deferred", "logsetup", "secret_files", "exposure"}
# What each layer may import besides itself and SHARED (DESIGN.md, "Layers").
ALLOWED = {
    "cli": {"web", "net", "services", "storage", "index", "dicom"},
    "web": {"services", "index", "dicom"},
    "net": {"services", "index", "dicom"},
    "services": {"storage", "index", "dicom"},
    "storage": {"dicom"},
    "index": {"dicom"},
    "dicom": set(),
}
# Shared modules are below every package, except that settings resolve DICOM names.
SHARED_ALLOWED = {"config": {"dicom"}}


def module_name(path: Path, source: Path = SOURCE) -> str:
    parts = path.relative_to(source.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, source: Path = SOURCE) -> list[tuple[int, str]]:
    """(line, module) of each pacsd module `path` imports, relative imports resolved."""
    module = module_name(path, source)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            target = ".".join(part for part in (base, node.module or "") if part)
            if target == "pacsd":  # `from pacsd import config`: a module; `import __version__`: the package
                found += [(node.lineno, f"pacsd.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, target))
    return [(line, name) for line, name in found if name == "pacsd" or name.startswith("pacsd.")]


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "pacsd"
    return parts[1] if parts[1] in ALLOWED or parts[1] in SHARED else "pacsd"  # `pacsd.__version__`


def violations(source: Path = SOURCE) -> list[str]:
    found = []
    for path in sorted(source.rglob("*.py")):
        own = layer(module_name(path, source))
        allowed = SHARED | (ALLOWED[own] if own in ALLOWED else SHARED_ALLOWED.get(own, set()))
        for line, target in imported(path, source):
            other = layer(target)
            if other == own or other in allowed:
                continue
            found.append(f"{path.relative_to(source.parent)}:{line}: {own} imports {target}")
    return found


def test_imports_point_down_the_layers():
    assert violations() == []


@pytest.mark.parametrize("where, statement", [
    ("net/probe.py", "from pacsd.storage.blobstore import BlobStore"),
    ("config.py", "    from pacsd.storage.layout import make_layout"),
    ("web/probe.py", "from pacsd.net import qr_scu"),
    ("services/probe.py", "from ..net.scu import send_files"),
])
def test_an_upward_import_is_found(tmp_path, where, statement):
    """The check itself: an upward import planted in a copy of the source is reported."""
    import shutil

    copy = tmp_path / "pacsd"
    shutil.copytree(SOURCE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / where
    target.write_text((target.read_text() if target.exists() else "") + f"\ndef planted():\n    {statement.strip()}\n")
    assert [line for line in violations(copy) if where in line] != []
