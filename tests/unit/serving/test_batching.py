"""AdaptiveBatcher: concurrent requests merge into fewer predict calls, and each caller gets
exactly its own rows back, whatever the model does to the others."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from shipway.serving.batching import AdaptiveBatcher, count_rows

Rows = np.ndarray[Any, Any]


def rows_for(request_id: int, n: int = 1, columns: int = 3) -> Rows:
    """``n`` rows whose first column names the request (id * 100 + row): answers are traceable."""
    block = np.zeros((n, columns))
    block[:, 0] = [request_id * 100 + row for row in range(n)]
    return block


def encode_id(x: Any) -> Rows:
    return np.asarray(x)[:, 0] * 10


class Recorder:
    """A predict function that records the batches it was given."""

    def __init__(self, predict: Callable[[Any], Any] = encode_id) -> None:
        self.batches: list[Any] = []
        self.threads: list[str] = []
        self._predict = predict

    def __call__(self, x: Any) -> Any:
        self.batches.append(x)
        self.threads.append(threading.current_thread().name)
        return self._predict(x)


def run(scenario: Callable[[AdaptiveBatcher], Awaitable[Any]], batcher: AdaptiveBatcher) -> Any:
    async def main() -> Any:
        try:
            return await scenario(batcher)
        finally:
            await batcher.close()

    return asyncio.run(main())


def test_fifty_concurrent_requests_each_get_their_own_rows() -> None:
    predict = Recorder()
    batcher = AdaptiveBatcher(predict)
    requests = [rows_for(i, n=1 + i % 4) for i in range(50)]

    async def scenario(b: AdaptiveBatcher) -> list[Any]:
        return list(await asyncio.gather(*(b.submit(r) for r in requests)))

    answers = run(scenario, batcher)

    for request, answer in zip(requests, answers, strict=True):
        np.testing.assert_array_equal(answer, request[:, 0] * 10)
    assert batcher.calls < 50
    assert batcher.calls == len(predict.batches)
    assert max(count_rows(b) for b in predict.batches) > 4  # several requests in one call
    assert sum(count_rows(b) for b in predict.batches) == sum(len(r) for r in requests)


def test_a_batch_never_holds_more_than_max_batch_size_requests() -> None:
    predict = Recorder()
    batcher = AdaptiveBatcher(predict, max_batch_size=8)
    requests = [rows_for(i) for i in range(50)]

    async def scenario(b: AdaptiveBatcher) -> list[Any]:
        return list(await asyncio.gather(*(b.submit(r) for r in requests)))

    answers = run(scenario, batcher)

    assert [float(a[0]) for a in answers] == [i * 1000.0 for i in range(50)]
    assert max(count_rows(b) for b in predict.batches) <= 8
    assert batcher.calls >= 7


def test_a_lone_request_is_answered_at_once_with_what_predict_returned() -> None:
    batcher = AdaptiveBatcher(lambda x: ["label"] * len(x))

    async def scenario(b: AdaptiveBatcher) -> Any:
        return await b.submit(rows_for(1, n=2))

    assert run(scenario, batcher) == ["label", "label"]
    assert batcher.calls == 1


def test_sequential_requests_are_not_merged() -> None:
    predict = Recorder()
    batcher = AdaptiveBatcher(predict)

    async def scenario(b: AdaptiveBatcher) -> list[Any]:
        return [await b.submit(rows_for(i)) for i in range(3)]

    answers = run(scenario, batcher)

    assert [float(a[0]) for a in answers] == [0.0, 1000.0, 2000.0]
    assert batcher.calls == 3


@pytest.mark.parametrize(
    "second",
    [
        pytest.param(lambda i: rows_for(i, columns=4), id="other-column-count"),
        pytest.param(lambda i: rows_for(i).astype(np.int64), id="other-dtype-kind"),
    ],
)
def test_incompatible_requests_are_not_merged_but_all_answered(
    second: Callable[[int], Rows],
) -> None:
    predict = Recorder()
    batcher = AdaptiveBatcher(predict)
    requests = [rows_for(i) if i % 2 else second(i) for i in range(10)]

    async def scenario(b: AdaptiveBatcher) -> list[Any]:
        return list(await asyncio.gather(*(b.submit(r) for r in requests)))

    answers = run(scenario, batcher)

    for request, answer in zip(requests, answers, strict=True):
        np.testing.assert_array_equal(answer, request[:, 0] * 10)
    assert len(predict.batches) == 2  # one call per kind of rows
    for batch in predict.batches:
        assert count_rows(batch) == 5
        assert len({(r.shape[1:], r.dtype.kind) for r in requests if r[0, 0] in batch[:, 0]}) == 1


def test_data_frames_merge_by_their_columns() -> None:
    predict = Recorder(lambda frame: frame["id"].to_numpy() * 10)
    batcher = AdaptiveBatcher(predict)
    frames = [
        pd.DataFrame({"id": [i * 100, i * 100 + 1], ("b" if i < 3 else "c"): [0.5, 0.5]})
        for i in range(6)
    ]

    async def scenario(b: AdaptiveBatcher) -> list[Any]:
        return list(await asyncio.gather(*(b.submit(f) for f in frames)))

    answers = run(scenario, batcher)

    for frame, answer in zip(frames, answers, strict=True):
        np.testing.assert_array_equal(answer, frame["id"].to_numpy() * 10)
    assert sorted(list(b.columns) for b in predict.batches) == [["id", "b"], ["id", "c"]]


def test_a_poisoned_row_fails_only_its_own_request() -> None:
    def predict(x: Any) -> Rows:
        if np.any(np.asarray(x)[:, 0] == 1300):
            raise ValueError("row 1300 is poison")
        return encode_id(x)

    batcher = AdaptiveBatcher(predict)
    requests = [rows_for(i) for i in range(20)]

    async def scenario(b: AdaptiveBatcher) -> list[Any]:
        return list(await asyncio.gather(*(b.submit(r) for r in requests), return_exceptions=True))

    answers = run(scenario, batcher)

    failed = [i for i, a in enumerate(answers) if isinstance(a, BaseException)]
    assert failed == [13]
    assert str(answers[13]) == "row 1300 is poison"
    for i, answer in enumerate(answers):
        if i != 13:
            np.testing.assert_array_equal(answer, [i * 1000.0])


def test_when_every_request_fails_each_caller_gets_the_error() -> None:
    def predict(x: Any) -> Rows:
        raise RuntimeError("model is broken")

    batcher = AdaptiveBatcher(predict)

    async def scenario(b: AdaptiveBatcher) -> list[Any]:
        return list(
            await asyncio.gather(*(b.submit(rows_for(i)) for i in range(5)), return_exceptions=True)
        )

    answers = run(scenario, batcher)

    assert [str(a) for a in answers] == ["model is broken"] * 5
    assert all(isinstance(a, RuntimeError) for a in answers)


@pytest.mark.parametrize(
    "wrong",
    [
        pytest.param(lambda x: encode_id(x)[:2], id="too-few"),
        pytest.param(lambda x: np.concatenate([encode_id(x), [0.0]]), id="too-many"),
        pytest.param(lambda x: np.float64(len(x)), id="a-scalar"),
    ],
)
def test_a_predict_with_the_wrong_number_of_rows_falls_back_to_each_request_alone(
    wrong: Callable[[Any], Any],
) -> None:
    def predict(x: Any) -> Any:
        return wrong(x) if len(x) > 2 else encode_id(x)  # right for a lone 2-row request

    counted = Recorder(predict)
    batcher = AdaptiveBatcher(counted)
    requests = [rows_for(i, n=2) for i in range(6)]

    async def scenario(b: AdaptiveBatcher) -> list[Any]:
        return list(await asyncio.gather(*(b.submit(r) for r in requests)))

    answers = run(scenario, batcher)

    for request, answer in zip(requests, answers, strict=True):
        np.testing.assert_array_equal(answer, request[:, 0] * 10)
    assert [count_rows(b) for b in counted.batches] == [12, 2, 2, 2, 2, 2, 2]


def test_a_caller_that_gave_up_is_not_predicted() -> None:
    predict = Recorder()
    batcher = AdaptiveBatcher(predict)

    async def scenario(b: AdaptiveBatcher) -> list[Any]:
        tasks = [asyncio.create_task(b.submit(rows_for(i))) for i in range(4)]
        await asyncio.sleep(0)  # every request queued, the batcher not yet run
        tasks[1].cancel()
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    answers = run(scenario, batcher)

    assert isinstance(answers[1], asyncio.CancelledError)
    assert [float(answers[i][0]) for i in (0, 2, 3)] == [0.0, 2000.0, 3000.0]
    seen = sorted(float(v) for b in predict.batches for v in b[:, 0])
    assert seen == [0.0, 200.0, 300.0]


def test_max_delay_lets_a_request_arriving_later_join_the_batch() -> None:
    predict = Recorder()
    batcher = AdaptiveBatcher(predict, max_batch_size=2, max_delay=5.0)

    async def scenario(b: AdaptiveBatcher) -> list[Any]:
        first = asyncio.create_task(b.submit(rows_for(1)))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(b.submit(rows_for(2)))
        return [await first, await second]

    started = time.monotonic()
    answers = run(scenario, batcher)

    assert [float(a[0]) for a in answers] == [1000.0, 2000.0]
    assert batcher.calls == 1
    assert time.monotonic() - started < 2.0  # a full batch does not wait out the delay


def test_a_slow_predict_runs_off_the_event_loop() -> None:
    predict = Recorder(lambda x: (time.sleep(0.05), encode_id(x))[1])
    batcher = AdaptiveBatcher(predict, inline_threshold=0.002)

    async def scenario(b: AdaptiveBatcher) -> tuple[int, Any]:
        await b.submit(rows_for(0))  # the batcher learns how long predict takes
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.001)
                ticks += 1

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        answer = await b.submit(rows_for(7))
        task.cancel()
        return ticks, answer

    ticks, answer = run(scenario, batcher)

    np.testing.assert_array_equal(answer, [7000.0])
    assert ticks >= 5  # the loop kept running while predict slept 50 ms
    assert all(name != threading.main_thread().name for name in predict.threads)


def test_a_fast_predict_runs_on_the_event_loop_once_measured() -> None:
    predict = Recorder()
    batcher = AdaptiveBatcher(predict, inline_threshold=1.0)

    async def scenario(b: AdaptiveBatcher) -> None:
        for i in range(3):
            await b.submit(rows_for(i))

    run(scenario, batcher)

    main = threading.main_thread().name
    assert predict.threads[0] != main  # unknown cost: the first call goes to the thread
    assert predict.threads[1:] == [main, main]
