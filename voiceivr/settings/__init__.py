"""Settings: small dataclasses, one per concern, each default documented beside it.

Where a value comes from, in rising precedence:
  1. the default written here;
  2. ``voiceivr.toml`` (or the file named by ``VOICEIVR_CONFIG``), a table per section::

         [database]
         url = "postgresql+psycopg://voiceivr@127.0.0.1/voiceivr"

  3. the environment: ``VOICEIVR_<SECTION>_<KEY>``, e.g. ``VOICEIVR_DATABASE_URL``.

``load_settings()`` returns the settings and, for every key, where its value came from, so that
``voiceivr config show`` can tell an operator why a value is what it is.

The package is split by concern (``storage``, ``speech``, ``policy``, ``sip``, ``call``, ``operations``), with
``fields`` (how a setting is declared), ``redact`` (masking secrets) and ``loading`` (``Settings`` and
``load_settings``); this module is its public face. A new concern adds a dataclass in a module here and a
field on :class:`Settings`; nothing else needs to change.
"""

from voiceivr.settings.call import BudgetSettings, CallSettings
from voiceivr.settings.fields import setting
from voiceivr.settings.loading import (
    CONFIG_ENV,
    DEFAULT_CONFIG_FILE,
    ENV_PREFIX,
    SettingInfo,
    Settings,
    env_var,
    load_settings,
)
from voiceivr.settings.operations import ConsoleSettings, DialplanSettings, MetricsSettings, PluginSettings
from voiceivr.settings.policy import PolicySettings
from voiceivr.settings.redact import mask_secret, redact_urls
from voiceivr.settings.sip import SipSettings
from voiceivr.settings.speech import SpeechSettings, VadSettings
from voiceivr.settings.storage import AuditSettings, DatabaseSettings, LogSettings, PathSettings, RecordingSettings

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_FILE",
    "ENV_PREFIX",
    "AuditSettings",
    "BudgetSettings",
    "CallSettings",
    "ConsoleSettings",
    "DatabaseSettings",
    "DialplanSettings",
    "LogSettings",
    "MetricsSettings",
    "PathSettings",
    "PluginSettings",
    "PolicySettings",
    "RecordingSettings",
    "SettingInfo",
    "Settings",
    "SipSettings",
    "SpeechSettings",
    "VadSettings",
    "env_var",
    "load_settings",
    "mask_secret",
    "redact_urls",
    "setting",
]
