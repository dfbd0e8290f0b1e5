"""A dataset is what its manifest says: forged digests, damaged, missing or extra shards, broken
manifests and empty splits are one-line errors naming the file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from s2ac.data.integrity import digest_of, read_manifest, verify_dataset
from s2ac.data.tfrecord import write_tfrecord
from s2ac.errors import InputDataError

SIZE = 8


def _dataset(root: Path) -> Path:
    rng = np.random.default_rng(0)
    hashes, counts = {}, {}
    for split, n in (("train", 3), ("val", 2)):
        pairs = [(rng.uniform(0, 0.5, (SIZE, SIZE, 4)).astype("f4"),
                  rng.uniform(0, 0.5, (SIZE, SIZE, 4)).astype("f4"), f"{split}-{k}")
                 for k in range(n)]  # fmt: skip
        path = root / split / "part-00000.tfrecord.gz"
        write_tfrecord(path, pairs)
        hashes[f"{split}/{path.name}"] = hashlib.sha256(path.read_bytes()).hexdigest()
        counts[split] = n
    manifest = {"name": "tiny", "patch_size": SIZE, "files": hashes, "digest": digest_of(hashes),
                "split": {"counts": counts}}  # fmt: skip
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_an_intact_dataset_verifies(tmp_path: Path):
    manifest = verify_dataset(str(_dataset(tmp_path)), ["train", "val"])
    assert manifest["name"] == "tiny"


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_shard_is_named(tmp_path: Path, damage: str):
    root = _dataset(tmp_path)
    shard = root / "train" / "part-00000.tfrecord.gz"
    data = bytearray(shard.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(InputDataError, match=r"train/part-00000.tfrecord.gz: sha256 .* differs"):
        verify_dataset(str(root), ["train", "val"])
    verify_dataset(str(root), ["val"])  # only the splits read are checked


def test_an_edited_digest_or_file_hash_is_refused(tmp_path: Path):
    root = _dataset(tmp_path)
    manifest = json.loads((root / "manifest.json").read_text())
    forged = dict(manifest, digest="0" * 64)
    (root / "manifest.json").write_text(json.dumps(forged))
    with pytest.raises(InputDataError, match="manifest edited"):
        verify_dataset(str(root), ["train"])
    # a consistent forgery (file hash and digest both edited) still fails on the file itself
    manifest["files"]["train/part-00000.tfrecord.gz"] = "f" * 64
    manifest["digest"] = digest_of(manifest["files"])
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputDataError, match="differs from the manifest"):
        verify_dataset(str(root), ["train"])


def test_missing_and_unlisted_shards_are_named(tmp_path: Path):
    root = _dataset(tmp_path)
    extra = root / "train" / "part-00001.tfrecord.gz"
    extra.write_bytes((root / "train" / "part-00000.tfrecord.gz").read_bytes())
    with pytest.raises(InputDataError, match=r"part-00001\.tfrecord\.gz: not in the manifest"):
        verify_dataset(str(root), ["train"])
    extra.unlink()
    (root / "val" / "part-00000.tfrecord.gz").rename(root / "val" / "part-00009.tfrecord.gz")
    with pytest.raises(InputDataError, match=r"val/part-00000\.tfrecord\.gz: listed in"):
        verify_dataset(str(root), ["val"])


@pytest.mark.parametrize(
    "text, problem",
    [("{not json", "not valid JSON"), ("{}", "no patch_size"),
     ('{"patch_size": 8}', "key 'name' is missing"),
     ('{"name": "x", "patch_size": true, "files": {}, "digest": "", "split": {}}',
      "key 'patch_size' is missing or not a int"),
     ('{"name": "x", "patch_size": 8, "files": {}, "digest": "", "split": {}}',
      "split.counts")],
)  # fmt: skip
def test_a_broken_manifest_is_a_one_line_error(tmp_path: Path, text: str, problem: str):
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(InputDataError, match=problem) as caught:
        read_manifest(str(tmp_path))
    assert str(tmp_path / "manifest.json") in str(caught.value)


def test_an_empty_split_is_an_error(tmp_path: Path):
    root = _dataset(tmp_path)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["split"]["counts"]["val"] = 0
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputDataError, match="split 'val' is empty"):
        verify_dataset(str(root), ["val"])
