"""DataProcessing on real records: AWS's documented examples (CSV with an id column, JSON with a
features member), JSON Lines, joins of non-object JSON, splitting model answers per record, and
the errors a job reports against one record."""

from __future__ import annotations

import orjson
import pytest

from shipway.batch.data_processing import (
    DataProcessingError,
    DataProcessor,
    OutputCountError,
    RecordError,
)
from shipway.domain.errors import ValidationError

CSV = "text/csv"
JSON = "application/json"
JSONL = "application/jsonlines"


def _json_lines(data: bytes) -> list[object]:
    assert data.endswith(b"\n")
    return [orjson.loads(line) for line in data.split(b"\n")[:-1]]


def test_defaults_are_inactive() -> None:
    assert not DataProcessor().active
    assert not DataProcessor("$", "None", "$", CSV, CSV).active
    assert not DataProcessor("", None, "", "image/jpeg", "application/x-protobuf").active


def test_csv_with_an_id_column_keeps_id_and_prediction() -> None:
    """AWS's example: the id column is not sent ($[1:]), the input is joined, and the
    OutputFilter keeps the id and the prediction ($[0,-1])."""
    processor = DataProcessor("$[1:]", "Input", "$[0,-1]", CSV, CSV)
    assert processor.active
    assert processor.transforms_output
    records = [b"id-1,5.10,3.5,1.4", b"id-2,4.90,3.0,1.40", b"id-3,6.2,2.9,4.3"]

    assert processor.model_input(records) == b"5.10,3.5,1.4\n4.90,3.0,1.40\n6.2,2.9,4.3\n"
    outputs = processor.outputs(b"0.97\n0.020\n0.5\n", len(records))
    assert outputs == [b"0.97", b"0.020", b"0.5"]
    assert processor.joined(records, outputs) == b"id-1,0.97\nid-2,0.020\nid-3,0.5\n"


def test_csv_join_appends_output_columns_to_the_original_row() -> None:
    """AWS's example: record [1,2,3] with label [1] is written [1,2,3,1]; the InputFilter does
    not change what is joined."""
    processor = DataProcessor("$[1:]", "Input", None, CSV, CSV)
    records = [b"1,2,3", b"4,5.50,6"]
    outputs = processor.outputs(b"1,0.9\n0,0.1", 2)
    assert processor.joined(records, outputs) == b"1,2,3,1,0.9\n4,5.50,6,0,0.1\n"


def test_csv_quoted_fields_are_parsed_and_written_as_csv() -> None:
    processor = DataProcessor("$[1:]", "Input", "$[0,2,-1]", CSV, CSV)
    records = [b'"Smith, Jane",42,"said ""hi""",x', b'7,"",0,y']
    assert processor.model_input(records) == b'42,"said ""hi""",x\n,0,y\n'
    outputs = processor.outputs(b'"a,b"\nc\n', 2)
    joined = processor.joined(records, outputs)
    assert joined == b'"Smith, Jane","said ""hi""","a,b"\n7,0,c\n'


def test_csv_single_field_selection_is_a_one_column_row() -> None:
    processor = DataProcessor("$[2]", None, "$[0]", CSV, CSV)
    assert processor.model_input([b"a,b,c", b"d,e,f"]) == b"c\nf\n"
    assert processor.joined([b"a,b,c", b"d,e,f"], [b"1,2", b"3,4"]) == b"1\n3\n"


def test_json_features_in_id_and_sagemaker_output_out() -> None:
    """AWS's example: $.features goes to the model; the joined record keeps id and the
    model's output."""
    processor = DataProcessor("$.features", "Input", "$['id','SageMakerOutput']", JSONL, JSONL)
    records = [
        b'{"id": "a", "features": [1.5, 2], "note": "x"}',
        b'{"id": "b", "features": [3, 4.25], "note": "y"}',
    ]
    assert processor.model_input(records) == b"[1.5,2]\n[3,4.25]\n"
    outputs = processor.outputs(b'{"label": 1}\n{"label": 0}\n', 2)
    assert _json_lines(processor.joined(records, outputs)) == [
        {"id": "a", "SageMakerOutput": {"label": 1}},
        {"id": "b", "SageMakerOutput": {"label": 0}},
    ]


