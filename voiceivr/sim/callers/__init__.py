"""Callers for simulations and tests: :mod:`.simcaller` (symbolic speech, reads the session's timeline),
:mod:`.scripted` (recorded speech, hears only the agent's audio) and :mod:`.sip` (a real SIP call over pjsua2)."""
