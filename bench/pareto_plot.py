"""The toy Pareto plot, readable when many methods crowd one corner.

Accuracy against mean tokens per method (mean over seeds, error bars = seed std, clipped to what
accuracy can be: [0, 1]). Where several methods land close together (the concise, accurate corner),
a second panel zooms into that region and labels them there. Labels are placed greedily so that no
label overlaps another label or a marker: each tries offsets on rings of growing radius around its
point and takes the first free one (a thin leader line joins a label pushed far from its point).
"""

from __future__ import annotations

import math
from pathlib import Path

STYLES = {"base": dict(color="black", marker="*", s=160), "card": dict(color="tab:blue", marker="o", s=45),
          "grpo": dict(color="tab:green", marker="s", s=45), "other": dict(color="tab:orange", marker="^", s=45),
          "peer": dict(color="tab:red", marker="D", s=45)}
LEGEND = (("base", "base model"), ("card", "card method"), ("grpo", "GRPO, correctness only"),
          ("other", "other method"), ("peer", "peer (stock TRL)"))


def zoom_region(points: dict[str, tuple[float, float]], exclude: tuple[str, ...] = ("base",),
                acc_window: float = 0.08, length_factor: float = 1.5) -> tuple[float, float, float, float] | None:
    """(x0, x1, y0, y1) of the crowded corner -- methods within `acc_window` of the best accuracy and within
    `length_factor` x the shortest of them -- padded; None when fewer than 3 methods are there."""
    pts = {k: p for k, p in points.items() if k not in exclude}
    if not pts:
        return None
    best = max(y for _, y in pts.values())
    near = [(x, y) for x, y in pts.values() if y >= best - acc_window]
    shortest = min(x for x, _ in near)
    inside = [(x, y) for x, y in near if x <= shortest * length_factor]
    if len(inside) < 3:
        return None
    xs, ys = [x for x, _ in inside], [y for _, y in inside]
    xpad = max(0.08 * (max(xs) - min(xs)), 1.0)
    ypad = max(0.15 * (max(ys) - min(ys)), 0.005)
    return min(xs) - xpad, max(xs) + xpad, min(ys) - ypad, min(1.0, max(ys)) + ypad


def clipped_yerr(y: float, err: float | None) -> list[list[float]]:
    """Asymmetric error bar [[below], [above]] of +-err around accuracy y, clipped to [0, 1]."""
    e = err or 0.0
    return [[max(0.0, min(e, y))], [max(0.0, min(e, 1.0 - y))]]


def _overlaps(a, b) -> bool:
    return not (a.x1 <= b.x0 or b.x1 <= a.x0 or a.y1 <= b.y0 or b.y1 <= a.y0)


def place_labels(ax, points: dict[str, tuple[float, float]], fontsize: int = 8) -> list:
    """Annotate each point with its name where the label overlaps no placed label and no marker."""
    from matplotlib.transforms import Bbox

    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    to_px = ax.transData.transform
    frame = ax.get_window_extent(renderer)
    markers = {k: Bbox.from_bounds(*(to_px((x, y)) - 6), 12, 12) for k, (x, y) in points.items()}
    placed, texts = [], []
    # crowded points first: they have the fewest free places
    def crowding(k):
        px = to_px(points[k])
        return -sum(math.dist(px, to_px(p)) < 40 for p in points.values())

    for name in sorted(points, key=crowding):
        x, y = points[name]
        best = None
        for radius in (7, 12, 18, 26, 36, 50, 70, 95, 125, 160):
            for step in range(16):
                angle = 2 * math.pi * step / 16 + math.pi / 4
                dx, dy = radius * math.cos(angle), radius * math.sin(angle)
                text = ax.annotate(name, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                                   ha="left" if dx >= 0 else "right", va="bottom" if dy >= 0 else "top")
                box = text.get_window_extent(renderer).expanded(1.05, 1.1)
                free = (frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
                        and not any(_overlaps(box, b) for b in placed)
                        and not any(_overlaps(box, b) for k, b in markers.items() if k != name))
                if free:
                    best = (text, box, radius)
                    break
                text.remove()
            if best:
                break
        if best is None:  # nowhere free: the nearest spot, so the name is still shown
            text = ax.annotate(name, (x, y), xytext=(6, 6), textcoords="offset points", fontsize=fontsize)
            best = (text, text.get_window_extent(renderer), 7)
        text, box, radius = best
        if radius > 12:
            ax.annotate("", (x, y), xytext=text.get_position(), textcoords="offset points",
                        arrowprops=dict(arrowstyle="-", color="grey", lw=0.5, alpha=0.7))
        placed.append(box)
        texts.append(text)
    return texts


def pareto_png(agg: dict[str, dict], path: Path, kinds: dict[str, str], title: str) -> Path:
    """The plot of `agg` (method -> accuracy, mean_tokens, their _std, mean_minimal_tokens); `kinds` maps a
    method to its style (base, card, grpo, other, peer)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from conciser.eval.report import pareto_front

    points = {k: (a["mean_tokens"], a["accuracy"]) for k, a in agg.items() if a.get("accuracy") is not None}
    zoom = zoom_region(points)
    fig, axes = plt.subplots(1, 2 if zoom else 1, figsize=(14 if zoom else 8, 5.5), squeeze=False)
    names = list(points)
    front = [names[i] for i in pareto_front([points[k] for k in names])]
    minimal = agg.get("base", {}).get("mean_minimal_tokens")
    labelled = []
    for panel, ax in enumerate(axes[0]):
        for k, (x, y) in points.items():
            style = STYLES[kinds.get(k, "other")]
            xe, ye = agg[k].get("mean_tokens_std"), agg[k].get("accuracy_std")
            if xe or ye:
                ax.errorbar([x], [y], xerr=xe or 0, yerr=clipped_yerr(y, ye), fmt="none", ecolor=style["color"],
                            alpha=0.5, lw=1)
            ax.scatter([x], [y], zorder=3, **style)
        if len(front) > 1:
            ax.step([points[k][0] for k in front], [points[k][1] for k in front], where="post", color="grey",
                    ls="--", lw=1, label="Pareto front")
        if minimal:
            ax.axvline(minimal, color="red", lw=1, ls=":", label=f"minimal length ({minimal:.0f} tokens)")
        ax.set_xlabel("mean tokens per completion (held-out toy problems)")
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
        if panel == 0:
            top = max(y for _, y in points.values())
            ax.set_ylim(top=min(1.02, max(1.0, top) + 0.02))
            shown = points
            if zoom:
                x0, x1, y0, y1 = zoom
                ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="grey", lw=0.8, ls="-."))
                shown = {k: p for k, p in points.items() if not (x0 <= p[0] <= x1 and y0 <= p[1] <= y1)}
                ax.annotate("zoomed at right", (x1, y0), fontsize=7, color="grey", ha="right", va="top")
            for kind, label in LEGEND:
                if kind in kinds.values() or (kind == "base" and "base" in points):
                    ax.scatter([], [], label=label, **{**STYLES[kind], "s": 30})
            ax.legend(fontsize=8, loc="best")
            ax.set_title(title)
        else:
            x0, x1, y0, y1 = zoom
            ax.set_xlim(x0, x1)
            ax.set_ylim(y0, y1)
            shown = {k: p for k, p in points.items() if x0 <= p[0] <= x1 and y0 <= p[1] <= y1}
            ax.set_title("the crowded corner, zoomed")
        labelled.append((ax, shown))
    fig.tight_layout()
    for ax, shown in labelled:  # after the layout: placement works in final display coordinates
        place_labels(ax, shown)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
