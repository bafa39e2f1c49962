"""SodaCL files as a list of rules: each check of a file becomes one named, severity-tagged rule.

Nothing here lists rule names: they come from the YAML when definitions load, so adding a rule to a
file adds a Dagster asset check. A rule's Dagster name is its ``name:`` attribute, or a slug of its
check line. Rules configured with ``warn:`` and no ``fail:`` are warnings (never block); every other
rule is an error-level gate.

Two kinds of gate (DESIGN §8). By default a rule guards the *table* (schema, keys, timestamps): it is
judged over the run and a failure blocks downstream layers for the whole run. A rule marked
``gate: partition`` guards *rows* (prices, volume, ranges): it must say which bar fails
(``missing_count``, ``invalid_count`` with valid min/max/values, or ``failed rows`` with a
``fail condition``), and it is judged per (symbol, trade_date) as a share of that partition's bars
(``quality/gates.py``), so one bad bar never stops the other partitions.
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
    #: "table" (judged over the run, blocking) or "partition" (judged per partition as a share of bars)
    gate: str = "table"

    @property
    def failing_bar(self) -> str:
        """SQL condition true for a bar this rule rejects (partition-gated rules only).

        Raises:
            RulesError: the rule's form does not say which bar fails.
        """
        m = re.fullmatch(r"(missing|invalid)_count\((\w+)\)\s*=\s*0", self.line.strip())
        if self.line == "failed rows" and self.config.get("fail condition"):
            return f"({self.config['fail condition']})"
        if m and m.group(1) == "missing":
            return f"({m.group(2)} IS NULL)"
        if m:
            col, conds = m.group(2), []
            if "valid min" in self.config:
                conds.append(f"{col} < {float(self.config['valid min'])!r}")
            if "valid max" in self.config:
                conds.append(f"{col} > {float(self.config['valid max'])!r}")
            if "valid values" in self.config:
                values = ", ".join("'" + str(v).replace("'", "") + "'" for v in self.config["valid values"])
                conds.append(f"{col} NOT IN ({values})")
            if conds:
                return f"({col} IS NOT NULL AND ({' OR '.join(conds)}))"
        raise RulesError(
            f"rule {self.name!r} ({self.line}): a 'gate: partition' rule must be missing_count(col) = 0, "
            "invalid_count(col) = 0 with valid min/max/values, or failed rows with a fail condition"
        )

    @property
    def definition(self) -> str:
        return yaml.safe_dump([{self.line: self.config} if self.config else self.line], sort_keys=False).strip()


@dataclass(frozen=True)
class RuleSuite:
    """The rules of one file, for one table view."""

    path: Path
    view: str
    rules: tuple[Rule, ...]

    @property
    def table_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.gate == "table")

    @property
    def partition_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.gate == "partition")

    def sodacl(self) -> str:
        """The table rules as Soda will run them: every check named after its Dagster check, without
        failed-row samples (each sample is one more Spark query, and samples go nowhere without Soda
        Cloud). Partition rules are judged by one grouped query of their own (``quality/gates.py``)."""
        checks = []
        for rule in self.table_rules:
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
        gate = str(config.pop("gate", "table"))
        if gate not in ("table", "partition"):
            raise RulesError(f"{path}: check {name!r} has gate {gate!r}; use table or partition")
        rule = Rule(name=name, line=str(line), config=config, warn_only=warn_only, gate=gate)
        if gate == "partition":
            try:
                rule.failing_bar  # noqa: B018 - validates the rule's form at load
            except RulesError as exc:
                raise RulesError(f"{path}: {exc}") from None
        rules.append(rule)
    if not rules:
        raise RulesError(f"{path}: no checks")
    return RuleSuite(path=path, view=view, rules=tuple(rules))
