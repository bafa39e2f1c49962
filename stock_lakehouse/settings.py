"""Typed settings, read from a YAML file and overridden by environment variables.

Lookup order for the file: ``$STOCK_LAKEHOUSE_CONFIG``, then ``./config/stock_lakehouse.yaml``, then the
built-in defaults (bundled NVDA sample, local ``./lake`` folder). Every setting can be replaced from the
environment (pydantic-settings), so CI, the CLI and the UI can change a run without editing files:
``STOCK_LAKEHOUSE_`` + the setting's name, a block's setting after its block name
(``STOCK_LAKEHOUSE_S3_ENDPOINT`` is ``s3.endpoint``, ``STOCK_LAKEHOUSE_QUALITY_MAX_INVALID_SHARE`` is
``quality.max_invalid_share``), lists comma-separated, deeper blocks as JSON
(``STOCK_LAKEHOUSE_ALPHAVANTAGE_BUDGET='{"per_day": 500}'``). That is why no top-level setting is named
like a block plus ``_``: ``quality_dir`` would have read as ``quality.dir``, so the rules folder *is*
``quality.dir``. Secrets are never read from here into logs: only their environment variable *names*
travel in config.

Every setting is honoured or refused, at load, before anything is written: a ``STOCK_LAKEHOUSE_*`` name
that is no setting (and none of ``OTHER_ENV_NAMES``) is refused with the closest name (pydantic-settings
would ignore it), the calendar is built as runs build it, and ``spark.conf`` may not set the keys the
pipeline pins (``lakehouse/spark_pins.py``).
"""

from __future__ import annotations

import difflib
import os
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings import SettingsError as SourceError

from stock_lakehouse.bi_server.access import PASSWORD_ENV, USER_ENV
from stock_lakehouse.ingestion.alphavantage import (
    DEFAULT_BACKOFF_SECONDS,
    DEFAULT_BASE_URL,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_RESPONSE_DEADLINE_SECONDS,
    DEFAULT_TIMEOUT_SECONDS,
    DEFAULT_TOTAL_DEADLINE_SECONDS,
    INTRADAY_INTERVALS,
)
from stock_lakehouse.lakehouse.object_store import S3Location
from stock_lakehouse.symbols import validate_symbols

PACKAGE_DIR = Path(__file__).resolve().parent
SAMPLE_DATA_DIR = PACKAGE_DIR / "sample_data"
DEFAULT_CONFIG_FILE = Path("config") / "stock_lakehouse.yaml"
INTERVALS = INTRADAY_INTERVALS

ENV_PREFIX = "STOCK_LAKEHOUSE_"
API_KEY_ENV = "ALPHAVANTAGE_API_KEY"


class SettingsError(ValueError):
    """A setting is missing or wrong; the message names the setting and where it came from."""


class SparkSettings(BaseModel):
    """How the Spark session is built (see ``lakehouse/spark.py``)."""

    model_config = ConfigDict(extra="forbid")

    master: str = "local[*]"
    app_name: str = "stock-lakehouse"
    shuffle_partitions: int = Field(4, ge=1)
    driver_memory: str = "2g"
    #: ``sc://host:port`` of a running ``stock-lakehouse engine`` (``make dev`` sets it): runs are its Spark
    #: Connect clients and start no JVM. Unset: each process starts its own session (the embedded default).
    remote: str | None = None
    #: extra Spark settings; the keys the pipeline pins (``lakehouse/spark_pins.py``) are refused
    conf: dict[str, str] = Field(default_factory=dict)

    @field_validator("conf")
    @classmethod
    def _not_pinned(cls, value: dict[str, str]) -> dict[str, str]:
        from stock_lakehouse.lakehouse.spark_pins import check_conf

        check_conf(value)
        return value

    @field_validator("remote")
    @classmethod
    def _engine_url(cls, value: str | None) -> str | None:
        from stock_lakehouse.lakehouse.spark_pins import check_remote

        return check_remote(value)


