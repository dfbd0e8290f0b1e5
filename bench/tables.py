"""Write ``bench/README.md`` from ``bench/results/*.json`` and the generator comparison.

Run by ``make bench`` after the benchmarks; ``--compare DIR`` (default ``../out/compare``,
written by ``make compare``) adds the quality table: the paper's Table 2/3 statistics (max, min,
mean, standard deviation of per-image SSIM, PSNR, RMSE, MAE) and per-band RMSE for every
generator and baseline on ``test`` and ``ood``, beside the paper's published numbers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pandas as pd

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
#: Shah et al. 2024, Table 3 (after 100 epochs; real Level-2A targets): max, min, mean, std.
PAPER_TABLE3 = {"ssim": (0.997, 0.563, 0.961, 0.068), "psnr": (52.93, 25.11, 42.14, 5.51),
                "rmse": (0.0555, 0.0022, 0.0097, 0.0075),
                "mae": (0.0394, 0.0017, 0.0071, 0.0051)}  # fmt: skip
#: Table 2 (before training: the untrained generator).
PAPER_TABLE2 = {"ssim": (0.00202, -0.0336, -0.0025, 0.0605),
                "psnr": (12.663, 7.0231, 11.0188, 0.6115), "rmse": (0.445, 0.232, 0.281, 0.021),
                "mae": (0.345, 0.161, 0.219, 0.017)}  # fmt: skip
METHODS = {"unet": "U-Net (paper)", "physics": "physics, climatology prior",
           "physics-dark-object": "physics, dark-object prior"}  # fmt: skip
BASELINES = ("identity", "dos", "6s", "linear", "oracle")


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _machine(record: dict[str, Any]) -> str:
    m = record["machine"]
    return (f"{m['cpu']}, {m['cpus']} cores ({', '.join(m.get('cpu_flags', []))}), "
            f"TensorFlow {m['tensorflow']}, Keras {m.get('keras', '?')}, commit `{m['commit']}`, "
            f"{m['date']}")  # fmt: skip


def train_section(record: dict[str, Any]) -> list[str]:
    rows = pd.DataFrame(record["results"])
    reference = rows[rows["case"] == "reference"].set_index("batch")["steps_per_s"]
    rows["vs reference"] = [r.steps_per_s / reference[r.batch] for r in rows.itertuples()]
    peak = record["matmul_gflops"]
    return [
        "## Training throughput", "", _machine(record), "",
        f"Paper width ({record['filters']} filters), 256x256x4, {record['timed_steps']} timed "
        f"steps after {record['warmup_steps']}. Matmul peak (4096², this run): float32 "
        f"{peak['float32']} GFLOP/s, bfloat16 {peak['bfloat16']} GFLOP/s. A step's FLOPs are "
        f"estimated from the convolutions' shapes (batch 2: "
        f"{record['train_step_gflop_estimate']['2']} GFLOP).", "",
        rows.to_markdown(index=False, floatfmt=".3g"), "",
        f"Ratios: {json.dumps(record['ratios'])}. Target: ≥ 1.5 x the reference.", "",
    ]  # fmt: skip


def data_section(record: dict[str, Any]) -> list[str]:
    lines = ["## Input pipeline", "", _machine(record), "",
             f"TFRecords → shuffled, augmented batches ({record['patches']} patches of "
             f"{record['patch_size']} px, the train split in {record.get('train_shards', 1)} "
             "gzip shards as the demo's; epoch 1 reads and decodes, later ones hit the cache): "
             f"{record['input_patches_per_s_by_epoch']} patches/s (epoch 1 from one shard alone, "
             f"one core inflating: {record.get('input_first_epoch_one_shard', 'n/a')}). "
             "What training consumes (patches/s) and the first epoch's ratio to it "
             "(target ≥ 10 x):", "",
             "| consumer | patches/s | input / training, epoch 1 | later epochs (cached) |",
             "|---|---|---|---|"]  # fmt: skip
    cached = record["input_patches_per_s_by_epoch"][-1]
    for name, rate in record["training_patches_per_s"].items():
        first = record["input_over_training_first_epoch"][name]
        lines.append(f"| {name} | {rate} | {first} x | {cached / rate:.1f} x |")
    return [*lines, ""]


def correct_section(record: dict[str, Any]) -> list[str]:
    rows = pd.DataFrame(record["results"])
    return ["## Scene correction", "", _machine(record), "",
            "`s2ac correct` end to end (read, tile, infer, blend, write the COG), random weights; "
            "overlap 64 px = 25 %. A row with `extrapolated_from_px` is the 2048 px run's time "
            "per tile times a full tile's tiles. Target: ≤ 90 s for a full tile with the model "
            "the demo promotes; Sen2Cor takes minutes per tile.", "",
            rows.to_markdown(index=False, floatfmt=".4g"), ""]  # fmt: skip


def _stats(values: pd.Series) -> str:
    return f"{values.max():.4g} / {values.min():.4g} / {values.mean():.4g} / {values.std():.4g}"


def quality_section(compare: Path) -> list[str]:
    record = json.loads((compare / "generators.json").read_text())
    lines = ["## Quality beside the paper", "",
             f"From `make compare` (trained on `{record['train_dataset']}`, scored on "
             f"`{record['eval_dataset']}`, digest `{record['eval_digest']}`). Per-image "
             "statistics as the paper's Tables 2 and 3: max / min / mean / standard deviation. "
             "**Caveat:** the paper's targets are real Sentinel-2 Level-2A (Sen2Cor) products; "
             "ours are semi-synthetic (real surfaces, 6S atmospheres), so the numbers are "
             "comparable in kind, not in difficulty; and the paper reports no baselines and no "
             "out-of-distribution split.", ""]  # fmt: skip
    for split in ("test", "ood"):
        lines += [f"### {split}", "",
                  "| method | SSIM | PSNR (dB) | RMSE | MAE | RMSE B2 / B3 / B4 / B8 (mean) |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        if split == "test":
            for name, table in (("paper, Table 3 (trained)", PAPER_TABLE3),
                                ("paper, Table 2 (untrained)", PAPER_TABLE2)):  # fmt: skip
                keys = ("ssim", "psnr", "rmse", "mae")
                cells = [" / ".join(f"{v:.4g}" for v in table[k]) for k in keys]
                lines.append(f"| {name} | {' | '.join(cells)} | (not reported) |")
        first = next(iter(METHODS))
        for method, label in [*METHODS.items(), *((b, b) for b in BASELINES)]:
            owner, column = (method, "pix2pix") if method in METHODS else (first, method)
            path = compare / owner / "evaluation" / f"per_image_{split}_{column}.csv"
            if not path.exists():
                continue
            frame = pd.read_csv(path)
            bands = " / ".join(f"{frame[f'rmse_{b}'].mean():.4f}" for b in ("B2", "B3", "B4", "B8"))
            cells = [_stats(frame[k]) for k in ("ssim", "psnr", "rmse", "mae")]
            lines.append(f"| {label} | {' | '.join(cells)} | {bands} |")
        lines.append("")
    return lines


def main(compare: Path) -> None:
    lines = ["# Benchmarks", "", "Written by `make bench` (`bench/tables.py`) from "
             "`bench/results/*.json`; each file records the machine, versions, commit and date. "
             "Machines here are shared and noisy (up to 2x between runs): compare ratios from one "
             "run only. Benchmarks are not tests.", ""]  # fmt: skip
    for name, section in (("train_step", train_section), ("data", data_section),
                          ("correct", correct_section)):  # fmt: skip
        record = _load(name)
        lines += section(record) if record else [f"## {name}", "", "(not run)", ""]
    if (compare / "generators.json").exists():
        lines += quality_section(compare)
    else:
        lines += [
            "## Quality beside the paper",
            "",
            f"(run `make compare` first: no {compare})",
            "",
        ]
    (HERE / "README.md").write_text("\n".join(lines))
    print(f"wrote {HERE / 'README.md'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", type=Path, default=HERE.parent / "out" / "compare")
    main(parser.parse_args().compare)
