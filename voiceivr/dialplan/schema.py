"""The JSON Schema of a dialplan file (``voiceivr dialplan schema``), for editors and other tools.

The loader checks more than a schema can (references, reachability, read-backs, variables); a test keeps
the two in step by validating the shipped dialplans against this schema.
"""

from __future__ import annotations

from typing import Any

from voiceivr.actions.address import MAX_ADDRESS_CHARS
from voiceivr.dialplan.freetext import DEFAULT_ADDRESS_CHARS, DEFAULT_TEXT_CHARS, MAX_TEXT_CHARS
from voiceivr.dialplan.model import GLOBAL_NAMES
from voiceivr.dialplan.slots import SLOT_TYPES

_NAME = {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}
_TARGET = {"type": "string", "description": "a node name, or $agent, $goodbye, $return (back after login)"}
_DTMF = {"type": "string", "pattern": "^[0-9*#]$", "description": "one keypad key (quote * and #)"}
_PHRASES = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string", "minLength": 1}}]}
_PROMPT_ONE = {
    "oneOf": [
        {"type": "string", "minLength": 1},
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["text"],
            "properties": {
                "text": {"type": "string", "minLength": 1},
                "interruptible": {"type": "boolean"},
                "kind": {"enum": ["prompt", "reprompt", "menu", "readback", "disclosure", "code_request", "info",
                                  "goodbye"]},
            },
        },
    ],
    "description": "text with {variables}; readback, disclosure and code_request are never interruptible",
}
_PROMPT = {"oneOf": [_PROMPT_ONE, {"type": "array", "items": _PROMPT_ONE}]}
_FALLBACK = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "no_input": {"type": "integer", "minimum": 0, "maximum": 10, "description": "reprompts before escalating"},
        "no_match": {"type": "integer", "minimum": 0, "maximum": 10, "description": "reprompts before escalating"},
        "dtmf_menu": {"type": "boolean", "description": "offer the keypad menu before the agent"},
        "then": {"enum": ["agent", "goodbye"]},
        "timeout_s": {"type": "number", "minimum": 1, "maximum": 60},
        "inter_digit_timeout_s": {"type": "number", "minimum": 0.5, "maximum": 30},
    },
}
_RANGE = {"type": "string", "pattern": r"^\s*\d{1,2}:\d{2}\s*-\s*\d{1,2}:\d{2}\s*$",
          "description": "\"09:00-17:00\" (24-hour clock); \"22:00-02:00\" runs overnight"}
_HOURS = {"oneOf": [{"const": "closed"}, {"type": "null"}, _RANGE, {"type": "array", "items": _RANGE}]}
_DAYS = "mon|tue|wed|thu|fri|sat|sun"
_SCHEDULE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["timezone"],
    "properties": {
        "timezone": {"type": "string", "description": "an IANA time zone, e.g. America/New_York"},
        "open": {
            "type": "object",
            "description": "hours per day (mon, or a span such as mon-fri); a day left out is closed",
            "propertyNames": {"pattern": f"^({_DAYS})(-({_DAYS}))?$"},
            "additionalProperties": _HOURS,
        },
        "holidays": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["date", "name"],
                "properties": {
                    "date": {"type": "string", "format": "date"},
                    "name": {"type": "string"},
                    "open": {**_HOURS, "description": "reduced hours on the day; left out: closed all day"},
                    "say": _PROMPT,
                },
            },
        },
        "emergency": {
            "oneOf": [
                {"type": "boolean"},
                {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["active"],
                    "properties": {"active": {"type": "boolean"}, "say": _PROMPT, "goto": _TARGET},
                },
            ],
            "description": "the override switch: publish a version with true to take every emergency branch",
        },
    },
}
_BRANCH = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "open", "closed"],
    "description": "go by the schedule's state at the call's start: emergency, then holiday, closed, open",
    "properties": {
        "name": {"type": "string", "description": "a schedule under schedules:"},
        "open": _TARGET,
        "closed": _TARGET,
        "holiday": {**_TARGET, "description": "default: the closed target"},
        "emergency": {**_TARGET, "description": "default: the schedule's emergency goto, else the closed target"},
    },
}


