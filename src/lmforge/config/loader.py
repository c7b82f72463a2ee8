"""Load a YAML config made of named sections, merge them left to right, apply `--set`
overrides, and validate — failing with one line that names the key path, the bad value,
the file:line it came from and, for unknown keys, the closest valid name.

A config file is either one plain config (top-level keys are config fields such as
`model`, `data`, `train`) or a mapping of section name -> partial config, selected on the
command line like the Open-Assistant trainer's `--configs defaults redpajama-3b datasets`.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from lmforge.config.schema import Config
from lmforge.errors import LmforgeError

KeyPath = tuple[str, ...]


@dataclass
class RawConfig:
    """A merged, not yet validated config plus where each key was last set."""

    data: dict[str, Any] = field(default_factory=dict)
    origins: dict[KeyPath, str] = field(default_factory=dict)
    source: str = ""
    """The config file, named by errors about keys that no line sets (a missing key)."""


# --------------------------------------------------------------------------- YAML


MAX_VALUES = 100_000
"""A config holds a few hundred values; more can only come from aliases that expand each
other (the "billion laughs"), which would hang validation."""
_YAML = "tag:yaml.org,2002:"


def read_document(path: Path) -> tuple[yaml.MappingNode, dict[str, Any]]:
    """A config file's YAML node (for file:line) and its content. Every problem is one
    line naming the file and, where it can, the line: missing or empty file, invalid UTF-8
    or YAML, tags the safe loader does not know, a key given twice, a key that is not text,
    nesting or aliases beyond any real config."""
    if not path.is_file():
        raise LmforgeError(f"{path}: config file not found")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise LmforgeError(f"{path}:{line}: invalid UTF-8 at byte offset {exc.start}") from None
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # it checks that every character is printable
        node = loader.get_single_node()
        if node is None:
            raise LmforgeError(f"{path}: config file is empty")
        if not isinstance(node, yaml.MappingNode):
            raise LmforgeError(f"{path}:{node.start_mark.line + 1}: a config file must be a mapping of keys")
        _check_nodes(node, path)
        document = loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f"{path}:{mark.line + 1}"
        elif isinstance(exc, yaml.reader.ReaderError):  # an unprintable character, by position
            where = f"{path}:{text[: exc.position].count(chr(10)) + 1}"
        else:
            where = str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise LmforgeError(f"{where}: invalid YAML: {problem}") from exc
    except RecursionError:
        raise LmforgeError(f"{path}: invalid YAML: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()
    return node, document


def _read_yaml(path: Path) -> yaml.MappingNode:
    return read_document(path)[0]


def _check_nodes(root: yaml.Node, path: Path) -> None:
    """What the YAML parser accepts but a config must not hold: a key given twice (the
    later would silently win), a key that is not text (`1:`, `true:`, `[a, b]:`), an
    integer too long to convert, an alias inside what it names, or so many values
    (aliases expanding aliases) that validating them would hang."""
    sizes: dict[int, int] = {}  # expanded value count per node, each node counted once
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        line = f"{path}:{node.start_mark.line + 1}"
        if id(node) in open_nodes:
            raise LmforgeError(f"{line}: invalid YAML: an alias refers to the collection that holds it")
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _YAML + "int" and len(node.value) > 4000:
                raise LmforgeError(f"{line}: invalid YAML: a number of {len(node.value)} digits")
            sizes[id(node)] = 1
            return 1
        open_nodes.add(id(node))
        total = 1
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key, value in node.value:
                where = f"{path}:{key.start_mark.line + 1}"
                if not isinstance(key, yaml.ScalarNode) or key.tag not in (_YAML + "str", _YAML + "merge"):
                    shown = key.value if isinstance(key, yaml.ScalarNode) else "a " + key.id
                    raise LmforgeError(f"{where}: key {shown!r} must be a name (quote it to use it as one)")
                if key.value in seen:
                    raise LmforgeError(f"{where}: key '{key.value}' is given twice (first on line {seen[key.value]})")
                seen[key.value] = key.start_mark.line + 1
                total += 1 + size(value)
        else:
            total += sum(size(item) for item in node.value)
        open_nodes.discard(id(node))
        if total > MAX_VALUES:
            raise LmforgeError(f"{line}: invalid YAML: more than {MAX_VALUES} values (aliases expanding aliases?)")
        sizes[id(node)] = total
        return total

    size(root)


def _node_lines(node: yaml.Node, path: Path, prefix: KeyPath, out: dict[KeyPath, str]) -> None:
    """Record file:line for every key path (list items by index) below `node`."""
    if isinstance(node, yaml.MappingNode):
        children = [(str(key.value), key, value) for key, value in node.value]
    elif isinstance(node, yaml.SequenceNode):
        children = [(str(i), item, item) for i, item in enumerate(node.value)]
    else:
        return
    for name, mark_node, value_node in children:
        out[prefix + (name,)] = f"{path}:{mark_node.start_mark.line + 1}"
        if len(out) <= MAX_VALUES:  # aliases may repeat a node: read_document bounds the total
            _node_lines(value_node, path, prefix + (name,), out)


def _is_sectioned(document: dict[str, Any]) -> bool:
    """Sectioned unless a top-level key is a config field (then a typo beside it is an
    unknown key, not a section)."""
    return not set(document) & set(Config.model_fields)


def list_sections(path: str | Path) -> list[str]:
    _, document = read_document(Path(path))
    return list(document) if _is_sectioned(document) else []


# --------------------------------------------------------------------------- merging


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; anything else (lists included) is replaced."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _leaf_paths(tree: Any, prefix: KeyPath = ()) -> list[KeyPath]:
    if isinstance(tree, dict) and tree:
        return [p for key, value in tree.items() for p in _leaf_paths(value, prefix + (str(key),))]
    if isinstance(tree, list) and tree:
        return [p for i, value in enumerate(tree) for p in _leaf_paths(value, prefix + (str(i),))]
    return [prefix]


def compose(path: str | Path, sections: list[str] | None = None) -> RawConfig:
    """Merge the chosen sections of a config file, left to right."""
    path = Path(path)
    node, document = read_document(path)
    lines: dict[KeyPath, str] = {}
    _node_lines(node, path, (), lines)

    raw = RawConfig(source=str(path))
    if not _is_sectioned(document):
        if sections:
            raise LmforgeError(
                f"{path}: has no sections (it is a plain config), but sections {sections} were asked for"
            )
        raw.data = document
        raw.origins = lines
        return raw

    if not sections:
        if "defaults" not in document:
            raise LmforgeError(f"{path}: name the sections to use; this file has: {', '.join(document)}")
        sections = ["defaults"]
    for section in sections:
        if section not in document:
            close = difflib.get_close_matches(section, list(document), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f"; sections: {', '.join(document)}"
            raise LmforgeError(f"{path}: no section '{section}'{hint}")
        body = document[section] or {}
        if not isinstance(body, dict):
            raise LmforgeError(f"{lines[(section,)]}: section '{section}' must be a mapping")
        raw.data = deep_merge(raw.data, body)
        for leaf in _leaf_paths(body):
            for depth in range(1, len(leaf) + 1):
                raw.origins[leaf[:depth]] = lines.get((section,) + leaf[:depth], str(path))
    return raw


def parse_override(override: str, expected: str = "key.path=value") -> tuple[str, Any]:
    """`key=value` -> (key, value parsed as YAML: `1e-5`, `[a, b]`, `true`; else the text)."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise LmforgeError(f"--set {override!r}: expected {expected}")
    try:
        value = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError, ValueError):  # not YAML (or nested, or digits, beyond reason)
        value = text
    return key.strip(), value


