"""Job files: YAML (with positions) -> checked, expanded, named JobSpecs.

    jf = load_jobfile(Path("jobs/demo.yaml"))
    jf.run, jf.model, jf.schema, jf.price, jf.options, jf.jobs, jf.warnings

Invariants:
- `load_jobfile` returns only a file with no errors; otherwise it raises
  `JobFileError` (the file cannot be read: one line) or `JobFileInvalid` listing every
  problem found (errors and warnings, each `FILE:LINE:COL: where: what`, sorted by place).
  An unknown model or unreadable schema file is one of those problems, at `model:` or
  `schema:`.
- Nothing here prints, touches the network or writes a file.
- The format is documented in docs/jobfile.md; the pipeline is
  source (read) -> yamlpos (parse) -> structure (shape) -> expand -> rules (check).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from batcher import collector
from batcher.errors import JobFileInvalid, Problem, SchemaError
from batcher.jobfile.expand import Expander, Finisher, KeyCheck
from batcher.jobfile.rules import Checker
from batcher.jobfile.source import read_text
from batcher.jobfile.structure import Header, Reader
from batcher.jobfile.yamlpos import parse
from batcher.models import JobSpec, RunOptions
from batcher.schema import ModelSchema, Price, load_schema, load_schema_file

__all__ = ["JobFile", "load_jobfile", "loads_jobfile"]


@dataclass(frozen=True)
class JobFile:
    """A valid job file, expanded."""

    path: Path
    run: str  # slugged run name: the folder outputs/<run>/
    model: str
    schema: ModelSchema
    price: Price  # the model's price with the file's `prices:` overrides applied
    options: RunOptions
    jobs: tuple[JobSpec, ...]
    warnings: tuple[Problem, ...]


def load_jobfile(path: Path) -> JobFile:
    """Read, check and expand one job file (see the module invariants)."""
    display = str(path)
    return loads_jobfile(read_text(path, display=display), path=path)


def loads_jobfile(text: str, *, path: Path) -> JobFile:
    """Like `load_jobfile` for text already read; `path` names it and anchors relative paths."""
    with collector.paused():  # millions of small objects, all kept until the end
        return _load(text, path)


def _load(text: str, path: Path) -> JobFile:
    file = str(path)
    doc = parse(text, file=file)
    reader = Reader(doc)
    header = reader.header(path)
    problems = reader.problems
    schema = _resolve_schema(header, path, problems)
    if schema is None:
        raise JobFileInvalid(_sorted(problems, file))
    model = schema.model_id
    body = reader.body(tuple(schema.schema.get("properties", {})))
    price = _price(schema.price, header.prices)
    # One job at a time from entry to JobSpec: what is left of each is only its JobSpec.
    expander = Expander(doc, schema, header.run, path.parent)
    keys, checker = KeyCheck(), Checker(doc, schema)
    finisher = Finisher(run=header.run, model=model, price=price, schema=schema)
    jobs: list[JobSpec] = []
    for draft in expander.expand(body):
        keys.add(draft)
        checker.add(draft)
        jobs.append(finisher.add(draft))
    doc.data = reader.root = {}  # all in the jobs now; positions come from the text
    problems += expander.problems + keys.problems + checker.problems()
    ordered = _sorted(_unique(problems), file)
    if any(p.severity == "error" for p in ordered):
        raise JobFileInvalid(ordered)
    return JobFile(
        path=path,
        run=header.run,
        model=model,
        schema=schema,
        price=price,
        options=header.options,
        jobs=tuple(jobs),
        warnings=tuple(ordered),
    )


def _resolve_schema(header: Header, path: Path, problems: list[Problem]) -> ModelSchema | None:
    """The bundled schema for the model, or the file's own `schema:`; None after a problem."""
    if header.schema_file is not None:
        rel, at = header.schema_file
        given = header.model if header.model_origin is not None else None
        if not (path.parent / rel).is_file():
            problems.append(at.problem(f"{path.parent / rel}: no such schema file"))
            return None
        try:
            schema = load_schema_file(path.parent / rel, model_id=given)
        except SchemaError as exc:
            problems.append(at.problem(str(exc)))
            return None
        if given is not None and schema.model_id != given and header.model_origin is not None:
            what = f"model {given!r} differs from the schema file's x-model-id {schema.model_id!r}"
            problems.append(header.model_origin.problem(what))
            return None
        return schema
    try:
        return load_schema(header.model)
    except SchemaError as exc:
        if header.model_origin is None:
            problems.append(Problem(str(path), 1, 1, "model", str(exc)))
        else:
            problems.append(header.model_origin.problem(str(exc)))
        return None


def _price(base: Price, overrides: dict[str, float]) -> Price:
    return Price(
        unit=base.unit,
        usd=overrides.get("usd_per_second", base.usd),
        usd_with_sound=overrides.get("usd_per_second_with_sound", base.usd_with_sound),
    )


def _unique(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


def _sorted(problems: list[Problem], file: str) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.file != file, p.file, p.line, p.col))
