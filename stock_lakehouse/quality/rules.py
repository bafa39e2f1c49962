"""SodaCL files as a list of rules: each check of a file becomes one named, severity-tagged rule.

Nothing here lists rule names: they come from the YAML when definitions load, so adding a rule to a
file adds a Dagster asset check. A rule's Dagster name is its ``name:`` attribute, or a slug of its
check line. Rules configured with ``warn:`` and no ``fail:`` are warnings (never block); every other
rule is an error-level gate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

QUALITY_DIR = Path(__file__).resolve().parent
_OPERATORS = ((">=", " ge "), ("<=", " le "), ("!=", " ne "), (">", " gt "), ("<", " lt "), ("=", " eq "))


class RulesError(ValueError):
    """A SodaCL file cannot be turned into checks; the message names the file and the rule."""


@dataclass(frozen=True)
class Rule:
    """One SodaCL check."""

    name: str
    line: str  # the check line, e.g. "row_count > 0" or "schema"
    config: dict[str, Any]
    warn_only: bool

    @property
    def definition(self) -> str:
        return yaml.safe_dump([{self.line: self.config} if self.config else self.line], sort_keys=False).strip()


@dataclass(frozen=True)
class RuleSuite:
    """The rules of one file, for one table view."""

    path: Path
    view: str
    rules: tuple[Rule, ...]

    def sodacl(self) -> str:
        """The file as Soda will run it: every check named after its Dagster check, without failed-row
        samples (each sample is one more Spark query, and samples go nowhere without Soda Cloud)."""
        checks = []
        for rule in self.rules:
            config = {**rule.config, "name": rule.name}
            if rule.line != "schema":
                config.setdefault("samples limit", 0)
            checks.append({rule.line: config})
        return yaml.safe_dump({f"checks for {self.view}": checks}, sort_keys=False)


def slug(text: str) -> str:
    for op, word in _OPERATORS:
        text = text.replace(op, word)
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def load_suite(path: Path) -> RuleSuite:
    """Parse a SodaCL file with one ``checks for <view>`` section.

    Raises:
        RulesError: invalid YAML, no or several sections, or two rules with the same name.
    """
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RulesError(f"{path}: not valid YAML: {exc}") from None
    sections = [k for k in (doc or {}) if isinstance(k, str) and k.startswith("checks for ")]
    if len(sections) != 1:
        raise RulesError(f"{path}: expected exactly one 'checks for <table>' section, found {sections}")
    view = sections[0].removeprefix("checks for ").strip()
    rules: list[Rule] = []
    for entry in doc[sections[0]] or []:
        if isinstance(entry, str):
            line, config = entry, {}
        elif isinstance(entry, dict) and len(entry) == 1:
            line, config = next(iter(entry.items()))
            config = dict(config or {})
        else:
            raise RulesError(f"{path}: cannot read check entry {entry!r}")
        name = slug(str(config.pop("name", None) or line))
        if not name:
            raise RulesError(f"{path}: check {line!r} gives an empty name; add a 'name:'")
        if any(r.name == name for r in rules):
            raise RulesError(f"{path}: two checks are named {name!r}; give one a different 'name:'")
        warn_only = "warn" in config and "fail" not in config
        rules.append(Rule(name=name, line=str(line), config=config, warn_only=warn_only))
    if not rules:
        raise RulesError(f"{path}: no checks")
    return RuleSuite(path=path, view=view, rules=tuple(rules))
