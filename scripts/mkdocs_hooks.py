"""MkDocs hooks: the pages of the site that are generated, so that they cannot drift from the code.

- ``reference/cli.md`` — every command's ``--help``, walked from the typer app.
- ``reference/api/*.md`` — one page per public module, reached from ``gradwatch.__all__``
  through each module's ``__all__`` (read statically with griffe: the optional extras'
  modules are never imported). Each exported name is rendered once, on the page of the
  module that owns it (the listing module whose path is the longest prefix of the name's
  definition); the other modules that re-export it link there.
- ``reproduce.md`` — the status table is generated from ``docs/reproduce/results.json``
  (the ``results.json`` of the latest ``gradwatch reproduce`` run, copied there).
- ``changelog.md`` — ``CHANGELOG.md`` from the repository root.

And one rewrite: a link from a page to a file of the repository outside ``docs/`` (such as
``../examples/sweep_adding.toml``, which works when the Markdown is read in the repository)
becomes the file's path in code, since the site has no copy of the repository; a link to a
file that does not exist is left alone, so the strict build still fails on it.

Configured in ``mkdocs.yml`` (``hooks:``); the nav entry ``API reference`` is filled here.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "reproduce" / "results.json"
RESULTS_MARKER = "<!-- reproduce-table -->"
API_NAV_TITLE = "API reference"
API_DIR = "reference/api"
# Modules whose API is documented elsewhere: the command line has its own generated page.
API_SKIP = frozenset({"gradwatch.cli"})
# Packages whose public submodules all get a page, listed in __all__ or not: the integrations
# are imported by path (`from gradwatch.integrations.lightning import ...`), each needing its extra.
API_EXPAND = frozenset({"gradwatch.integrations"})


# --- API reference ------------------------------------------------------------------------------


@dataclass
class ApiPage:
    module: str
    summary: str
    members: list[str] = field(default_factory=list)  # rendered here
    undocumented: list[str] = field(default_factory=list)  # rendered here, but no docstring
    links: list[tuple[str, str]] = field(default_factory=list)  # (name, identifier rendered elsewhere)
    submodules: list[str] = field(default_factory=list)

    @property
    def uri(self) -> str:
        return f"{API_DIR}/{self.module}.md"


_ROLE = re.compile(r":(?:py:)?\w+:`~?(?:[\w.]*\.)?(?P<name>[^`.]+)`")


def _first_line(obj: Any) -> str:
    """A module's one-line summary, with Sphinx roles shown as code."""
    doc = obj.docstring.value.strip() if obj.docstring else ""
    return _ROLE.sub(lambda m: f"`{m['name']}`", doc.splitlines()[0]) if doc else ""


def api_pages() -> list[ApiPage]:
    """The API reference's pages, in reading order (breadth first from ``gradwatch``)."""
    import griffe

    root = griffe.load("gradwatch", search_paths=[str(ROOT / "src")], resolve_aliases=True, resolve_external=False)
    pages: dict[str, ApiPage] = {}
    listings: list[tuple[str, str, str]] = []  # (page module, exported name, canonical path)
    queue = [root]
    while queue:
        mod = queue.pop(0)
        page = pages[mod.path] = ApiPage(mod.path, _first_line(mod))
        submodules = []
        for name in mod.exports or []:
            obj = mod[name]
            target = obj.final_target if obj.is_alias else obj
            if target.is_module:
                if target.path == f"{mod.path}.{name}":
                    submodules.append(target)
                continue
            listings.append((mod.path, name, target.path))
        if mod.path in API_EXPAND:
            submodules += [
                m for n, m in mod.members.items() if not m.is_alias and m.is_module and not n.startswith("_")
            ]
        for sub in submodules:
            if sub.path not in API_SKIP and sub.path not in page.submodules:
                page.submodules.append(sub.path)
                queue.append(sub)
    order = list(pages)
    for canonical in {c for _, _, c in listings}:
        listers = [(p, n) for p, n, c in listings if c == canonical]
        home, home_name = _home(canonical, listers, order)
        for p, n in listers:
            if p == home:
                pages[p].members.append(n)
            else:
                pages[p].links.append((n, f"{home}.{home_name}"))
    for page in pages.values():  # keep each module's __all__ order
        mod = root.modules_collection[page.module]
        exports = mod.exports or []
        page.members.sort(key=exports.index)
        page.links.sort(key=lambda nl: exports.index(nl[0]))
        page.undocumented = [n for n in page.members if not mod[n].docstring]
        page.members = [n for n in page.members if n not in page.undocumented]
    return sorted(pages.values(), key=lambda p: p.module)