def test_json_object_input_gains_sagemaker_output() -> None:
    """AWS's example: {"key":1} joined with {"label":1}, one application/json record."""
    processor = DataProcessor(None, "Input", None, JSON, JSON)
    assert processor.model_input([b'{"key": 1}']) == b'{"key": 1}'
    outputs = processor.outputs(b'{"label":1}', 1)
    joined = processor.joined([b'{"key": 1}'], outputs)
    assert joined == b'{"key":1,"SageMakerOutput":{"label":1}}\n'


@pytest.mark.parametrize(
    ("record", "joined"),
    [
        (b"[1, 2, 3]", {"SageMakerInput": [1, 2, 3], "SageMakerOutput": 0.5}),
        (b'"some text"', {"SageMakerInput": "some text", "SageMakerOutput": 0.5}),
        (b"12", {"SageMakerInput": 12, "SageMakerOutput": 0.5}),
        (b"null", {"SageMakerInput": None, "SageMakerOutput": 0.5}),
    ],
)
def test_non_object_json_input_is_wrapped(record: bytes, joined: dict[str, object]) -> None:
    processor = DataProcessor(None, "Input", None, JSONL, JSONL)
    assert _json_lines(processor.joined([record], [b"0.5"])) == [joined]


def test_json_lines_filters_without_a_join() -> None:
    processor = DataProcessor("$.inputs", None, "$.scores[0]", "application/x-jsonlines", JSONL)
    records = [b'{"inputs": "good"}', b'{"inputs": "bad"}']
    assert processor.model_input(records) == b'"good"\n"bad"\n'
    outputs = processor.outputs(b'{"scores": [0.9, 0.1]}\n{"scores": [0.2, 0.8]}\n', 2)
    assert processor.joined(records, outputs) == b"0.9\n0.2\n"


def test_several_json_records_are_sent_as_json_lines() -> None:
    processor = DataProcessor("$.x", None, None, JSON, JSON)
    assert processor.model_input([b'{"x": [1]}', b'{"x": [2]}']) == b"[1]\n[2]\n"
    assert processor.model_input([b'{"x": {"y": 1}}']) == b'{"y":1}'


@pytest.mark.parametrize(
    "body",
    [
        b'[0.1, [0.2], {"c": 3}]',
        b'{"predictions": [0.1, [0.2], {"c": 3}]}',
        b'0.1\n[0.2]\n{"c": 3}\n',
    ],
)
def test_json_answers_split_per_record(body: bytes) -> None:
    processor = DataProcessor(None, "Input", None, JSON, JSON)
    outputs = processor.outputs(body, 3)
    assert [orjson.loads(output) for output in outputs] == [0.1, [0.2], {"c": 3}]


def test_a_one_record_json_answer_is_whole_unless_multi_record() -> None:
    single = DataProcessor(None, "Input", None, JSON, JSON)
    assert single.outputs(b"[0.2, 0.8]", 1) == [b"[0.2, 0.8]"]
    assert single.outputs(b"[0.8]", 1) == [b"[0.8]"]
    multi = DataProcessor(None, "Input", None, JSON, JSON, batch_strategy="MultiRecord")
    assert multi.outputs(b"[0.8]", 1) == [b"0.8"]
    assert multi.outputs(b'{"predictions": [[0.2, 0.8]]}', 1) == [b"[0.2,0.8]"]
    assert multi.outputs(b'{"label": 1}', 1) == [b'{"label": 1}']


def test_csv_input_joined_with_json_output_is_json() -> None:
    processor = DataProcessor(None, "Input", "$.SageMakerInput[0]", CSV, JSONL)
    records = [b"id-1,2.50", b"id-2,3"]
    assert processor.model_input(records) == b"id-1,2.50\nid-2,3\n"
    assert processor.joined(records, [b'{"s": 1}', b'{"s": 2}']) == b'"id-1"\n"id-2"\n'
    unfiltered = DataProcessor(None, "Input", None, CSV, JSONL)
    assert _json_lines(unfiltered.joined(records[:1], [b'{"s": 1}'])) == [
        {"SageMakerInput": ["id-1", "2.50"], "SageMakerOutput": {"s": 1}}
    ]


