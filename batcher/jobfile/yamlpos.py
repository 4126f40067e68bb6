"""YAML text -> plain data plus the position of every value, by path.

PyYAML composes the text into nodes carrying marks; this module constructs plain data
(dict / list / str / int / float / bool / None) from those nodes itself, so that it can
record where each value and each mapping key was written and catch what PyYAML silently
accepts: duplicate mapping keys, non-string keys, recursive aliases.

Invariants:
- `Doc.values[path]` is the 1-based (line, col) of the value at `path`; `Doc.keys[path]`
  is where the key leading to `path` was written. Paths are tuples of str (mapping key)
  and int (sequence index); `()` is the document root.
- Mapping keys are always the key's literal text (`on: x` gives the key "on", not True).
- Timestamps stay the string that was written; binary and unknown tags are problems.
- Syntax errors are reported with the pure-Python parser's message, so the text is the same
  whether or not libyaml is installed; libyaml is only used to go fast on valid input.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.events import (
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from batcher.errors import JobFileInvalid, Problem

YPath = tuple[str | int, ...]
Pos = tuple[int, int]

MAX_DEPTH = 64  # job files are shallow; deeper nesting is a mistake (or an attack)
MAX_REVISITS = 100_000  # nodes reached again through aliases: stops "billion laughs"
SHALLOW = 2  # the fast path indexes paths this short; deeper ones are indexed on demand

_EXP_FLOAT = re.compile(
    r"^(?:[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+|[-+]?\.[0-9_]+[eE][-+]?[0-9]+)$"
)


class _SafeLoader(yaml.SafeLoader):
    """SafeLoader that also reads 1e-5 and 2.5e3 as numbers (YAML 1.1 wants a dot and a sign)."""


class _FastLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The same, over libyaml when it is installed."""


for _cls in (_SafeLoader, _FastLoader):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _EXP_FLOAT, list("-+0123456789."))
_T = "tag:yaml.org,2002:"
_SEXAGESIMAL = {_T + "int", _T + "float"}
_KEEP_TEXT = {_T + "timestamp"}  # dates stay text: a prompt is never a datetime
_SCALAR_TAGS = {_T + "null", _T + "bool", _T + "int", _T + "float"}
_COLLECTION_TAGS = {_T + "map", _T + "seq"}


def bare_value(text: str) -> Any:
    """What `text` would mean written unquoted (None when it is not valid YAML)."""
    try:
        return yaml.load(text, Loader=_SafeLoader)  # a SafeLoader subclass: safe
    except yaml.YAMLError:
        return None


