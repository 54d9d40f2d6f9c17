"""Errors of the video pipeline."""

from __future__ import annotations


class VideoError(ValueError):
    """The input is not a usable video: unreadable, no frames, unknown frame rate, truncated."""


class VideoCancelled(Exception):
    """``process_video`` stopped because its ``cancelled`` callback returned True."""
