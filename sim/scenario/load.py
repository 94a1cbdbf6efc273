"""Reading scenario files: YAML, variants, overrides, and readable errors.

A file holds a base design and named ``variants``; each variant is the base
with the variant's keys merged over it (dicts merge key by key; lists of
named items, such as stages, merge item by item on ``name``; other values
replace). Command-line overrides (``--set policies.batching.infer.max_batch=8``)
apply last, to every variant; a list of named items can be addressed by
name (``pipeline.stages.infer.output=20 KB``).

Each variant is validated in full (schema, then cross-references through
``sim.plan``), and every problem found is reported at once. The file and
every ``--set`` value are read by ``sim.scenario.safe_yaml`` (size, alias,
depth and encoding limits; duplicate keys refused).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from pydantic import BaseModel, ValidationError

from sim.scenario.errors import Problem, ScenarioError
from sim.scenario.safe_yaml import YamlProblem, parse_yaml, read_text_file
from sim.scenario.schema import Scenario

BASE = "base"


@dataclass(frozen=True)
class ScenarioFile:
    """A scenario file as read, before any variant is chosen."""

    path: Path
    document: dict[str, Any]
    overrides: tuple[str, ...] = ()
    _plans: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def variant_names(self) -> list[str]:
        return list(self.document.get("variants") or {}) or [BASE]

    def resolve(self, variant: str) -> Scenario:
        """The validated scenario of one variant (raises ScenarioError)."""
        return self.plan(variant).scenario

    def plan(self, variant: str):
        """The compiled ``sim.plan.Plan`` of one variant, compiled once per file (raises ScenarioError)."""
        if variant not in self._plans:
            self._plans[variant] = self._compile(variant)
        return self._plans[variant]

    def _compile(self, variant: str):
        from sim.plan import compile_plan

        variants = self.document.get("variants") or {}
        label = f"{self.path} (variant {variant})" if variants else str(self.path)
        merged = self._merged(variant)
        try:
            scenario = Scenario.model_validate(merged)
        except ValidationError as error:
            raise ScenarioError([self._blame(_problem(label, e)) for e in error.errors()]) from None
        too_many = _too_many_arrivals(scenario, label)
        if too_many:
            raise ScenarioError([too_many])
        try:
            return compile_plan(scenario, label=label, base_dir=self.path.parent)
        except ScenarioError as error:
            raise ScenarioError([self._blame(p) for p in error.problems]) from None

    def _blame(self, problem: Problem) -> Problem:
        """A problem in a value set on the command line names the command line, not the file."""
        for override in reversed(self.overrides):  # the last one set is the value that was used
            key = override.partition("=")[0].strip()
            if problem.path == key or problem.path.startswith(key + "."):
                return Problem(f"command line ({override})", problem.path, problem.message)
        return problem

    def _merged(self, variant: str) -> dict[str, Any]:
        base = {k: v for k, v in self.document.items() if k != "variants"}
        variants = self.document.get("variants") or {}
        if variant in variants:
            base = merge(base, variants[variant] or {})
        elif variants or variant != BASE:
            known = ", ".join(variants) or "none"
            raise ScenarioError([Problem(str(self.path), "variants", f"no variant '{variant}' (known: {known})")])
        for override in self.overrides:
            base = apply_override(base, override)
        return base


def load_scenario_file(path: str | Path, overrides: Sequence[str] = ()) -> ScenarioFile:
    """Read a scenario and validate every variant; raise ScenarioError listing all problems."""
    path = Path(path)
    label = str(path)
    try:
        document = parse_yaml(read_text_file(path))
    except FileNotFoundError:
        raise ScenarioError([Problem(label, "", "file not found")]) from None
    except IsADirectoryError:
        raise ScenarioError([Problem(label, "", "is a folder; expected a scenario YAML file")]) from None
    except OSError as error:
        raise ScenarioError([Problem(label, "", f"cannot read: {error.strerror}")]) from None
    except YamlProblem as problem:
        raise ScenarioError([Problem(label, problem.where, problem.message)]) from None
    if not isinstance(document, dict):
        raise ScenarioError([Problem(label, "", "expected a mapping of sections (hardware, workload, ...)")])
    variants = document.get("variants")
    if variants is not None and not (
        isinstance(variants, dict) and all(isinstance(v, (dict, type(None))) for v in variants.values())
    ):
        raise ScenarioError([Problem(label, "variants", "expected a mapping of variant name to overrides")])
    odd_names = [name for name in variants or {} if not isinstance(name, str)]
    if odd_names:
        raise ScenarioError([Problem(label, f"variants.{name}", f"a variant name must be text, got "
                                     f"{type(name).__name__} {name!r}; quote it: '{name}'") for name in odd_names])
    override_problems = [p for o in overrides for p in _check_override_syntax(o)]
    if override_problems:
        raise ScenarioError(override_problems)
    scenario_file = ScenarioFile(path, document, tuple(overrides))
    found: dict[str, list[Problem]] = {}
    for name in scenario_file.variant_names:
        try:
            scenario_file.resolve(name)
        except ScenarioError as error:
            found[name] = error.problems
    if found:
        raise ScenarioError(_merge_variant_problems(label, found, len(scenario_file.variant_names)))
    return scenario_file


def _too_many_arrivals(scenario: Scenario, label: str) -> Problem | None:
    """One replication's arrivals must fit in memory: a physical bound, checked before any is drawn."""
    from sim.scenario.schema import TraceSource
    from sim.scenario.work import expected_arrivals
    from sim.workload import ARRIVALS_CEILING

    duration = scenario.run.duration
    expected = sum(expected_arrivals(s, duration) for s in scenario.workload.sources if not isinstance(s, TraceSource))
    if expected <= ARRIVALS_CEILING:
        return None
    return Problem(label, "workload.sources", f"about {expected:.3g} arrivals in run.duration "
                   f"({duration:g} s); expected at most {ARRIVALS_CEILING:.3g} per replication (their arrays "
                   "alone would need more memory than a machine has): lower the rates or shorten run.duration")


