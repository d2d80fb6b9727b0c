"""table.md, table.csv, results.json and the printed table.

The table has the lecture's columns and precision (percentages with two decimals, s/frame with
three, as Table 7-1 prints them); results.json keeps the unrounded ratios, the confusion counts
at both levels, time to detection, per-item results and everything needed to say what was
measured (data and bundle hashes, config, device, library versions).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from pathlib import Path

from pipeline.config import DecisionConfig
from pipeline.records import StageTimes
from training.metrics import Interval
from training.windows import MIN_OVERLAP

from .records import LEVELS, MISS_MEANINGS, ItemTrace, Level, RowResult, RunInfo
from .scoring import Evaluation

FORMAT = "smokewatch-evaluation"
FORMAT_VERSION = 1
COLUMNS = ("verifier", "Precision %", "Recall %", "F1 %", "TPR %", "TNR %", "s/frame")
DEFINITIONS = {
    "window": "every candidate window a verifier judged, against the truth of the window's last frame; "
    "baselines judge the same windows (detector alone: the candidate's box was detected in that frame; "
    "frame vote: the candidate's box passes the vote there)",
    "item": "an item's verdict (any confirmed region / any alarm) against its label",
    "time_to_detection": "smoke items only: from the first smoke frame (smoke_from, or 0) to the row's first "
    "alarm at or after it; statistics over detected items, `missed` counts the others",
    "s_per_frame": "(decode + detection [+ features] + the row's own head or vote) / processed frames, "
    "summed over items; stages timed with the device synchronised",
    "miss": "a smoke item a verifier row missed, put down to the first stage it did not get through (a region holds "
    f"the smoke when it holds {MIN_OVERLAP:.0%} of a ground-truth box, or, for items without boxes, during the smoke): "
    + "; ".join(f"{stage}: {meaning}" for stage, meaning in MISS_MEANINGS.items()),
    "item_f1_interval": "95 % percentile bootstrap interval of the item-level F1: the items resampled with "
    "replacement 2000 times (seed 0); how far F1 could move on another set of items like these",
}


def table_cells(row: RowResult, level: Level) -> list[str]:
    s = row.scores(level)
    percents = [100 * v for v in (s.precision, s.recall, s.f1, s.tpr, s.tnr)]
    return [row.spec.label, *(f"{v:.2f}" for v in percents), f"{row.s_per_frame:.3f}"]


def markdown_table(evaluation: Evaluation, level: Level) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(table_cells(row, level)) + " |" for row in evaluation.rows]
    return "\n".join(lines)


def csv_table(evaluation: Evaluation, level: Level) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in evaluation.rows:
        writer.writerow(table_cells(row, level))
    return buffer.getvalue()


def _sample_counts(evaluation: Evaluation) -> dict[str, int]:
    traces = evaluation.traces
    truth = [t.window_truth() for t in traces]
    return {
        "items": len(traces),
        "smoke_items": sum(t.item.is_smoke for t in traces),
        "no_smoke_items": sum(not t.item.is_smoke for t in traces),
        "windows": int(sum(len(w) for w in truth)),
        "smoke_windows": int(sum(w.sum() for w in truth)),
        "frames_read": sum(t.frames_read for t in traces),
        "frames_processed": sum(t.frames_processed for t in traces),
    }


def _interval_line(evaluation: Evaluation) -> str:
    intervals = evaluation.item_f1_intervals
    parts = [f"{s.label} {100 * intervals[s.key].low:.1f}-{100 * intervals[s.key].high:.1f}" for s in evaluation.specs]
    return "F1 % could move, on another draw of items like these (95 % bootstrap interval): " + "; ".join(parts)


def _miss_lines(evaluation: Evaluation) -> list[str]:
    """Where each verifier row lost the smoke items it missed, when it missed any."""
    parts = []
    for spec in evaluation.specs:
        misses = evaluation.misses(spec)
        if misses and sum(misses.values()):
            parts.append(f"{spec.label} {sum(misses.values())} ("
                         + ", ".join(f"{stage} {n}" for stage, n in misses.items() if n) + ")")
    if not parts:
        return []
    return ["", "Smoke items missed, by the stage that lost them (results.json: `miss` per item): " + "; ".join(parts) + ".",
            *(f"- {stage}: {meaning}" for stage, meaning in MISS_MEANINGS.items())]


def _level_heading(level: Level, counts: dict[str, int]) -> str:
    if level == "window":
        return f"window level: {counts['windows']} windows, {counts['smoke_windows']} showing smoke"
    return f"item level: {counts['items']} items, {counts['smoke_items']} smoke / {counts['no_smoke_items']} no smoke"


def _fallback_words(decision: DecisionConfig) -> str:
    """How a flow scorer's fallback takes part, for the reader of a table (pipeline.decision)."""
    words = []
    if decision.fallback_threshold is not None:
        words.append(f"its fallback without flow at p >= {decision.fallback_threshold} where no flow was measured")
    if decision.fallback_veto is not None:
        words.append(f"a flow confirmation needs the fallback's p >= {decision.fallback_veto}")
    return f" ({'; '.join(words)})" if words else ""


