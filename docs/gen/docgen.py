"""Generates syncd's man pages, syncd(8) and syncd.yaml(5), and its bash and zsh completion.

``python docs/gen/docgen.py --out DIR`` writes ``DIR/man8/syncd.8``, ``DIR/man5/syncd.yaml.5``,
``DIR/completion/syncd`` (bash) and ``DIR/completion/_syncd`` (zsh); ``make install`` runs it.
Everything comes from ``syncd.cli.build_parser()`` and the configuration's JSON Schema, so the
pages and completions cannot drift from the program.

Completion is shtab's (a maintained generator that follows nested sub-commands and completes
file arguments in both shells). The man pages are written here with a small roff writer
(roff.py): syncd.yaml(5) comes from the JSON Schema, which no man page tool reads, and both
pages then share one escaping routine that keeps groff free of warnings.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import roff

import syncd.config
import syncd.errors
from syncd import __version__
from syncd.cli import build_parser

SOURCE = f"syncd {__version__}"

# What each exit code means, keyed by its constant in syncd.errors; a constant without an
# entry here stops the generator (the page must list every code syncd can exit with).
EXIT_MEANINGS = {
    "EXIT_OK": "success.",
    "EXIT_FAILURES": "the command ran, but something it did failed (a user that could not be "
    "provisioned, a failed check, an unhealthy daemon for health).",
    "EXIT_USAGE": "usage or configuration error: the command line, the configuration file or "
    "a file it names is wrong. Retrying will not help; fix it.",
    "EXIT_LOCKED": "another syncd process holds the run lock (a pass is running).",
    "EXIT_UNAVAILABLE": "something syncd depends on (the database, the KMS, Google) is "
    "unavailable for now; trying again later may succeed.",
}


def config_schema() -> dict[str, Any]:
    """The configuration's JSON Schema (field docstrings as descriptions), as
    ``syncd config schema`` prints it: the one place the generator reads it."""
    return syncd.config.json_schema()


# --- syncd(8) -----------------------------------------------------------------------------


def subcommands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ("syncd",)
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, str]]:
    """Every sub-command, depth first in the parser's order: (path, parser, one-line help)."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
        for name, sub in action.choices.items():
            yield (*path, name), sub, helps.get(name, "")
            yield from subcommands(sub, (*path, name))


def _option_items(page: roff.Page, parser: argparse.ArgumentParser, *, with_help: bool) -> None:
    formatter = parser._get_formatter()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._HelpAction) and not with_help:
            continue  # every command takes -h; said once, under OPTIONS
        if action.option_strings:
            tag = ", ".join(roff.bold(option) for option in action.option_strings)
            if action.nargs != 0:
                metavar = formatter._format_args(action, action.dest.upper())
                tag += " " + roff.italic(metavar)
        else:
            tag = roff.italic(formatter._format_args(action, action.dest))
        page.item(tag, roff.text(formatter._expand_help(action)) if action.help else "")


def _usage(parser: argparse.ArgumentParser) -> str:
    return parser.format_usage().removeprefix("usage:").strip()


