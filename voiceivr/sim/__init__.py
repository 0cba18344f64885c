"""Harnesses (never imported by the product core): the scripted and SIP test callers (:mod:`.callers`), the abuse
simulation (:mod:`.abuse`), the crash tests and their ledger, and the Messages API stand-in (:mod:`.twilio_fake`)."""
