"""In-file tests: each `test` block's persons and claims evaluated, and its expectations compared."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation

import attrs

from policy_lang import ast
from policy_lang.data import (
    Claim,
    DataError,
    Dataset,
    Person,
    claim_from_fields,
    format_money,
    person_from_fields,
)
from policy_lang.diagnostics import Diagnostic, error
from policy_lang.interp import EvalError, Options, Result, run
from policy_lang.pipeline import Built, data_vocabulary
from policy_lang.values import Context, Kind, ValueError_, lower

# Shorter spellings accepted in test records, mapped to data columns.
_ALIASES = {"person": "person_id", "level": "hospital_level", "total": "total_cost", "eligible": "eligible_cost"}

Engine = Callable[[Built, Dataset, Options], Result]


@attrs.frozen
class Outcome:
    title: str
    span: ast.Span
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures


def run_tests(built: Built, engines: Sequence[tuple[str, Engine]]) -> list[Outcome]:
    return [_run_one(built, test, engines) for test, _path in built.checked.tests]


def _run_one(built: Built, test: ast.Test, engines: Sequence[tuple[str, Engine]]) -> Outcome:
    try:
        data, options = _inputs(built, test)
    except (DataError, _Bad) as exc:
        return Outcome(test.title, test.span, (str(exc),))
    expect_error = next((i for i in test.items if isinstance(i, ast.ExpectError)), None)
    failures: list[str] = []
    results: list[tuple[str, Result]] = []
    for name, engine in engines:
        try:
            results.append((name, engine(built, data, options)))
        except EvalError as exc:
            if expect_error is None:
                failures.append(f"{name}: {exc}")
            elif expect_error.message not in str(exc):
                failures.append(f"{name}: expected an error containing {expect_error.message!r}, got: {exc}")
    if expect_error is not None and results:
        failures.append(f"expected an error containing {expect_error.message!r}, but evaluation succeeded")
    subsidies = {s.id for e in built.graph.epochs for s in e.subsidies}
    for name, result in results:
        prefix = f"{name}: " if len(engines) > 1 else ""
        failures.extend(prefix + f for f in _compare(test, result, subsidies))
    return Outcome(test.title, test.span, tuple(failures))


class _Bad(Exception):
    pass


def _inputs(built: Built, test: ast.Test) -> tuple[Dataset, Options]:
    vocab = data_vocabulary(built.graph)
    persons: list[Person] = []
    claims: list[Claim] = []
    as_of: datetime.date | None = None
    settings: dict[str, int] = {}
    for item in test.items:
        match item:
            case ast.TestRecord("person", name, fields):
                values, positions = _fields(fields, "person_id", name)
                persons.append(person_from_fields(values, vocab, item.span.path, item.span.line, positions))
            case ast.TestRecord("claim", name, fields):
                values, positions = _fields(fields, "claim_id", name)
                claims.append(claim_from_fields(values, vocab, item.span.path, item.span.line, positions))
            case ast.TestAsOf(day):
                as_of = day
            case ast.TestSet(name, value):
                settings[name] = _setting(built, name, value, item.span)
    known = {p.person_id for p in persons}
    for claim in claims:
        if claim.person_id not in known:
            raise _Bad(f"claim {claim.claim_id} names unknown person {claim.person_id}")
    return Dataset(tuple(persons), tuple(claims)), Options(as_of, settings)


def _fields(fields: tuple[ast.Field, ...], id_field: str, name: str) -> tuple[dict[str, str], dict[str, int]]:
    values = {id_field: name}
    positions = {id_field: 1}
    for f in fields:
        column = _ALIASES.get(f.name, f.name)
        values[column] = f.value
        positions[column] = f.span.column
    return values, positions


def _setting(built: Built, name: str, value: ast.Value, span: ast.Span) -> int:
    from policy_lang.compile import param_kinds

    kind = param_kinds(built.checked).get(name)
    if kind is None:
        raise _Bad(f"{span}: unknown parameter `{name}`")
    want: Kind = "rate" if kind == "rate" else "count" if kind == "count" else "money"
    try:
        low = lower(value, want, Context())
    except ValueError_ as exc:
        raise _Bad(f"{span}: {exc.diag.message}") from None
    from policy_lang.graph import Lit

    if not isinstance(low, Lit):
        raise _Bad(f"{span}: `set` needs a plain value")
    return low.value


def _compare(test: ast.Test, result: Result, subsidies: set[str]) -> list[str]:
    failures: list[str] = []
    claims = {c.claim_id: c for c in result.claims}
    persons = {(p.person_id, p.year): p for p in result.persons}
    for item in test.items:
        if not isinstance(item, ast.Expect):
            continue
        if item.kind == "claim":
            c = claims.get(item.name)
            if c is None:
                failures.append(f"{item.span}: no claim `{item.name}` in this test")
                continue
            got = dict(zip(result.layers, c.payments, strict=True)) | {"out_of_pocket": c.out_of_pocket}
            failures.extend(_compare_fields(item, got, f"claim {item.name}"))
        else:
            p = persons.get((item.name, item.year or 0))
            if p is None:
                failures.append(f"{item.span}: no person-year `{item.name} {item.year}` in this test")
                continue
            got = dict(zip(result.layers, p.payments, strict=True)) | {"out_of_pocket": p.out_of_pocket}
            got |= dict.fromkeys(subsidies, 0) | dict(p.subsidies)
            failures.extend(_compare_fields(item, got, f"person {item.name} {item.year}", p.alerts))
    return failures


def _compare_fields(item: ast.Expect, got: dict[str, int], what: str,
                    alerts: tuple[str, ...] | None = None) -> list[str]:
    failures = []
    for f in item.fields:
        if f.name == "alerts" and alerts is not None:
            want = sorted(a for a in f.value.split(";") if a)
            if sorted(alerts) != want:
                failures.append(f"{f.span}: {what} alerts: expected {want or 'none'}, got {sorted(alerts) or 'none'}")
            continue
        if f.name not in got:
            failures.append(f"{f.span}: {what}: unknown field `{f.name}` (layers: {', '.join(got)})")
            continue
        want_fen = _fen(f.value)
        if want_fen is None:
            failures.append(f"{f.span}: `{f.value}` is not an amount")
        elif got[f.name] != want_fen:
            failures.append(f"{f.span}: {what} {f.name}: expected {format_money(want_fen)}, "
                            f"got {format_money(got[f.name])}")
    return failures


def _fen(text: str) -> int | None:
    try:
        value = Decimal(text) * 100
    except InvalidOperation:
        return None
    return int(value) if value == value.to_integral_value() else None


def unspecified_needs(built: Built) -> list[Diagnostic]:
    """In-file tests that need a parameter the policy leaves unspecified and do not supply it (for `check`)."""
    found = []
    for test, _path in built.checked.tests:
        if any(isinstance(i, ast.ExpectError) for i in test.items):
            continue
        try:
            data, options = _inputs(built, test)
            run(built.graph, data, options)
        except EvalError as exc:
            found.append(error(f"test {test.title!r} needs a parameter the policy leaves unspecified: {exc}",
                               test.span, "add `set NAME = VALUE` to the test, or `expect error \"NAME\"`"))
        except (DataError, _Bad):
            continue  # reported when the test runs
    return found
