"""The claims board: docs/CLAIMS.md is the list the page shows, every row renders with its status and a link
that opens a real view, and a filter by status hides the others."""

import re
from urllib.parse import parse_qs, urlparse

import pytest

from app.claims import CLAIMS, DOC, STATUSES, Claim, link, literal, render_markdown
from app.presets import PRESETS
from app.registry import PAGES
from tests.apptest import open_page


def _badges(at) -> list[str]:
    """The status badges (st.badge renders as markdown ':colour-badge[:icon: text]')."""
    return [m.value.split("]")[0].split(": ", 1)[1] for m in at.markdown if "-badge[" in m.value]


def test_the_doc_is_the_list_the_page_shows():
    assert DOC.read_text() == render_markdown(), "docs/CLAIMS.md is stale: run python -m app.claims"


def test_every_claim_has_a_status_a_number_and_a_view_that_exists():
    pages = {p.url_path for p in PAGES}
    assert len({c.key for c in CLAIMS}) == len(CLAIMS)
    assert {c.status for c in CLAIMS} <= set(STATUSES)
    for c in CLAIMS:
        assert c.page in pages, c.key
        if c.status != "not testable here":
            assert any(ch.isdigit() for ch in c.ours) and c.command != "—", c.key
        query = parse_qs(urlparse(link(c)).query)
        for name in query.get("preset", []):  # a preset opens the claim's own page
            assert name in PRESETS and PRESETS[name].page == c.page, c.key
    with pytest.raises(ValueError, match="status"):
        Claim("x", "c", "p", "o", "proven", "cmd", "nest")


def test_the_page_renders_every_claim_with_its_status_and_link():
    at = open_page("claims")
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    for c in CLAIMS:
        assert literal(c.claim) in text, c.key  # a star in a claim, as (aa)*, shown as a star, not emphasis
    assert any("*" in c.claim for c in CLAIMS)
    assert sorted(_badges(at)) == sorted(c.status for c in CLAIMS)
    # every view linked from the server's root (a new tab or a copied link opens the view, not this page)
    assert re.findall(r"See it: [^\]]*\]\(\.(/[^)]*)\)", text) == [link(c) for c in CLAIMS]
    assert all(int(m.value) == sum(c.status == m.label for c in CLAIMS) for m in at.metric)


def test_filtering_by_status_keeps_only_those_claims_and_the_url_holds_it():
    at = open_page("claims", claims_status="not reproduced at this scale")
    assert set(_badges(at)) == {"not reproduced at this scale"}
    text = " ".join(m.value for m in at.markdown)
    assert text.count("See it: ") == sum(c.status == "not reproduced at this scale" for c in CLAIMS)


@pytest.mark.parametrize("claim", [c for c in CLAIMS if c.params and "preset" not in c.params], ids=lambda c: c.key)
def test_a_link_without_a_preset_opens_its_view_with_the_claims_settings(claim):
    """A claim whose link sets controls directly (no preset, whose own tests cover it) opens its page with
    every one of those controls holding the link's value."""
    at = open_page(claim.page, **claim.params)
    assert not at.exception
    kinds = ("selectbox", "multiselect", "radio", "select_slider", "text_input", "number_input", "slider")
    widgets = {w.key: w for kind in kinds for w in at.get(kind)}
    for key, value in claim.params.items():
        assert key in widgets, f"{claim.key}: no control {key!r} on {claim.page}"
        got = widgets[key].value
        assert (list(got) if isinstance(value, list) else got) == value, (claim.key, key, got)
