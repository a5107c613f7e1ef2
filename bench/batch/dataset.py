"""The batch benchmark's model and data, made in a process of their own (run by ``transform.py``).

**The model**: a scikit-learn ``HistGradientBoostingRegressor`` (100 trees of at most 31 leaves,
no early stopping) trained on ``load_diabetes`` (442 rows, 10 features) resampled to 50,000 rows
with noise, saved with joblib as ``<model>/model.joblib``.

**The rows**: ``load_diabetes`` rows drawn at random with Gaussian noise (a tenth of each
feature's standard deviation) and rounded to 6 decimals, so each value is a short decimal
(``-0.044642``) that every writer here prints and every parser reads back as the same float64.
They are written as ``--files`` CSV objects of equal row counts, SageMaker's header-less form
(``part-00.csv``...), and, with ``--parquet`` and pyarrow installed, as Parquet objects of the
same rows (``part-00.parquet``...).

Prints a JSON summary: rows, features, bytes of each form, and the rows as float64 in memory.
Nothing else in the benchmark imports scikit-learn, numpy or pandas: a benchmark process that
mapped those libraries would share their pages with the processes it measures, and make their
PSS look smaller.

    python bench/batch/dataset.py --model DIR            # train and save the model
    python bench/batch/dataset.py --rows N --files 8 --csv DIR [--parquet DIR]
    python bench/batch/dataset.py --frame DIR            # pandas read_csv of a CSV folder
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

SEED = 13
NOISE = 0.1
"""Noise added to each resampled value, in standard deviations of its feature."""
DECIMALS = 6
TRAIN_ROWS = 50_000
BLOCK_ROWS = 200_000
"""Rows generated and written at a time (bounds this process's memory for any dataset size)."""


def _resampled(rng: Any, rows: int) -> tuple[Any, Any]:
    import numpy as np
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    picked = rng.integers(0, len(x), rows)
    features = x[picked] + rng.normal(0.0, NOISE, (rows, x.shape[1])) * x.std(axis=0)
    target = y[picked] + rng.normal(0.0, NOISE * y.std(), rows)
    return np.round(features, DECIMALS), target


def train(folder: Path) -> dict[str, Any]:
    import joblib
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingRegressor

    x, y = _resampled(np.random.default_rng(SEED), TRAIN_ROWS)
    model = HistGradientBoostingRegressor(max_iter=100, early_stopping=False, random_state=SEED)
    model.fit(x, y)
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, folder / "model.joblib")
    return {"model": str(folder / "model.joblib"), "trees": int(model.n_iter_)}


def csv_text(block: Any) -> bytes:
    """Rows as header-less CSV, one per line (orjson prints each float64 in its shortest form,
    as the model server's CSV encoder does)."""
    import orjson

    text = orjson.dumps(block, option=orjson.OPT_SERIALIZE_NUMPY)
    return text[2:-2].replace(b"],[", b"\n") + b"\n"


def write(rows: int, files: int, csv: Path, parquet: Path | None) -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(SEED + rows)
    csv.mkdir(parents=True, exist_ok=True)
    if parquet is not None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        parquet.mkdir(parents=True, exist_ok=True)
    per_file = [rows // files + (1 if i < rows % files else 0) for i in range(files)]
    features = 0
    for i, count in enumerate(per_file):
        writer = None
        with open(csv / f"part-{i:02d}.csv", "wb") as out:
            left = count
            while left:
                n = min(left, BLOCK_ROWS)
                block, _ = _resampled(rng, n)
                features = block.shape[1]
                out.write(csv_text(block))
                if parquet is not None:
                    table = pa.Table.from_arrays(
                        [pa.array(block[:, c]) for c in range(features)],
                        names=[f"f{c}" for c in range(features)],
                    )
                    if writer is None:
                        writer = pq.ParquetWriter(parquet / f"part-{i:02d}.parquet", table.schema)
                    writer.write_table(table)
                left -= n
        if writer is not None:
            writer.close()
    summary: dict[str, Any] = {
        "rows": rows,
        "features": features,
        "files": files,
        "csv_bytes": sum(p.stat().st_size for p in csv.glob("*.csv")),
        "float64_bytes": rows * features * 8,
    }
    if parquet is not None:
        summary["parquet_bytes"] = sum(p.stat().st_size for p in parquet.glob("*.parquet"))
    return summary


def frame(csv: Path) -> dict[str, Any]:
    """What holding the rows in memory takes with pandas: ``read_csv`` of every object into one
    DataFrame, its ``memory_usage(deep=True)`` and this process's peak RSS growth meanwhile."""
    import pandas as pd

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    table = pd.concat(
        [pd.read_csv(path, header=None) for path in sorted(csv.glob("*.csv"))], ignore_index=True
    )
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "frame_bytes": int(table.memory_usage(deep=True).sum()),
        "frame_peak_rss_growth_bytes": (peak - before) * 1024,
        "frame_read_seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--rows", type=int)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--csv", type=Path)
    parser.add_argument("--parquet", type=Path)
    parser.add_argument("--frame", type=Path)
    args = parser.parse_args()
    if args.model is not None:
        result = train(args.model)
    elif args.frame is not None:
        result = frame(args.frame)
    elif args.rows and args.csv is not None:
        result = write(args.rows, args.files, args.csv, args.parquet)
    else:
        sys.exit("give --model DIR, --frame DIR, or --rows N --csv DIR [--parquet DIR]")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
