"""One 'did you mean' for every misspelt name: keys, table entries, DIRAC_RELEASE_* variables.

One helper so every message suggests the same way (one candidate, difflib's default cut-off)
and a huge misspelling costs nothing: text longer than any real name gets no suggestion.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

#: Longer than any key, name or variable we have: difflib is quadratic, so such input is
#: never compared (a 20 MB key must not take seconds to report).
MAX_COMPARED = 100


def close_match(word: str, choices: Iterable[str]) -> str | None:
    """The choice `word` was most probably meant to be, or None."""
    if len(word) > MAX_COMPARED:
        return None
    close = difflib.get_close_matches(word, list(choices), n=1)
    return close[0] if close else None
