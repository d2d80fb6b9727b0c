"""`smokewatch evaluate`: decisions and baselines on hand-made traces, then the whole command on tiny
synthetic clips with the tiny random-weight bundle, and malformed manifests stopped at their row."""

import csv
import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.bundle import bundle_hash
from pipeline.config import HEAD_NAMES, DecisionConfig
from pipeline.records import Box, Detection, SourceInfo, StageTimes, WindowResult
from pipeline.verifier import TABLE_NAMES
from service.cli import main
from training.datasets import ManifestItem
from training.evaluation.baselines import detector_alone, frame_vote
from training.evaluation.decisions import verifier_decision
from training.evaluation.records import FrameTrace, ItemTrace, VoteOptions
from training.evaluation.report import COLUMNS
from training.evaluation.scoring import score_traces
from training.metrics import f1_interval
from training.synth.dataset import SynthRequest, write_dataset

A = Box(10, 10, 30, 30)
B = Box(60, 60, 80, 80)


def window(frame: int, p: float, box: Box = A, track: int = 0) -> WindowResult:
    return WindowResult(track, frame, frame * 0.5, box, box, 0.0, p, p >= 0.5, False, {"lstm": p})


def trace(detections: list[tuple[Detection, ...]], windows: list[WindowResult], label="smoke", smoke_from=2) -> ItemTrace:
    item = ManifestItem(Path("x.mp4"), label, smoke_from if label == "smoke" else None, None, 1, len(detections))
    info = SourceInfo("x.mp4", "video", 100, 100, 2.0, len(detections), len(detections) / 2.0)
    frames = [FrameTrace(i, i * 0.5, dets) for i, dets in enumerate(detections)]
    times = StageTimes(decode=1.0, detect=2.0, features=3.0, heads={"lstm": 0.5}, other=10.0)
    return ItemTrace(item, info, frames, windows, times, "smoke", "lstm", len(detections), 7.0)


def test_verifier_decision_replays_the_k_of_n_rule_per_head():
    t = trace([()] * 4, [window(i, p) for i, p in enumerate([0.6, 0.2, 0.7, 0.1])])
    d = verifier_decision(t, "lstm", DecisionConfig(threshold=0.5, confirm_k=2, confirm_n=3))
    assert d.window_pred.tolist() == [True, False, True, False]
    assert d.window_score.tolist() == [0.6, 0.2, 0.7, 0.1]
    assert d.alarms == [(2, 1.0)] and d.verdict == "smoke" and d.seconds == 0.5


def test_detector_alone_says_smoke_wherever_there_is_a_box():
    dets = [(Detection(A, 0.3),), (), (Detection(B, 0.9),)]
    t = trace(dets, [window(0, 0.1), window(1, 0.1), window(2, 0.1, box=A), window(2, 0.1, box=B, track=1)])
    d = detector_alone(t)
    assert d.window_pred.tolist() == [True, False, False, True]  # window 2 of A: A was not detected there
    assert d.window_score.tolist() == [0.3, 0.0, 0.0, 0.9]
    assert [a[0] for a in d.alarms] == [0, 2]


def test_frame_vote_needs_half_the_frames_and_mean_confidence_with_alert_hysteresis():
    confs = [0.5, 0.2, None, 0.1, 0.22]  # None: no box in that frame
    dets = [() if c is None else (Detection(A, c),) for c in confs]
    t = trace(dets, [window(i, 0.1) for i in range(len(confs))])
    # frame 0: one vote, two needed; 1: mean .7/4 > .15; 2: no box, but the earlier boxes still
    # vote (.7/4); 3: .8/4; 4: .52/4 = .13 passes only at the lowered threshold .8 x .15
    voted = frame_vote(t, VoteOptions(frames=4, threshold=0.15))
    assert [a[0] for a in voted.alarms] == [1, 2, 3, 4]
    assert voted.window_pred.tolist() == [False, True, True, True, True]
    assert voted.window_score[0] == 0.0 and voted.window_score[1] == pytest.approx(0.175)
    strict = frame_vote(t, VoteOptions(frames=4, threshold=0.15, alert_factor=1.0))
    assert [a[0] for a in strict.alarms] == [1, 2, 3]
    assert strict.window_pred.tolist() == [False, True, True, True, False]
    far = frame_vote(trace([(Detection(A, 0.9),), (Detection(B, 0.9),)], []), VoteOptions(frames=2))
    assert far.alarms == [(0, 0.0), (1, 0.5)]  # min votes of 2 frames is 1
    assert frame_vote(trace([(Detection(A, 0.9),), (Detection(B, 0.9),)], []), VoteOptions(frames=3)).alarms == []


