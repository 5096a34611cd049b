"""Model cards: Markdown rendered to HTML, then sanitized so no script, style, event handler or
`javascript:` URL gets through, whatever the card's author wrote."""

from __future__ import annotations

import re

import markdown
import nh3
from django.utils.safestring import SafeString, mark_safe

# The YAML front matter PEFT and HF tools read (base_model, tags, ...) is metadata, shown elsewhere.
FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n.*?\r?\n---[ \t]*(\r?\n|\Z)", re.DOTALL)
EXTENSIONS = ["fenced_code", "tables", "sane_lists"]
# nh3's defaults (ammonia's) already drop script/style (with their content), every on* attribute
# and non-web URL schemes; we narrow the schemes further and let code blocks keep their language.
URL_SCHEMES = {"http", "https", "mailto"}
ATTRIBUTES = {**nh3.ALLOWED_ATTRIBUTES, "img": {"src", "alt", "title", "width", "height"}}


def strip_front_matter(text: str) -> str:
    return FRONT_MATTER.sub("", text, count=1)


def render_card(text: str) -> SafeString:
    """The card's Markdown as sanitized HTML (empty for an empty card)."""
    body = strip_front_matter(text or "").strip()
    if not body:
        return mark_safe("")
    html = markdown.markdown(body, extensions=EXTENSIONS, output_format="html")
    clean = nh3.clean(
        html,
        attributes=ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        allowed_classes={"code": {f"language-{lang}" for lang in _LANGUAGES}},
    )
    return mark_safe(clean)


_LANGUAGES = ("python", "py", "sh", "bash", "shell", "console", "json", "yaml", "toml", "text", "js", "sql")
