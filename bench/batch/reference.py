"""The one-process limit: what a transform job's instances do, with no server, one process per
core (run by ``transform.py`` in a process of its own, with ``OMP_NUM_THREADS=1``).

A stdlib ``multiprocessing`` pool of ``--processes`` workers takes the input objects one at a
time (``imap_unordered``, one object per task). A worker reads its object in blocks of whole
lines of at most ``--payload-mb`` MiB (one ``read``, cut at the last newline, as Shipway's
splitter cuts a MultiRecord payload), decodes each block with the model server's own decoder
(``shipway.serving.codecs.decode(block, "text/csv")``), predicts with the model (loaded once per
worker with joblib, as the ``sklearn`` runtime does), encodes the predictions with the model
server's encoder (``codecs.encode(predictions, "text/csv")``) and appends them to
``<out>/<object>.out``. That is a Shipway instance's work per payload, without the HTTP, the
feeder, the parts and the assembly: the figure Shipway's local engine is measured against.

Prints JSON: when the pool was asked for (``started``), when every worker had loaded the model
(``ready``), when the last output was written (``ended``), all ``time.monotonic()`` in this
process, and per worker the seconds spent reading, decoding, predicting, encoding and writing.

    OMP_NUM_THREADS=1 python bench/batch/reference.py --model M --out DIR [--processes 2] FILE...
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

_model: Any = None


def _load(model: str, barrier: Any) -> None:
    global _model
    import joblib

    _model = joblib.load(model)
    barrier.wait()


def transform_object(task: tuple[str, str, int]) -> dict[str, Any]:
    """One input object into its output; seconds per step."""
    from shipway.serving import codecs

    path, out_dir, limit = task
    spent = dict.fromkeys(("read", "decode", "predict", "encode", "write"), 0.0)
    rows = 0
    with open(path, "rb") as source, open(Path(out_dir) / (Path(path).name + ".out"), "wb") as out:
        carry = b""
        while True:
            t0 = time.perf_counter()
            data = carry + source.read(limit - len(carry))
            cut = data.rfind(b"\n") + 1 if len(data) == limit else len(data)
            block, carry = data[:cut], data[cut:]
            t1 = time.perf_counter()
            spent["read"] += t1 - t0
            if not block:
                break
            features = codecs.decode(block, "text/csv")
            t2 = time.perf_counter()
            predictions = _model.predict(features)
            t3 = time.perf_counter()
            body, _ = codecs.encode(predictions, "text/csv")
            t4 = time.perf_counter()
            out.write(body)
            spent["write"] += time.perf_counter() - t4
            spent["decode"] += t2 - t1
            spent["predict"] += t3 - t2
            spent["encode"] += t4 - t3
            rows += len(predictions)
    return {"pid": os.getpid(), "object": path, "rows": rows, "seconds": spent}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--payload-mb", type=int, default=6)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    limit = args.payload_mb * 1024 * 1024
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(args.processes + 1)
    started = time.monotonic()
    with context.Pool(args.processes, initializer=_load, initargs=(args.model, barrier)) as pool:
        barrier.wait()
        ready = time.monotonic()
        tasks = [(f, str(args.out), limit) for f in args.files]
        done = list(pool.imap_unordered(transform_object, tasks))
        ended = time.monotonic()
    print(json.dumps({"started": started, "ready": ready, "ended": ended, "objects": done}))


if __name__ == "__main__":
    main()
