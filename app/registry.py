"""The page registry: the one place that lists the app's pages (the router and the tests read it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES_DIR = ROOT / "pages"


@dataclass(frozen=True)
class PageSpec:
    file: str  # under pages/
    title: str
    icon: str
    url_path: str

    @property
    def path(self) -> Path:
        return PAGES_DIR / self.file

    @property
    def url(self) -> str:
        """The page's path in the browser: Streamlit serves the default (first) page at "/"."""
        return "" if self is PAGES[0] else self.url_path


PAGES: list[PageSpec] = [
    PageSpec("home.py", "The nest", ":material/account_tree:", "nest"),
    PageSpec("stepper.py", "Token stepper", ":material/step:", "stepper"),
    PageSpec("continual.py", "Continual learning", ":material/swap_horiz:", "continual"),
    PageSpec("optimizers.py", "Optimizers as memories", ":material/moving:", "optimizers"),
    PageSpec("race.py", "M3 live", ":material/sprint:", "race"),
    PageSpec("recall.py", "Recall lab", ":material/search:", "recall"),
    PageSpec("attribution.py", "Attribution", ":material/highlight:", "attribution"),
    PageSpec("train.py", "Train", ":material/model_training:", "train"),
    PageSpec("claims.py", "Claims", ":material/fact_check:", "claims"),
    PageSpec("workshop.py", "Workshop", ":material/school:", "workshop"),
]


def page_for(url_path: str) -> PageSpec:
    return next(p for p in PAGES if p.url_path == url_path)
