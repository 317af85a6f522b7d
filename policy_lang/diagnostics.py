"""Diagnostics: one type for every finding, rendered as `path:line:col: error: message` + source + caret."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Sequence
from typing import Literal

import attrs

from policy_lang.ast import Span

Severity = Literal["error", "warning"]


@attrs.frozen
class Related:
    span: Span
    message: str


@attrs.frozen
class Diagnostic:
    severity: Severity
    message: str
    span: Span
    hint: str | None = None
    related: tuple[Related, ...] = ()


class PolicyError(Exception):
    """Raised once by a stage that found errors; carries every diagnostic it collected."""

    def __init__(self, diagnostics: Sequence[Diagnostic]):
        super().__init__(f"{len(diagnostics)} diagnostics")
        self.diagnostics = tuple(diagnostics)


def error(message: str, span: Span, hint: str | None = None, related: Iterable[Related] = ()) -> Diagnostic:
    return Diagnostic("error", message, span, hint, tuple(related))


def warning(message: str, span: Span, hint: str | None = None) -> Diagnostic:
    return Diagnostic("warning", message, span, hint)


def did_you_mean(name: str, known: Iterable[str]) -> str | None:
    """A hint naming the closest known spelling, as starlark's spellchecker does."""
    matches = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"did you mean `{matches[0]}`?" if matches else None


class SourceCache:
    """Source text by path, to print the offending line under each diagnostic."""

    def __init__(self) -> None:
        self._texts: dict[str, list[str]] = {}

    def add(self, path: str, text: str) -> None:
        self._texts[path] = text.splitlines()

    def line(self, path: str, line: int) -> str | None:
        lines = self._texts.get(path)
        if lines is None or not 1 <= line <= len(lines):
            return None
        return lines[line - 1]


def _caret_line(source_line: str, column: int, width: int) -> str:
    # East Asian wide characters take two terminal cells; pad accordingly so the caret lines up.
    prefix = source_line[: max(column - 1, 0)]
    pad = "".join("\t" if ch == "\t" else ("  " if _wide(ch) else " ") for ch in prefix)
    marked = source_line[max(column - 1, 0) : max(column - 1, 0) + max(width, 1)]
    cells = sum(2 if _wide(ch) else 1 for ch in marked) or 1
    return pad + "^" + "~" * (cells - 1)


def _wide(ch: str) -> bool:
    return ch >= "\u1100" and (
        "\u2e80" <= ch <= "\ua4cf" or "\uac00" <= ch <= "\ud7a3" or "\uf900" <= ch <= "\ufaff"
        or "\ufe30" <= ch <= "\ufe4f" or "\uff00" <= ch <= "\uff60" or "\uffe0" <= ch <= "\uffe6"
    )


def _render_at(span: Span, head: str, sources: SourceCache) -> list[str]:
    out = [f"{span.path}:{span.line}:{span.column}: {head}"]
    text = sources.line(span.path, span.line)
    if text is not None:
        width = span.end_column - span.column if span.end_line == span.line else len(text) - span.column + 1
        out.append("    " + text)
        out.append("    " + _caret_line(text, span.column, width))
    return out


def render(diag: Diagnostic, sources: SourceCache) -> str:
    lines = _render_at(diag.span, f"{diag.severity}: {diag.message}", sources)
    for rel in diag.related:
        lines.extend(_render_at(rel.span, f"note: {rel.message}", sources))
    if diag.hint:
        lines.append(f"  hint: {diag.hint}")
    return "\n".join(lines)


def to_json(diags: Iterable[Diagnostic]) -> str:
    rows = [
        {
            "severity": d.severity,
            "message": d.message,
            "path": d.span.path,
            "line": d.span.line,
            "column": d.span.column,
            "hint": d.hint,
            "related": [
                {"path": r.span.path, "line": r.span.line, "column": r.span.column, "message": r.message}
                for r in d.related
            ],
        }
        for d in diags
    ]
    return json.dumps(rows, ensure_ascii=False, indent=2)


def sort_key(d: Diagnostic) -> tuple[str, int, int]:
    return (d.span.path, d.span.line, d.span.column)
