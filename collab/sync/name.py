"""What a name shown to people may contain: the rule room names and version names share.

PURE: stdlib only. A room name comes from a URL and a version name from a request body;
both end up in logs, JSON bodies, headers and terminals, where a control character (a
newline, an escape) forges lines or rewrites the screen. Each caller adds its own bounds
(length, emptiness) and raises its own error.
"""

from __future__ import annotations

import re

__all__ = ["has_control_characters"]

# C0 controls and DEL. C1 controls (U+0080-U+009F) are allowed, as they always were.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def has_control_characters(text: str) -> bool:
    """Whether ``text`` holds a C0 control character or DEL."""
    return _CONTROL.search(text) is not None
