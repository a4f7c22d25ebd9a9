"""The package rules, enforced: each package of aries imports only the packages its `__init__`
docstring names (its `Imports ...` sentence), and no module imports another module's private
name. Read from the source (every import statement, lazy ones in functions included)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import aries

ROOT = Path(aries.__file__).parent
PACKAGES = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file())


def allowed(package: str) -> set[str]:
    """The packages the `Imports ...` paragraph of `package`'s docstring names."""
    doc = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text()))
    rule = next((p for p in doc.split("\n\n") if p.startswith("Imports ")), None)
    assert rule is not None, f"aries/{package}/__init__.py states no `Imports ...` rule"
    return set(re.findall(r"`aries\.(\w+)`", rule)) & set(PACKAGES)


def imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names taken from it) of every import in `path`, relative ones resolved."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                parts = path.relative_to(ROOT.parent).with_suffix("").parts[: -node.level]
                module = ".".join([*parts, module] if module else parts)
            found.append((node.lineno, module, [alias.name for alias in node.names]))
    return found


def modules() -> list[tuple[str, Path]]:
    return [(p.relative_to(ROOT.parent).as_posix(), p) for p in sorted(ROOT.rglob("*.py"))]


def test_every_package_states_its_rule():
    for package in PACKAGES:
        allowed(package)


def test_packages_import_only_what_their_docstring_allows():
    broken = []
    for name, path in modules():
        package = path.relative_to(ROOT).parts[0]
        if package not in PACKAGES:
            continue  # aries/__init__.py, aries/cli.py: the top
        rule = allowed(package) | {package}
        for line, module, _ in imports(path):
            parts = module.split(".")
            if parts[0] == "aries" and len(parts) > 1 and parts[1] in PACKAGES:
                if parts[1] not in rule:
                    broken.append(f"{name}:{line} imports {module}")
    assert not broken, "\n".join(broken)


def test_no_module_imports_a_private_name_of_another():
    broken = []
    for name, path in modules():
        own = name.removesuffix(".py").replace("/", ".")
        for line, module, names in imports(path):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if module.startswith("aries") and module != own and private:
                broken.append(f"{name}:{line} imports {', '.join(private)} from {module}")
            if module.split(".")[-1].startswith("_") and module.startswith("aries"):
                broken.append(f"{name}:{line} imports the private module {module}")
    assert not broken, "\n".join(broken)
