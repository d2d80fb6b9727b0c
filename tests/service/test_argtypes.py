"""Nonsense numbers are refused at the command line with argparse's one-line message."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "args, complaint",
    [
        (["synth", "out", "--clips", "0"], "0 is not a positive integer"),
        (["synth", "out", "--fps", "-2"], "-2 is not a positive number"),
        (["synth", "out", "--landmarks", "2"], "2 is not in [0, 1]"),
        (["train", "verifier", "--data", "d", "--epochs", "zero"], "'zero' is not an integer"),
        (["evaluate", "d", "--vote-threshold", "1.5"], "1.5 is not in [0, 1]"),
        (["evaluate", "d", "--vote-threshold", "-1"], "-1 is not in [0, 1]"),
        (["train", "verifier", "--data", "d", "--crop-size", "16"], "argument --crop-size: 16 is not a crop side from 32 to 512 px"),
        (["train", "default", "--crop-size", "600"], "argument --crop-size: 600 is not a crop side from 32 to 512 px"),
        (["train", "default", "--member-crop-size", "8"], "argument --member-crop-size: 8 is not a crop side from 32 to 512 px"),
        (["serve", "--port", "70000"], "70000 is not a TCP port"),
        (["monitor", "x.mp4", "--interval", "0"], "0 is not a positive number"),
    ],
)
def test_bad_numbers_stop_with_one_usage_line(args, complaint, tmp_path):
    run = subprocess.run([sys.executable, "-m", "service.cli", *args], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 2
    assert complaint in run.stderr.strip().splitlines()[-1]
