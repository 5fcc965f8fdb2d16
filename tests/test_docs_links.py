"""Every relative link in README.md and docs/**/*.md points to a file that exists.

Also checks the `#anchor` of a link into a markdown page against that page's headings, so a
renamed heading or a section moved to the lab notes cannot leave a dead link behind. Plain
text only: no torch import, runs in well under a second.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def _text(page: Path) -> str:
    """The page without fenced code blocks and inline code (links there are not links)."""
    return _CODE.sub("", _FENCE.sub("", page.read_text(encoding="utf-8")))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in _HEADING.findall(_FENCE.sub("", page.read_text(encoding="utf-8"))):
        slug = _slug(heading)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _links(page: Path) -> list[str]:
    return [t for t in _LINK.findall(_text(page)) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_pages_found():
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "docs/results.md", "docs/performance.md"} <= names


def test_slug_matches_github():
    assert _slug("Table 1 on the sample (test error %, mean ± std)") == (
        "table-1-on-the-sample-test-error--mean--std"
    )
    assert _slug("Framework overhead: `stnlab-train` against a loop") == (
        "framework-overhead-stnlab-train-against-a-loop"
    )


def _broken(page: Path) -> list[str]:
    """The page's relative links whose file or heading does not exist."""
    broken = []
    for target in _links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.name})")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page: Path):
    broken = _broken(page)
    assert not broken, f"{page.relative_to(ROOT)}: dead links: " + "; ".join(broken)


def test_dead_link_is_caught(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("# A heading\n")
    page.write_text("[ok](there.md#a-heading) [gone](missing.png) [bad](there.md#nope)\n"
                    "`[code](not-a-link.md)`\n")
    assert _broken(page) == ["missing.png (no such file)",
                             "there.md#nope (no heading #nope in there.md)"]


if __name__ == "__main__":  # python tests/test_docs_links.py: the same check, without pytest
    dead = [f"{p.relative_to(ROOT)}: {b}" for p in PAGES for b in _broken(p)]
    print("\n".join(dead) or f"{len(PAGES)} pages, every relative link resolves")
    raise SystemExit(1 if dead else 0)