def cli_page(parser: argparse.ArgumentParser) -> str:
    """syncd(8), from the parser."""
    page = roff.Page("syncd", 8, SOURCE, "System Administration")
    description = (parser.description or "").rstrip(".")
    page.section("name")
    page.raw(f"syncd \\- {roff.text(description[:1].lower() + description[1:])}")
    page.section("synopsis")
    page.raw(roff.text(_usage(parser)))
    page.section("description")
    page.paragraph(
        roff.text(
            "syncd reads the company directory, plans what each user needs (a key pair in the "
            "KMS, an S/MIME certificate from the issuing CA, a Gmail client-side encryption "
            "key pair and identity) and carries the plan out, resuming from checkpoints after "
            "a crash. syncd run is the daemon (a systemd Type=notify service); the other "
            "commands set it up, inspect its state and run single passes by hand."
        )
    )
    page.paragraph(
        roff.text("The configuration file is described in"), roff.bold("syncd.yaml") + "(5)."
    )
    page.section("options")
    _option_items(page, parser, with_help=True)
    page.section("commands")
    for path, sub, summary in subcommands(parser):
        page.subsection(" ".join(path))
        page.paragraph(roff.text(summary) if summary else "")
        if sub.description:
            page.paragraph(roff.text(sub.description))
        page.paragraph(roff.text(_usage(sub)))
        _option_items(page, sub, with_help=False)
    page.section("exit status")
    for name, code in sorted(vars(syncd.errors).items(), key=lambda item: str(item[1])):
        if name.startswith("EXIT_"):
            if name not in EXIT_MEANINGS:
                raise SystemExit(f"docs/gen/docgen.py: no meaning for syncd.errors.{name}")
            page.item(roff.bold(str(code)), roff.text(EXIT_MEANINGS[name]))
    page.section("environment")
    page.item(
        roff.bold("SYNCD_CONFIG"), roff.text("the configuration file, if --config is not given.")
    )
    page.section("files")
    for name, what in (
        ("/etc/syncd/syncd.yaml", "the configuration (see syncd.yaml(5))."),
        ("/var/lib/syncd", "the state directory: state.db (SQLite), master.key, report.html."),
    ):
        page.item(roff.italic(name), roff.text(what))
    page.section("see also")
    page.raw(
        ", ".join(
            f"{roff.bold(name)}({section})"
            for name, section in (
                ("syncd.yaml", 5),
                ("systemctl", 1),
                ("systemd.service", 5),
                ("sysusers.d", 5),
                ("tmpfiles.d", 5),
            )
        )
    )
    return page.render()


# --- syncd.yaml(5) ------------------------------------------------------------------------


class _Schema:
    def __init__(self, schema: dict[str, Any]) -> None:
        self.root = schema
        self.defs: dict[str, Any] = schema.get("$defs", {})

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            resolved: dict[str, Any] = self.defs[node["$ref"].rsplit("/", 1)[-1]]
            node = {**resolved, **{k: v for k, v in node.items() if k != "$ref"}}
        return node

    def variants(self, node: dict[str, Any]) -> list[dict[str, Any]]:
        """The non-null alternatives of ``node`` (itself when it is not a union), resolved;
        nested unions (a tagged union that may also be null) flattened."""
        node = self.resolve(node)
        members = node.get("anyOf") or node.get("oneOf")
        if not members:
            return [node]
        return [v for m in members if m.get("type") != "null" for v in self.variants(m)]

    def type_of(self, node: dict[str, Any]) -> str:
        variants = self.variants(node)
        if len(variants) != 1:
            return " or ".join(self.type_of(v) for v in variants)
        node = variants[0]
        if "const" in node:
            return f"exactly {json.dumps(node['const'])}"
        if "enum" in node:
            return "one of " + ", ".join(json.dumps(v) for v in node["enum"])
        kind = node.get("type", "any")
        if kind == "array":
            return "list of " + self.type_of(node.get("items", {}))
        if kind == "object" and "properties" in node:
            return "mapping"
        if kind == "object":
            extra = node.get("additionalProperties")
            return f"map of names to {self.type_of(extra)}" if isinstance(extra, dict) else "map"
        if kind in ("integer", "number"):
            low = node.get("minimum", node.get("exclusiveMinimum"))
            high = node.get("maximum", node.get("exclusiveMaximum"))
            if low is not None and high is not None:
                return f"{kind}, {low} to {high}"
            if low is not None:
                return f"{kind}, at least {low}"
            if high is not None:
                return f"{kind}, at most {high}"
        if kind == "string" and node.get("format"):
            return f"{kind} ({node['format']})"
        return str(kind)

    def is_section(self, node: dict[str, Any]) -> bool:
        return "properties" in node


def _describe(node: dict[str, Any]) -> str:
    """The schema description, reStructuredText literals (````x````) as plain text."""
    return re.sub(r"``(.+?)``", r"\1", str(node.get("description", ""))).strip()


def _merged(variants: list[dict[str, Any]]) -> dict[str, Any]:
    """A tagged union's variants as one section: every setting once (from the first variant
    that has it), the tag as the choice of its values."""
    if len(variants) == 1:
        return variants[0]
    properties: dict[str, Any] = {}
    for variant in variants:
        for name, field in variant.get("properties", {}).items():
            properties.setdefault(name, field)
            if "const" in field:
                values = [v["properties"][name].get("const") for v in variants
                          if "const" in v.get("properties", {}).get(name, {})]  # fmt: skip
                properties[name] = {**field, "enum": values, "const": None}
                properties[name].pop("const")
    return {"type": "object", "properties": properties}


