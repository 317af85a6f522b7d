"""Shared test helpers: build a policy from source text and evaluate rows with every engine."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path

from policy_lang import interp
from policy_lang.data import Dataset, claim_from_fields, person_from_fields
from policy_lang.diagnostics import PolicyError
from policy_lang.pipeline import Built, build, data_vocabulary

Row = Mapping[str, object]


def write(tmp: Path, files: Mapping[str, str]) -> None:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "polc.toml").write_text("", "utf-8")
    for name, text in files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")


def build_source(tmp: Path, source: str, extra: Mapping[str, str] | None = None) -> Built:
    write(tmp, {"main.pol": source, **(extra or {})})
    return build(tmp / "main.pol")


def diagnostics(tmp: Path, source: str, extra: Mapping[str, str] | None = None) -> list[str]:
    """The rendered `path:line:col: severity: message` heads of a policy that fails to check."""
    try:
        built = build_source(tmp, source, extra)
    except PolicyError as exc:
        return [f"{d.span.line}:{d.span.column}: {d.severity}: {d.message}" for d in exc.diagnostics]
    return [f"{d.span.line}:{d.span.column}: {d.severity}: {d.message}" for d in built.checked.warnings]


def dataset(built: Built, persons: Sequence[Row], claims: Sequence[Row]) -> Dataset:
    vocab = data_vocabulary(built.graph)
    ps = tuple(person_from_fields({k: str(v) for k, v in p.items()}, vocab, "<test>", i + 1, {})
               for i, p in enumerate(persons))
    cs = tuple(claim_from_fields({k: str(v) for k, v in c.items()}, vocab, "<test>", i + 1, {})
               for i, c in enumerate(claims))
    return Dataset(ps, cs)


def engines() -> list[str]:
    names = ["interp"]
    if importlib.util.find_spec("policy_lang.vector") is not None:
        names.append("vector")
    return names


def evaluate(built: Built, persons: Sequence[Row], claims: Sequence[Row],
             options: interp.Options = interp.Options()) -> interp.Result:
    """Evaluate with every engine; they must agree exactly; return the reference result."""
    data = dataset(built, persons, claims)
    reference = interp.run(built.graph, data, options)
    if "vector" in engines():
        from policy_lang import vector

        other = vector.run(built.graph, data, options)
        assert other.claims == reference.claims, "vector and interp disagree on claims"
        assert other.persons == reference.persons, "vector and interp disagree on person-years"
    return reference


def paid(result: interp.Result, claim_id: str) -> dict[str, str]:
    """A claim's payments in yuan strings, plus out_of_pocket."""
    claim = next(c for c in result.claims if c.claim_id == claim_id)
    out = {layer: _yuan(v) for layer, v in zip(result.layers, claim.payments, strict=True)}
    out["out_of_pocket"] = _yuan(claim.out_of_pocket)
    return out


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"
