"""`report.html`: one self-contained page (inline CSS and SVG, thumbnails as
`data:` uris, no script, nothing fetched), rendered from what `tools.report`
collected. Every section has a stable id (`counts`, `histogram`, one per
band, `groups`, `errors`, `byte-copies`, `shards`) for links and tests.
"""

from __future__ import annotations

import base64
import html
import math

import numpy as np

esc = html.escape

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1180px; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; margin-top: 1.6em; }
.standin { background: #b00; color: #fff; padding: .7em 1em; font-weight: bold; font-size: 1.2em; }
table { border-collapse: collapse; font-size: 13px; }
td, th { border: 1px solid #ddd; padding: 3px 7px; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { border: 1px solid #ccc; border-radius: 6px; padding: 6px 12px; min-width: 110px; }
.card b { display: block; font-size: 1.5em; }
.pairs, .gallery { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
.pair { border: 1px solid #ccc; border-radius: 6px; padding: 6px; width: 382px; box-sizing: border-box; }
.pair .two { display: flex; gap: 6px; }
figure { margin: 0; width: 180px; font-size: 11px; word-break: break-all; }
figure img { max-width: 174px; max-height: 174px; display: block; border: 2px solid #ccc; }
figure.kept img, figure.keeper img { border-color: #1a7f37; }
figure.dropped img { border-color: #c33; }
.tag { font-weight: bold; } .kept .tag, .keeper .tag { color: #1a7f37; } .dropped .tag { color: #c33; }
.missing { width: 170px; height: 80px; background: #eee; border: 2px dashed #bbb; padding: 2px;
           overflow: hidden; }
.score { font-size: 13px; margin-bottom: 4px; }
.note { color: #555; font-size: 13px; }
svg text { font-size: 11px; font-family: system-ui, sans-serif; }
"""


def data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def figure(thumb: dict | None, lines: list[str], css: str = "") -> str:
    """One picture with its caption lines (already escaped); a box saying why
    when there is no picture."""
    if thumb and thumb.get("thumbnail"):
        size = f"{thumb['width']}x{thumb['height']}"
        body = f'<img src="{data_uri(thumb["thumbnail"])}" alt="{esc(size)}" title="{esc(size)}">'
    else:
        why = (thumb or {}).get("note") or "no picture: the record's file is not known"
        body = f'<div class="missing">{esc(why)}</div>'
    return f'<figure class="{css}">{body}<figcaption>{"<br>".join(lines)}</figcaption></figure>'


def histogram_svg(edges: np.ndarray, counts: np.ndarray, lines: list[tuple[float, str, str]],
                  width: int = 1100, height: int = 260) -> str:
    """Bars of log10(1 + count) per bin, x from edges[0] to edges[-1], with
    vertical lines (score, label, colour)."""
    left, right, top, bottom = 48, 12, 18, 34
    w, h = width - left - right, height - top - bottom
    lo, hi = float(edges[0]), float(edges[-1])
    peak = max(1.0, math.log10(1 + int(counts.max()))) if len(counts) else 1.0

    def x(score: float) -> float:
        return left + (score - lo) / (hi - lo) * w if hi > lo else left

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="histogram of pair scores">',
             f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="#fafafa" stroke="#ccc"/>']
    for decade in range(int(math.floor(peak)) + 1):
        y = top + h - decade / peak * h
        parts.append(f'<line x1="{left - 4}" y1="{y:.1f}" x2="{left + w}" y2="{y:.1f}" '
                     'stroke="#eee"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
                     f'{10 ** decade:,}</text>')
    for a, b, n in zip(edges[:-1], edges[1:], counts):
        if n:
            bar = math.log10(1 + int(n)) / peak * h
            parts.append(f'<rect x="{x(a):.1f}" y="{top + h - bar:.1f}" '
                         f'width="{max(1.0, x(b) - x(a) - 1):.1f}" height="{bar:.1f}" '
                         f'fill="#4a78c2"><title>{a:.4f}-{b:.4f}: {int(n):,} pairs</title></rect>')
    for i in range(6):
        score = lo + (hi - lo) * i / 5
        parts.append(f'<text x="{x(score):.1f}" y="{top + h + 14}" text-anchor="middle">'
                     f'{score:.3f}</text>')
    parts.append(f'<text x="{left + w / 2}" y="{height - 3}" text-anchor="middle">pair score '
                 '(cosine); bar height: log10(1 + pairs)</text>')
    for i, (score, label, colour) in enumerate(lines):
        xs = x(score)
        parts.append(f'<line class="threshold" x1="{xs:.1f}" y1="{top}" x2="{xs:.1f}" '
                     f'y2="{top + h}" stroke="{colour}" stroke-width="2" '
                     f'stroke-dasharray="{"" if colour != "#888" else "4 3"}"/>')
        anchor, dx = ("end", -3) if xs > left + w / 2 else ("start", 3)  # stay inside
        parts.append(f'<text x="{xs + dx:.1f}" y="{top + 12 + 12 * (i % 3)}" '
                     f'text-anchor="{anchor}" fill="{colour}">{esc(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def table(header: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    """An HTML table of already-escaped cells."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def page(title: str, sections: list[str]) -> str:
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
            + "\n".join(sections) + "</body></html>\n")