def test_json_input_joined_with_csv_output_holds_the_fields() -> None:
    processor = DataProcessor(None, "Input", None, JSONL, CSV)
    joined = processor.joined([b'{"id": 1}'], [b"0.25,cat"])
    assert joined == b'{"id":1,"SageMakerOutput":["0.25","cat"]}\n'


def test_media_type_parameters_are_ignored_and_accept_defaults_to_content_type() -> None:
    processor = DataProcessor("$[1:]", "Input", "$[0,-1]", "text/csv; charset=utf-8", None)
    assert processor.joined([b"k,1"], processor.outputs(b"9\n", 1)) == b"k,9\n"


def test_an_input_filter_alone_leaves_answers_as_they_are() -> None:
    processor = DataProcessor("$[1:]", None, None, CSV, CSV)
    assert processor.active
    assert not processor.transforms_output
    assert processor.joined([b"a,1", b"b,2"], [b"x", b"y"]) == b"x\ny\n"


@pytest.mark.parametrize(
    ("accept", "body", "count", "answered"),
    [
        (CSV, b"1\n2\n3\n", 4, 3),
        (CSV, b"1\n2\n3\n4\n5", 4, 5),
        (CSV, b"", 1, 0),
        (JSONL, b'{"a":1}\n', 2, 1),
        (JSON, b"[1, 2, 3]", 4, 3),
        (JSON, b'{"predictions": [1, 2]}', 3, 2),
        (JSON, b'{"label": 1}', 2, 1),
        (JSON, b"1\n2\n3\n", 4, 3),
    ],
)
def test_answers_with_another_count_of_records_are_errors(
    accept: str, body: bytes, count: int, answered: int
) -> None:
    processor = DataProcessor(None, "Input", None, accept, accept)
    with pytest.raises(OutputCountError) as caught:
        processor.outputs(body, count)
    assert str(caught.value) == f"the model answered {answered} records for {count}"
    assert isinstance(caught.value, DataProcessingError)
    assert isinstance(caught.value, ValueError)


def test_joined_needs_one_output_per_record() -> None:
    processor = DataProcessor(None, "Input", None, CSV, CSV)
    with pytest.raises(OutputCountError, match="answered 1 records for 2"):
        processor.joined([b"a", b"b"], [b"1"])


def test_an_out_of_range_output_filter_names_the_record() -> None:
    processor = DataProcessor(None, "Input", "$[0,2]", CSV, CSV)
    with pytest.raises(RecordError) as caught:
        processor.joined([b"a,b", b"c", b"d,e"], [b"1", b"2", b"3"])
    assert caught.value.index == 1
    assert str(caught.value) == (
        "record 1: $[0,2]: index 2 is out of range for an array of 2 items"
    )


def test_an_input_filter_that_does_not_fit_names_the_record() -> None:
    processor = DataProcessor("$.features", "Input", None, JSONL, JSONL)
    with pytest.raises(RecordError) as caught:
        processor.model_input([b'{"features": [1]}', b'{"features": [2]}', b'{"feature": [3]}'])
    assert caught.value.index == 2
    assert caught.value.reason == "$.features: the object has no member 'features'"


@pytest.mark.parametrize(
    ("records", "index", "reason"),
    [
        ([b'{"a": 1}', b"{not json", b"{}"], 1, "the input is not valid JSON"),
        ([b"{}", b""], 1, "the input is not valid JSON"),
    ],
)
def test_bad_json_records_are_named(records: list[bytes], index: int, reason: str) -> None:
    processor = DataProcessor("$", "Input", None, JSONL, JSONL)
    with pytest.raises(RecordError) as caught:
        processor.joined(records, [b"1"] * len(records))
    assert caught.value.index == index
    assert caught.value.reason.startswith(reason)


def test_bad_json_outputs_are_named() -> None:
    processor = DataProcessor(None, "Input", None, JSONL, JSONL)
    with pytest.raises(RecordError) as caught:
        processor.joined([b"{}", b"{}"], [b"1", b"[2"])
    assert caught.value.index == 1
    assert caught.value.reason.startswith("the model's output is not valid JSON")


