"""The README's generated tables (configuration reference, speed table) and its links."""

import re
import subprocess
import sys
from pathlib import Path


def test_readme_config_reference_is_current():
    table = subprocess.run(
        [sys.executable, "scripts/config_reference.py"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert table in Path("README.md").read_text(), "rerun scripts/config_reference.py"


def test_readme_speed_table_is_rendered_from_the_bench_records():
    done = subprocess.run(
        [sys.executable, "scripts/readme_tables.py", "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + "rerun scripts/readme_tables.py"


def test_a_bench_record_becomes_its_readme_row(tmp_path, monkeypatch, capsys):
    """bench/timing.py's record of a run (timed with its own `measure`) is what the README's row
    says: the figures, the command, the date and the load average, marked measured."""
    root = Path(__file__).resolve().parents[1]
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


def test_relative_links_in_the_documentation_resolve():
    """README.md, docs/ and results/ link to each other by relative paths (reports moved from
    docs/ to results/): every such link names a file that exists."""
    root = Path(__file__).resolve().parents[1]
    pages = [root / "README.md", *(root / "docs").glob("*.md"), *(root / "results").glob("*.md")]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(root)}: {target}")
    assert not broken, broken