def dialplan_schema() -> dict[str, Any]:
    intent = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "label": {"type": "string", "description": "for the keypad menu: 'For <label>, press 1'"},
            "description": {"type": "string", "description": "for the tier-3 LLM"},
            "examples": _PHRASES,
            "keywords": _PHRASES,
        },
    }
    option = {
        "oneOf": [
            {"type": "null"},
            _PHRASES,
            {
                "type": "object",
                "additionalProperties": False,
                "properties": {"synonyms": _PHRASES, "say": {"type": "string"}, "dtmf": _DTMF},
            },
        ]
    }
    slot = {
        "type": "object",
        "additionalProperties": False,
        "required": ["type", "ask"],
        "properties": {
            "type": {"enum": list(SLOT_TYPES)},
            "ask": _PROMPT,
            "keyed": _PROMPT,
            "length": {"type": "integer", "minimum": 1, "maximum": 64},
            "min_length": {"type": "integer", "minimum": 1, "maximum": 64},
            "max_length": {"type": "integer", "minimum": 1, "maximum": 64},
            "max_chars": {"type": "integer", "minimum": 1, "maximum": MAX_TEXT_CHARS,
                          "description": f"text and address: the longest answer taken (text {DEFAULT_TEXT_CHARS}, "
                                         f"address {DEFAULT_ADDRESS_CHARS} by default; an address at most "
                                         f"{MAX_ADDRESS_CHARS})"},
            "min": {"type": ["string", "number"], "description": "money: e.g. \"$0.01\""},
            "max": {"type": ["string", "number"], "description": "money: e.g. \"$10,000\""},
            "options": {"type": "object", "additionalProperties": option},
            "cues": _PHRASES,
            "default": {"type": "string"},
            "secret": {"type": "boolean", "description": "a PIN: never spoken, and what the caller gives for it is "
                                                         "kept nowhere (turns, timeline, logs, recordings); required "
                                                         "on every slot that fills a secret action parameter"},
            "prefer": {"enum": ["future", "past"]},
        },
    }
    action = {
        "type": "object",
        "additionalProperties": False,
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "description": "an action from the registry"},
            "risk": {"enum": ["low", "high"], "description": "may raise the registry's risk, never lower it"},
            "params": {"type": "object", "additionalProperties": {"type": ["string", "number"]}},
            "confirm": {
                "type": "object",
                "additionalProperties": False,
                "required": ["readback"],
                "properties": {"readback": _PROMPT, "ask": _PROMPT},
            },
            "save_as": _NAME,
            "success": _PROMPT,
            "failure": _PROMPT,
            "on_success": _TARGET,
            "on_failure": _TARGET,
        },
    }
    node = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "say": _PROMPT,
            "requires": {"enum": ["login"]},
            "collect": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
            "action": action,
            "routes": {
                "type": "object",
                "additionalProperties": {
                    "oneOf": [
                        _TARGET,
                        {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["goto"],
                            "properties": {"goto": _TARGET, "dtmf": _DTMF},
                        },
                    ]
                },
            },
            "goto": _TARGET,
            "end": {"enum": ["hangup", "agent"]},
            "fallback": _FALLBACK,
            "menu": _PROMPT,
            "schedule": _BRANCH,
        },
    }
    from dataclasses import fields

    from voiceivr.dialplan.model import Messages, Routing

    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "voiceivr dialplan",
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "start", "nodes"],
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
            "description": {"type": "string"},
            "start": {"type": "string"},
            "main_menu": {"type": "string"},
            "login": {"type": "string"},
            "vars": {"type": "object", "additionalProperties": {"type": ["string", "number"]}},
            "agent": {"type": "object", "additionalProperties": False, "properties": {"target": {"type": "string"}}},
            "routing": {
                "type": "object",
                "additionalProperties": False,
                "properties": {f.name: {"type": "number", "minimum": 0, "maximum": 1} for f in fields(Routing)},
            },
            "fallback": _FALLBACK,
            "messages": {
                "type": "object",
                "additionalProperties": False,
                "properties": {f.name: {"type": "string"} for f in fields(Messages)},
            },
            "intents": {"type": "object", "additionalProperties": intent},
            "global_intents": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    g: {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"examples": _PHRASES, "keywords": _PHRASES, "dtmf": _DTMF},
                    }
                    for g in GLOBAL_NAMES
                },
            },
            "slots": {"type": "object", "additionalProperties": slot},
            "schedules": {"type": "object", "additionalProperties": _SCHEDULE},
            "nodes": {"type": "object", "minProperties": 1, "additionalProperties": node},
        },
    }