def test_rows_share_windows_and_time_their_own_step():
    dets = [(Detection(A, 0.3),)] * 5
    t = trace(dets, [window(i, p) for i, p in enumerate([0.1, 0.2, 0.9, 0.8, 0.3])], smoke_from=2)
    ev = score_traces([t], ["lstm"], DecisionConfig(), VoteOptions(frames=4))
    assert [r.spec.label for r in ev.rows] == ["one LSTM", "detector alone", "frame vote (n=4)"]
    lstm = ev.row("lstm")
    # window truth from the last frame: frames 2-4 smoke; lstm says smoke at 2 and 3
    assert (lstm.window.tp, lstm.window.fp, lstm.window.tn, lstm.window.fn) == (2, 0, 2, 1)
    assert (lstm.item.tp, lstm.item.fn) == (1, 0)
    assert lstm.s_per_frame == pytest.approx((1 + 2 + 3 + 0.5) / 5)
    assert ev.row("detector").s_per_frame == pytest.approx(3 / 5, abs=1e-3)
    assert ev.row("detector").delays.mean_frames == 0  # a box at the first smoke frame
    assert lstm.delays.mean_frames == 0 and lstm.delays.mean_s == 0.0
    assert ev.outcomes[0]["detector"].first_alarm == (0, 0.0)  # an alarm before the smoke: false alarm


def test_a_missed_smoke_item_is_put_down_to_the_stage_that_lost_it(tmp_path):
    """Proposals when no region held the plume's box, scores when the regions on it scored low,
    confirmation when they passed but never 2 of 3; nothing for a found plume or a baseline."""
    boxes = tmp_path / "labels"
    boxes.mkdir()
    for frame in range(2, 6):  # the plume is box A from frame 2 on (a 100x100 source)
        (boxes / f"{frame:06d}.txt").write_text("0 0.2 0.2 0.2 0.2\n")

    def boxed(windows):
        t = trace([()] * 6, windows, smoke_from=2)
        t.item = replace(t.item, boxes_dir=boxes)
        return t

    off = boxed([window(f, 0.2, box=B) for f in range(6)])  # never on the plume
    low = boxed([window(f, 0.3) for f in range(6)] + [window(4, 0.4, track=1)])
    once = boxed([window(f, p) for f, p in enumerate([0.1, 0.1, 0.9, 0.1, 0.1, 0.9])])
    found = boxed([window(f, 0.9) for f in range(6)])
    early = boxed([window(0, 0.4), window(1, 0.4)] + [window(f, 0.1, box=B) for f in range(2, 6)])  # on A before the smoke
    ev = score_traces([off, low, once, found, early], ["lstm"], DecisionConfig(threshold=0.5, confirm_k=2, confirm_n=3),
                      VoteOptions(frames=4))
    misses = [o["lstm"].miss for o in ev.outcomes]
    assert [m.stage if m else None for m in misses] == ["proposals", "scores", "confirmation", None, "proposals"]
    assert (misses[1].windows_on_smoke, misses[1].regions_on_smoke, misses[1].best_score) == (5, 2, 0.4)
    assert misses[2].best_score == 0.9 and misses[0].best_score is None
    assert ev.misses(ev.specs[0]) == {"proposals": 2, "scores": 1, "confirmation": 1}
    assert all(o["detector"].miss is None and o["frame-vote"].miss is None for o in ev.outcomes)
    assert ev.misses(next(s for s in ev.specs if s.key == "detector")) is None
    assert misses[1].best_heads_mean is None  # a head's own row: its score is its p

    # the track scorer's row also keeps the heads' best mean p on the smoke: here the heads gave
    # 0.4 where the trees (one leaf, log-odds -5) turned every window down
    from pipeline.scorer import TrackScorer, Tree

    never = TrackScorer(("lstm",), -5.0, 1.0, (Tree([-2], [-2.0], [-1], [-1], [0.0]),))
    ev = score_traces([off, low], ["lstm"], DecisionConfig(threshold=0.5, scorer_threshold=0.5), VoteOptions(frames=4), never)
    scored = [o["track-scorer"].miss for o in ev.outcomes]
    assert [m.stage for m in scored] == ["proposals", "scores"] and scored[0].best_heads_mean is None
    assert scored[1].best_heads_mean == pytest.approx(0.4) and scored[1].best_score == pytest.approx(1 / (1 + math.exp(5)))
    assert scored[1].to_json()["best_heads_mean"] == 0.4


