"""The manifest's only contact with PyYAML: a bounded, event-driven reader and the canonical writer.

Reading is strict and bounded: one YAML document, no tags (``!!python/object`` ...), no anchors or
aliases, no duplicate keys, nesting at most :data:`~torrentgoat.manifest.schema.MAX_DEPTH` deep;
plain scalars are read as YAML 1.2 core ints, booleans and nulls, anything else is text.  The
document is built from the parser's events without recursion, so no input can exhaust the stack.
Writing is block style, fixed key order, no aliases, UTF-8.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from torrentgoat.errors import ManifestError
from torrentgoat.manifest.schema import MAX_DEPTH

__all__ = ["dump_yaml", "load_yaml"]

_MAX_EVENTS = 4_000_000
_INT_RE = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _scalar(event: yaml.ScalarEvent) -> Any:
    value = event.value
    if event.implicit[0]:  # plain scalar: YAML 1.2 core types, subset of PyYAML's
        if value in _NULLS:
            return None
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        if _INT_RE.fullmatch(value):
            return int(value)
    return value


def _where(event: yaml.Event) -> str:
    mark = event.start_mark
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "?"


def load_yaml(text: str) -> Any:
    """One YAML document as plain Python values, built from the parser's events (no recursion)."""
    stack: list[tuple[Any, list[Any] | None]] = []  # (container, [pending key] for mappings)
    root: Any = None
    documents = 0
    events = 0
    done = False

    def add(value: Any, event: yaml.Event) -> None:
        nonlocal root, done
        if not stack:
            root = value
            done = True
            return
        container, pending = stack[-1]
        if pending is None:
            container.append(value)
        elif not pending:
            if isinstance(value, dict | list):
                raise ManifestError(f"YAML {_where(event)}: mapping keys must be plain text")
            if not isinstance(value, str):
                raise ManifestError(f"YAML {_where(event)}: mapping key {value!r} is not text")
            if value in container:
                raise ManifestError(f"YAML {_where(event)}: duplicate key {value!r}")
            pending.append(value)
        else:
            container[pending.pop()] = value

    try:
        for event in yaml.parse(text, Loader=_Loader):
            events += 1
            if events > _MAX_EVENTS:
                raise ManifestError("manifest has too many YAML nodes")
            anchor = getattr(event, "anchor", None)
            if isinstance(event, yaml.AliasEvent) or anchor is not None:
                raise ManifestError(f"YAML {_where(event)}: anchors and aliases are not allowed")
            if isinstance(event, yaml.NodeEvent) and getattr(event, "tag", None) is not None:
                tag = getattr(event, "tag", None)
                raise ManifestError(f"YAML {_where(event)}: tags are not allowed (found {tag!r})")
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise ManifestError("a manifest is exactly one YAML document")
            elif isinstance(event, yaml.ScalarEvent):
                add(_scalar(event), event)
            elif isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
                if len(stack) >= MAX_DEPTH:
                    raise ManifestError(f"YAML {_where(event)}: nested deeper than {MAX_DEPTH} levels")
                container: Any = [] if isinstance(event, yaml.SequenceStartEvent) else {}
                add(container, event)
                stack.append((container, [] if isinstance(container, dict) else None))
            elif isinstance(event, yaml.CollectionEndEvent):
                stack.pop()
    except yaml.YAMLError as exc:
        message = " ".join(str(exc).split())
        if "nesting depth" in message:  # PyYAML >= 6.0.4 stops deep flow nesting in its scanner
            raise ManifestError(f"YAML: nested deeper than {MAX_DEPTH} levels ({message})") from None
        raise ManifestError(f"manifest is not valid YAML: {message}") from None
    if not done:
        raise ManifestError("manifest is empty")
    return root


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(doc: dict[str, Any]) -> str:
    """``doc`` as block-style YAML in its own key order, without aliases, unicode kept as is."""
    return yaml.dump(
        doc,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=4096,
        explicit_start=False,
    )
