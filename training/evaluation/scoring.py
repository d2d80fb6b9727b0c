"""From per-item decisions to the rows of the table, with every ratio taken from training.metrics.

Window level: every window a verifier judged, against the truth of its last frame. Item level:
each item's verdict (any alarm) against its label. Time to detection: for each smoke item, from
its first smoke frame to the row's first alarm at or after it. s/frame: the shared stages a row
needs (decode + detection, plus features for a verifier) and its own compute (its head, or the
vote), over all processed frames; tube bookkeeping is left out, as in the lecture's table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from pipeline.config import HEAD_NAMES, DecisionConfig
from pipeline.scorer import TrackScorer
from pipeline.verifier import TABLE_NAMES
from training.metrics import (
    DetectionDelay,
    Interval,
    binary_scores,
    detection_delay,
    f1_interval,
    precision_recall_curve,
    step_average_precision,
    summarize_delays,
)

from .baselines import detector_alone, frame_vote
from .decisions import scorer_decision, verifier_decision
from .records import (
    DETECTOR_ROW,
    MISS_STAGES,
    SCORER_LABEL,
    SCORER_ROW,
    VOTE_ROW,
    ItemDecision,
    ItemOutcome,
    ItemTrace,
    Miss,
    RowResult,
    RowSpec,
    VoteOptions,
)


def row_specs(heads: Sequence[str], vote: VoteOptions, scorer: bool = False) -> list[RowSpec]:
    """The table's rows: the evaluated heads in the lecture's order, the track scorer when it
    decides, then the two baselines."""
    rows = [RowSpec(name, TABLE_NAMES[name], "verifier") for name in HEAD_NAMES if name in heads]
    if scorer:
        rows.append(RowSpec(SCORER_ROW, SCORER_LABEL, "verifier"))
    rows.append(RowSpec(DETECTOR_ROW, "detector alone", "baseline"))
    rows.append(RowSpec(VOTE_ROW, f"frame vote (n={vote.frames})", "baseline"))
    return rows


def decide_item(
    trace: ItemTrace, specs: Sequence[RowSpec], decision: DecisionConfig, vote: VoteOptions,
    scorer: TrackScorer | None = None,
) -> dict[str, ItemDecision]:
    """Every row's decisions on one item."""
    out: dict[str, ItemDecision] = {}
    for spec in specs:
        if spec.key == SCORER_ROW:
            if scorer is None:
                raise ValueError("the track scorer's row needs a scorer")
            out[spec.key] = scorer_decision(trace, spec.key, decision, scorer)
        elif spec.kind == "verifier":
            out[spec.key] = verifier_decision(trace, spec.key, decision)
        elif spec.key == DETECTOR_ROW:
            out[spec.key] = detector_alone(trace)
        elif spec.key == VOTE_ROW:
            out[spec.key] = frame_vote(trace, vote)
        else:
            raise ValueError(f"unknown row {spec.key}")
    return out


def item_delay(trace: ItemTrace, decision: ItemDecision) -> DetectionDelay | None:
    start = trace.smoke_start
    if start is None:
        return None
    return detection_delay(start, trace.time_of(start), decision.alarms)


def item_outcome(trace: ItemTrace, decision: ItemDecision, threshold: float | None = None,
                 reads: tuple[str, ...] = ()) -> ItemOutcome:
    """`threshold`: the score a verifier row's window must reach (None for the baselines, whose
    misses are not put down to a stage); `reads`: the heads the track scorer's row reads."""
    missed = trace.item.is_smoke and decision.verdict != "smoke"
    return ItemOutcome(
        row=decision.row,
        verdict=decision.verdict,
        correct=decision.verdict == trace.item.label,
        first_alarm=decision.first_alarm,
        delay=item_delay(trace, decision),
        window=binary_scores(trace.window_truth(), decision.window_pred),
        miss=locate_miss(trace, decision, threshold, reads) if missed and threshold is not None else None,
    )


def locate_miss(trace: ItemTrace, decision: ItemDecision, threshold: float, reads: tuple[str, ...] = ()) -> Miss:
    """The first stage of the data flow the smoke did not get through for this row. For the track
    scorer (`reads` its heads) it also keeps the heads' best mean p on the smoke, which tells a
    plume the heads did not see from one the scorer's trees turned down. Windows whose region held
    the smoke only as a speck count as no proposal: no head could have seen it there."""
    on = trace.smoke_in_sight
    specks = int((trace.on_smoke & ~on).sum())
    if not on.any():
        return Miss("proposals", 0, 0, None, speck_windows=specks)
    best = float(decision.window_score[on].max())
    windows = [w for w, hit in zip(trace.windows, on) if hit]
    heads = max(sum(w.head_probs[h] for h in reads) / len(reads) for w in windows) if reads else None
    stage = "scores" if best < threshold else "confirmation"
    return Miss(stage, len(windows), len({w.track_id for w in windows}), best, heads, specks)


