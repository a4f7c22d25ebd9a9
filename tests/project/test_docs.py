"""The documentation: its generated pages (configuration reference, speed table), its links and
anchors, the documents the repository refers to, and the README's size."""

import re
import subprocess
import sys
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_configuration_reference_page_is_current():
    done = subprocess.run(
        [sys.executable, "scripts/config_reference.py", "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert "| `train.beta` |" in page and "| `reward[judge].verdict` |" in page


def test_the_speed_table_is_rendered_from_the_bench_records():
    done = subprocess.run(
        [sys.executable, "scripts/readme_tables.py", "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + "rerun scripts/readme_tables.py"


def test_a_bench_record_becomes_its_readme_row(tmp_path, monkeypatch, capsys):
    """bench/timing.py's record of a run (timed with its own `measure`) is what the results page's
    row says: the figures, the command, the date and the load average, marked measured."""
    root = Path(__file__).resolve().parents[2]
    monkeypatch.syspath_prepend(str(root / "bench"))
    monkeypatch.syspath_prepend(str(root / "scripts"))
    import readme_tables
    from timing import Record, measure

    timing, total = measure(lambda: sum(range(10_000)), repeat=3, warmup=1)
    assert total == 49_995_000 and len(timing.seconds) == 3
    assert min(timing.seconds) <= timing.median <= max(timing.seconds)
    for record in (root / "results" / "bench").glob("*.json"):
        (tmp_path / record.name).write_text(record.read_text())
    record = Record("scoring", ["--responses", "8"])
    assert "command: python bench/scoring.py --responses 8" in capsys.readouterr().out
    figures = {"responses": 8, "responses_per_s": {"1": 3.14, "16": 9.5}, "speedup": 3.0}
    record.write({**figures, "max_score_difference": 2e-7}, tmp_path / "scoring.json")
    row = next(line for line in readme_tables.render(tmp_path).splitlines() if "scoring" in line)
    assert "`python bench/scoring.py --responses 8`" in row
    assert "batch 1: 3.1 responses/s; length-sorted batch 16: 9.5 responses/s (3.0 ×" in row
    assert f"{record.data['date']}, measured; " in row and "imported" not in row


def _slug(heading: str) -> str:
    """A heading's anchor as mkdocs' toc extension (and, for these headings, GitHub) makes it."""
    text = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # no headings in code blocks
    return {_slug(h) for h in re.findall(r"^#+\s+(.+?)\s*$", text, flags=re.M)}


def _pages() -> list[Path]:
    return [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "results").glob("*.md")]


def test_relative_links_and_anchors_in_the_documentation_resolve():
    """README.md, docs/ and results/ link to each other by relative paths: every such link names
    a file that exists, and every `#anchor` a heading of its page (`make docs` checks the same
    for the site, strictly)."""
    broken = []
    for page in _pages():
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", text):
            if "://" in target or target.startswith("mailto:"):
                continue
            path = (page.parent / target) if target else page
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                broken.append(f"{page.relative_to(ROOT)}: {target}#{anchor}")
    assert not broken, broken


GENERATED = {"report.md", "validation.md", "heldout.md", "table.md"}
"""Documents that runs and tests write (aries report, bench/efficacy.py, the GPU kit's table),
never shipped."""
PLACEHOLDERS = {"NAME", "RUN"}
"""Path parts that stand for a name the reader chooses (`--report NAME`, `aries report RUN`)."""


def test_no_file_refers_to_a_document_the_repository_does_not_contain():
    """Every `*.md` path named anywhere in the repository (code, configs, docs, results) exists:
    a path relative to the repository root or to the naming file, a bare name anywhere in it.
    Exempt: what runs write (GENERATED, `runs/...`, `RUN/...`, names with a NAME placeholder)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    files = [ROOT / f for f in listed if (ROOT / f).is_file()]
    names = {f.name for f in files}
    missing = []
    for path in files:
        if path.suffix not in {".md", ".py", ".yaml", ".yml", ".toml", ".txt", ".sh", ".cfg", ""}:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for ref in re.findall(r"(?<![\w./{<-])([\w./-]*[\w-]\.md)\b", text):
            name = ref.rsplit("/", 1)[-1]
            parts = ref.split("/")
            if (
                name in GENERATED
                or name.startswith("heldout-")
                or ref.startswith(("/", "runs/"))
                or any(p.removesuffix(".md") in PLACEHOLDERS for p in parts)
            ):
                continue
            found = (
                (ROOT / ref).exists() or (path.parent / ref).exists()
                if "/" in ref
                else name in names
            )
            if not found:
                missing.append(f"{path.relative_to(ROOT)}: {ref}")
    assert not missing, missing


def test_the_readme_is_the_pitch_and_the_first_run():
    """At most 15 KB (the measured tables live in docs/results.md); the demo's output is there."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 15_000
    assert "[aries] iteration 0: train" in readme and "held-out accuracy (n = 48):" in readme
    assert "(docs/your-own-model.md)" in readme and "configs/your-model.yaml" in readme