def test_a_plume_held_only_as_a_speck_is_a_miss_of_the_proposals(tmp_path):
    """A region around a ridge band can hold a whole 5 px wisp and still show the heads a speck:
    such windows are counted apart, and the miss goes to the proposals, not the scores; a region
    cut tight on the same wisp is a miss of the scores."""
    boxes = tmp_path / "labels"
    boxes.mkdir()
    for frame in range(2, 6):  # a 5 x 5 px plume at (17.5, 17.5) in a 100 x 100 source: 0.25 % of the frame
        (boxes / f"{frame:06d}.txt").write_text("0 0.2 0.2 0.05 0.05\n")
    whole, tight = Box(0, 0, 100, 100), Box(15, 15, 25, 25)

    def boxed(windows):
        t = trace([()] * 6, windows, smoke_from=2)
        t.item = replace(t.item, boxes_dir=boxes)
        return t

    wide = boxed([window(f, 0.3, box=whole) for f in range(6)])
    close = boxed([window(f, 0.3, box=whole) for f in range(6)] + [window(4, 0.4, box=tight, track=1)])
    assert wide.on_smoke.tolist() == [False, False, True, True, True, True]  # as the heads' training labels it
    assert not wide.smoke_in_sight.any() and close.smoke_in_sight.tolist() == [False] * 6 + [True]
    assert close.smoke_shares[-1] == pytest.approx(25 / 100)
    ev = score_traces([wide, close], ["lstm"], DecisionConfig(threshold=0.5, confirm_k=1, confirm_n=1), VoteOptions(frames=4))
    wide_miss, close_miss = (o["lstm"].miss for o in ev.outcomes)
    assert (wide_miss.stage, wide_miss.windows_on_smoke, wide_miss.speck_windows, wide_miss.best_score) == ("proposals", 0, 4, None)
    assert (close_miss.stage, close_miss.windows_on_smoke, close_miss.regions_on_smoke) == ("scores", 1, 1)
    assert close_miss.best_score == 0.4 and close_miss.to_json()["speck_windows"] == 4


# --- the command, end to end ----------------------------------------------------------------


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory) -> Path:
    """Two smoke clips and one hard negative (synthetic), in one manifest folder."""
    root = tmp_path_factory.mktemp("evaluate-data")
    rows = []
    for kind, clips in (("smoke", 2), ("negatives", 1)):
        write_dataset(SynthRequest(root / kind, clips=clips, seed=7, size=(160, 96), frames=6, fps=5.0, workers=1, kind=kind), progress=False)
        with (root / kind / "manifest.csv").open() as fh:
            rows += [{**r, "path": f"{kind}/{r['path']}"} for r in csv.DictReader(fh)]
    with (root / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "label", "smoke_from", "smoke_to"])
        writer.writeheader()
        writer.writerows(rows)
    assert {r["label"] for r in rows} == {"smoke", "no_smoke"}
    return root


@pytest.fixture(scope="module")
def train_data(tmp_path_factory) -> Path:
    """Other synthetic clips (another seed): two with smoke, two without."""
    root = tmp_path_factory.mktemp("evaluate-train")
    write_dataset(SynthRequest(root, clips=4, seed=11, size=(160, 96), frames=6, fps=5.0, workers=1), progress=False)
    return root


@pytest.fixture(scope="module")
def evaluated(synth_data, train_data, tiny_bundle_dir, tmp_path_factory):
    """The whole command: heads trained (one epoch) on one folder, then evaluated on another."""
    out = tmp_path_factory.mktemp("evaluate-out") / "out"
    args = ["evaluate", str(synth_data), "--model", str(tiny_bundle_dir), "--train-heads", str(train_data),
            "--train-epochs", "1", "--out", str(out), "-q"]
    assert main(args) == 0
    return out