def row_threshold(spec: RowSpec, decision: DecisionConfig) -> float | None:
    """The per-window score a row's decision compares with: a head's p threshold, the scorer's."""
    if spec.kind != "verifier":
        return None
    return decision.scorer_threshold if spec.key == SCORER_ROW else decision.threshold


def shared_seconds(trace: ItemTrace, spec: RowSpec) -> float:
    """Seconds of the shared stages a row depends on, for one item."""
    seconds = trace.times.decode + trace.times.detect
    if spec.kind == "verifier":
        seconds += trace.times.features
    return seconds


def score_row(spec: RowSpec, traces: Sequence[ItemTrace], decisions: Sequence[dict[str, ItemDecision]]) -> RowResult:
    own = [d[spec.key] for d in decisions]
    truth = np.concatenate([t.window_truth() for t in traces]) if traces else np.zeros(0, bool)
    predicted = np.concatenate([d.window_pred for d in own]) if own else np.zeros(0, bool)
    scores = np.concatenate([d.window_score for d in own]) if own else np.zeros(0)
    delays = [delay for t, d in zip(traces, own) if (delay := item_delay(t, d)) is not None]
    return RowResult(
        spec=spec,
        window=binary_scores(truth, predicted),
        item=binary_scores([t.item.is_smoke for t in traces], [d.verdict == "smoke" for d in own]),
        window_ap=step_average_precision(truth, scores),
        delays=summarize_delays(delays),
        seconds=sum(shared_seconds(t, spec) + d.seconds for t, d in zip(traces, own)),
        frames=sum(t.frames_processed for t in traces),
        pr_curve=precision_recall_curve(truth, scores),
    )


@dataclass
class Evaluation:
    """A whole evaluation: rows in table order, and per item the traces, decisions and outcomes."""

    specs: list[RowSpec]
    rows: list[RowResult]
    traces: list[ItemTrace]
    decisions: list[dict[str, ItemDecision]]
    outcomes: list[dict[str, ItemOutcome]]
    decision: DecisionConfig
    vote: VoteOptions

    def row(self, key: str) -> RowResult:
        return next(r for r in self.rows if r.spec.key == key)

    def misses(self, spec: RowSpec) -> dict[str, int] | None:
        """How many smoke items a verifier row missed at each stage (None for a baseline)."""
        if spec.kind != "verifier":
            return None
        stages = [o[spec.key].miss.stage for o in self.outcomes if o[spec.key].miss is not None]
        return {stage: stages.count(stage) for stage in MISS_STAGES}

    @cached_property
    def item_f1_intervals(self) -> dict[str, Interval]:
        """Each row's item-level F1 interval (training.metrics.f1_interval; one seed, so the same
        resamples), worked out once for the printed table, table.md and results.json."""
        truth = [t.item.is_smoke for t in self.traces]
        return {
            spec.key: f1_interval(truth, [o[spec.key].verdict == "smoke" for o in self.outcomes]) for spec in self.specs
        }


def score_traces(
    traces: Sequence[ItemTrace], heads: Sequence[str], decision: DecisionConfig, vote: VoteOptions,
    scorer: TrackScorer | None = None,
) -> Evaluation:
    """Every row on every item. With a `scorer` (used when decision.scorer_threshold is set) the
    table gains the track scorer's row; the traces must hold the probabilities of its heads."""
    use = scorer if decision.scorer_threshold is not None else None
    specs = row_specs(heads, vote, scorer=use is not None)
    decisions = [decide_item(t, specs, decision, vote, use) for t in traces]
    thresholds = {spec.key: row_threshold(spec, decision) for spec in specs}
    reads = {SCORER_ROW: tuple(use.heads)} if use is not None else {}
    outcomes = [{key: item_outcome(t, d, thresholds[key], reads.get(key, ())) for key, d in per.items()}
                for t, per in zip(traces, decisions)]
    rows = [score_row(spec, traces, decisions) for spec in specs]
    return Evaluation(specs, rows, list(traces), decisions, outcomes, decision, vote)
