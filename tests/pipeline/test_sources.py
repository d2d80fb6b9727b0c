import numpy as np
import pytest
from PIL import Image

from pipeline.config import SamplingConfig
from pipeline.errors import SourceError
from pipeline.sampler import Sampler
from pipeline.sources import open_source


def test_video_frames_have_indices_and_times(clip_path):
    source = open_source(clip_path)
    assert (source.info.kind, source.info.width, source.info.height) == ("video", 160, 96)
    frames = list(source)
    assert [f.index for f in frames] == list(range(24))
    assert frames[12].time_s == pytest.approx(1.0, abs=1e-3)
    assert frames[0].image.shape == (96, 160, 3) and frames[0].image.dtype == np.uint8
    assert source.frames_read == 24


def test_sampling_by_time_skips_frames_but_counts_them(clip_path):
    source = open_source(clip_path)
    sampler = Sampler(SamplingConfig(fps=4.0), by_time=True)
    kept = list(source.frames(sampler.keep))
    assert [f.index for f in kept] == [0, 3, 6, 9, 12, 15, 18, 21]
    assert source.frames_read == 24


def test_folder_of_frames_sorted_by_name(tmp_path):
    for name, value in [("b.png", 20), ("a.png", 10), ("c.jpg", 30)]:
        Image.fromarray(np.full((20, 30, 3), value, np.uint8)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not a frame")
    source = open_source(tmp_path, folder_interval_s=60)
    frames = list(source)
    assert [int(f.image.mean()) for f in frames] == [10, 20, 30]
    assert [f.time_s for f in frames] == [0, 60, 120]
    assert source.info.kind == "frames"


def test_single_image(tmp_path):
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(tmp_path / "x.webp")
    frames = list(open_source(tmp_path / "x.webp"))
    assert len(frames) == 1 and frames[0].size == (12, 10)


def _reason(path, **kwargs):
    with pytest.raises(SourceError) as info:
        source = open_source(path, **kwargs)
        list(source)
    assert str(info.value) and "\n" not in str(info.value)
    return info.value.reason


def test_bad_inputs_raise_one_clear_error(tmp_path, clip_path):
    assert _reason(tmp_path / "missing.mp4") == "missing"
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert _reason(tmp_path / "empty.mp4") == "empty"
    (tmp_path / "text.mp4").write_text("this is not a video at all\n" * 50)
    assert _reason(tmp_path / "text.mp4") == "not_media"
    data = clip_path.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    assert _reason(tmp_path / "cut.mp4") == "truncated"
    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    assert _reason(empty_dir) == "empty"


def test_truncated_stream_with_index_first(tmp_path, make_clip):
    import av

    # moov atom first: the header survives a cut and declares more frames than remain
    src = make_clip(tmp_path / "a.mp4", frames=48)
    fast = tmp_path / "fast.mp4"
    with av.open(str(src)) as inp, av.open(str(fast), "w", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    data = fast.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: int(len(data) * 0.6)])
    assert _reason(tmp_path / "cut.mp4") == "truncated"


def test_corrupt_image_in_folder_names_the_file(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    good = (tmp_path / "a.png").read_bytes()
    (tmp_path / "b.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(SourceError, match="b.png"):
        list(open_source(tmp_path))


def test_image_bomb_is_refused_from_its_header(tmp_path):
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
    (tmp_path / "bomb.png").write_bytes(png)
    assert _reason(tmp_path / "bomb.png") == "too_large"


def test_frame_times_come_from_capture_times_in_names(tmp_path):
    for stamp in ("2020_06_11T19_56_01", "2020_06_11T19_57_01", "2020_06_11T19_59_31"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / f"cam_{stamp}.jpg")
    source = open_source(tmp_path, folder_interval_s=5)
    assert [f.time_s for f in source] == [0.0, 60.0, 210.0]
    assert source.info.duration_s == 210.0
    other = tmp_path / "plain"
    other.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(other / name)
    assert [f.time_s for f in open_source(other, folder_interval_s=5)] == [0.0, 5.0]