@pytest.mark.parametrize(
    ("records", "index", "reason"),
    [
        ([b"a,b", b'c,"d', b"e,f"], 1, "the input has a quoted field that is not closed"),
        ([b"a,b", b"c,\xff", b"e,f"], 1, "the input is not UTF-8 text"),
        ([b"a,b\nc,d", b"e,f"], 0, "the input holds a line break; a CSV record is one line"),
        ([b"a,b", b"c\rd,e"], 1, "the input is not a CSV row"),
    ],
)
def test_bad_csv_records_are_named(records: list[bytes], index: int, reason: str) -> None:
    processor = DataProcessor("$[1:]", None, None, CSV, CSV)
    with pytest.raises(RecordError) as caught:
        processor.model_input(records)
    assert caught.value.index == index
    assert caught.value.reason.startswith(reason)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("$..a", None, None, JSONL, JSONL), "InputFilter '$..a' is not valid: recursive descent"),
        ((None, None, "$[?(@.x)]", JSONL, JSONL), "OutputFilter '$[?(@.x)]' is not valid: filter"),
        ((None, "Output", None, CSV, CSV), "JoinSource 'Output' is not valid; use Input or None."),
        (
            (None, "Input", None, "image/jpeg", JSONL),
            "JoinSource=Input needs the input's ContentType to be text/csv, application/json or "
            "application/jsonlines; it is 'image/jpeg'.",
        ),
        (
            ("$[1:]", None, None, None, CSV),
            "InputFilter '$[1:]' needs the input's ContentType to be text/csv, application/json "
            "or application/jsonlines; it is not set.",
        ),
        (
            (None, None, "$[0]", CSV, "application/x-recordio-protobuf"),
            "OutputFilter needs the output's Accept to be text/csv, application/json or "
            "application/jsonlines; it is 'application/x-recordio-protobuf'.",
        ),
    ],
)
def test_settings_that_cannot_work_are_validation_errors(
    arguments: tuple[str | None, ...], message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        DataProcessor(*arguments)
    assert caught.value.message.startswith(message)


def test_an_unknown_batch_strategy_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="BatchStrategy 'Many' is not valid"):
        DataProcessor(None, "Input", None, CSV, CSV, batch_strategy="Many")


def test_no_records_make_empty_bodies() -> None:
    processor = DataProcessor("$[1:]", "Input", "$[0,-1]", CSV, CSV)
    assert processor.model_input([]) == b""
    assert processor.outputs(b"", 0) == []
    assert processor.joined([], []) == b""


def test_a_thousand_rows_stream_through_in_order() -> None:
    processor = DataProcessor("$[1:]", "Input", "$[0,-1]", CSV, CSV)
    records = [f'id-{i},"{i}, quoted",{i / 8}'.encode() for i in range(1000)]
    body = processor.model_input(records)
    assert body.count(b"\n") == 1000
    assert body.startswith(b'"0, quoted",0.0\n"1, quoted",0.125\n')
    answer = b"".join(f"{i * 2}\n".encode() for i in range(1000))
    joined = processor.joined(records, processor.outputs(answer, 1000))
    assert joined.split(b"\n")[:-1] == [f"id-{i},{i * 2}".encode() for i in range(1000)]


def test_a_bad_model_output_row_is_named() -> None:
    processor = DataProcessor(None, "Input", None, CSV, CSV)
    with pytest.raises(RecordError) as caught:
        processor.joined([b"a", b"b", b"c"], [b"1", b"2\r3", b"4"])
    assert caught.value.index == 1
    assert caught.value.reason.startswith("the model's output is not a CSV row")


def test_a_filter_failing_after_quoted_rows_names_its_record() -> None:
    processor = DataProcessor("$[2]", None, None, CSV, CSV)
    records = [b'"x, y",1,2', b'"z",3,4', b'"w",5']
    with pytest.raises(RecordError) as caught:
        processor.model_input(records)
    assert caught.value.index == 2
    assert caught.value.reason == "$[2]: index 2 is out of range for an array of 2 items"
