"""Server-side SVG: the lineage graph of a version. No JavaScript, no libraries. (Score charts are
drawn by plotly.js in the browser: hub/static/hub/adapter-charts.js.)

Every string that reaches the markup goes through `_esc`, so the returned SafeString is safe to
inline in a template.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from django.utils.safestring import SafeString, mark_safe

POSITIVE = "#2f6fdf"
NEGATIVE = "#c0392b"
CHAR_WIDTH = 7.2  # average advance of the 12px UI font, for sizing boxes around text


def _esc(text: object) -> str:
    return escape(str(text), quote=True)


def _num(value: float) -> str:
    """A compact coordinate: SVG needs no more than two decimals."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


# --- Lineage -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    label: str  # "ns/name:3"
    href: str
    weight: float | None = None  # the edge's weight (None for the centre node)
    negated: bool = False
    yanked: bool = False
    note: str = ""  # a second line: a label or "yanked"


NODE_H = 40
GAP_Y = 18
COLUMN_GAP = 120


def _node_width(node: Node) -> float:
    return max(len(node.label), len(node.note)) * CHAR_WIDTH + 28


def lineage_graph(centre: Node, parents: Sequence[Node], children: Sequence[Node]) -> SafeString:
    """Parents → this version → children; edges carry their weights, negated ones in red and dashed."""
    parent_w = max((_node_width(n) for n in parents), default=0.0)
    centre_w = _node_width(centre)
    child_w = max((_node_width(n) for n in children), default=0.0)
    rows = max(len(parents), len(children), 1)
    height = rows * NODE_H + (rows - 1) * GAP_Y + 40
    x_parent = 10.0
    x_centre = x_parent + (parent_w + COLUMN_GAP if parents else 0)
    x_child = x_centre + centre_w + COLUMN_GAP
    width = (x_child + child_w if children else x_centre + centre_w) + 10

    def column_y(count: int) -> list[float]:
        block = count * NODE_H + (count - 1) * GAP_Y
        first = (height - block) / 2
        return [first + i * (NODE_H + GAP_Y) for i in range(count)]

    centre_y = (height - NODE_H) / 2
    out = [
        f'<svg class="lineage" viewBox="0 0 {_num(width)} {_num(height)}" role="img" '
        f'aria-label="Lineage of {_esc(centre.label)}" xmlns="http://www.w3.org/2000/svg" '
        f'style="max-width:{_num(width)}px">',
        f"<title>Lineage of {_esc(centre.label)}</title>",
        "<defs>",
        f'<marker id="arrow-pos" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">'
        f'<path d="M0,0 L10,5 L0,10 z" fill="{POSITIVE}"/></marker>',
        f'<marker id="arrow-neg" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">'
        f'<path d="M0,0 L10,5 L0,10 z" fill="{NEGATIVE}"/></marker>',
        "</defs>",
    ]
    edges: list[str] = []
    nodes: list[str] = []
    for node, y in zip(parents, column_y(len(parents)), strict=True):
        edges.append(_edge(x_parent + parent_w, y + NODE_H / 2, x_centre, centre_y + NODE_H / 2, node))
        nodes.append(_node(node, x_parent, y, parent_w, "parent"))
    for node, y in zip(children, column_y(len(children)), strict=True):
        edges.append(_edge(x_centre + centre_w, centre_y + NODE_H / 2, x_child, y + NODE_H / 2, node))
        nodes.append(_node(node, x_child, y, child_w, "child"))
    nodes.append(_node(centre, x_centre, centre_y, centre_w, "current"))
    out += edges + nodes + ["</svg>"]
    return mark_safe("".join(out))


def _edge(x1: float, y1: float, x2: float, y2: float, node: Node) -> str:
    colour = NEGATIVE if node.negated else POSITIVE
    kind = "negated" if node.negated else "input"
    middle = (x1 + x2) / 2
    path = f"M{_num(x1)},{_num(y1)} C{_num(middle)},{_num(y1)} {_num(middle)},{_num(y2)} {_num(x2 - 2)},{_num(y2)}"
    weight = f"{node.weight:+g}" if node.weight is not None else ""
    dash = ' stroke-dasharray="6 4"' if node.negated else ""
    arrow = "neg" if node.negated else "pos"
    label_w = len(weight) * CHAR_WIDTH + 12
    lx, ly = middle, (y1 + y2) / 2
    return (
        f'<g class="edge edge-{kind}"><path d="{path}" stroke="{colour}" fill="none" stroke-width="2"'
        f'{dash} marker-end="url(#arrow-{arrow})"/>'
        f'<rect x="{_num(lx - label_w / 2)}" y="{_num(ly - 10)}" width="{_num(label_w)}" height="20" rx="10" '
        f'fill="#fff" stroke="{colour}"/>'
        f'<text class="weight" x="{_num(lx)}" y="{_num(ly)}" dy="0.35em" text-anchor="middle" fill="{colour}">'
        f"{_esc(weight)}</text></g>"
    )


def _node(node: Node, x: float, y: float, width: float, kind: str) -> str:
    classes = f"node node-{kind}" + (" node-yanked" if node.yanked else "")
    text_y = y + (NODE_H / 2 - 6 if node.note else NODE_H / 2)
    note = (
        f'<text class="note" x="{_num(x + width / 2)}" y="{_num(y + NODE_H / 2 + 10)}" text-anchor="middle">'
        f"{_esc(node.note)}</text>"
        if node.note
        else ""
    )
    return (
        f'<a href="{_esc(node.href)}" class="{classes}"><rect x="{_num(x)}" y="{_num(y)}" width="{_num(width)}" '
        f'height="{NODE_H}" rx="8"/><text x="{_num(x + width / 2)}" y="{_num(text_y)}" dy="0.35em" '
        f'text-anchor="middle">{_esc(node.label)}</text>{note}</a>'
    )