def _section(page: roff.Page, schema: _Schema, path: str, node: dict[str, Any]) -> None:
    """``path``'s settings (one .TP each), then its nested sections."""
    required = set(node.get("required", ()))
    nested: list[tuple[str, dict[str, Any]]] = []
    for name, field in node.get("properties", {}).items():
        key = f"{path}.{name}" if path else name
        variants = schema.variants(field)
        sections = [v for v in variants if schema.is_section(v)]
        items = [
            schema.resolve(v["items"])
            for v in variants
            if v.get("type") == "array" and "items" in v
        ]
        section_items = [i for i in items if schema.is_section(i)]
        if sections and len(sections) == len(variants):
            nested.append((key, {**_merged(sections), "description": _describe(field)}))
            continue
        if section_items:
            nested.append((f"{key}[]", section_items[0]))
        kind = roff.italic(schema.type_of(field))
        if name in required:
            kind += " " + roff.text("(required)")
        elif "default" in field and field["default"] not in (None, [], {}):
            kind += " " + roff.text(f"(default: {json.dumps(field['default'])})")
        parts = [kind]
        description = _describe(field)
        if description:
            parts += [page.line_break(), roff.text(description)]
        page.item(roff.bold(key), *parts)
    for key, sub in nested:
        tags = [
            f"{name}: {json.dumps(prop['const'])}"
            for name, prop in sub.get("properties", {}).items()
            if "const" in prop
        ]
        page.subsection(key + (f" ({', '.join(tags)})" if tags else ""))
        if _describe(sub):
            page.paragraph(roff.text(_describe(sub)))
        _section(page, schema, key, sub)


def config_page(schema_document: dict[str, Any]) -> str:
    """syncd.yaml(5), from the configuration's JSON Schema."""
    schema = _Schema(schema_document)
    page = roff.Page("syncd.yaml", 5, SOURCE, "File Formats")
    page.section("name")
    page.raw("syncd.yaml \\- syncd configuration file")
    page.section("synopsis")
    page.raw(roff.italic("/etc/syncd/syncd.yaml"))
    page.section("description")
    page.paragraph(
        roff.text(
            "syncd reads one YAML file, /etc/syncd/syncd.yaml unless --config or $SYNCD_CONFIG "
            "names another. Unknown keys are errors. Each setting below is written as its "
            "dotted path: kms.local.master_key_file is the key master_key_file in the mapping "
            "local in the mapping kms. A path ending in [] is a list of mappings. "
            "syncd config check validates a file and prints a redacted summary."
        )
    )
    page.section("settings")
    _section(page, schema, "", schema.resolve(schema_document))
    page.section("see also")
    page.raw(f"{roff.bold('syncd')}(8)")
    return page.render()


# --- completion ---------------------------------------------------------------------------


def completion(parser: argparse.ArgumentParser, shell: str) -> str:
    """shtab's completion script for ``shell``; arguments that take a path complete files."""
    import shtab

    def mark(parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:
            names = f"{action.dest} {action.metavar or ''}".lower()
            if action.type is Path or any(w in names for w in ("file", "path", "output")):
                action.complete = shtab.FILE  # type: ignore[attr-defined]
            if "dir" in names.split("_"):
                action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]

    mark(parser)
    for _, sub, _ in subcommands(parser):
        mark(sub)
    script: str = shtab.complete(parser, shell=shell)
    return script


def write_all(out: Path) -> list[Path]:
    """Every generated file under ``out``; returns their paths."""
    files = {
        out / "man8" / "syncd.8": cli_page(build_parser()),
        out / "man5" / "syncd.yaml.5": config_page(config_schema()),
        out / "completion" / "syncd": completion(build_parser(), "bash"),
        out / "completion" / "_syncd": completion(build_parser(), "zsh"),
    }
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    return list(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True, help="directory to write into")
    args = parser.parse_args(argv)
    for path in write_all(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