class SyntheticSettings(BaseModel):
    """Deterministic generator used for demos and benchmarks."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 7
    extended_hours: bool = True


class BudgetSettings(BaseModel):
    """Request limits of the API key, shared by all processes through ``state_file``."""

    model_config = ConfigDict(extra="forbid")

    per_second: int = Field(1, ge=0)
    per_minute: int = Field(0, ge=0)
    per_day: int = Field(25, ge=0)
    #: SQLite file counting requests; default ``$DAGSTER_HOME/alphavantage_budget.sqlite``.
    state_file: str | None = None


class AlphaVantageSettings(BaseModel):
    """The live source. The key is best given as ``$ALPHAVANTAGE_API_KEY``; a key here is read again
    from these settings where it is used (``AlphaVantageSource.settings_file``), so it is never part of
    any resource config and never copied into the environment."""

    model_config = ConfigDict(extra="forbid")

    api_key: SecretStr | None = None
    base_url: str = DEFAULT_BASE_URL
    outputsize: Literal["compact", "full"] = "full"
    #: outputsize of the request for today's partition (intraday refresh): compact = latest 100 bars.
    latest_outputsize: Literal["compact", "full"] = "compact"
    adjusted: bool = True
    extended_hours: bool = True
    entitlement: Literal["realtime", "delayed"] | None = None
    datatype: Literal["json", "csv"] = "json"
    #: connect timeout and the longest silence between two reads of a response: past it, the attempt fails (retried)
    timeout_seconds: float = Field(DEFAULT_TIMEOUT_SECONDS, gt=0)
    #: retries after the first attempt; backoff waits start at backoff_seconds and double (max 60 s)
    max_retries: int = Field(DEFAULT_MAX_RETRIES, ge=0)
    backoff_seconds: float = Field(DEFAULT_BACKOFF_SECONDS, ge=0)
    #: the whole response of one attempt (connect, headers, body), however the server trickles it; retried
    response_deadline_seconds: float = Field(DEFAULT_RESPONSE_DEADLINE_SECONDS, gt=0)
    #: the largest body accepted; a month of 1-min extended-hours bars is ~3.5 MB. Larger fails at once
    max_response_bytes: int = Field(DEFAULT_MAX_RESPONSE_BYTES, gt=0)
    #: all attempts and waits of one request together: the longest a hopeless request holds a run
    total_deadline_seconds: float = Field(DEFAULT_TOTAL_DEADLINE_SECONDS, gt=0)
    #: re-fetch months already in the landing zone
    refresh: bool = False
    budget: BudgetSettings = Field(default_factory=BudgetSettings)


class QualitySettings(BaseModel):
    """SodaCL rules and row-quality gates (``quality/``)."""

    model_config = ConfigDict(extra="forbid")

    #: folder of SodaCL files (bronze.yml, silver.yml, gold.yml, bi.yml)
    dir: str = str(PACKAGE_DIR / "quality")

    #: share of a (symbol, trade_date) partition's bars that may fail silver's ``gate: partition`` rules;
    #: above it the partition is withheld from gold and BI (its previous rows stay)
    max_invalid_share: float = Field(0.01, ge=0, le=1)


class AutomationSettings(BaseModel):
    """Schedules, freshness and alerts."""

    model_config = ConfigDict(extra="forbid")

    intraday_every_minutes: int = Field(15, ge=1, le=60)
    #: the ranged_backfill job refuses a larger symbols x weekdays selection unless told confirm_large
    #: (W1, 50 symbols x 21 days, is 1,050; 2 symbols x 3 years is 1,530)
    ranged_backfill_max_partitions: int = Field(1500, ge=1)
    #: New York wall-clock time of the end-of-day run, HH:MM
    end_of_day_at: str = Field("20:15", pattern=r"^\d{1,2}:\d{2}$")
    freshness_max_lag_minutes: int = Field(30, ge=1)
    anomaly_price_change_pct: float = Field(8.0, gt=0)
    anomaly_volume_multiple: float = Field(3.0, gt=1)
    #: environment variable holding the alert webhook URL (URLs often embed a token)
    alert_webhook_env: str = "STOCK_LAKEHOUSE_ALERT_WEBHOOK"
    alert_webhook_format: Literal["slack", "ntfy"] = "slack"
    #: evaluate the sensors, the live source's "today" and the dashboard's lag as of this instant (ISO 8601, UTC
    #: if no offset) instead of the wall clock: for replays of recorded sessions and for checking a deployment's
    #: sensors outside market hours. With ``clock_anchor_utc`` the clock runs (a simulated session) and the
    #: schedules' ticks follow it too.
    clock_utc: str | None = None
    #: the real instant at which the clock reads ``clock_utc``; from there it runs ``clock_speed`` times as
    #: fast as the wall clock (``stock-lakehouse bench --session-minutes`` sets both)
    clock_anchor_utc: str | None = None
    clock_speed: float = Field(1.0, gt=0, le=3600)

    @field_validator("end_of_day_at")
    @classmethod
    def _time_of_day(cls, value: str) -> str:
        hour, minute = (int(part) for part in value.split(":"))
        if hour > 23 or minute > 59:
            raise ValueError(f"{value!r} is not a time of day (HH:MM, 00:00 to 23:59, New York)")
        return f"{hour:02d}:{minute:02d}"

    @field_validator("alert_webhook_env")
    @classmethod
    def _not_a_setting(cls, value: str) -> str:
        setting = setting_read_from(value)
        if setting is not None:
            raise ValueError(f"{value!r} would be read as the setting {setting}: choose another variable name")
        return value

    @field_validator("clock_utc", "clock_anchor_utc")
    @classmethod
    def _instant(cls, value: str | None) -> str | None:
        from datetime import datetime

        if value:
            datetime.fromisoformat(value)
        return value or None

    @model_validator(mode="after")
    def _anchor_needs_a_reading(self) -> AutomationSettings:
        if self.clock_anchor_utc and not self.clock_utc:
            raise ValueError("automation.clock_anchor_utc is set but automation.clock_utc (the reading at it) is not")
        return self


_file_values: ContextVar[dict[str, Any] | None] = ContextVar("stock_lakehouse_file_values", default=None)


class _FileSource(PydanticBaseSettingsSource):
    """The config file's values, below the environment (``load_settings`` reads and names the file)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        raise NotImplementedError  # __call__ returns the whole mapping

    def __call__(self) -> dict[str, Any]:
        return _file_values.get() or {}


