"""Every relative link and image of README.md and docs/ points at a file of the repository,
and every ``#anchor`` at a heading of its page. Links are read by a Markdown parser
(markdown-it-py, CommonMark with tables), so code blocks and code spans are not links."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
MARKDOWN = MarkdownIt("commonmark").enable("table")


def links(text: str) -> list[str]:
    """The targets of the links and images of a Markdown text, in order."""
    found = []
    for token in MARKDOWN.parse(text):
        for child in token.children or []:
            if child.type == "link_open":
                found.append(str(child.attrs["href"]))
            elif child.type == "image":
                found.append(str(child.attrs["src"]))
    return found


def heading_text(inline: Token) -> str:
    return "".join(c.content for c in inline.children or [] if c.type in {"text", "code_inline"})


def anchors(text: str) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped (hyphens and
    underscores kept), spaces as hyphens; repeats get -1, -2, ..."""
    tokens = MARKDOWN.parse(text)
    seen: dict[str, int] = {}
    found = set()
    for opening, inline in itertools.pairwise(tokens):
        if opening.type != "heading_open":
            continue
        slug = re.sub(r"[^\w\- ]", "", heading_text(inline).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def broken_links(page: Path, root: Path) -> list[str]:
    """What is wrong with the relative links of ``page`` (a file below ``root``)."""
    problems = []
    text = page.read_text()
    for target in links(text):
        parts = urlsplit(target)
        if parts.scheme or parts.netloc:
            continue  # a URL: not checked offline
        path = unquote(parts.path)
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.is_relative_to(root):
            problems.append(f"{target}: outside the repository")
        elif not resolved.exists():
            problems.append(f"{target}: no such file")
        elif (
            parts.fragment
            and resolved.suffix == ".md"
            and parts.fragment not in anchors(resolved.read_text())
        ):
            problems.append(f"{target}: no heading #{parts.fragment} in {resolved.name}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    assert broken_links(page, ROOT) == []


def test_the_check_finds_broken_links(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## `ddp video`, twice\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n"
        "[fine](other.md#ddp-video-twice) [also fine](#page) [web](https://example.org/x)\n"
        "![missing picture](pictures/none.png) [gone](DESIGN.md) [bad anchor](other.md#nope)\n"
        "[escapes](../../etc/passwd)\n\n"
        "`[not a link](nowhere.md)`\n\n"
        "| table | cell |\n|---|---|\n| [in a table](absent.md) | x |\n"
    )
    assert broken_links(page, tmp_path) == [
        "pictures/none.png: no such file",
        "DESIGN.md: no such file",
        "other.md#nope: no heading #nope in other.md",
        "../../etc/passwd: outside the repository",
        "absent.md: no such file",
    ]


def test_readme_leads_with_a_picture_and_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    first_image = text.index("![")
    assert first_image < text.index("## Two commands") < text.index("make serve")
    assert "make test" in text[: text.index("## Contents")]
