"""docs/performance.md: each bench owns one "## ..." section and replaces only that section."""

from __future__ import annotations

from pathlib import Path

PERFORMANCE_DOC = Path(__file__).resolve().parents[1] / "docs" / "performance.md"


def write_section(section: str, markdown: str, doc: Path = PERFORMANCE_DOC) -> None:
    """Replace the section headed ``section`` (up to the next "## ") by ``markdown``, or append it."""
    doc.parent.mkdir(parents=True, exist_ok=True)
    text = doc.read_text() if doc.exists() else "# Performance\n"
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == section), None)
    if start is None:
        text = text.rstrip("\n") + "\n\n" + markdown.rstrip("\n") + "\n"
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        kept_after = [""] + lines[end:] if end < len(lines) else []
        text = "\n".join(lines[:start] + markdown.rstrip("\n").splitlines() + kept_after) + "\n"
    doc.write_text(text)


def publish(section: str, lines: list[str], write: bool) -> str:
    """Print a bench's Markdown section and, with ``write``, put it into docs/performance.md."""
    markdown = "\n".join(lines)
    print(markdown)
    if write:
        write_section(section, markdown)
    return markdown
