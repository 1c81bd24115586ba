"""Reading YAML fast into plain data, and finding the line of a key path afterwards.

1. *Fast read.*  libyaml (``ruamel.yaml.clib``'s ``CParser``; ruamel's
   pure-Python parser when the extension is missing, which is several times
   slower) produces parser events, and :func:`_build` turns them straight
   into plain ``dict``/``list``/scalars, resolving plain scalars with ruamel's
   YAML 1.2 resolver (memoised by text).  ruamel's node tree and constructor,
   which take most of the time of ``YAML(typ="safe").load``, are skipped.
   Anything unusual (explicit tags, merge keys ``<<``, timestamps, ``0x1F``
   spellings, ...) makes the builder hand the text to ``YAML(typ="safe")``
   instead, so the data is always what ruamel's safe loader would produce
   (:func:`load_plain`).
2. *Only when there are problems* is the text composed again into ruamel's
   node tree, whose marks give the line of each key path (:func:`locate`).
   A valid file (the common case, and every reload) never pays for line
   numbers.  (The node tree is used rather than the round-trip loader: it
   carries the same positions and is several times faster to build, which
   matters when a 2 MB file has one typo.)
"""

from __future__ import annotations

import re
import sys
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from ruamel.yaml import YAML
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.error import YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from ruamel.yaml.main import CParser  # libyaml's parser, or None without ruamel.yaml.clib
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.resolver import VersionedResolver

from opengslb.config.problems import Issue, KeyPath, PathStep, Problem, format_path

