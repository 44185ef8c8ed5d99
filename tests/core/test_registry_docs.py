"""docs/attention.md embeds the registry table; it must stay equal to what the registry says."""

from pathlib import Path

from core.catalogue import catalogue_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "attention.md"


def test_catalogue_page_matches_the_registry():
    text = DOC.read_text()
    embedded = text.split("<!-- catalogue:start -->\n", 1)[1].split("\n<!-- catalogue:end -->", 1)[0]
    assert embedded.strip() == catalogue_table().strip(), "regenerate with: python -m core.catalogue"
