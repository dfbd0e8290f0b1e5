"""Apply a trained generator to whole scenes: tiling, readers, writers."""
