"""Claims: each claim of the paper we can test at our scale, the paper's number, ours, and where to see it."""

import streamlit as st

from app.claims import CLAIMS, NOT_REPRODUCED, NOT_TESTABLE, PARTLY, REPRODUCED, STATUSES, counts, literal, see_it
from app.urlstate import multichoice

BADGE = {REPRODUCED: ("green", ":material/check_circle:"), PARTLY: ("orange", ":material/rule:"),
         NOT_REPRODUCED: ("red", ":material/cancel:"), NOT_TESTABLE: ("gray", ":material/block:")}  # fmt: skip

st.title("The paper's claims at our scale")
st.markdown(
    "Each row is a claim of the Nested Learning paper (or one the app tests about it), the paper's number, "
    "**ours** — run on this project's 2-core CPU by the command shown, with its seeds — and a status. Our "
    "models have about 150 thousand parameters and train for minutes; the paper's have hundreds of millions. "
    "A claim that does not hold here is a finding at this scale, not a verdict on the paper. "
    "The same list is docs/CLAIMS.md."
)
cols = st.columns(len(STATUSES))
for col, (status, n) in zip(cols, counts().items(), strict=True):
    col.metric(status, n)
shown = multichoice("Show", STATUSES, key="claims_status", default=STATUSES,
                    help="Filter the claims by their status at our scale.")  # fmt: skip
for claim in (c for c in CLAIMS if c.status in shown):
    with st.container(border=True):
        colour, icon = BADGE[claim.status]
        st.badge(claim.status, color=colour, icon=icon)
        st.markdown(f"**{literal(claim.claim)}**")
        st.markdown(f"**Paper:** {literal(claim.paper)}\n\n**Ours:** {literal(claim.ours)}")
        if claim.limits:
            st.caption(f"What limits it: {literal(claim.limits)}")
        if claim.command != "—":
            st.code(claim.command, language="bash", wrap_lines=True)
        st.markdown(see_it(claim))
if not shown:
    st.info("No status is selected: pick one above.")
