"""Running the engine over a labelled set, once per item, with every evaluated head loaded.

The engine computes every loaded head's p(smoke) for each candidate window (`head_probs`) and
times each head separately (`StageTimes.heads`), so one pass over the data serves all six
verifiers and both baselines. A short warm-up before the timed pass keeps one-off costs (CUDA
context and kernel selection, first allocations) out of the s/frame figures.
"""

from __future__ import annotations

from collections.abc import Sequence

from tqdm import tqdm

from pipeline.engine import Engine
from pipeline.errors import SmokewatchError
from pipeline.records import FrameResult
from training.datasets import ManifestItem

from .records import FrameTrace, ItemTrace


class EvaluationError(SmokewatchError):
    """An item could not be evaluated, or the evaluation was asked something impossible."""


def describe_item(item: ManifestItem) -> str:
    """How messages name an item: its manifest row when it has one."""
    return f"manifest.csv row {item.row} ({item.path.name})" if item.row else str(item.path)


def run_item(engine: Engine, item: ManifestItem, progress: bool | None = None) -> ItemTrace:
    """One item through the whole pipeline; keeps boxes, windows and stage times, not images."""
    frames: list[FrameTrace] = []

    def keep(result: FrameResult) -> None:
        frames.append(FrameTrace(result.frame.index, result.frame.time_s, tuple(result.detections)))

    try:
        clip = engine.detect(item.path, on_frame=keep, progress=progress)
    except SmokewatchError as exc:
        raise EvaluationError(f"{describe_item(item)}: {exc}") from None
    return ItemTrace(
        item=item,
        source=clip.source,
        frames=frames,
        windows=clip.windows,
        times=clip.stage_times,
        engine_verdict=clip.verdict,
        primary_head=engine.primary,
        frames_read=clip.frames_read,
        seconds=clip.seconds,
        crops_computed=clip.crops_computed,
        crops_reused=clip.crops_reused,
    )


def warm_up(engine: Engine, item: ManifestItem, frames: int) -> None:
    """Run the first `frames` kept frames of an item and throw the results and times away."""
    if frames <= 0:
        return
    try:
        source = engine.open(item.path)
    except SmokewatchError as exc:
        raise EvaluationError(f"{describe_item(item)}: {exc}") from None
    results = engine.run(source, engine.session())
    try:
        for count, _ in enumerate(results, start=1):
            if count >= frames:
                break
    finally:
        results.close()
        source.close()


def run_items(
    engine: Engine,
    items: Sequence[ManifestItem],
    progress: bool | None = None,
    warmup_frames: int | None = None,
) -> list[ItemTrace]:
    """Every item, in manifest order. `warmup_frames` defaults to one chunk of the engine's batch."""
    if not items:
        return []
    warm = engine.config.runtime.batch_frames if warmup_frames is None else warmup_frames
    warm_up(engine, items[0], warm)
    traces = []
    bar = tqdm(total=len(items), unit="item", desc="evaluate", disable=None if progress is None else not progress)
    try:
        for item in items:
            bar.set_postfix_str(item.path.name, refresh=False)
            traces.append(run_item(engine, item, progress))
            bar.update(1)
    finally:
        bar.close()
    return traces