class Settings(BaseSettings):
    """Everything a deployment can change without touching code."""

    model_config = SettingsConfigDict(
        extra="forbid",
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="_",
        env_nested_max_split=1,
        case_sensitive=False,
    )

    _file: Path | None = PrivateAttr(default=None)

    symbols: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["NVDA"])
    #: currency pairs as BASE/QUOTE (FX_INTRADAY); partition symbol BASEQUOTE
    fx_pairs: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: coins as COIN/MARKET (CRYPTO_INTRADAY); partition symbol COINMARKET
    crypto: Annotated[list[str], NoDecode] = Field(default_factory=list)
    interval: Literal[*INTRADAY_INTERVALS] = "1min"  # type: ignore[valid-type]
    source: Literal["replay", "synthetic", "alphavantage"] = "replay"
    #: let a source that yields no bars for a partition erase its rows (off: they are kept, with a warning)
    allow_empty_overwrite: bool = False
    replay_dir: str = str(SAMPLE_DATA_DIR)
    lake_root: str = "lake"
    partitions_start: str = "2024-01-01"
    calendar: str = "XNYS"
    quality: QualitySettings = Field(default_factory=QualitySettings)
    spark: SparkSettings = Field(default_factory=SparkSettings)
    synthetic: SyntheticSettings = Field(default_factory=SyntheticSettings)
    alphavantage: AlphaVantageSettings = Field(default_factory=AlphaVantageSettings)
    automation: AutomationSettings = Field(default_factory=AutomationSettings)
    s3: S3Location = Field(default_factory=S3Location)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Highest first: the CLI's options, the environment, the config file. No .env or secrets folder:
        # keys come from the environment only.
        return init_settings, env_settings, _FileSource(settings_cls)

    @field_validator("symbols", "fx_pairs", "crypto", mode="before")
    @classmethod
    def _split_lists(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        return value

    @field_validator("symbols")
    @classmethod
    def _clean_symbols(cls, value: list[str]) -> list[str]:
        return validate_symbols([s for s in value if str(s).strip()], "setting 'symbols'")

    @field_validator("fx_pairs", "crypto")
    @classmethod
    def _pairs(cls, value: list[str]) -> list[str]:
        out = []
        for raw in value:
            parts = [p.strip().upper() for p in str(raw).split("/")]
            if len(parts) != 2 or not all(p.isalnum() for p in parts):
                raise ValueError(f"{raw!r} is not of the form BASE/QUOTE, e.g. EUR/USD or BTC/USD")
            out.append("/".join(parts))
        return out

    @model_validator(mode="after")
    def _some_symbol(self) -> Settings:
        if not self.all_symbols:
            raise ValueError("configure at least one of symbols, fx_pairs, crypto")
        return self

    @property
    def all_symbols(self) -> list[str]:
        """Partition symbols: stocks, then FX pairs and coins as BASEQUOTE."""
        return self.symbols + [p.replace("/", "") for p in self.fx_pairs + self.crypto]

    @field_validator("partitions_start")
    @classmethod
    def _iso_date(cls, value: str) -> str:
        from datetime import date

        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value.strip()):
            raise ValueError(f"{value!r} is not a YYYY-MM-DD date")
        return date.fromisoformat(value.strip()).isoformat()

    @field_validator("calendar")
    @classmethod
    def _known_calendar(cls, value: str) -> str:
        from stock_lakehouse.market_calendar import check_calendar

        return check_calendar(value)[0]

    @model_validator(mode="after")
    def _start_in_calendar(self) -> Settings:
        from datetime import date

        from stock_lakehouse.market_calendar import check_calendar

        _, first, last = check_calendar(self.calendar)
        start = date.fromisoformat(self.partitions_start)
        if not first <= start <= last:
            raise ValueError(
                f"partitions_start {start} is outside the sessions calendar {self.calendar} covers ({first} to {last})"
            )
        return self

    @model_validator(mode="after")
    def _cadence_affordable(self) -> Settings:
        # A cadence set explicitly must fit the key's daily budget; with the default one, the schedule
        # itself skips every tick saying why (wiring), so a free key still runs materialize and backfills.
        if self.source == "alphavantage" and "intraday_every_minutes" in self.automation.model_fields_set:
            problem = self.intraday_cost_refusal()
            if problem:
                raise ValueError(problem)
        return self

    def intraday_cost_refusal(self) -> str | None:
        """Why the live source's daily budget cannot pay for the intraday refresh (None: it can, or offline)."""
        from stock_lakehouse.automation.cadence import CadenceCost

        if self.source != "alphavantage":
            return None
        cost = CadenceCost(len(self.all_symbols), self.automation.intraday_every_minutes)
        return cost.refusal(self.alphavantage.budget.per_day, self.alphavantage.budget.per_minute)

    @property
    def file(self) -> Path | None:
        """The settings file these were loaded from (None: built-in defaults and the environment only)."""
        return self._file

    @property
    def lake(self):
        """The ``Lake`` resource every reader and writer of tables is given (the one place the lake's
        location and store are turned into code; a relative ``lake_root`` is resolved now)."""
        from stock_lakehouse.lakehouse.lake import Lake

        return Lake(root=Lake.resolve_root(self.lake_root), s3=self.s3)

    @property
    def replay_path(self) -> Path:
        return Path(self.replay_dir).expanduser().resolve()


