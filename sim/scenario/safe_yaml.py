"""YAML from files people send us, read with limits.

Scenario files arrive in pull requests and run in CI, so reading one must
not hang or exhaust memory whatever it holds. ``yaml.safe_load`` already
refuses arbitrary Python objects, but not:

- an alias bomb ("billion laughs"): nine levels of ten aliases each expand
  to 10^9 values although the file is a few hundred bytes (PyYAML shares the
  aliased objects, so the parse itself is fast; whatever walks the result
  afterwards, such as copying or validating it, never ends);
- very deep nesting, which overflows Python's recursion in the composer;
- duplicate mapping keys, which YAML forbids but PyYAML resolves silently in
  favour of the last one;
- a file that is not UTF-8 text (a binary file, NUL bytes) or one too big
  to be a scenario.

Booleans are YAML 1.2's, ``true`` and ``false``: PyYAML's YAML 1.1 also
reads ``yes``, ``no``, ``on`` and ``off`` as booleans, which would turn a
cost's ``on: l4`` into ``True: l4``.

``read_yaml_file`` and ``parse_yaml`` check all of these and raise
``YamlProblem`` with a location (``line N``) and one sentence: what was
found and what was expected. The limits are constants here and are listed
in docs/scenario-format.md.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_FILE_BYTES = 1_000_000  # the shipped scenarios are 3-5 KB; a calibration file ~20 KB
MAX_DEPTH = 64  # nesting of mappings and lists; a scenario nests about 8 deep
MAX_NODES = 200_000  # values after expanding every alias; a scenario holds a few hundred


class YamlProblem(ValueError):
    """A document that cannot be read safely: ``where`` (``line N`` or empty) and what is wrong."""

    def __init__(self, where: str, message: str):
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}" if where else message)


class _LimitedLoader(yaml.SafeLoader):
    """The safe loader with a depth limit while composing, and YAML 1.2 booleans."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise YamlProblem(f"line {mark.line + 1}", f"nested more than {MAX_DEPTH} levels deep; "
                                  "expected a scenario-sized document")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


# Booleans as YAML 1.2 has them: true and false only. PyYAML follows YAML 1.1,
# where yes, no, on and off are booleans too, so a stage cost's ``on: l4``
# would be read as ``True: l4`` and ``name: no`` as a boolean.
_LimitedLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_LimitedLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


_MERGE = "tag:yaml.org,2002:merge"


def _check_tree(root: Node) -> None:
    """Refuse duplicate keys, recursive anchors and alias bombs, before anything is constructed.

    Walks the composed nodes once, memoising each node's expanded size (the
    values it stands for once every alias is expanded), so an alias bomb is
    measured without being expanded. A duplicate key is named with the path
    of the mapping that holds it. Keys beside a merge key (``<<: *base``)
    override the merged ones, as YAML intends: they are not duplicates.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: Node, path: str) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise YamlProblem(f"line {node.start_mark.line + 1}", "an alias refers to a value that contains "
                              "it (a recursive anchor); expected plain nested values")
        active.add(key)
        total = 1
        if isinstance(node, SequenceNode):
            total += sum(size(child, f"{path}[{i}]") for i, child in enumerate(node.value))
        elif isinstance(node, MappingNode):
            seen: dict[tuple[str, str], Node] = {}
            for k, v in node.value:
                name = k.value if isinstance(k, ScalarNode) else "?"
                if isinstance(k, ScalarNode) and k.tag != _MERGE:
                    if (k.tag, k.value) in seen:
                        first = seen[k.tag, k.value].start_mark.line + 1
                        where = f" in {path}" if path else ""
                        raise YamlProblem(f"line {k.start_mark.line + 1}", f"duplicate key {name!r}{where} (first "
                                          f"set on line {first}); expected each key once")
                    seen[k.tag, k.value] = k
                total += size(k, path) + size(v, f"{path}.{name}" if path else str(name))
        active.discard(key)
        sizes[key] = total
        if total > MAX_NODES:
            raise YamlProblem(f"line {node.start_mark.line + 1}", f"expands to more than {MAX_NODES:,} values "
                              "through aliases (&anchor / *alias); expected a scenario-sized document")
        return total

    size(root, "")


def parse_yaml(text: str) -> Any:
    """The document in ``text``, or YamlProblem if it is invalid or breaks a limit."""
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise YamlProblem(f"line {line}", "contains a NUL byte; expected YAML text (is this a binary file?)")
    loader = _LimitedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_tree(node)
        return loader.construct_document(node)
    except YamlProblem:
        raise
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        raise YamlProblem(where, f"not valid YAML: {getattr(error, 'problem', None) or error}") from None
    except RecursionError:
        raise YamlProblem("", f"nested too deeply; expected at most {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()


def read_text_file(path: Path, what: str = "YAML text", max_bytes: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of ``path``; YamlProblem for a file too big, binary or not UTF-8.

    OSError (missing, unreadable) is left to the caller, which knows how to name it.
    """
    with open(path, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise YamlProblem("", f"larger than {max_bytes:,} bytes; expected {what} of at most that size")
    if b"\x00" in data:
        line = data.count(b"\n", 0, data.index(b"\x00")) + 1
        raise YamlProblem(f"line {line}", f"contains a NUL byte; expected {what} (is this a binary file?)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise YamlProblem(f"line {line}", f"byte 0x{data[error.start]:02x} is not UTF-8; expected {what} "
                          "encoded as UTF-8") from None


def read_yaml_file(path: Path) -> Any:
    """The YAML document in ``path``, read with every limit above (OSError passes through)."""
    return parse_yaml(read_text_file(path))
