"""Where the documentation lives, so that help texts and errors can name the page that explains
them. DOCS_URL equals `site_url` in mkdocs.yml (a test checks it)."""

DOCS_URL = "https://aries-llm.readthedocs.io/en/latest/"


def page(name: str, anchor: str = "") -> str:
    """The address of docs/<name>.md on the site (`#anchor` optional)."""
    return f"{DOCS_URL}{name}/" + (f"#{anchor}" if anchor else "")