def environment_settings() -> dict[str, Any]:
    """The settings the environment sets now, as a nested mapping (empty when none)."""
    return EnvSettingsSource(Settings)()


#: The ``STOCK_LAKEHOUSE_*`` environment variables the project reads that are no setting, with what reads
#: them. Any other ``STOCK_LAKEHOUSE_*`` name that is no setting is refused at load (a typo is no silent
#: default), except the variable ``automation.alert_webhook_env`` names.
OTHER_ENV_NAMES: dict[str, str] = {
    "STOCK_LAKEHOUSE_CONFIG": "the settings file to load",
    "STOCK_LAKEHOUSE_IVY_DIR": "the Ivy cache of the Delta and S3A jars (lakehouse/spark.py)",
    "STOCK_LAKEHOUSE_ALERT_WEBHOOK": "the alert webhook's URL (automation.alert_webhook_env's default)",
    "STOCK_LAKEHOUSE_CACHE": "the download cache of docker/images/build.sh",
    USER_ENV: "the BI endpoint's user (bi_server/access.py)",
    PASSWORD_ENV: "the BI endpoint's password (bi_server/access.py)",
}


def _blocks() -> dict[str, type[BaseModel]]:
    """Top-level settings that are blocks of settings (``spark``, ``s3``, ...), by name."""
    return {
        name: field.annotation
        for name, field in Settings.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    }


def setting_env_names() -> dict[str, str]:
    """Every environment variable naming a setting (upper case) -> the setting, dotted."""
    names = {ENV_PREFIX + name.upper(): name for name in Settings.model_fields}
    for block, model in _blocks().items():
        names |= {f"{ENV_PREFIX}{block.upper()}_{key.upper()}": f"{block}.{key}" for key in model.model_fields}
    return names


def setting_read_from(env_name: str) -> str | None:
    """The (dotted) setting the environment variable ``env_name`` is read as, existing or not, or None when
    it is not read as a setting (``STOCK_LAKEHOUSE_S3_ENDPIONT`` -> ``s3.endpiont``)."""
    upper = env_name.upper()
    if not upper.startswith(ENV_PREFIX):
        return None
    rest = upper[len(ENV_PREFIX) :].lower()
    if rest in Settings.model_fields:
        return rest
    block = next((b for b in _blocks() if rest.startswith(b + "_")), None)
    return f"{block}.{rest[len(block) + 1 :]}" if block else None