def _home(canonical: str, listers: list[tuple[str, str]], order: list[str]) -> tuple[str, str]:
    """The page that renders an object exported by several modules: (module, name there).

    The listing module that contains the definition, the innermost one (``Monitor``, defined
    in ``gradwatch.monitor.monitor``, goes to ``gradwatch.monitor``, not ``gradwatch``) — unless
    it is defined in a private module, or in none of them: then the innermost module that
    exports it (``track_hidden``, from ``gradwatch._hidden``, goes to ``gradwatch.monitor``).
    """
    owners = [pn for pn in listers if canonical.startswith(pn[0] + ".")]
    private = any(part.startswith("_") for part in canonical.split("."))
    candidates = owners if owners and not private else listers
    return max(candidates, key=lambda pn: (pn[0].count("."), -order.index(pn[0])))


def api_page_markdown(page: ApiPage) -> str:
    """``::: module`` with the members rendered here; the undocumented ones (constants) one by one.

    Undocumented class members stay hidden (a dataclass's fields are in its docstring's
    Attributes table already), but every exported name is shown, docstring or not.
    """
    members = "[" + ", ".join(page.members) + "]" if page.members else "false"
    out = [  # the module's own heading is the page's title, so that references to the module land here
        f"::: {page.module}",
        "    options:",
        "      heading_level: 1",
        "      show_root_heading: true",
        "      show_root_full_path: true",
        "      show_symbol_type_heading: false",
        f"      members: {members}",
        "",
    ]
    for name in page.undocumented:
        out += [f"::: {page.module}.{name}", "    options:", "      show_if_no_docstring: true", ""]
    if page.submodules:
        out += ["## Submodules", ""]
        out += [f"- [`{m}`]({m}.md)" for m in page.submodules]
        out.append("")
    if page.links:
        out += ["## Re-exported here", ""]
        out += [f"- `{page.module}.{name}`: see [`{ident}`][{ident}]" for name, ident in page.links]
        out.append("")
    return "\n".join(out)


def api_index_markdown(pages: list[ApiPage]) -> str:
    out = [
        "# API reference",
        "",
        "Generated from the docstrings: one page per public module, reached from `gradwatch.__all__`",
        "through each module's `__all__`. A name re-exported in several places is documented once,",
        "where it is defined, and linked from the others (`gw.Monitor` is `gradwatch.monitor.Monitor`).",
        "",
        "| module | |",
        "| --- | --- |",
    ]
    out += [f"| [`{p.module}`]({p.module}.md) | {_cell(p.summary)} |" for p in pages]
    return "\n".join(out) + "\n"


# --- CLI reference ------------------------------------------------------------------------------


def cli_markdown() -> str:
    """Every command's ``--help`` (the click command tree under the typer app), in a fixed width."""
    if str(ROOT / "src") not in sys.path:  # this checkout's CLI, like the API pages (griffe reads src/)
        sys.path.insert(0, str(ROOT / "src"))
    import typer.main

    from gradwatch.cli.app import app

    command = typer.main.get_command(app)
    context_class = command.context_class
    out = [
        "# Command-line reference",
        "",
        "Generated from the command line itself: each section is the command's `--help`.",
        "Usage, examples and the `--json` keys are in the [CLI guide](../cli.md).",
        "",
    ]
    sections: list[str] = []

    def walk(cmd: Any, path: list[str], parent: Any) -> None:
        ctx = context_class(cmd, info_name=path[-1], parent=parent, terminal_width=100, max_content_width=100)
        title = " ".join(path)
        sections.extend([f"## `{title}`", "", "```text", cmd.get_help(ctx).rstrip(), "```", ""])
        if hasattr(cmd, "list_commands"):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is not None and not getattr(sub, "hidden", False):
                    walk(sub, [*path, name], ctx)

    walk(command, ["gradwatch"], None)
    return "\n".join(out + sections)


