"""Loading: a .pol path -> the parsed file and everything it imports, in dependency order.

Imports are paths relative to the importing file. They may not leave the policy root: the nearest
directory above the importing file that holds a `polc.toml` marker (or, without one, the directory of
the file named on the command line). Absolute paths, `..` escapes and symlinks out of the root are
refused.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs

from policy_lang import ast
from policy_lang.diagnostics import Diagnostic, PolicyError, SourceCache, error
from policy_lang.parse import MAX_SOURCE_BYTES, parse

ROOT_MARKER = "polc.toml"
MAX_FILE_BYTES = MAX_SOURCE_BYTES  # was 20 MB: parsing that much took minutes and gigabytes


@attrs.frozen
class Program:
    """The file named by the user (last) and its imports (dependencies first)."""

    files: tuple[ast.File, ...]
    sources: SourceCache = attrs.field(eq=False)

    @property
    def main(self) -> ast.File:
        return self.files[-1]


def find_root(path: Path) -> Path:
    for parent in path.resolve().parents:
        if (parent / ROOT_MARKER).is_file():
            return parent
    return path.resolve().parent


def load_program(path: str | Path, sources: SourceCache | None = None) -> Program:
    """Parse `path` and its imports; raise PolicyError with every problem found."""
    sources = sources or SourceCache()
    main = Path(path)
    try:
        root, resolved = find_root(main), main.resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop (RuntimeError), a NUL byte (ValueError)
        raise PolicyError([error(f"cannot read {path}: {exc}", ast.Span(str(path), 1, 1, 1, 2))]) from None
    loaded: dict[Path, ast.File] = {}
    order: list[ast.File] = []
    diags: list[Diagnostic] = []
    _visit(resolved, root, loaded, order, [], sources, diags, display=str(path))
    if any(d.severity == "error" for d in diags):
        raise PolicyError(diags)
    return Program(tuple(order), sources)


def _read(path: Path, display: str, sources: SourceCache) -> ast.File:
    text = read_source(path, display)
    sources.add(display, text)
    return parse(text, display)


def read_source(path: Path, display: str) -> str:
    """A policy file's text: a regular file, at most MAX_FILE_BYTES, UTF-8 (raises PolicyError otherwise)."""
    if path.exists() and not path.is_file():
        # A FIFO would block and /dev/zero never ends: only regular files (or symlinks to them) are read.
        raise PolicyError([error(f"{display} is not a regular file", ast.Span(display, 1, 1, 1, 2))])
    with path.open("rb") as handle:
        raw = handle.read(MAX_FILE_BYTES + 1)  # never more than the limit into memory
    if len(raw) > MAX_FILE_BYTES:
        span = ast.Span(display, 1, 1, 1, 2)
        raise PolicyError([error(f"policy file is larger than {MAX_FILE_BYTES // 2**20} MB", span)])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        span = ast.Span(display, line, col, line, col + 1)
        raise PolicyError([error("the file is not UTF-8 text", span,
                                 "save it as UTF-8 (e.g. `iconv -f GBK -t UTF-8 in.pol > out.pol`)")]) from None
    return text


def _visit(path: Path, root: Path, loaded: dict[Path, ast.File], order: list[ast.File],
           stack: list[Path], sources: SourceCache, diags: list[Diagnostic], display: str,
           via: ast.Import | None = None) -> None:
    if path in loaded:
        return
    if path in stack:
        cycle = " -> ".join(p.name for p in [*stack[stack.index(path):], path])
        span = via.span if via else ast.Span(display, 1, 1, 1, 2)
        diags.append(error(f"import cycle: {cycle}", span))
        return
    try:
        file = _read(path, display, sources)
    except PolicyError as exc:
        diags.extend(exc.diagnostics)
        return
    except OSError as exc:
        span = via.span if via else ast.Span(display, 1, 1, 1, 2)
        diags.append(error(f"cannot read {display}: {exc.strerror or exc}", span))
        return
    stack.append(path)
    for imp in file.imports:
        try:
            target = _import_target(imp, path, root, diags)
        except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a NUL byte: were tracebacks
            diags.append(error(f"import `{imp.path}`: cannot read it: {exc}", imp.span))
            continue
        if target is not None:
            shown = _display(target, path, display)
            _visit(target, root, loaded, order, stack, sources, diags, shown, imp)
    stack.pop()
    loaded[path] = file
    order.append(file)


def _display(target: Path, importer: Path, importer_display: str) -> str:
    """Show an imported file relative to how the importer was named (policies/a/../b.pol -> policies/b.pol)."""
    base = Path(importer_display).parent
    rel = Path(*target.parts[len(importer.parent.parts):]) if target.is_relative_to(importer.parent) else None
    if rel is not None:
        return str(base / rel)
    try:
        return str(target.relative_to(Path.cwd()))
    except ValueError:
        return str(target)


def _import_target(imp: ast.Import, importer: Path, root: Path, diags: list[Diagnostic]) -> Path | None:
    if Path(imp.path).is_absolute() or imp.path.startswith(("/", "\\")) or ":" in imp.path[:3]:
        diags.append(error(f"import `{imp.path}` is an absolute path", imp.span,
                           "imports are relative to the importing file and stay inside the policy root"))
        return None
    target = (importer.parent / imp.path).resolve()
    if not target.is_relative_to(root):
        # Written inside the root but resolved outside it: say it is a symlink that leads out.
        written = Path(os.path.normpath(importer.parent / imp.path))
        link = " through a symlink" if written.is_relative_to(root) else ""
        diags.append(error(f"import `{imp.path}` leaves the policy root {root}{link}", imp.span,
                           f"the policy root is the nearest directory holding {ROOT_MARKER}"))
        return None
    if not target.exists():
        diags.append(error(f"import `{imp.path}`: no such file", imp.span))
        return None
    # A directory, a device or a file that is not a policy (say a symlink to a data file) is refused
    # with its own message rather than read and reported as a syntax error.
    if not target.is_file() or target.suffix != ".pol":
        what = ("a directory" if target.is_dir() else "not a .pol file" if target.is_file()
                else "not a regular file")
        diags.append(error(f"import `{imp.path}` is {what}", imp.span,
                           "import a policy file: \"path/to/name.pol\""))
        return None
    return target
