"""The whole :class:`Settings`, one field per concern, and ``load_settings()``: defaults, then the config file,
then the environment, each value coerced and checked against its bounds, with where it came from."""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voiceivr.bounds import Bounds
from voiceivr.errors import ConfigError
from voiceivr.settings.call import BudgetSettings, CallSettings
from voiceivr.settings.operations import ConsoleSettings, DialplanSettings, MetricsSettings, PluginSettings
from voiceivr.settings.policy import PolicySettings
from voiceivr.settings.redact import mask_secret
from voiceivr.settings.sip import SipSettings
from voiceivr.settings.speech import SpeechSettings, VadSettings
from voiceivr.settings.storage import AuditSettings, DatabaseSettings, LogSettings, PathSettings, RecordingSettings

ENV_PREFIX = "VOICEIVR_"
CONFIG_ENV = "VOICEIVR_CONFIG"
DEFAULT_CONFIG_FILE = "voiceivr.toml"


@dataclass
class Settings:
    paths: PathSettings = field(default_factory=PathSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    log: LogSettings = field(default_factory=LogSettings)
    speech: SpeechSettings = field(default_factory=SpeechSettings)
    vad: VadSettings = field(default_factory=VadSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    sip: SipSettings = field(default_factory=SipSettings)
    recording: RecordingSettings = field(default_factory=RecordingSettings)
    call: CallSettings = field(default_factory=CallSettings)
    budget: BudgetSettings = field(default_factory=BudgetSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    dialplan: DialplanSettings = field(default_factory=DialplanSettings)
    plugins: PluginSettings = field(default_factory=PluginSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)

    def database_url(self) -> str:
        """The effective database URL (the SQLite default spelled out)."""
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.paths.var_dir / 'voiceivr.sqlite3').as_posix()}"

    def prompt_cache_dir(self) -> Path:
        """The effective prompt cache directory (the default under var_dir spelled out)."""
        if self.speech.prompt_cache_dir:
            return Path(self.speech.prompt_cache_dir)
        return self.paths.var_dir / "prompts"

    def recordings_dir(self) -> Path:
        return Path(self.recording.dir) if self.recording.dir else self.paths.var_dir / "recordings"


@dataclass(frozen=True)
class SettingInfo:
    section: str
    key: str
    value: Any
    source: str  # "default", the config file path, or the environment variable name
    doc: str
    secret: bool
    bounds: Bounds | None = None  # the values it accepts, if limited

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"

    def shown_value(self) -> str:
        if self.secret and self.value:
            return mask_secret(str(self.value))
        if isinstance(self.value, Path):
            return self.value.as_posix()
        if isinstance(self.value, list):
            return ",".join(str(v) for v in self.value)
        return str(self.value)

def _coerce(raw: Any, annotation: Any, where: str) -> Any:
    """Turn a TOML or environment value into the field's type, or say precisely why not."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if raw in (None, "") and len(args) != len(typing.get_args(annotation)):
            return None
        annotation = args[0]
        origin = typing.get_origin(annotation)
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        items = [s.strip() for s in raw.split(",") if s.strip()] if isinstance(raw, str) else raw
        if not isinstance(items, list):
            raise ConfigError(f"{where}: expected a list, got {raw!r}")
        return [_coerce(i, item_type, where) for i in items]
    if annotation is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{where}: expected true or false, got {raw!r}")
    if annotation in (int, float):
        kind = "a whole number" if annotation is int else "a number"
        if isinstance(raw, bool):
            raise ConfigError(f"{where}: expected {kind}, got {raw!r}")
        try:
            number = annotation(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {kind}, got {raw!r}") from None
        if not math.isfinite(number):  # float() reads "nan" and "inf"; no setting means either
            raise ConfigError(f"{where}: expected a finite number, got {raw!r}")
        return number
    if annotation is Path:
        return Path(str(raw))
    if annotation is str:
        if not isinstance(raw, str):
            raise ConfigError(f"{where}: expected a string, got {raw!r}")
        return raw
    return raw


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def env_var(section: str, key: str) -> str:
    """The environment variable that sets ``section.key``: ``VOICEIVR_<SECTION>_<KEY>``."""
    return f"{ENV_PREFIX}{section}_{key}".upper()


def load_settings(
    environ: Mapping[str, str] | None = None, config_file: Path | None = None
) -> tuple[Settings, list[SettingInfo]]:
    """Build the effective settings and the provenance of every key."""
    env = dict(os.environ if environ is None else environ)
    if config_file is None:
        named = env.get(CONFIG_ENV)
        if named:
            config_file = Path(named)
            if not config_file.exists():
                raise ConfigError(f"{CONFIG_ENV}={named}: no such file")
        else:
            config_file = Path(DEFAULT_CONFIG_FILE)
    file_values = _read_config_file(config_file) if config_file.exists() else {}

    settings = Settings()
    info: list[SettingInfo] = []
    known_sections = {f.name for f in dataclasses.fields(Settings)}
    for section_name in file_values:
        if section_name not in known_sections:
            raise ConfigError(
                f"{config_file}: unknown section [{section_name}]; known: {', '.join(sorted(known_sections))}"
            )

    for section_field in dataclasses.fields(Settings):
        section = getattr(settings, section_field.name)
        hints = typing.get_type_hints(type(section))
        file_section = file_values.get(section_field.name, {})
        if not isinstance(file_section, dict):
            raise ConfigError(f"{config_file}: [{section_field.name}] must be a table")
        known_keys = {f.name for f in dataclasses.fields(section)}
        for key in file_section:
            if key not in known_keys:
                raise ConfigError(
                    f"{config_file}: unknown key {section_field.name}.{key}; "
                    f"known: {', '.join(sorted(known_keys))}"
                )
        for f in dataclasses.fields(section):
            source = "default"
            value = getattr(section, f.name)
            if f.name in file_section:
                where = f"{config_file}: {section_field.name}.{f.name}"
                value = _coerce(file_section[f.name], hints[f.name], where)
                source = str(config_file)
            env_name = env_var(section_field.name, f.name)
            if env_name in env:
                value = _coerce(env[env_name], hints[f.name], env_name)
                source = env_name
            bounds: Bounds | None = f.metadata.get("bounds")
            if bounds is not None:
                where = str(config_file) if source == str(config_file) else source
                value = bounds.check(value, f"{section_field.name}.{f.name}", where, f.metadata.get("doc", ""))
            setattr(section, f.name, value)
            info.append(
                SettingInfo(
                    section=section_field.name,
                    key=f.name,
                    value=value,
                    source=source,
                    doc=f.metadata.get("doc", ""),
                    secret=bool(f.metadata.get("secret", False)),
                    bounds=f.metadata.get("bounds"),
                )
            )
    return settings, info
