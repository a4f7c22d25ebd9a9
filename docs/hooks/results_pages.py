"""mkdocs hook: the efficacy reports of results/ (and their JSON) as pages and files of the site.

The docs link them as `../results/<report>.md`, which is right on GitHub and in an editor; for the
site the reports are added under `results/` and those links rewritten to match. A link to a
report that does not exist is left alone, so the strict build still fails on it.
"""

from pathlib import Path

from mkdocs.structure.files import File, InclusionLevel

ROOT = Path(__file__).resolve().parents[2]
REPORTS = ROOT / "results"


def on_files(files, config):
    for report in sorted([*REPORTS.glob("*.md"), *REPORTS.glob("*.json")]):
        if report.name != "README.md":
            uri = f"results/{report.name}"
            site = File(uri, str(ROOT), config["site_dir"], config["use_directory_urls"])
            site.inclusion = InclusionLevel.NOT_IN_NAV
            files.append(site)
    return files


def on_page_markdown(markdown, page, config, files):
    return markdown.replace("](../results/", "](results/")