# --- reproduce ----------------------------------------------------------------------------------


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def reproduce_table(results: dict[str, Any]) -> str:
    """The status table of ``docs/reproduce.md`` from a results document of ``gradwatch reproduce``."""
    claims = results["claims"]
    head = (
        f"{len(claims)} claims, `{results['tier']}` tier: **{results['passed']} hold, "
        f"{results['failed']} failed, {results['skipped']} skipped** "
        f"(generated from [`results.json`](reproduce/results.json) when the site is built)."
    )
    rows = [
        head,
        "",
        f"| id | source | published | measured ({_cell(results['tier'])}) | result | seconds |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for c in claims:
        result = "skipped" if c["skipped"] else ("pass" if c["pass"] else "**fail**")
        cells = [f"`{c['id']}`", c["source"], c["published"], c["measured"], result, c["seconds"]]
        rows.append("| " + " | ".join(_cell(x) for x in cells) + " |")
    return "\n".join(rows) + "\n"


# --- the hooks ----------------------------------------------------------------------------------

_PAGES: list[ApiPage] = []


def on_config(config: Any) -> Any:
    _PAGES[:] = api_pages()
    api_nav = [{"Overview": f"{API_DIR}/index.md"}] + [{p.module: p.uri} for p in _PAGES]

    def fill(items: list[Any]) -> bool:
        for i, item in enumerate(items):
            if isinstance(item, dict):
                ((title, value),) = item.items()
                if title == API_NAV_TITLE:
                    items[i] = {title: api_nav}
                    return True
                if isinstance(value, list) and fill(value):
                    return True
        return False

    if not fill(config["nav"] or []):
        raise ValueError(f"mkdocs.yml: the nav needs an entry titled {API_NAV_TITLE!r} for the generated pages")
    return config


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    generated = {
        "reference/cli.md": cli_markdown(),
        f"{API_DIR}/index.md": api_index_markdown(_PAGES),
        "changelog.md": (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"),
    }
    generated.update({p.uri: api_page_markdown(p) for p in _PAGES})
    for uri, content in generated.items():
        files.append(File.generated(config, uri, content=content))
    return files


_REPO_LINK = re.compile(r"\[(?P<text>[^\]]+)\]\((?P<target>\.\./[^)\s#]+)\)")


def repository_links(markdown: str, page_dir: Path) -> str:
    """Links to existing repository files outside docs/ → their path in code (the site has no copy)."""
    docs = ROOT / "docs"

    def replace(m: re.Match[str]) -> str:
        path = (page_dir / m["target"]).resolve()
        if not path.exists() or not path.is_relative_to(ROOT) or path.is_relative_to(docs):
            return m[0]
        rel = path.relative_to(ROOT).as_posix()
        text = m["text"].strip("`")
        return f"`{rel}`" if text == rel else f"{m['text']} (`{rel}`)"

    return _REPO_LINK.sub(replace, markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if not page.file.generated_by:
        markdown = repository_links(markdown, (ROOT / "docs" / page.file.src_uri).parent)
    if page.file.src_uri != "reproduce.md":
        return markdown
    if RESULTS_MARKER not in markdown:
        raise ValueError(f"docs/reproduce.md: the marker {RESULTS_MARKER} for the generated status table is missing")
    results = json.loads(RESULTS.read_text(encoding="utf-8"))
    return markdown.replace(RESULTS_MARKER, reproduce_table(results))