def table_text(evaluation: Evaluation, info: RunInfo) -> str:
    """The tables as Markdown: the chosen level first (the one table.csv holds), then the other."""
    counts = _sample_counts(evaluation)
    env = info.environment
    lines = [
        "# smokewatch evaluation",
        "",
        f"data: {info.data_dir} (hash {info.data_hash}), {counts['frames_processed']} frames processed",
        f"model: {info.model.get('bundle', '?')} (hash {info.model_hash}): detector {info.model.get('detector')}, "
        f"extractor {info.model.get('extractor')}",
        f"device: {env.get('device')} ({env.get('device_name')}), torch {env.get('libraries', {}).get('torch')}",
        f"decision: threshold {evaluation.decision.threshold}, {evaluation.decision.confirm_k} of "
        f"{evaluation.decision.confirm_n} windows"
        + (f" (the heads' rows); the track scorer confirms at p >= {evaluation.decision.scorer_threshold}"
           + _fallback_words(evaluation.decision) if evaluation.decision.scorer_threshold is not None else "")
        + f"; frame vote: {evaluation.vote.min_votes} of {evaluation.vote.frames} "
        f"frames, mean confidence > {evaluation.vote.threshold}",
    ]
    for level in (info.level, *(lv for lv in LEVELS if lv != info.level)):
        lines += ["", f"## {_level_heading(level, counts)}", "", markdown_table(evaluation, level)]
        if level == "item":
            lines += ["", _interval_line(evaluation), *_miss_lines(evaluation)]
    return "\n".join(lines) + "\n"


def _sum_times(traces: list[ItemTrace]) -> StageTimes:
    total = StageTimes(heads={})
    for t in traces:
        total.decode += t.times.decode
        total.detect += t.times.detect
        total.features += t.times.features
        total.other += t.times.other
        for name, seconds in t.times.heads.items():
            total.heads[name] = total.heads.get(name, 0.0) + seconds
    return total


def _alarm_json(alarm: tuple[int, float] | None) -> dict:
    return {"first_alarm_frame": alarm[0] if alarm else None, "first_alarm_time_s": round(alarm[1], 3) if alarm else None}


def _item_json(evaluation: Evaluation, index: int, root: Path) -> dict:
    trace = evaluation.traces[index]
    item = trace.item
    try:
        path = str(item.path.relative_to(root))
    except ValueError:
        path = str(item.path)
    truth = trace.window_truth()
    rows = {}
    for key, outcome in evaluation.outcomes[index].items():
        rows[key] = {
            "verdict": outcome.verdict,
            "correct": outcome.correct,
            **_alarm_json(outcome.first_alarm),
            "time_to_detection": outcome.delay.to_json() if outcome.delay else None,
            "window": asdict(outcome.window),
            "miss": outcome.miss.to_json() if outcome.miss else None,
        }
    return {
        "path": path,
        "manifest_row": item.row or None,
        "label": item.label,
        "smoke_from": item.smoke_from,
        "smoke_to": item.smoke_to,
        "frames_read": trace.frames_read,
        "frames_processed": trace.frames_processed,
        "windows": len(trace.windows),
        "smoke_windows": int(truth.sum()),
        "seconds": round(trace.seconds, 4),
        "stages": trace.times.to_json(),
        "engine_verdict": {"head": trace.primary_head, "verdict": trace.engine_verdict},
        "rows": rows,
    }


def _row_json(row: RowResult, interval: Interval, misses: dict[str, int] | None) -> dict:
    return {
        "key": row.spec.key,
        "label": row.spec.label,
        "kind": row.spec.kind,
        "window": {**row.window.to_json(), "average_precision": row.window_ap},
        "item": {**row.item.to_json(), "f1_interval": interval.to_json()},
        "time_to_detection": row.delays.to_json(),
        "timing": {"seconds": round(row.seconds, 4), "frames": row.frames, "s_per_frame": row.s_per_frame},
        "missed_by_stage": misses,
    }


def results_document(evaluation: Evaluation, info: RunInfo) -> dict:
    """results.json as a plain mapping."""
    root = Path(info.data_dir)
    traces = evaluation.traces
    totals = _sum_times(traces)
    intervals = evaluation.item_f1_intervals
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": info.created_at,
        "request": info.request,
        "seconds": round(info.seconds, 3),
        "data": {"dir": info.data_dir, "hash": info.data_hash, **_sample_counts(evaluation)},
        "model": {
            "path": info.model_path,
            "hash": info.model_hash,
            "names": info.model,
            "head_files": info.head_files,
            "trained_heads": info.trained_heads,
        },
        "config": {
            "pipeline": info.config,
            "evaluation": {
                "level": info.level,
                "heads": [s.key for s in evaluation.specs if s.kind == "verifier"],
                "decision": evaluation.decision.model_dump(),
                "frame_vote": {**asdict(evaluation.vote), "min_votes": evaluation.vote.min_votes},
            },
        },
        "environment": info.environment,
        "definitions": DEFINITIONS,
        "table": {
            "level": info.level,
            "columns": list(COLUMNS),
            "rows": [table_cells(r, info.level) for r in evaluation.rows],
        },
        "rows": [_row_json(r, intervals[r.spec.key], evaluation.misses(r.spec)) for r in evaluation.rows],
        "timing": {
            "frames_processed": sum(t.frames_processed for t in traces),
            "stages": totals.to_json(),
            "crops_computed": sum(t.crops_computed for t in traces),
            "crops_reused": sum(t.crops_reused for t in traces),
        },
        "items": [_item_json(evaluation, i, root) for i in range(len(traces))],
    }


def write_report(evaluation: Evaluation, info: RunInfo, out: Path) -> dict[str, Path]:
    """Write table.md, table.csv and results.json into `out`; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"table.md": out / "table.md", "table.csv": out / "table.csv", "results.json": out / "results.json"}
    paths["table.md"].write_text(table_text(evaluation, info), encoding="utf-8")
    paths["table.csv"].write_text(csv_table(evaluation, info.level), encoding="utf-8")
    document = results_document(evaluation, info)
    paths["results.json"].write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return paths
