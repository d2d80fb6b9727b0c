"""Batch evaluation: Table 7-1 of the lecture, reproduced on any labelled set (`smokewatch evaluate`).

    runner     runs the engine once per item with every head loaded, and keeps what scoring needs
    decisions  each verifier's own verdicts, replayed from its probabilities for the shared windows
    baselines  the detector alone and a Pyronear-style frame vote, from the same detections
    scoring    confusion counts, ratios, precision-recall, time to detection, s/frame per row
    report     table.md, table.csv, results.json and the printed table
    plots      bar chart, precision-recall curves, per-item timelines (PNG)
    command    the `evaluate` subcommand

Decode, detection, tubes and features are the expensive stages and are the same for every
verifier, so they run once per item; each row of the table is then a cheap decision over the
same windows, which also makes the rows comparable sample for sample.
"""

# Light constants shared by the command line (which must import fast) and the records.
LEVELS: tuple[str, ...] = ("window", "item")
DEFAULT_VOTE_THRESHOLD = 0.15  # pyro-engine's default confidence threshold for its frame vote
