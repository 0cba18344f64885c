"""Policy settings: the fast/safe decision, confirmation, one-time codes, lockouts and the action runner."""

from __future__ import annotations

from dataclasses import dataclass

from voiceivr.settings.fields import setting


@dataclass
class PolicySettings:
    """The safe path: which actions need it, and how confirmations and codes behave (voiceivr.policy)."""

    high_actions: list[str] = setting(
        ["transfer", "transfer_funds", "pay_payee", "add_payee", "change_address", "change_phone", "block_card",
         "report_card"],
        "Actions that always take the safe path, whatever the dialplan says (the dialplan can only raise a "
        "risk, never lower one).",
    )
    amount_params: list[str] = setting(
        ["amount", "amount_cents"],
        "Parameters that hold money, in integer cents (they feed the amount threshold and the SMS wording).",
    )
    # Above $10,000 the threshold would let a dialplan's "low" send real money on the fast path.
    high_amount_cents: int = setting(
        1, "An action moving at least this many cents takes the safe path even if marked low (1 = any money).",
        min=1, max=1_000_000,
    )
    destination_params: list[str] = setting(
        ["payee", "to", "to_account", "destination", "address", "phone", "card_last4"],
        "Parameters naming where money or an identity change goes; an out-of-band code is bound to them.",
    )
    # A yes heard with less than even confidence must never confirm a money move.
    confirm_min_confidence: float = setting(
        0.6, "A spoken yes recognised with less confidence than this does not confirm anything.",
        min=0.5, max=1.0,
    )
    # NIST SP 800-63B (5.1.3.2) asks 20 bits of entropy of an out-of-band code: 6 digits. Past 10 callers mis-key.
    code_digits: int = setting(6, "Digits in an SMS code.", min=6, max=10)
    # Long enough for an SMS to arrive and be keyed; NIST SP 800-63B lets an out-of-band secret live 10 minutes.
    code_ttl_s: int = setting(
        300, "An out-of-band code expires this many seconds after it was issued.", min=30, max=600
    )
    # Each attempt is a 1-in-10^digits guess: 10 keeps a 6-digit code at 1 in 100,000 per confirmation.
    code_max_attempts: int = setting(
        5,
        "Wrong codes allowed per request, and per principal within policy.code_window_s whatever the call, "
        "re-INVITE or request; the one that uses the last refuses the request and flags the account.",
        min=1, max=10,
    )
    # Failures are kept a day (code_failures), so a window longer than that would count nothing more.
    code_window_s: int = setting(
        3600, "The window (seconds) in which one principal's wrong codes count against policy.code_max_attempts.",
        min=60, max=86400,
    )
    code_daily_max: int = setting(
        15, "Wrong codes one principal may key in any 24 hours, across all calls (then the account is flagged).",
        min=1, max=1000,
    )
    # Each step either side accepts two more codes; RFC 6238 (5.2) advises at most one step of network delay.
    totp_valid_window: int = setting(
        1, "TOTP steps (30 s each) accepted either side of now (RFC 6238 drift).", min=0, max=2
    )
    login_max_failures: int = setting(
        5, "Wrong PINs (or other secrets) for one account, across calls, before it is locked for a while.",
        min=1, max=100,
    )
    # A week at most: a lockout is a pause, never a way to keep the owner out.
    login_lockout_s: list[int] = setting(
        [60, 300, 900, 3600],
        "How long each lockout in a row lasts, in seconds: the first, the second, ...; the last repeats. A "
        "lockout is never for good: anyone who knows an account number could otherwise lock its owner out.",
        min=1, max=604800,
    )
    login_lockout_forget_s: int = setting(
        86400, "After this long with no wrong PIN and no lockout, an account's count and back-off start over.",
        min=60, max=2592000,
    )
    lockout_notice_interval_s: int = setting(
        3600,
        "A lockout sends a text to the phone on file, but at most one per account in this many seconds (so an "
        "attacker cannot use lockouts to spam the owner).",
        min=0, max=604800,
    )
    secret: str = setting(
        "",
        "Server secret for the HMACs binding codes to actions (at least 32 characters). Empty: generated once "
        "into <var_dir>/policy-secret (mode 0600) and reused; set it explicitly when several nodes share a "
        "database.",
        secret=True,
    )
    twilio_account_sid: str = setting("", "Twilio account SID for SMS codes (empty: SMS is not offered).")
    twilio_auth_token: str = setting("", "Twilio auth token.", secret=True)
    twilio_base_url: str = setting(
        "",
        "Base URL of the Messages API. Empty: Twilio's own (https://api.twilio.com). The offline demo points "
        "it at the local fake, e.g. http://127.0.0.1:8089.",
    )
    sms_from: str = setting("", "The sender number (E.164) SMS codes come from.")
    sms_timeout_s: float = setting(5.0, "HTTP timeout of one send to the Messages API.", min=0.5, max=60)
    sms_max_attempts: int = setting(5, "Sends of one SMS before it is given up (retries back off).", min=1, max=10)
    sms_backoff_s: float = setting(0.5, "First retry delay; doubles each attempt, capped at 30 s.", min=0, max=30)
    runner_lease_s: int = setting(
        120,
        "An action claimed by a node that has not finished it after this long is resolved by another node's "
        "recovery (a restarted node resolves its own at once).",
        min=10, max=3600,
    )
    runner_node: str = setting("", "This node's name in action_runs (empty: the host name).")
