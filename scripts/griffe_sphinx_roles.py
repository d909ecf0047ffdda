"""Griffe extension for the docs site: our docstrings as griffe's Google parser reads them.

Three habits of our docstrings that griffe would otherwise print verbatim or warn about:

- ``Example:`` sections hold doctests; griffe parses only ``Examples:`` into code blocks.
- math written in plain text would turn into Markdown emphasis: a starred one-letter
  symbol (x*, c*: a fixed point, a critical value) and an underscore that is not inside a
  word (∇_θ F_{T−1}: subscripts) are escaped, outside code. (Our docstrings emphasize with
  stars around words, never with underscores.)
- reStructuredText literal blocks (``a grid::`` then an indented block): Markdown shows the
  indented block as code already, so ``::`` becomes ``:``.
- ``Args:`` entries may name several parameters at once (``in_dim, out_dim: sizes``);
  each becomes its own entry with the shared description, so that griffe can match every
  name with the signature (and warn, failing the strict build, when one is not there).
- Sphinx roles, below.

Our docstrings name other objects the Sphinx way (``:func:`time_profile```,
``:class:`~gradwatch.monitor.store.Store```), which Markdown would print verbatim. This
extension resolves each target the way Python would from where the docstring lives (the
object's members, then its module's names and imports; ``Task.error`` resolves ``Task``
first) and writes an optional cross-reference: a link where the target is rendered on the
site, its name in code where it is not (a private helper). A target that names no object
of the package at all is a broken reference: it is logged as a warning, which fails
``mkdocs build --strict``. A leading ``~`` shows the last component only, as in Sphinx.
"""

from __future__ import annotations

import html
import logging
import re
from typing import Any

import griffe

_log = logging.getLogger("mkdocs.plugins.griffe_sphinx_roles")  # mkdocs counts warnings under "mkdocs.*"
_ROLE = re.compile(r":(?:py:)?(?P<role>class|func|meth|mod|attr|data|exc|obj|const):`(?P<target>[^`]+)`")
_PACKAGE = "gradwatch"
_SECTION = re.compile(r"^(?P<indent>\s*)(?P<title>[A-Z][A-Za-z ]*):\s*$")
_LIST_SECTIONS = frozenset(
    {"Args", "Arguments", "Parameters", "Params", "Attributes", "Keyword Args", "Other Parameters"}
)
_SHARED_ENTRY = re.compile(
    r"^(?P<indent>\s*)(?P<names>[A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)+)(?P<type>\s*\([^)]*\))?:(?P<rest>\s.*|)$"
)


_CODE_SPAN = re.compile(r"(`+).+?\1")
_ENTRY = re.compile(r"^(\s*\**\w+(?:\s*\([^)]*\))?:)(.*)$")  # "name (type): text" in Args-like sections
_MATH_STAR = re.compile(r"(?<![\w*\\])([A-Za-z])\*(?!\*)")
_MATH_UNDERSCORE = re.compile(r"(?<![\w\\])_(?!_)|(?<![_\\])_(?!\w)")


def _escape_math(text: str) -> str:
    return _MATH_UNDERSCORE.sub(r"\\_", _MATH_STAR.sub(r"\1\\*", text))


def escape_math(line: str) -> str:
    """``x*`` → ``x\\*``, ``∇_θ`` → ``∇\\_θ``, outside inline code and doctest lines, so that Markdown shows them."""
    if line.lstrip().startswith((">>>", "...")):
        return line
    out, end = [], 0
    for span in _CODE_SPAN.finditer(line):
        out += [_escape_math(line[end : span.start()]), span[0]]
        end = span.end()
    return "".join([*out, _escape_math(line[end:])])


def normalize_sections(doc: str) -> str:
    """``Example:`` → ``Examples:``; ``text::`` → ``text:``; ``a, b: text`` entries → one entry per name."""
    lines = doc.splitlines()
    out: list[str] = []
    section_indent: int | None = None  # indentation of the current Args-like section's title
    i = 0
    while i < len(lines):
        line = lines[i]
        indent = len(line) - len(line.lstrip())
        if line.strip() and section_indent is not None and indent <= section_indent:
            section_indent = None
        if m := _SECTION.match(line):
            title = m["title"]
            if title == "Example":
                line = f"{m['indent']}Examples:"
            section_indent = indent if title in _LIST_SECTIONS else None
            out.append(line)
            i += 1
            continue
        shared = _SHARED_ENTRY.match(line) if section_indent is not None else None
        if shared is None:
            if line.endswith("::") and line.strip() != "::":
                line = line[:-1]
            entry = _ENTRY.match(line) if section_indent is not None else None
            out.append(entry[1] + escape_math(entry[2]) if entry else escape_math(line))
            i += 1
            continue
        body = [escape_math(shared["rest"])]
        i += 1
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
            body.append("\n" + escape_math(lines[i]))
            i += 1
        while body and not body[-1].strip():  # a blank line before the next section stays outside
            body.pop()
            i -= 1
        for name in (n.strip() for n in shared["names"].split(",")):
            out.append(f"{shared['indent']}{name}{shared['type'] or ''}:" + "".join(body))
    return "\n".join(out)


class SphinxRoles(griffe.Extension):
    """Turn ``:role:`target``` into an optional autorefs cross-reference, warning on dangling targets."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.path != _PACKAGE:
            return
        seen: set[int] = set()
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if obj.docstring is not None:
                doc = normalize_sections(obj.docstring.value)
                obj.docstring.value = _ROLE.sub(lambda m, o=obj: _replace(m, o), doc)
            stack.extend(m for m in obj.members.values() if not m.is_alias)


def _exists(obj: griffe.Object, path: str) -> bool:
    try:
        obj.modules_collection.get_member(path)
    except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return False
    return True


def _resolve(obj: griffe.Object, target: str) -> str | None:
    """The full path of ``target`` as named in ``obj``'s docstring, or None if no such object exists."""
    if target.split(".")[0] == _PACKAGE:
        return target if _exists(obj, target) else None
    head, _, rest = target.partition(".")
    scope: griffe.Object | None = obj
    while scope is not None:
        try:
            base = scope.resolve(head)
        except griffe.NameResolutionError:
            base = None
        if base is not None:
            path = f"{base}.{rest}" if rest else base
            if _exists(obj, path):
                return path
        scope = scope.parent
    return None


def _replace(match: re.Match[str], obj: griffe.Object) -> str:
    target = match["target"].strip()
    shown = target.lstrip("~")
    if target.startswith("~"):
        shown = shown.rsplit(".", 1)[-1]
    if match["role"] in ("func", "meth"):
        shown += "()"
    path = _resolve(obj, target.lstrip("~"))
    if path is None:
        where = f"{obj.relative_filepath}:{obj.lineno}" if obj.lineno else obj.path
        _log.warning(
            "%s: the docstring of %s names %s, which is not an object of %s", where, obj.path, match[0], _PACKAGE
        )
        return f"`{shown}`"
    return f'<autoref identifier="{html.escape(path)}" optional><code>{html.escape(shown)}</code></autoref>'