def test_evaluate_writes_table_results_and_plots(evaluated, synth_data, train_data):
    out = evaluated
    labels = [TABLE_NAMES[h] for h in HEAD_NAMES] + ["detector alone", "frame vote (n=4)"]
    with (out / "table.csv").open() as fh:
        table = list(csv.reader(fh))
    assert tuple(table[0]) == COLUMNS
    assert [r[0] for r in table[1:]] == labels
    for row in table[1:]:
        assert all(len(cell.split(".")[1]) == 2 for cell in row[1:6]), row  # two decimals, like the lecture
    md = (out / "table.md").read_text()
    assert md.count("| one LSTM |") == 2  # window level, then item level
    assert md.count("95 % bootstrap interval") == 1 and "one LSTM " in md.split("bootstrap interval")[1]
    assert "| " + " | ".join(table[1]) + " |" in md

    doc = json.loads((out / "results.json").read_text())
    assert doc["table"]["rows"] == table[1:]
    assert doc["data"]["items"] == 3 and doc["data"]["smoke_items"] == 2
    assert len(doc["data"]["hash"]) == 16
    # the heads were trained, saved into OUT/bundle, and that bundle is what was evaluated
    assert doc["model"]["path"] == str(out / "bundle") and doc["model"]["hash"] == bundle_hash(out / "bundle")
    saved = json.loads((out / "bundle" / "metadata.json").read_text())
    assert doc["model"]["head_files"] == {h: saved["files"][f"heads/{h}.pt"] for h in HEAD_NAMES}
    assert saved["provenance"]["evaluate"]["heads_trained_on"] == str(train_data)
    trained = doc["model"]["trained_heads"]
    assert set(trained["heads"]) == set(HEAD_NAMES) and trained["items"] == 4
    assert all(r["epochs_run"] == 1 for r in trained["heads"].values())
    assert doc["environment"]["libraries"]["torch"].startswith("2.14.1")
    assert doc["environment"]["device"] == "cpu"
    assert doc["config"]["pipeline"]["tubes"]["window"] == 4
    assert [r["label"] for r in doc["rows"]] == labels

    items = doc["items"]
    windows = sum(i["windows"] for i in items)
    assert windows > 0 and doc["data"]["windows"] == windows
    frames = sum(i["frames_processed"] for i in items)
    for row in doc["rows"]:
        w, it = row["window"], row["item"]
        assert w["tp"] + w["fp"] + w["tn"] + w["fn"] == windows
        assert it["tp"] + it["fp"] + it["tn"] + it["fn"] == 3
        said_smoke = [i["rows"][row["key"]]["verdict"] == "smoke" for i in items]
        assert it["tp"] + it["fp"] == sum(said_smoke)
        # how far F1 could move over items like these: the bootstrap of these very verdicts
        interval = f1_interval([i["label"] == "smoke" for i in items], said_smoke)
        assert it["f1_interval"] == interval.to_json() and 0.0 <= interval.low <= interval.high <= 1.0
        ttd = row["time_to_detection"]
        assert ttd["items"] == 2 and ttd["detected"] + ttd["missed"] == 2
        for i in items:
            own = i["rows"][row["key"]]
            assert own["correct"] == (own["verdict"] == i["label"])
            delay = own["time_to_detection"]
            if i["label"] == "no_smoke":
                assert delay is None
            elif delay["alarm_frame"] is not None:
                assert delay["frames"] == delay["alarm_frame"] - (i["smoke_from"] or 0) >= 0
        # each smoke item a verifier row missed is put down to a stage, and the row counts them
        missed = [i["rows"][row["key"]]["miss"] for i in items]
        if row["kind"] == "verifier":
            assert [m is not None for m in missed] == [i["label"] == "smoke" and i["rows"][row["key"]]["verdict"] == "no_smoke"
                                                       for i in items]
            assert row["missed_by_stage"] == {s: sum(m is not None and m["stage"] == s for m in missed)
                                              for s in ("proposals", "scores", "confirmation")}
        else:
            assert row["missed_by_stage"] is None and missed == [None] * len(items)
        # s/frame: the shared stages this row needs plus its own head, over processed frames
        if row["kind"] == "verifier":
            stages = sum(i["stages"]["decode"] + i["stages"]["detect"] + i["stages"]["features"]
                         + i["stages"]["heads"][row["key"]] for i in items)
            assert row["timing"]["s_per_frame"] == pytest.approx(stages / frames, rel=1e-2, abs=1e-3)
    for i in items:  # the engine's own verdict (primary head) is what the replay of that head says
        assert i["rows"][i["engine_verdict"]["head"]]["verdict"] == i["engine_verdict"]["verdict"]

    for png in ["plots/scores.png", "plots/precision_recall.png"] + [
        f"plots/timelines/{n:04d}_synth_0000{k}.mp4.png" for n, k in ((0, 0), (1, 1), (2, 0))
    ]:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


