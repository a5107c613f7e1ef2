"""The Ray Data reference: the same rows and model scored with Ray Data's batch inference, the way
Ray's documentation shows it, on the benchmark's Ray cluster (run by ``transform.py`` as a
driver process of its own).

    ray.data.read_csv(objects)                       # pyarrow's CSV reader, header-less
        .map_batches(Predictor, concurrency=2, batch_size=B, batch_format="numpy",
                     num_cpus=0.5)                   # a callable class: one model per actor
        .write_csv(out)

``Predictor`` loads the joblib model once per actor and predicts a batch (a dict of numpy
columns stacked into rows). ``B`` is given by the caller (the rows of one Shipway payload).

Ray Data hangs when its actors take every CPU of the cluster (the read and write tasks then
never get one): each actor asks for half a CPU, and the read tasks for half a CPU, so one actor
and one read or write task fit on each one-CPU node.

Prints JSON: the seconds from the first call on the dataset to the end of ``write_csv`` (after
``ray.init``, whose connection is not timed), and the predictions read back from the output,
sorted, compared with the expected outputs (Ray Data writes its own files and row order).

    python bench/batch/ray_data.py --address HOST:PORT --model M --out DIR --batch-size B \
        [--expected DIR] FILE...
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

ACTOR_CPUS = 0.5
READ_CPUS = 0.5


class Predictor:
    """The model, loaded once per actor; one batch of rows in, their predictions out."""

    def __init__(self, model: str) -> None:
        import joblib

        self._model = joblib.load(model)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        rows = np.column_stack([batch[name] for name in sorted(batch)])
        return {"prediction": self._model.predict(rows)}


def predictions(folder: Path, pattern: str, header: bool) -> Any:
    """Every prediction in the CSV files of a folder, as one sorted float64 array."""
    import numpy as np

    values = []
    for path in sorted(folder.glob(pattern)):
        words = path.read_bytes().split()
        values.append(np.array(words[1 if header else 0 :]).astype(np.float64))
    return np.sort(np.concatenate(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--expected", type=Path)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()

    import pyarrow.csv
    import ray

    ray.init(address=args.address, log_to_driver=False, configure_logging=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    started = time.monotonic()
    dataset = ray.data.read_csv(
        args.files,
        read_options=pyarrow.csv.ReadOptions(autogenerate_column_names=True),
        num_cpus=READ_CPUS,
    )
    scored = dataset.map_batches(
        Predictor,
        fn_constructor_args=(args.model,),
        batch_size=args.batch_size,
        batch_format="numpy",
        concurrency=args.concurrency,
        num_cpus=ACTOR_CPUS,
    )
    scored.write_csv(str(args.out))
    ended = time.monotonic()
    stats = scored.stats()
    ray.shutdown()
    result: dict[str, Any] = {"seconds": ended - started, "stats": stats}
    if args.expected is not None:
        import numpy as np

        got = predictions(args.out, "*.csv", header=True)
        expected = predictions(args.expected, "*.out", header=False)
        result["rows"] = int(got.size)
        result["equal"] = bool(got.size == expected.size and np.array_equal(got, expected))
        result["max_abs_difference"] = (
            float(np.max(np.abs(got - expected))) if got.size == expected.size else None
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
