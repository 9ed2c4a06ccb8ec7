"""ProseMirror JSON as HTML: how a rich-text version, diff or blame is shown in a page.

PURE: JSON in, a string out; never awaits.

Every byte of the document came from some client, so everything is escaped (text and
attribute values) and nothing a client wrote becomes markup: node and mark names choose
among fixed tags, links keep only ``http``, ``https``, ``mailto`` and relative addresses.
Known nodes (Tiptap's and prosemirror-schema-basic's names) become their tags; any other
node is kept, never dropped, as a ``<div>`` (``<span>`` inside a text block) carrying its
name in ``data-type`` and its attrs as JSON in ``data-attrs``. The ``ychange`` mark and
node attr of a diff or blame become ``<ins>`` / ``<del>`` (``data-user``, ``data-seqs``).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["html_of"]

_BLOCKS = {
    "paragraph": "p",
    "blockquote": "blockquote",
    "bulletList": "ul",
    "bullet_list": "ul",
    "orderedList": "ol",
    "ordered_list": "ol",
    "listItem": "li",
    "list_item": "li",
}
_VOID = {
    "horizontalRule": "hr",
    "horizontal_rule": "hr",
    "hardBreak": "br",
    "hard_break": "br",
}
_TEXTBLOCKS = {"paragraph", "heading", "codeBlock", "code_block"}
_MARKS = {
    "bold": "strong",
    "strong": "strong",
    "italic": "em",
    "em": "em",
    "strike": "s",
    "code": "code",
    "underline": "u",
}
_SAFE_SCHEMES = ("http:", "https:", "mailto:")
_MAX_DEPTH = 200


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attr(name: str, value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return f' {name}="{_escape(text).replace(chr(34), "&quot;")}"'


def _change(change: Any, inline: bool = True) -> tuple[str, str]:
    """The tag a ``ychange`` value asks for (``ins`` and ``del`` may hold blocks too), and
    its attributes; ``("", "")`` for none."""
    if not isinstance(change, dict):
        return "", ""
    kind = change.get("type")
    tag = {"added": "ins", "removed": "del"}.get(kind if isinstance(kind, str) else "")
    extra = ""
    if tag is None:  # a formatting or attribute change
        tag = "span" if inline else "div"
        extra = _attr("data-change", kind)
    if "user" in change:
        extra += _attr("data-user", change["user"])
    seqs = change.get("seqs")
    if isinstance(seqs, list):
        extra += _attr("data-seqs", "-".join(str(s) for s in seqs))
    return tag, extra


def _href(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    head = value.strip().lower()
    if ":" in head.split("/", 1)[0] and not head.startswith(_SAFE_SCHEMES):
        return None  # javascript:, data: and the like
    return value


def _mark_tags(mark: Any) -> tuple[str, str]:
    if not isinstance(mark, dict):
        return "", ""
    kind = mark.get("type")
    found = mark.get("attrs")
    attrs: dict[str, Any] = found if isinstance(found, dict) else {}
    if kind == "ychange":
        tag, extra = _change(attrs)
        return f"<{tag}{extra}>", f"</{tag}>"
    if kind == "link":
        href = _href(attrs.get("href"))
        return f"<a{_attr('href', href) if href is not None else ''}>", "</a>"
    if isinstance(kind, str) and kind in _MARKS:
        tag = _MARKS[kind]
        return f"<{tag}>", f"</{tag}>"
    extra = _attr("data-attrs", attrs) if attrs else ""
    return f"<span{_attr('data-mark', str(kind))}{extra}>", "</span>"


def _text(node: dict[str, Any]) -> str:
    text = node.get("text")
    body = _escape(text) if isinstance(text, str) else ""
    marks = node.get("marks")
    if not isinstance(marks, list):
        return body
    # ychange outermost, so a deleted bold word reads <del><strong>..</strong></del>
    ordered = sorted(
        marks, key=lambda m: 0 if isinstance(m, dict) and m.get("type") == "ychange" else 1
    )
    opens, closes = zip(*(_mark_tags(m) for m in ordered), strict=True) if ordered else ((), ())
    return "".join(opens) + body + "".join(reversed(closes))


def _children(node: dict[str, Any], depth: int) -> str:
    content = node.get("content")
    if not isinstance(content, list):
        return ""
    inline = node.get("type") in _TEXTBLOCKS
    return "".join(_node(child, depth + 1, inline) for child in content)


def _node(node: Any, depth: int, inline: bool) -> str:
    if not isinstance(node, dict):
        return ""
    if depth > _MAX_DEPTH:  # no editor nests so deep; say so rather than recurse on
        return f'<div data-truncated="nested deeper than {_MAX_DEPTH}"></div>'
    kind = node.get("type")
    if kind == "text":
        return _text(node)
    found = node.get("attrs")
    attrs: dict[str, Any] = found if isinstance(found, dict) else {}
    change, change_attrs = _change(attrs.get("ychange"), inline)
    inner = _children(node, depth)
    if kind in _VOID:
        html = f"<{_VOID[kind]}>"
    elif kind in _BLOCKS:
        tag = _BLOCKS[kind]
        start = attrs.get("start")
        extra = _attr("start", start) if tag == "ol" and start not in (None, 1) else ""
        html = f"<{tag}{extra}>{inner}</{tag}>"
    elif kind == "heading":
        level = attrs.get("level")
        tag = f"h{level}" if isinstance(level, int) and 1 <= level <= 6 else "h1"
        html = f"<{tag}>{inner}</{tag}>"
    elif kind in ("codeBlock", "code_block"):
        language = attrs.get("language")
        extra = _attr("class", f"language-{language}") if isinstance(language, str) else ""
        html = f"<pre><code{extra}>{inner}</code></pre>"
    else:
        tag = "span" if inline else "div"
        rest = {k: v for k, v in attrs.items() if k != "ychange"}
        extra = _attr("data-type", str(kind)) + (_attr("data-attrs", rest) if rest else "")
        html = f"<{tag}{extra}>{inner}</{tag}>"
    if change:
        html = f"<{change}{change_attrs}>{html}</{change}>"
    return html


def html_of(doc: dict[str, Any]) -> str:
    """A ProseMirror document as HTML (see the module docstring)."""
    return _children(doc, 0)