def _merge_variant_problems(label: str, found: dict[str, list[Problem]], variants: int) -> list[Problem]:
    """A problem every variant shares is reported once, against the file."""
    seen: dict[tuple[str, str], list[Problem]] = {}
    for problems in found.values():
        for problem in problems:
            seen.setdefault((problem.path, problem.message), []).append(problem)
    out: list[Problem] = []
    for (path, message), copies in seen.items():
        if len(copies) == variants:
            files = {c.file for c in copies}  # differing only by "(variant X)": name the file once
            out.append(Problem(files.pop() if len(files) == 1 else label, path, message))
        else:
            out.extend(dict.fromkeys(copies))
    return out


# --- merging ----------------------------------------------------------------


def _named_list(value: Any) -> bool:
    """A list whose items are all mappings with a text ``name`` (anything else is replaced whole)."""
    return isinstance(value, list) and all(isinstance(v, dict) and isinstance(v.get("name"), str) for v in value)


def merge(base: Any, override: Any) -> Any:
    """``override`` laid over ``base`` without changing either."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if _named_list(base) and _named_list(override):
        by_name = {item["name"]: item for item in override}
        out = [merge(item, by_name.pop(item["name"])) if item["name"] in by_name else item for item in base]
        return out + [copy.deepcopy(item) for item in by_name.values()]
    return copy.deepcopy(override)


def _check_override_syntax(override: str) -> list[Problem]:
    key, sep, _ = override.partition("=")
    if not sep or not key.strip() or any(not part for part in key.split(".")):
        return [Problem("--set", override, "expected dotted.path=value, e.g. run.duration='30 s'")]
    return []


def apply_override(document: dict[str, Any], override: str) -> dict[str, Any]:
    """Set one ``dotted.path=value`` in a copy of ``document``."""
    key, _, text = override.partition("=")
    try:
        value = parse_yaml(text) if text.strip() else None
    except YamlProblem as problem:
        raise ScenarioError([Problem("--set", key.strip(), f"the value {text!r} is not valid: {problem.message}")]) from None
    parts = key.strip().split(".")
    document = copy.deepcopy(document)
    node: Any = document
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            index = _list_index(node, part)
            if index is None:
                raise ScenarioError([Problem("--set", ".".join(parts[: depth + 1]), f"no item '{part}' in this list")])
            if last:
                node[index] = value
            node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise ScenarioError([Problem("--set", ".".join(parts[:depth]), "is a value, not a section")])
    return document


def _list_index(items: list[Any], part: str) -> int | None:
    if part.isdigit() and int(part) < len(items):
        return int(part)
    for index, item in enumerate(items):
        if isinstance(item, dict) and item.get("name") == part:
            return index
    return None


# --- error messages ---------------------------------------------------------


# Tags of the discriminated unions: pydantic puts the chosen one in an error's
# location, but it is not a key the user wrote.
_TAGS = {"deterministic", "exponential", "lognormal", "empirical", "affine", "calibrated",
         "periodic", "poisson", "gamma", "mmpp", "trace", "given"}
_TAGGED = ("cpu", "dpu", "gpu", "latency", "send_cost", "receive_cost")  # fields that hold such a union


def _path(loc: Iterable[Any]) -> str:
    out = ""
    previous: Any = None
    for part in loc:
        skip = part == "[key]" or (part in _TAGS and (isinstance(previous, int) or previous in _TAGGED))
        previous = part
        if skip:  # a bad mapping key is named in the message; a union tag is not the user's key
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _problem(label: str, error: dict[str, Any]) -> Problem:
    loc = tuple(error["loc"])
    kind = error["type"]
    message = error["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(Scenario, loc[:-1])
        hint = f"; expected one of: {', '.join(allowed)}" if allowed else ""
        message = f"unknown key '{loc[-1]}'{hint}"
    elif kind == "missing":
        message = "required field is missing"
    elif "[key]" in loc:
        message = f"unknown key {error.get('input')!r}; {message[0].lower()}{message[1:]}"
    elif kind not in ("value_error", "union_tag_invalid", "union_tag_not_found"):
        message = f"{message}, got {error.get('input')!r}"
    return Problem(label, _path(loc), message)


def _allowed_keys(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """Field names of the model found by walking ``loc`` (best effort)."""
    import typing

    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = {f.alias or n: f for n, f in current.model_fields.items()}
            if part in fields:
                current = fields[part].annotation
                continue
        candidates = _model_types(current)
        match = [m for m in candidates if typing.get_type_hints(m).get("kind") is not None
                 and part in typing.get_args(typing.get_type_hints(m)["kind"])]
        if part == "given":  # a host cost written out, not the union's calibrated form
            match = [m for m in candidates if "kind" not in m.model_fields]
        if match:
            current = match[0]
            continue
        dicts_or_lists = [a for a in _args(current)]
        models = [a for a in dicts_or_lists if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(models) == 1:
            current = models[0]
            fields = {f.alias or n: f for n, f in current.model_fields.items()}
            if part in fields:
                current = fields[part].annotation
                continue
    models = _model_types(current)
    if len(models) == 1:
        return [f.alias or n for n, f in models[0].model_fields.items()]
    return []


def _args(annotation: Any) -> list[Any]:
    import typing

    out: list[Any] = []
    stack = [annotation]
    while stack:
        item = stack.pop()
        args = typing.get_args(item)
        if args:
            stack.extend(args)
        else:
            out.append(item)
    return out


def _model_types(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [a for a in _args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