def fmt_path(path: YPath) -> str:
    """`("jobs", 1, "sweep", "cfg_scale")` -> `jobs[1].sweep.cfg_scale`."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        else:
            out.append(f".{part}" if out else part)
    return "".join(out)


@dataclass
class Doc:
    """A parsed YAML document: data, positions and the problems met while building it.

    After the fast path (`parse` on a plain document) only paths of up to `SHALLOW` parts
    are indexed; the first question about a deeper one indexes the shallow collection it
    lies in, from that collection's own text (paid only when a problem is reported there).
    """

    file: str
    text: str
    data: Any = None
    values: dict[YPath, Pos] = field(default_factory=dict)
    keys: dict[YPath, Pos] = field(default_factory=dict)
    spans: dict[YPath, tuple[int, int]] = field(default_factory=dict)  # scalar text offsets
    problems: list[Problem] = field(default_factory=list)
    complete: bool = True  # every path indexed
    # The fast path's shallow collections: path -> text offsets, start << 32 | end (one
    # int: 100,000 jobs make 100,000 of them), and the prefixes indexed inside since.
    regions: dict[YPath, int] = field(default_factory=dict)
    indexed: set[YPath] = field(default_factory=set)

    def _deep(self, path: YPath) -> None:
        """Index the insides of the shallow collection `path` lies in, if not yet done: its
        own text parsed apart (one job's few lines, not the whole file)."""
        if self.complete or len(path) <= SHALLOW or path[:SHALLOW] in self.indexed:
            return
        prefix = path[:SHALLOW]
        self.indexed.add(prefix)
        region = self.regions.get(prefix)
        if region is None:
            return  # a scalar or nothing: there is nothing deeper to find
        try:
            self._index_region(prefix, region >> 32, region & 0xFFFFFFFF)
        except Exception:  # noqa: BLE001 - never expected; the whole text then
            self._index_all()

    def _index_region(self, prefix: YPath, start: int, end: int) -> None:
        line, col = self.values[prefix]
        pad = col - 1  # the first line padded to its column: the same columns as in the file
        part = Doc(file=self.file, text=" " * pad + self.text[start:end])
        root = _compose(part.text, _FastLoader)
        if root is None:
            return
        _Builder(part, yaml.SafeLoader("")).build(root)
        for rel, (ln, cl) in part.values.items():
            self.values.setdefault((*prefix, *rel), (ln + line - 1, cl))
        for rel, (ln, cl) in part.keys.items():
            self.keys.setdefault((*prefix, *rel), (ln + line - 1, cl))
        for rel, (a, b) in part.spans.items():
            self.spans.setdefault((*prefix, *rel), (a - pad + start, b - pad + start))

    def _index_all(self) -> None:
        full = parse(self.text, file=self.file, careful=True)
        self.values, self.keys, self.spans = full.values, full.keys, full.spans
        self.complete = True

    def pos(self, path: YPath) -> Pos:
        """Position of the value at `path`, else of its nearest written ancestor."""
        self._deep(path)
        while path:
            found = self.values.get(path)
            if found is not None:
                return found
            path = path[:-1]
        return self.values.get((), (1, 1))

    def key_pos(self, path: YPath) -> Pos:
        """Position of the key leading to `path` (the value's position when unknown)."""
        self._deep(path)
        return self.keys.get(path) or self.pos(path)

    def span(self, path: YPath) -> tuple[int, int] | None:
        """Text offsets of the scalar at `path`, as written (None when it is not a scalar)."""
        self._deep(path)
        return self.spans.get(path)

    def problem(self, pos: Pos, where: str, what: str, *, warning: bool = False) -> Problem:
        return Problem(self.file, pos[0], pos[1], where, what, "warning" if warning else "error")


def parse(text: str, *, file: str, careful: bool = False) -> Doc:
    """Parse one YAML document; raise `JobFileInvalid` on a syntax error.

    The fast path serves plain documents; `careful` (for tests) always takes the other.
    """
    doc = Doc(file=file, text=text)
    if not careful and _Fast(doc).build():
        return doc
    doc = Doc(file=file, text=text)
    try:
        root = _compose(text, _FastLoader)
    except yaml.YAMLError:
        _raise_syntax_error(text, file)
        raise  # pragma: no cover - _raise_syntax_error always raises
    except RecursionError:
        raise JobFileInvalid([Problem(file, 1, 1, "", "YAML is nested too deeply")]) from None
    if root is not None:
        _Builder(doc, yaml.SafeLoader("")).build(root)
    return doc


def _compose(text: str, loader_cls: Any) -> Node | None:
    loader = loader_cls(text)
    try:
        node: Node | None = loader.get_single_node()
        return node
    finally:
        loader.dispose()


def _raise_syntax_error(text: str, file: str) -> None:
    try:
        _compose(text, _SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            what = f"{exc.problem.removeprefix('but ')} ({exc.context}"
            cm = exc.context_mark
            if cm is not None and mark is not None and cm.line != mark.line:
                what += f" at line {cm.line + 1}, col {cm.column + 1}"
            what += ")"
        raise JobFileInvalid([Problem(file, line, col, "", f"YAML syntax error: {what}")]) from None
    except yaml.reader.ReaderError as exc:
        pos = exc.position
        line, col = text.count("\n", 0, pos) + 1, pos - text.rfind("\n", 0, pos)
        what = f"YAML error: unacceptable character #x{exc.character:04x}: {exc.reason}"
        raise JobFileInvalid([Problem(file, line, col, "", what)]) from None
    except yaml.YAMLError as exc:
        what = " ".join(str(exc).split())  # one line, whatever PyYAML says
        raise JobFileInvalid([Problem(file, 1, 1, "", f"YAML error: {what}")]) from None
    except RecursionError:
        raise JobFileInvalid([Problem(file, 1, 1, "", "YAML is nested too deeply")]) from None
    raise JobFileInvalid([Problem(file, 1, 1, "", "YAML syntax error")])


def _short(tag: str) -> str:
    return "!!" + tag[len(_T) :] if tag.startswith(_T) else tag


def _pos(node: Node) -> Pos:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    """Walks composed nodes into plain data, filling the Doc's indexes."""

    def __init__(self, doc: Doc, constructor: yaml.SafeLoader) -> None:
        self.doc = doc
        self.ctor = constructor
        self.revisits = 0
        self.built: set[int] = set()  # ids of collection nodes already walked once
        self.active: set[int] = set()  # node ids on the current path (recursive aliases)

    def build(self, root: Node) -> None:
        self.doc.data = self.node(root, ())

    def node(self, node: Node, path: YPath) -> Any:
        if id(node) in self.built:
            self.revisits += len(node.value)
            if self.revisits > MAX_REVISITS:
                what = "document too large after expanding aliases"
                raise JobFileInvalid([self.doc.problem(_pos(node), "", what)])
        self.doc.values[path] = _pos(node)
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if len(path) > MAX_DEPTH:
            self.error(node, path, f"nested more than {MAX_DEPTH} levels deep")
            return None
        if id(node) in self.active:
            self.error(node, path, "recursive alias (a value that contains itself)")
            return None
        if node.tag not in _COLLECTION_TAGS:
            self.error(node, path, f"unsupported YAML tag {_short(node.tag)}")
        self.active.add(id(node))
        self.built.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [self.node(item, (*path, i)) for i, item in enumerate(node.value)]
            if isinstance(node, MappingNode):
                return self.mapping(node, path)
        finally:
            self.active.discard(id(node))
        self.error(node, path, "unsupported YAML node")  # pragma: no cover
        return None

    def scalar(self, node: ScalarNode, path: YPath) -> Any:
        self.doc.spans[path] = (node.start_mark.index, node.end_mark.index)
        tag = node.tag
        if tag == _T + "str":
            return node.value
        if tag in _KEEP_TEXT:
            return node.value
        if tag in _SEXAGESIMAL and ":" in node.value:
            # YAML 1.1 reads 16:9 as the base-60 number 969; YAML 1.2 dropped that, and
            # here it is always an aspect ratio or a time: keep the text.
            return node.value
        make: Callable[[Any, Node], Any] | None = self.ctor.yaml_constructors.get(tag)
        if make is None or tag not in _SCALAR_TAGS:
            self.error(node, path, f"unsupported YAML tag {_short(tag)}")
            return node.value  # the text as written: no follow-on type error
        try:
            return make(self.ctor, node)
        except (yaml.YAMLError, ValueError) as exc:
            self.error(node, path, f"cannot read value: {exc}")
            return None

    def mapping(self, node: MappingNode, path: YPath) -> dict[str, Any]:
        seen: dict[str, Pos] = {}
        for key_node, _ in node.value:
            if key_node.tag == _T + "merge":
                continue
            key = self.key(key_node, path)
            if key is None:
                continue
            if key in seen:
                first = seen[key]
                self.error(
                    key_node,
                    (*path, key),
                    f"duplicate key {key!r} (first written at line {first[0]}, col {first[1]})",
                )
            else:
                seen[key] = _pos(key_node)
        try:
            self.ctor.flatten_mapping(node)  # resolves `<<: *anchor` merges in place
        except yaml.YAMLError as exc:
            self.error(node, path, f"bad merge key: {getattr(exc, 'problem', exc)}")
            return {}
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self.key(key_node, path, report=False)
            if key is None:
                continue
            sub = (*path, key)
            self.doc.keys[sub] = _pos(key_node)
            out[key] = self.node(value_node, sub)
        return out

    def key(self, node: Node, path: YPath, *, report: bool = True) -> str | None:
        if isinstance(node, ScalarNode) and node.tag not in (_T + "binary",):
            return str(node.value)
        if report:
            self.error(node, path, "mapping keys must be plain text")
        return None

    def error(self, node: Node, path: YPath, what: str) -> None:
        self.doc.problems.append(self.doc.problem(_pos(node), fmt_path(path), what))


class _Bail(Exception):
    """The document needs the careful path (aliases, tags, merges, duplicates, errors)."""


class _Fast:
    """Plain data straight from libyaml's events, no nodes kept; shallow paths indexed.

    Anything unusual (an alias, a merge key, an explicit tag, a duplicate or non-text key,
    a value the careful path would report, a syntax error, deep nesting) bails out, and
    `parse` takes the careful path, which reports it. On what it accepts, it builds the
    same data as the careful path.
    """

    def __init__(self, doc: Doc) -> None:
        self.doc = doc
        self.loader = _FastLoader(doc.text)
        self.get: Callable[[], Any] = self.loader.get_event  # events, with marks
        self.plain: dict[str, Any] = {}  # plain scalar text -> its value, when not text
        self.keys: dict[str, str] = {}

    def build(self) -> bool:
        try:
            self.get()  # stream start
            event = self.get()
            if type(event) is StreamEndEvent:
                self.doc.complete = False
                return True
            if type(event) is not DocumentStartEvent:
                return False
            self.doc.data = self.node(self.get(), (), 0)
            if type(self.get()) is not DocumentEndEvent or type(self.get()) is not StreamEndEvent:
                return False  # more than one document: the careful path says so
        except (_Bail, yaml.YAMLError, RecursionError):
            return False
        finally:
            self.loader.dispose()
        self.doc.complete = False
        return True

    def node(self, event: Any, path: YPath | None, depth: int) -> Any:
        kind = type(event)
        if path is not None:
            mark = event.start_mark
            self.doc.values[path] = (mark.line + 1, mark.column + 1)
        if kind is ScalarEvent:
            if path is not None:
                self.doc.spans[path] = (event.start_mark.index, event.end_mark.index)
            return self.scalar(event)
        if kind is not SequenceStartEvent and kind is not MappingStartEvent:
            raise _Bail  # an alias
        if depth >= MAX_DEPTH or event.tag is not None:
            raise _Bail
        get = self.get
        start = event.start_mark.index
        if kind is SequenceStartEvent:
            items: list[Any] = []
            while True:
                event = get()
                if type(event) is SequenceEndEvent:
                    if path is not None:
                        self.region(path, start, event)
                    return items
                sub = (*path, len(items)) if path is not None and depth < SHALLOW else None
                items.append(self.node(event, sub, depth + 1))
        table: dict[str, Any] = {}
        one_key = self.keys.setdefault  # one string per distinct key, not per use
        scalar, shallow = self.scalar, path is not None and depth < SHALLOW
        scalar_event, end_event = ScalarEvent, MappingEndEvent
        while True:  # the hottest loop of a big file: names held in locals
            event = get()
            kind = type(event)
            if kind is end_event:
                if path is not None:
                    self.region(path, start, event)
                return table
            if kind is not scalar_event or event.tag is not None:
                raise _Bail
            text = event.value
            key = one_key(text, text)
            if key in table or key == "<<":
                raise _Bail
            if shallow:
                sub = (*path, key)  # type: ignore[misc]
                key_mark: Any = event.start_mark
                self.doc.keys[sub] = (key_mark.line + 1, key_mark.column + 1)
                table[key] = self.node(get(), sub, depth + 1)
                continue
            event = get()
            if type(event) is not scalar_event:
                table[key] = self.node(event, None, depth + 1)
            elif event.tag is None and not event.implicit[0]:
                table[key] = event.value  # quoted text: the most common value of all
            else:
                table[key] = scalar(event)

    def region(self, path: YPath, start: int, end: Any) -> None:
        """Where the shallow collection at `path` was written (`end`: its end event)."""
        self.doc.regions[path] = start << 32 | end.end_mark.index

    def scalar(self, event: Any) -> Any:
        if event.tag is not None:
            raise _Bail
        text: str = event.value
        if not event.implicit[0]:
            return text  # quoted
        known = self.plain.get(text)
        if known is not None:
            return known[0]
        tag = self.loader.resolve(ScalarNode, text, (True, False))
        if tag == _T + "str" or tag in _KEEP_TEXT or (tag in _SEXAGESIMAL and ":" in text):
            return text
        if tag not in _SCALAR_TAGS:
            raise _Bail
        try:
            value = self.loader.yaml_constructors[tag](self.loader, ScalarNode(tag, text))
        except (yaml.YAMLError, ValueError):
            raise _Bail from None
        self.plain[text] = (value,)
        return value
