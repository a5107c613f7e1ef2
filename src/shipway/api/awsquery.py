"""The awsquery protocol: form-encoded requests (``Action=DescribeAlarms&Version=2010-08-01&
AlarmNames.member.1=a``) and XML answers, as botocore speaks it to CloudWatch (older botocore)
and to SNS.

Both directions are driven by the service's own model (botocore's
``<service>/<version>/service-2.json``, named by ``service``: ``cloudwatch`` by default, ``sns``),
so every operation's members, lists (``Name.member.N``), maps (``Name.entry.N.key``, or the
names the model gives a map's key and value: SNS's ``MessageAttributes.entry.N.Name``) and types
read and write as botocore expects, without a table of our own. Answers carry the model's XML
namespace; errors the namespace their caller names (CloudWatch's by default).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree

from shipway.domain.errors import ValidationError

__all__ = ["NAMESPACE", "decode", "encode", "encode_error"]

NAMESPACE = "http://monitoring.amazonaws.com/doc/2010-08-01/"
_MISSING = object()


_CLOUDWATCH = "cloudwatch"


@functools.cache
def _model(service: str) -> Any:
    # imported on the first awsquery request: botocore is about 15 MB a server without such
    # clients need not hold
    from botocore.loaders import Loader  # type: ignore[import-untyped]
    from botocore.model import ServiceModel  # type: ignore[import-untyped]

    return ServiceModel(Loader().load_service_model(service, "service-2"), service)


def _operation(name: str, service: str) -> Any:
    try:
        return _model(service).operation_model(name)
    except Exception as exc:  # botocore's OperationNotFoundError
        raise ValidationError(f"Unknown operation {name}.") from exc


def decode(operation: str, form: dict[str, str], service: str = _CLOUDWATCH) -> dict[str, Any]:
    """A form's parameters as the operation's input document (PascalCase members)."""
    shape = _operation(operation, service).input_shape
    if shape is None:
        return {}
    document = _read(shape, form, "")
    return document if isinstance(document, dict) else {}


def _read(shape: Any, form: dict[str, str], key: str) -> Any:
    kind = shape.type_name
    if kind == "structure":
        found: dict[str, Any] = {}
        for name, member in shape.members.items():
            wire = member.serialization.get("name", name)
            value = _read(member, form, f"{key}.{wire}" if key else wire)
            if value is not _MISSING:
                found[name] = value
        return found if found or not key else _MISSING
    if kind == "list":
        if form.get(key) == "":
            return []
        flat = shape.serialization.get("flattened")
        item = shape.member.serialization.get("name", "member")
        items: list[Any] = []
        while True:
            index = len(items) + 1
            value = _read(shape.member, form, f"{key}.{index}" if flat else f"{key}.{item}.{index}")
            if value is _MISSING:
                break
            items.append(value)
        return items or _MISSING
    if kind == "map":
        entries: dict[str, Any] = {}
        prefix = key if shape.serialization.get("flattened") else f"{key}.entry"
        key_name = shape.key.serialization.get("name", "key")
        value_name = shape.value.serialization.get("name", "value")
        index = 1
        while f"{prefix}.{index}.{key_name}" in form:
            entry = f"{prefix}.{index}"
            value = _read(shape.value, form, f"{entry}.{value_name}")
            entries[form[f"{entry}.{key_name}"]] = None if value is _MISSING else value
            index += 1
        return entries or _MISSING
    if key not in form:
        return _MISSING
    return _scalar(kind, form[key], key)


def _scalar(kind: str, text: str, key: str) -> Any:
    try:
        if kind in ("integer", "long"):
            return int(text)
        if kind in ("double", "float"):
            return float(text)
        if kind == "boolean":
            if text.lower() not in ("true", "false"):
                raise ValueError(text)
            return text.lower() == "true"
        if kind == "timestamp":
            try:
                return datetime.fromtimestamp(float(text), UTC)
            except ValueError:
                return datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValidationError(
            f"The value {text!r} of parameter {key} is not a valid {kind}."
        ) from exc
    return text


def encode(
    operation: str, document: dict[str, Any], request_id: str, service: str = _CLOUDWATCH
) -> bytes:
    """The operation's XML answer for an output document, in the service's namespace."""
    model = _operation(operation, service)
    namespace = _model(service).metadata.get("xmlNamespace", NAMESPACE)
    root = ElementTree.Element(f"{operation}Response", xmlns=namespace)
    shape = model.output_shape
    if shape is not None:
        wrapper = shape.serialization.get("resultWrapper", f"{operation}Result")
        result = ElementTree.SubElement(root, wrapper)
        _write_members(result, shape, document)
    metadata = ElementTree.SubElement(root, "ResponseMetadata")
    ElementTree.SubElement(metadata, "RequestId").text = request_id
    return _xml(root)


def encode_error(
    fault: str, code: str, message: str, request_id: str, namespace: str = NAMESPACE
) -> bytes:
    """``<ErrorResponse><Error><Type>Sender</Type><Code>...``: botocore raises the modelled
    exception whose code is ``code`` (``ResourceNotFound``, SNS's ``NotFound``...)."""
    root = ElementTree.Element("ErrorResponse", xmlns=namespace)
    error = ElementTree.SubElement(root, "Error")
    ElementTree.SubElement(error, "Type").text = fault
    ElementTree.SubElement(error, "Code").text = code
    ElementTree.SubElement(error, "Message").text = message
    ElementTree.SubElement(root, "RequestId").text = request_id
    return _xml(root)


def _write_members(parent: ElementTree.Element, shape: Any, value: dict[str, Any]) -> None:
    for name, member in shape.members.items():
        if name in value and value[name] is not None:
            _write(parent, member.serialization.get("name", name), member, value[name])


def _write(parent: ElementTree.Element, name: str, shape: Any, value: Any) -> None:
    kind = shape.type_name
    if kind == "list" and shape.serialization.get("flattened"):
        for item in value:
            _write(parent, name, shape.member, item)
        return
    node = ElementTree.SubElement(parent, name)
    if kind == "structure":
        _write_members(node, shape, value)
    elif kind == "list":
        item_name = shape.member.serialization.get("name", "member")
        for item in value:
            _write(node, item_name, shape.member, item)
    elif kind == "map":
        key_name = shape.key.serialization.get("name", "key")
        value_name = shape.value.serialization.get("name", "value")
        for key, item in value.items():
            entry = ElementTree.SubElement(node, "entry")
            ElementTree.SubElement(entry, key_name).text = str(key)
            _write(entry, value_name, shape.value, item)
    elif kind == "timestamp":
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        node.text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    elif kind == "boolean":
        node.text = "true" if value else "false"
    elif kind in ("double", "float"):
        node.text = repr(float(value))
    else:
        node.text = str(value)


def _xml(root: ElementTree.Element) -> bytes:
    text: bytes = ElementTree.tostring(root, "utf-8")
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + text
