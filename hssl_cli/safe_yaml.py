"""YAML as hssl reads it from a user: safe tags, bounded work, no silent surprises.

``yaml.safe_load`` never runs code, but it still accepts what a recipe has no use for and
what can hurt: aliases (a few lines of ``&a [*b, *b]`` expand to gigabytes, and every
printout of the result expands them again), nesting deep enough to overflow Python's stack,
duplicate keys (the last one silently wins), explicit tags that do not fit their value
(``!!int abc`` raises ``ValueError``, not a YAML error) and non-string keys. This loader
refuses each with a :class:`yaml.MarkedYAMLError` that names the line, so one ``except
yaml.YAMLError`` handles every bad input. It also reads ``1e-3`` as a float, as YAML 1.2
does (PyYAML's 1.1 rules make it a string).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode

from hssl_cli.errors import HsslUserError, clip

# Nesting a recipe needs is about 5 (method.base_method.augment.crop_scale); a bound far
# above it and far below Python's recursion limit.
MAX_DEPTH = 32
FLOAT_TAG = "tag:yaml.org,2002:float"
STR_TAG = "tag:yaml.org,2002:str"
MERGE_TAG = "tag:yaml.org,2002:merge"
# Linear on long digit runs ("[0-9]+\.?[0-9]*" backtracks quadratically: minutes per 50k).
EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$")


class StrictLoader(yaml.SafeLoader):
    """``SafeLoader`` without aliases, duplicate or non-string keys, or deep nesting."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ComposerError(
                None,
                None,
                "YAML aliases (*name) are not accepted; write the value out",
                event.start_mark,
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                event = self.peek_event()
                raise ComposerError(
                    None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        if not isinstance(node, ScalarNode):
            return super().construct_object(node, deep)
        try:
            return super().construct_object(node, deep)
        except (ValueError, KeyError, AttributeError, TypeError, OverflowError):
            # An explicit tag the text does not fit (!!int abc, !!bool maybe, !!timestamp x),
            # or an integer too long for Python to parse.
            tag = node.tag.rsplit(":", 1)[-1]
            raise ConstructorError(
                None, None, f"the value cannot be read as {tag}", node.start_mark
            ) from None

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            seen: set[str] = set()
            for key_node, _ in node.value:
                if key_node.tag == MERGE_TAG:
                    continue
                if not (isinstance(key_node, ScalarNode) and key_node.tag == STR_TAG):
                    raise ConstructorError(
                        None,
                        None,
                        "a key must be a name, not a number or a list",
                        key_node.start_mark,
                    )
                if key_node.value in seen:
                    raise ConstructorError(
                        None,
                        None,
                        f"duplicate key {key_node.value!r}; keep one",
                        key_node.start_mark,
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep)


StrictLoader.add_implicit_resolver(FLOAT_TAG, EXPONENT_FLOAT, list("-+.0123456789"))


def load(text: str) -> Any:
    """Parse ``text`` with :class:`StrictLoader`; raises ``yaml.YAMLError`` on any bad input."""
    loader = StrictLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_file(path: Path, what: str, max_bytes: int) -> Any:
    """A small UTF-8 YAML file, parsed; each way it can be bad is one :class:`HsslUserError`.

    ``what`` names the file in messages (``recipe``); ``max_bytes`` keeps a wrong path (a
    data set, /dev/zero) and a hostile file cheap: PyYAML parses ~50 KiB a second.
    """
    shown = clip(str(path))
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as err:
        raise HsslUserError(f"{what} {shown} cannot be read ({err.strerror or err})") from None
    if len(data) > max_bytes:
        raise HsslUserError(
            f"{what} {shown} is larger than {max_bytes // 1024} KiB; is it a {what}?"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise HsslUserError(
            f"{what} {shown} line {line} is not UTF-8 text (byte 0x{data[err.start]:02x}); "
            "save it as UTF-8"
        ) from None
    try:
        return load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or getattr(err, "reason", None) or "a syntax error"
        raise HsslUserError(
            f"{what} {shown}{where} is not valid YAML ({clip(str(problem))}); fix it"
        ) from None