def unknown_env_names(environ: dict[str, str], webhook_env: str) -> list[str]:
    """A problem for each ``STOCK_LAKEHOUSE_*`` variable of ``environ`` that is no setting, none of
    ``OTHER_ENV_NAMES`` and not ``webhook_env``; each names the closest known name when one is close."""
    settings = setting_env_names()
    known = set(settings) | set(OTHER_ENV_NAMES) | {webhook_env.upper()}
    # Compared without the common prefix, which would make every name look alike.
    tails = {n[len(ENV_PREFIX) :]: n for n in sorted(known) if n.startswith(ENV_PREFIX)}
    problems = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known:
            continue
        read_as = setting_read_from(name)
        problem = f"{name} is no setting" + (f" ({read_as})" if read_as and "." in read_as else "")
        close = difflib.get_close_matches(upper[len(ENV_PREFIX) :], list(tails), n=1)
        if close:
            match = tails[close[0]]
            problem += f"; did you mean {match}" + (f" ({settings[match]})" if match in settings else "") + "?"
        problems.append(problem)
    return problems


def _webhook_env(*sources: dict[str, Any]) -> str:
    """``automation.alert_webhook_env`` as the first of ``sources`` (highest first) that sets it gives it."""
    for source in sources:
        block = source.get("automation")
        if isinstance(block, dict) and isinstance(block.get("alert_webhook_env"), str):
            return block["alert_webhook_env"]
    return AutomationSettings.model_fields["alert_webhook_env"].default


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def config_file_path(given: str | None = None) -> Path | None:
    """The config file in force: ``given`` (the CLI's ``--config``), else ``$STOCK_LAKEHOUSE_CONFIG``, else
    ``./config/stock_lakehouse.yaml``; None when the built-in defaults apply."""
    named = given or os.environ.get("STOCK_LAKEHOUSE_CONFIG")
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise SettingsError(f"invalid settings ($STOCK_LAKEHOUSE_CONFIG, --config): {path} is not a file")
        return path
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def _problem(error: Any) -> str:
    """One of pydantic's errors as ``setting: what is wrong`` (a check of several settings names them)."""
    message = str(error["msg"]).removeprefix("Value error, ")
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {message}" if where else message


def load_settings(path: Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Load settings from a YAML file, environment variables and explicit overrides (in that order).

    Args:
        path: YAML file; default from ``config_file_path()``.
        overrides: dotted setting paths to values, applied last (the CLI's options).

    Raises:
        SettingsError: naming the file and each wrong setting.
    """
    path = path if path is not None else config_file_path()
    data: dict[str, Any] = {}
    origin = "built-in defaults"
    if path is not None:
        origin = str(path)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise SettingsError(f"invalid settings ({path}): not valid YAML{where}: {problem}") from None
        except (OSError, UnicodeDecodeError) as exc:  # a folder, unreadable, not text
            raise SettingsError(f"invalid settings ({path}): cannot be read: {exc}") from None
        if not isinstance(loaded, dict):
            raise SettingsError(
                f"invalid settings ({path}): expected a mapping of settings, got {type(loaded).__name__}"
            )
        data = loaded
        # Relative folders in a config file are relative to the working directory, like the CLI's options.
    cli: dict[str, Any] = {}
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(cli, dotted, value)
    try:
        env_values = environment_settings()
    except SourceError as exc:  # a block given as JSON that is not JSON
        raise SettingsError(f"invalid settings (environment, ${ENV_PREFIX}*): {exc}") from None
    unknown = unknown_env_names(dict(os.environ), _webhook_env(cli, env_values, data))
    if unknown:  # pydantic-settings would ignore a misspelled top-level name
        raise SettingsError(f"invalid settings (environment, ${ENV_PREFIX}*): {'; '.join(unknown)}")
    from_env = sorted(env_values)
    if from_env:
        origin += f" + environment ({', '.join(from_env)})"
    token = _file_values.set(data)
    try:
        settings = Settings(**cli)
    except ValidationError as exc:
        problems = "; ".join(_problem(err) for err in exc.errors())
        raise SettingsError(f"invalid settings ({origin}): {problems}") from None
    finally:
        _file_values.reset(token)
    settings._file = path
    return settings
