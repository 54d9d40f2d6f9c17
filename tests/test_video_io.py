"""Video files: the H.264 writer's output plays back with the input's size, rate and frame
count; bad inputs (a still image among them) are clear ``VideoError``s; the viridis frames."""

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from model.video.errors import VideoError
from model.video.io import H264Writer, container_of, frame_rate, probe, read_frames
from model.video.render import VIRIDIS_BACKGROUND_RGB, viridis_parts


def moving_frames(count: int, height: int, width: int) -> list[np.ndarray]:
    """A smooth colour gradient sliding right by 3 px a frame (compresses predictably)."""
    y, x = np.mgrid[0:height, 0:width]
    return [
        np.stack([(x + 3 * t) * 4 % 256, y * 5 % 256, np.full_like(x, 40 * t % 256)], -1).astype(
            np.uint8
        )
        for t in range(count)
    ]


def write(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    height, width = frames[0].shape[:2]
    with H264Writer(path, width=width, height=height, fps=fps) as writer:
        for frame in frames:
            writer.write(frame)
    return path


@pytest.mark.parametrize("fps", [25.0, 30000 / 1001])
def test_h264_output_has_the_input_size_rate_and_frames(tmp_path, fps):
    frames = moving_frames(9, 48, 64)
    path = write(tmp_path / "out.mp4", frames, fps)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.codec_context.width, stream.codec_context.height) == (64, 48)
        assert stream.average_rate == frame_rate(fps)
    info = probe(path)
    assert (info.frames, info.width, info.height) == (9, 64, 48)
    assert info.fps == pytest.approx(fps, rel=1e-6)
    decoded = list(read_frames(path))  # OpenCV decodes it
    assert len(decoded) == 9
    for original, back in zip(frames, decoded, strict=True):
        assert back.shape == (48, 64, 3)
        assert np.abs(original.astype(int) - back.astype(int)).mean() < 4


def test_the_index_comes_first_for_progressive_playback(tmp_path):
    data = write(tmp_path / "out.mp4", moving_frames(3, 16, 16), 10.0).read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")


def test_odd_sizes_are_padded_to_even(tmp_path):
    path = write(tmp_path / "odd.mp4", moving_frames(2, 15, 21), 10.0)
    assert (probe(path).width, probe(path).height) == (22, 16)


def test_writer_rejects_frames_of_another_size(tmp_path):
    with (
        H264Writer(tmp_path / "x.mp4", width=16, height=16, fps=10) as writer,
        pytest.raises(ValueError, match=r"\(16, 16, 3\) uint8"),
    ):
        writer.write(np.zeros((16, 18, 3), np.uint8))


def test_frame_rate_as_a_fraction():
    assert str(frame_rate(30000 / 1001)) == "30000/1001"
    assert str(frame_rate(25.0)) == "25"


def test_non_video_inputs_are_video_errors(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_bytes(b"not a video at all " * 20)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    png = tmp_path / "still.png"
    cv2.imwrite(str(png), np.zeros((8, 8, 3), np.uint8))
    jpeg = tmp_path / "still.jpg"
    cv2.imwrite(str(jpeg), np.zeros((8, 8, 3), np.uint8))
    for path, message in [
        (text, "not a video file"),
        (empty, "not a video file"),
        (png, "still image"),
        (jpeg, "still image"),  # OpenCV alone opens it as one frame at 25 fps
        (tmp_path / "missing.mp4", "cannot be read"),
    ]:
        with pytest.raises(VideoError, match=message):
            probe(path)


@pytest.mark.parametrize(
    ("head", "container"),
    [
        (b"\0\0\0\x18ftypisom", "mp4"),
        (b"\0\0\0\x14ftypqt  ", "mov"),
        (b"\0\0\0\x08moov\0\0\0\0", "mov"),
        (b"\x1a\x45\xdf\xa3\0\0\0\0\0\0\0\0", "webm"),
        (b"RIFF\0\0\0\0AVI ", "avi"),
        (b"\xff\xd8\xff\xe0\0\x10JFIF\0\x01", None),
        (b"\x89PNG\r\n\x1a\n\0\0\0\r", None),
    ],
)
def test_containers_are_told_by_their_first_bytes(head, container):
    assert container_of(head) == container


def test_a_video_without_frames_is_a_video_error(tmp_path):
    path = tmp_path / "zero.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        container.start_encoding()
    with pytest.raises(VideoError):
        probe(path)


def test_a_truncated_video_yields_fewer_frames_than_it_declares(tmp_path):
    path = write(tmp_path / "full.mp4", moving_frames(20, 32, 32), 10.0)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert probe(cut).frames == 20
    assert len(list(read_frames(cut))) < 20


def test_viridis_background_and_top():
    frame = viridis_parts(np.array([[0, 24]], dtype=np.uint8))
    assert tuple(frame[0, 0]) == VIRIDIS_BACKGROUND_RGB
    assert tuple(frame[0, 1]) == (253, 231, 37)  # viridis(1)