def test_evaluate_prints_the_table(synth_data, tiny_bundle_dir, tmp_path, capsys):
    """A subset of heads, the item-level table, and the replay checked against a real run of a
    non-primary head."""
    one = tmp_path / "one"
    (one / "smoke" / "clips").mkdir(parents=True)
    shutil.copy(synth_data / "smoke" / "clips" / "synth_00001.mp4", one / "smoke" / "clips")
    (one / "manifest.csv").write_text("path,label,smoke_from,smoke_to\nsmoke/clips/synth_00001.mp4,smoke,2,\n")
    out = tmp_path / "out"
    args = ["evaluate", str(one), "--model", str(tiny_bundle_dir), "--out", str(out), "-q", "--no-plots",
            "--heads", "deep-gru,lstm", "--level", "item", "--vote-frames", "3"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.index("## item level") < printed.index("## window level")
    assert "| deep GRUs |" in printed and "| one GRU |" not in printed
    table = (out / "table.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in table[1:]] == ["one LSTM", "deep GRUs", "detector alone", "frame vote (n=3)"]
    assert not (out / "plots").exists()
    doc = json.loads((out / "results.json").read_text())
    assert doc["table"]["level"] == "item"

    from pipeline.bundle import ModelBundle
    from pipeline.engine import Engine

    bundle = ModelBundle.load(tiny_bundle_dir, heads=["deep-gru"])
    clip = Engine(bundle, heads=["deep-gru"]).detect(one / "smoke" / "clips" / "synth_00001.mp4", progress=False)
    replay = doc["items"][0]["rows"]["deep-gru"]
    assert replay["verdict"] == clip.verdict
    assert replay["first_alarm_frame"] == clip.first_smoke_frame


# --- malformed manifests stop with the row named ---------------------------------------------


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ("path,smoke_from\nsmoke/clips/synth_00000.mp4,\n", "missing column label"),
        ("path,label\nsmoke/clips/synth_00000.mp4,smoke\nsmoke/clips/synth_00001.mp4,fire\n", "row 2 (smoke/clips/synth_00001.mp4): unknown label 'fire'"),
        ("path,label,smoke_from\nsmoke/clips/synth_00000.mp4,smoke,\nnowhere.mp4,no_smoke,\n", "row 2 (nowhere.mp4): nowhere.mp4 does not exist"),
        ("path,label,smoke_from\nsmoke/clips/synth_00000.mp4,smoke,99\n", "row 1 (smoke/clips/synth_00000.mp4): smoke_from 99 is beyond the end (6 frames)"),
    ],
    ids=["missing column", "unknown label", "missing file", "smoke_from beyond the end"],
)
def test_malformed_manifest_stops_with_the_row(manifest, message, synth_data, tiny_bundle_dir, tmp_path, capsys):
    (tmp_path / "smoke").symlink_to(synth_data / "smoke")
    (tmp_path / "manifest.csv").write_text(manifest)
    code = main(["evaluate", str(tmp_path), "--model", str(tiny_bundle_dir), "--out", str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("smokewatch: error:") and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_unknown_head_is_refused(synth_data, tiny_bundle_dir, tmp_path, capsys):
    assert main(["evaluate", str(synth_data), "--model", str(tiny_bundle_dir), "--heads", "lstm,cnn", "-q"]) == 2
    assert "unknown verifier head cnn" in capsys.readouterr().err


def test_training_on_the_evaluation_data_is_refused(synth_data, tiny_bundle_dir, tmp_path, capsys):
    args = ["evaluate", str(synth_data), "--model", str(tiny_bundle_dir), "--train-heads", str(synth_data / "smoke"),
            "--out", str(tmp_path / "out"), "-q"]
    assert main(args) == 2
    assert "share 2 item(s)" in capsys.readouterr().err
    assert not (tmp_path / "out" / "bundle").exists()