__all__ = ["CParser", "SyntaxProblem", "compose", "line_of", "load_plain", "locate"]

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_TAG + t for t in ("str", "int", "float", "bool", "null"))
_SIMPLE_INT = re.compile(r"[-+]?[0-9]+")
_SIMPLE_FLOAT = re.compile(r"[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_UNSET = object()


class SyntaxProblem(Exception):
    """The text is not a (single, well-formed) YAML document."""

    def __init__(self, line: Optional[int], message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class _Unsupported(Exception):
    """The fast builder met something only ruamel's constructor handles."""


def compose(text: str) -> Optional[Node]:
    """The node tree of the single YAML document in ``text`` (``None`` when empty).

    Used only to find line numbers.  Raises ruamel's ``YAMLError``.
    """
    root: Optional[Node] = YAML(typ="safe").compose(text)
    return root


def _scalar(node: ScalarNode) -> Any:
    """The Python value of a scalar node (core tags only, else :class:`_Unsupported`)."""
    return _convert(node.tag or "", node.value)


def _convert(tag: str, value: str) -> Any:
    """A resolved core-schema scalar as ruamel's SafeConstructor makes it.

    Raises :class:`_Unsupported` for other tags (timestamps, binary, merge
    keys, ...) and for spellings whose conversion is not a plain ``int()`` /
    ``float()`` (``0x1F``, ``1_000``, ``.inf``, ...).
    """
    if tag == _STR:
        return value
    if tag == _INT and _SIMPLE_INT.fullmatch(value):
        return int(value)
    if tag == _NULL:
        return None
    if tag == _BOOL and value.lower() in SafeConstructor.bool_values:
        return SafeConstructor.bool_values[value.lower()]
    if tag == _FLOAT and _SIMPLE_FLOAT.fullmatch(value):
        return float(value)
    raise _Unsupported(tag)


def _events(text: str) -> Iterator[Any]:
    """The parser events of ``text``: libyaml's when available, else ruamel's pure parser."""
    if CParser is None:
        yield from YAML(typ="safe", pure=True).parse(text)
        return
    parser = CParser(text)
    while True:
        event = parser.get_event()
        if event is None:
            return
        yield event
        if type(event) is StreamEndEvent:
            return


def _build(events: Iterable[Any]) -> Any:
    """Plain data from parser events: what ``YAML(typ="safe").load`` returns.

    Building straight from events skips ruamel's node tree and constructor,
    the slow part of a safe load.  Aliases yield the same object, as they do
    with ruamel.  Raises :class:`_Unsupported` for any explicit tag, merge
    key, complex key or unusual scalar (the caller then lets ruamel do it),
    :class:`SyntaxProblem` for a duplicate key, an undefined alias or a
    second document.
    """
    resolver = VersionedResolver(version=None, loadumper=None)
    plain: Dict[str, Any] = {}  # plain scalar text → value; depends on the text only
    anchors: Dict[str, Any] = {}
    # One frame per open collection: [container, is_mapping, has_key, key]
    stack: List[List[Any]] = []
    root: Any = None
    documents = 0
    for event in events:
        kind = type(event)
        if kind is ScalarEvent:
            if event.tag is not None:
                raise _Unsupported(event.tag)
            if event.implicit[0]:
                text = event.value
                value = plain.get(text, _UNSET)
                if value is _UNSET:
                    tag = str(resolver.resolve(ScalarNode, text, (True, False)))
                    value = plain[text] = _convert(tag, text)
            else:
                value = event.value
            if event.anchor is not None:
                anchors[event.anchor] = value
        elif kind is MappingStartEvent or kind is SequenceStartEvent:
            if event.tag is not None:
                raise _Unsupported(event.tag)
            value = {} if kind is MappingStartEvent else []
            if event.anchor is not None:
                anchors[event.anchor] = value
        elif kind is MappingEndEvent or kind is SequenceEndEvent:
            stack.pop()
            continue
        elif kind is AliasEvent:
            if event.anchor not in anchors:
                raise SyntaxProblem(
                    event.start_mark.line + 1, f"invalid YAML: undefined alias {event.anchor!r}"
                )
            value = anchors[event.anchor]
        elif kind is DocumentStartEvent:
            documents += 1
            if documents > 1:
                raise SyntaxProblem(
                    event.start_mark.line + 1,
                    "invalid YAML: a second document ('---'); the file must hold exactly one",
                )
            continue
        else:  # stream start/end, document end
            continue

        if not stack:
            root = value
        else:
            frame = stack[-1]
            container = frame[0]
            if not frame[1]:
                container.append(value)
            elif frame[2]:
                container[frame[3]] = value
                frame[2] = False
            else:
                if isinstance(value, (dict, list)):
                    raise _Unsupported("complex key")
                if value in container:
                    raise SyntaxProblem(
                        event.start_mark.line + 1, f"duplicate key {value!r} in this mapping"
                    )
                frame[2] = True
                frame[3] = value
                continue  # a key is never a collection to descend into
        if kind is MappingStartEvent:
            stack.append([value, True, False, None])
        elif kind is SequenceStartEvent:
            stack.append([value, False, False, None])
    return root


def _yaml_problem(error: YAMLError, text: str) -> SyntaxProblem:
    """A ruamel error as a one-line message with its 1-based line."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    line: Optional[int] = None
    if mark is not None and getattr(mark, "line", None) is not None:
        line = mark.line + 1
    elif isinstance(getattr(error, "position", None), int):  # ReaderError
        line = text.count("\n", 0, error.position) + 1  # type: ignore[attr-defined]
    problem = getattr(error, "problem", None)
    context = getattr(error, "context", None)
    if problem:
        message = f"{context}: {problem}" if context else str(problem)
    else:
        message = str(error).splitlines()[0]
    return SyntaxProblem(line, f"invalid YAML: {message}")


def load_plain(text: str) -> Any:
    """``text`` as plain data, or :class:`SyntaxProblem`."""
    try:
        try:
            return _build(_events(text))
        except _Unsupported:
            return YAML(typ="safe").load(text)
    except YAMLError as error:
        raise _yaml_problem(error, text) from None
    except RecursionError:
        raise SyntaxProblem(None, "invalid YAML: nested too deeply") from None
    except ValueError:  # int() refuses integers longer than sys.get_int_max_str_digits()
        limit = sys.get_int_max_str_digits()
        match = re.search(f"[0-9]{{{limit + 1},}}", text)
        line = text.count("\n", 0, match.start()) + 1 if match else None
        raise SyntaxProblem(
            line, f"invalid YAML: a number longer than {limit} digits cannot be read"
        ) from None


def _key_matches(node: Node, step: PathStep) -> bool:
    if not isinstance(node, ScalarNode):
        return False
    if node.value == step:
        return True
    try:
        return str(_scalar(node)) == step
    except _Unsupported:
        return False


def line_of(root: Optional[Node], path: KeyPath) -> Optional[int]:
    """The 1-based line of ``path`` in the node tree.

    A key's own line for a mapping entry, an item's first line for a sequence
    item; when the path leaves the tree (a missing key), the line of the
    deepest part that exists.
    """
    if root is None:
        return None
    node: Node = root
    line: int = root.start_mark.line
    for step in path:
        if isinstance(node, MappingNode) and isinstance(step, str):
            entry = _find_key(node, step)
            if entry is None:
                break
            line = entry[0].start_mark.line
            node = entry[1]
        elif isinstance(node, SequenceNode) and isinstance(step, int):
            if not 0 <= step < len(node.value):
                break
            node = node.value[step]
            line = node.start_mark.line
        else:
            break
    return line + 1


def _find_key(node: MappingNode, step: str, depth: int = 0) -> Optional[Tuple[Node, Node]]:
    """The (key node, value node) for ``step``, looking through merge keys (``<<``)."""
    merged: List[Node] = []
    for key_node, value_node in node.value:
        if _key_matches(key_node, step):
            return key_node, value_node
        if key_node.tag == _TAG + "merge":
            merged.extend(value_node.value if isinstance(value_node, SequenceNode) else [value_node])
    if depth < 8:
        for other in merged:
            if isinstance(other, MappingNode):
                found = _find_key(other, step, depth + 1)
                if found is not None:
                    return found
    return None



def locate(text: str, filename: str, issues: Sequence[Issue]) -> List[Problem]:
    """Issues as problems with line numbers, in file order (line-less ones last)."""
    try:
        root = compose(text)
    except (YAMLError, RecursionError):  # it parsed a moment ago; be safe anyway
        root = None
    problems = [
        Problem(filename, line_of(root, path), format_path(path), message) for path, message in issues
    ]
    problems.sort(key=lambda p: (p.line is None, p.line or 0))
    return problems
