"""``python -m s2ac``: the same command as ``s2ac`` (for images and subprocesses without PATH)."""

from s2ac.cli import run

run()
