"""PNG plots of an evaluation: F1 / TPR / TNR per row, precision-recall curves, per-item timelines.

Figures are built with matplotlib's object API on its Agg canvas (no pyplot, no display, no
global backend switch), so plotting works on servers and inside a running service.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .records import LEVELS, SCORER_ROW, ItemTrace
from .scoring import Evaluation

METRICS = (("F1", "f1"), ("TPR", "tpr"), ("TNR", "tnr"))


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=110)
    return path


def bar_chart(evaluation: Evaluation, path: Path) -> Path:
    """F1, TPR and TNR (%) of every row, one panel per level."""
    labels = [r.spec.label for r in evaluation.rows]
    figure = Figure(figsize=(max(7.0, 1.1 * len(labels) + 2), 7.5), layout="constrained")
    axes = figure.subplots(len(LEVELS), 1, sharex=True)
    x = np.arange(len(labels))
    width = 0.26
    for ax, level in zip(axes, LEVELS):
        for k, (name, attr) in enumerate(METRICS):
            values = [100 * getattr(r.scores(level), attr) for r in evaluation.rows]
            bars = ax.bar(x + (k - 1) * width, values, width, label=name)
            ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)
        ax.set_ylim(0, 110)
        ax.set_ylabel("%")
        ax.set_title(f"{level} level")
        ax.grid(axis="y", alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    figure.legend(handles, names, loc="outside upper center", ncols=3, fontsize=8)
    axes[-1].set_xticks(x, labels, rotation=25, ha="right")
    return _save(figure, path)


def pr_curves(evaluation: Evaluation, path: Path) -> Path:
    """Window-level precision-recall curve of every row, average precision in the legend."""
    figure = Figure(figsize=(7.0, 6.0), layout="constrained")
    ax = figure.subplots()
    any_curve = False
    for row in evaluation.rows:
        precision, recall, _ = row.pr_curve
        if row.window.support == 0 or row.window.tp + row.window.fn == 0:
            continue
        any_curve = True
        style = "-" if row.spec.kind == "verifier" else "--"
        ax.step(np.r_[0.0, recall], np.r_[precision[0], precision], where="post", linestyle=style,
                label=f"{row.spec.label} (AP {100 * row.window_ap:.1f})")
    if not any_curve:
        ax.text(0.5, 0.5, "no windows with smoke to rank", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall (window level)")
    ax.set_ylabel("precision")
    ax.set_title("precision-recall, window level")
    ax.grid(alpha=0.3)
    if any_curve:
        ax.legend(loc="lower left", fontsize=8)
    return _save(figure, path)


def _truth_spans(trace: ItemTrace, last: int) -> list[tuple[int, int]]:
    item = trace.item
    if not item.is_smoke:
        return []
    return [(item.smoke_from or 0, item.smoke_to if item.smoke_to is not None else last)]


def timeline(evaluation: Evaluation, index: int, path: Path) -> Path:
    """One item: each head's highest p(smoke) per kept frame (over its candidates), the detector's
    best box confidence, the truth shaded, the decision threshold, and each row's first alarm."""
    trace = evaluation.traces[index]
    frames = [f.index for f in trace.frames]
    last = max([*frames, (trace.item.frame_count or 1) - 1, 0])
    figure = Figure(figsize=(9.0, 3.6), layout="constrained")
    ax = figure.subplots()
    for start, end in _truth_spans(trace, last):
        ax.axvspan(start - 0.5, end + 0.5, color="tab:red", alpha=0.12, label="smoke (truth)")
    best_conf = [max((d.conf for d in f.detections), default=0.0) for f in trace.frames]
    ax.plot(frames, best_conf, ".", color="0.55", markersize=4, label="detector: best box conf")
    heads = [s.key for s in evaluation.specs if s.kind == "verifier"]
    colours = {}
    for head in heads:
        # the row's own score per window: a head's p, or the track scorer's p of the region's history
        scores = evaluation.decisions[index][head].window_score
        best: dict[int, float] = {}
        for window, score in zip(trace.windows, scores):
            best[window.frame_index] = max(best.get(window.frame_index, 0.0), float(score))
        xs = sorted(best)
        (line,) = ax.plot(xs, [best[x] for x in xs], "-", linewidth=1.2, marker="o", markersize=2.5,
                          label=evaluation.row(head).spec.label)
        colours[head] = line.get_color()
    for key, outcome in evaluation.outcomes[index].items():
        if outcome.first_alarm is not None:
            ax.axvline(outcome.first_alarm[0], color=colours.get(key, "0.3"), linestyle=":", linewidth=1)
    ax.axhline(evaluation.decision.threshold, color="black", linewidth=0.8, linestyle="--", label="threshold")
    if SCORER_ROW in colours and evaluation.decision.scorer_threshold is not None:
        ax.axhline(evaluation.decision.scorer_threshold, color=colours[SCORER_ROW], linewidth=0.8, linestyle="--",
                   label="track scorer threshold")
    ax.set_xlim(-0.5, last + 0.5)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("frame")
    ax.set_ylabel("p(smoke)")
    ax.set_title(f"{trace.item.path.name} ({trace.item.label}); dotted: first alarm per row", fontsize=9)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7)
    return _save(figure, path)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80]


def write_plots(evaluation: Evaluation, out: Path) -> list[Path]:
    """All plots into `out` (bar chart and PR curves) and `out/timelines/` (one per item)."""
    out.mkdir(parents=True, exist_ok=True)
    written = [bar_chart(evaluation, out / "scores.png"), pr_curves(evaluation, out / "precision_recall.png")]
    folder = out / "timelines"
    folder.mkdir(exist_ok=True)
    for i, trace in enumerate(evaluation.traces):
        written.append(timeline(evaluation, i, folder / f"{i:04d}_{_safe(trace.item.path.name)}.png"))
    return written
