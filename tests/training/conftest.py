"""Small training data shared by the training tests: six tiny synthetic clips and a real-style YOLO folder."""

import pytest

from training.synth.dataset import SynthRequest, write_dataset


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "synth"
    write_dataset(SynthRequest(out, clips=6, seed=21, size=(192, 128), frames=10, fps=5.0, workers=1), progress=False)
    return out


@pytest.fixture(scope="module")
def real_dir(tmp_path_factory, make_yolo_folder):
    """A small YOLO folder where class 1 is smoke, like the CC BY training set."""
    labels = ["1 0.5 0.5 0.3 0.4\n0 0.2 0.2 0.1 0.1\n" if i % 2 else "" for i in range(6)]
    root = make_yolo_folder(tmp_path_factory.mktemp("real"), labels, size=(128, 96), stem="v")
    (root / "groups.csv").write_text("image,group\n" + "".join(f"v_{i}.jpg,video_{i // 3}\n" for i in range(6)))
    return root
