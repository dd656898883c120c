"""Session labels: the short text a user's session listing shows, such as "Firefox on Linux".

An app passes one to ``session.bind_user(user_id, label)`` at login, usually made
from the User-Agent, so that a user can tell their sessions apart before ending
one. A label is shown in pages and may reach logs, so it is kept short and free of
anything that could break or disguise a line.
"""

from __future__ import annotations

import unicodedata
from typing import Optional

#: The longest label, in characters.
MAX_LABEL = 100

#: Unicode categories no label may hold: controls (C0, DEL, C1), format characters (bidi
#: overrides could disguise a listing), lone surrogates (no store could keep them as UTF-8)
#: and line or paragraph separators.
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def check_label(label: Optional[str]) -> None:
    """Return if ``label`` is None or may label a session; otherwise raise ValueError naming
    ``label``: text of at most :data:`MAX_LABEL` characters, none of
    :data:`FORBIDDEN_CATEGORIES`."""
    if label is None:
        return
    if not isinstance(label, str) or len(label) > MAX_LABEL or not _shown_safely(label):
        raise ValueError(f"label must be text of at most {MAX_LABEL} characters without control characters")


def _shown_safely(label: str) -> bool:
    if label.isascii():
        return label.isprintable()  # the common case: no per-character lookup
    return not any(unicodedata.category(char) in FORBIDDEN_CATEGORIES for char in label)