def apply_overrides(raw: RawConfig, overrides: list[str]) -> RawConfig:
    """Apply `key.path=value` strings; values are parsed as YAML (`1e-5`, `[a, b]`, `true`).
    Every key path a `--set` introduces or replaces is its origin (not the file's): the
    mappings it creates on the way, the key it sets and whatever lies below it."""
    for override in overrides:
        key, value = parse_override(override)
        keys = tuple(key.split("."))
        origin = f"--set {key.strip()}"
        node = raw.data
        for depth, part in enumerate(keys[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
                raw.origins[keys[: depth + 1]] = origin  # a mapping only this --set introduces
            if not isinstance(child, dict):
                raise LmforgeError(f"--set {override!r}: '{'.'.join(keys[: depth + 1])}' is not a mapping")
            node = child
        node[keys[-1]] = value
        for path in [p for p in raw.origins if len(p) > len(keys) and p[: len(keys)] == keys]:
            del raw.origins[path]  # the value below was replaced by this --set
        raw.origins[keys] = origin
    return raw


# --------------------------------------------------------------------------- validation


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class that owns the last element of an error location."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue  # list index: stay on the list's item model
        if isinstance(current, tuple):  # discriminated union: the tag names the member
            current = next((m for m in current if part in get_args(m.model_fields["name"].annotation)), None)
        elif isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = _unwrap(current.model_fields[part].annotation)
        else:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """Every pydantic model class inside an annotation (through list, Optional, Union, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _unwrap(annotation: Any) -> Any:
    """list[X] -> X, X | None -> X, a union of models -> (A, B, ...)."""
    models = _models_in(annotation)
    if len(models) == 1:
        return models[0]
    return tuple(models) if models else annotation


def _clean_loc(loc: tuple[Any, ...], data: dict[str, Any]) -> tuple[Any, ...]:
    """Drop the union tags ('mixce', 'adamw') that pydantic puts in error locations: an
    inner location element that is not a key of the data at that point."""
    cleaned: list[Any] = []
    node: Any = data
    for index, part in enumerate(loc):
        if index < len(loc) - 1 and isinstance(node, dict) and isinstance(part, str) and part not in node:
            continue
        cleaned.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(cleaned)


def _describe(error: dict[str, Any], raw: RawConfig) -> str:
    loc = _clean_loc(tuple(error["loc"]), raw.data)
    key_path = ".".join(str(p) for p in loc) or "<config>"
    str_path = tuple(str(p) for p in loc)
    origin = next((raw.origins[str_path[:d]] for d in range(len(str_path), 0, -1) if str_path[:d] in raw.origins), None)
    where = f"{origin or raw.source}: " if origin or raw.source else ""
    kind = error["type"]
    if kind == "extra_forbidden":
        owner = _model_at(Config, tuple(error["loc"]))
        valid = list(owner.model_fields) if owner else []
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
        hint = (
            f" (did you mean '{'.'.join(str(p) for p in loc[:-1] + (close[0],))}'?)"
            if close
            else (f" (valid keys: {', '.join(valid)})" if valid else "")
        )
        return f"{where}unknown key '{key_path}'{hint}"
    if kind == "union_tag_invalid":
        name_path = str_path + ("name",)
        origin = raw.origins.get(name_path, origin)
        where = f"{origin or raw.source}: " if origin or raw.source else ""
        return (
            f"{where}{key_path}.name = {error['ctx']['tag']!r} is not one of: "
            f"{error['ctx']['expected_tags'].replace(chr(39), '')}"
        )
    if kind == "missing":
        return f"{where}missing required key '{key_path}'"
    message = error["msg"].removeprefix("Value error, ")
    # a whole section's validator (input is a mapping) names its keys itself
    if "input" in error and not isinstance(error["input"], dict):
        return f"{where}{key_path} = {error['input']!r}: {message}"
    return f"{where}{key_path}: {message}"


def validate(raw: RawConfig) -> Config:
    try:
        return Config.model_validate(raw.data)
    except ValidationError as exc:
        errors = exc.errors()
        first = _describe(errors[0], raw)
        more = f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        raise LmforgeError(first + more) from exc


def load_config(path: str | Path, sections: list[str] | None = None, overrides: list[str] | None = None) -> Config:
    """The whole story: compose sections, apply `--set`, validate."""
    raw = compose(path, sections)
    apply_overrides(raw, overrides or [])
    return validate(raw)


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
