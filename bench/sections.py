"""The ``## `` sections of docs/benchmarks.md that separate commands write.

``make bench`` writes the whole file but keeps the sections that ``make
bench-compare`` and ``make bench-asgi`` wrote; this module (no hug, no Falcon)
is what all three share.
"""

from __future__ import annotations

from typing import Optional

#: The heading (up to the base commit) of the section ``python -m bench.compare`` writes.
SIDE_BY_SIDE = "## Side by side with "


def find_section(text: str, prefix: str) -> Optional[tuple[int, int]]:
    """Start and end offsets of the ``## `` section whose heading starts with ``prefix``."""
    if text.startswith(prefix):
        start = 0
    else:
        start = text.find("\n" + prefix) + 1
        if start == 0:
            return None
    end = text.find("\n## ", start + len(prefix))
    return start, (len(text) if end < 0 else end + 1)


def replace_section(text: str, prefix: str, section: str, *, before: str = "## Machine") -> str:
    """``text`` with its ``prefix`` section replaced by ``section`` (ending in a blank line).

    Without one, ``section`` goes in front of the ``before`` heading, or at the end.
    """
    found = find_section(text, prefix)
    if found is None:
        anchor = text.find("\n" + before)
        if anchor < 0:
            return text.rstrip("\n") + "\n\n" + section
        found = (anchor + 1, anchor + 1)
    return text[: found[0]] + section + text[found[1] :]


def keep_section(old: str, new: str, prefix: str = SIDE_BY_SIDE) -> str:
    """``new`` with ``old``'s ``prefix`` section carried over, so ``make bench`` keeps
    the figures ``make bench-compare`` wrote."""
    found = find_section(old, prefix)
    return (
        new if found is None else replace_section(new, prefix, old[found[0] : found[1]].rstrip("\n") + "\n\n")
    )


#: The heading of the section ``python -m bench.asgi`` writes.
ASGI = "## ASGI side by side"

#: The sections ``make bench`` carries over from the file it replaces.
KEPT = (SIDE_BY_SIDE, ASGI)
