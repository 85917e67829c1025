"""A precision-recall curve as a small PNG, drawn with Pillow.

matplotlib is not a dependency of clipdedup (requirements.txt), and one plot
does not justify one; Pillow is already there for decoding.
"""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 640, 480
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 70, 24, 40, 50
COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189))


def _font(size: int):
    try:
        return ImageFont.load_default(size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def draw_pr_curves(path: str, curves: list[tuple[str, list[tuple[float, float]]]],
                   points: list[tuple[str, float, float]] = (), title: str = "") -> None:
    """Writes a PNG at `path`: each curve (name, [(recall, precision), ...]) as a
    line, each point (name, recall, precision) as a marked dot, axes 0..1."""
    img = Image.new("RGB", (WIDTH, HEIGHT), "white")
    d = ImageDraw.Draw(img)
    small, big = _font(12), _font(14)
    x0, y0 = MARGIN_L, HEIGHT - MARGIN_B
    x1, y1 = WIDTH - MARGIN_R, MARGIN_T

    def xy(recall: float, precision: float) -> tuple[float, float]:
        return x0 + recall * (x1 - x0), y0 - precision * (y0 - y1)

    for i in range(11):
        v = i / 10
        gx, gy = xy(v, v)
        d.line([(gx, y0), (gx, y1)], fill=(230, 230, 230))
        d.line([(x0, gy), (x1, gy)], fill=(230, 230, 230))
        d.text((gx, y0 + 4), f"{v:.1f}", fill="black", font=small, anchor="ma")
        d.text((x0 - 6, gy), f"{v:.1f}", fill="black", font=small, anchor="rm")
    d.rectangle([x0, y1, x1, y0], outline="black")
    d.text(((x0 + x1) / 2, HEIGHT - 18), "recall", fill="black", font=big, anchor="mm")
    label = Image.new("RGB", (120, 20), "white")
    ImageDraw.Draw(label).text((60, 10), "precision", fill="black", font=big, anchor="mm")
    img.paste(label.rotate(90, expand=True), (8, int((y0 + y1) / 2) - 60))
    d.text((WIDTH / 2, 16), title, fill="black", font=big, anchor="mm")
    for n, (name, curve) in enumerate(curves):
        colour = COLOURS[n % len(COLOURS)]
        if len(curve) > 1:
            d.line([xy(r, p) for r, p in curve], fill=colour, width=2)
        for r, p in curve:
            cx, cy = xy(r, p)
            d.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=colour)
        d.text((x0 + 10, y0 - 20 - 16 * n), name, fill=colour, font=small, anchor="ls")
    for name, r, p in points:
        cx, cy = xy(r, p)
        d.rectangle([cx - 4, cy - 4, cx + 4, cy + 4], outline="black", width=2)
        right = cx < x1 - 100  # a label near the right edge goes left of its mark
        d.text((cx + 7 if right else cx - 7, cy - 7), name, fill="black", font=small,
               anchor="ls" if right else "rs")
    img.save(path, "PNG")
