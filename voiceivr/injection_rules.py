"""The injection filter's phrase rules, per category (:mod:`voiceivr.injection` normalises text and
applies them).

Rules aim at commands to the agent ("ignore your instructions", "skip the code"), not at words ("system",
"ignore", "code"). A rule is a regular expression over lower-case text, or a :class:`Seq` of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Every pattern must run in time linear in the text: Python's regex engine backtracks, and a gap such as
# ``.*`` or ``[^.]*`` between two phrases retries the rest of the text from every place the first phrase could
# start (quadratic; three gaps made "lost phone so ..." take seconds on 1.6 kB, with the GIL held, on the
# call's thread). So no pattern has an unbounded gap, a nested unbounded repeat or an unbounded lookaround
# (tests/test_injection.py checks the compiled patterns); "A, later B" is a :class:`Seq` instead, matched
# piece by piece with plain searches that each start where the previous piece ended.


@dataclass(frozen=True)
class Seq:
    """Phrases that must occur in this order: in one sentence (no full stop between them, what ``[^.]*``
    meant), anywhere later in the text (``within="text"``, what ``.*`` meant), or anywhere in any order
    (``within="any order"``). ``unless``: the first phrase does not count when this pattern follows it later
    in the text (what ``(?!.*X)`` meant)."""

    pieces: tuple[str, ...]
    within: Literal["sentence", "text", "any order"] = "sentence"
    unless: str | None = None

    def __init__(self, *pieces: str, within: Literal["sentence", "text", "any order"] = "sentence",
                 unless: str | None = None) -> None:
        object.__setattr__(self, "pieces", pieces)
        object.__setattr__(self, "within", within)
        object.__setattr__(self, "unless", unless)


Rule = str | Seq

_AGENT_OBJ = (
    r"(?:instructions?|instruction set|rules?|prompts?|guidelines?|directives?|directions?|programming|"
    r"policy|policies|safeguards?|restrictions?|limits?|protocols?|training|constraints|orders|guidance|"
    r"configuration|setup|set up|procedures?)"
)
_CHECK = (
    r"(?:verification|verify(?:ing)?|confirmation|confirm(?:ing)?|(?:security |confirmation |verification |"
    r"one[- ]time |text |sms )?(?:code|passcode|otp)s?|one[- ]time pass(?:code|word)|read[- ]?back|"
    r"authentication|two[- ]factor|2fa|security(?: checks?| questions?)?|fraud (?:checks?|flags?)|"
    r"safe path|checks?|text message|formalities|security steps?|steps? (?:one|two|three|four|five|[1-5])|"
    r"(?:verification|security|confirmation) (?:number|digits|step)s?)"
)
_MONEY = r"(?:transfer|send|move|wire|release|approve|process|pay|execute)"

RULES: dict[str, list[tuple[str, Rule]]] = {
    "direct_override": [
        ("ignore-instructions",
         rf"\b(?:ignore|disregard|forget|override|bypass|drop|cancel|reset|abandon|stop following|"
         rf"don'?t follow|do not follow|set aside|put aside|discard|scrap|ditch|throw out|disobey|pay no attention to|"
         rf"take no notice of)\b(?!\s+my\b)(?:\s+\w+){{0,4}}?\s+{_AGENT_OBJ}\b"),
        ("dismiss-what-you-were-told",
         r"\b(?:ignore|forget|discard|drop|disregard|set aside|put aside|scrap|never mind|pay no attention to|"
         r"take no notice of|override)\b(?:\s+\w+){0,2}?\s+(?:whatever|what|everything|anything|all)\s+"
         r"(?:you(?:'ve| have)? been|you were|you're|your)\b"),
        # The object of an override is recognisable when its verb is garbled ("egg nor your previous ..."):
        # callers do not speak of the agent's previous instructions, or of all of them.
        ("your-previous-instructions",
         rf"\b(?:your|all|all your|all the)\s+(?:previous|prior|earlier|original|initial|preceding)\s+{_AGENT_OBJ}\b"),
        ("whatever-setup-says",
         rf"\bwhatever (?:your|the) (?:{_AGENT_OBJ}|system) (?:says?|tells? you|wants)\b"),
        ("instructions-obsolete",
         rf"\b(?:your|the) (?:previous |earlier |prior |old |original |initial |current |usual )?{_AGENT_OBJ} "
         r"(?:(?:is|are) (?:out of date|outdated|obsolete|void|cancell?ed|invalid|no longer valid|superseded|"
         r"revoked|withdrawn|expired)|(?:don'?t|do not|no longer) (?:apply|count|matter))\b"),
        ("ignore-above", r"\b(?:ignore|disregard)\s+(?:all\s+|everything\s+)?(?:the\s+)?above\b"),
        ("forget-everything", r"\bforget (?:everything|all)(?: you (?:were|have been) told| above| before)\b"),
        ("new-instructions", rf"\b(?:new|updated|real|your new)\s+(?:{_AGENT_OBJ}|rule|task)\s*(?::|is|are)"),
        ("from-now-on", r"\bfrom (?:now|here|this point|this moment) on(?:ward)?,? you\b"),
        ("skip-check",
         rf"\b(?:skip|bypass|disable|turn off|switch off|waive|remove|circumvent|avoid|suspend|leave out|do without|"
         rf"never mind|forget about|forget|dispense with|ditch|drop|omit|set aside|get rid of|no need for|"
         rf"no more)\b(?:\s+\w+){{0,3}}?\s+{_CHECK}"),
        ("stop-asking",
         rf"\b(?:stop|quit|cease|enough)\s+(?:asking|requiring|requesting|bothering|texting|sending|checking)\b"
         rf"(?:\s+\w+){{0,3}}?\s+(?:for\s+|with\s+)?(?:a |the |any |me )?{_CHECK}"),
        ("dont-bother", r"\bdon'?t bother (?:texting|sending|asking|checking|verifying|confirming|with)\b"),
        ("check-not-needed",
         rf"\b(?:no|any) {_CHECK} (?:(?:is|was|are|were) )?(?:needed|required|necessary)\b|"
         rf"\b{_CHECK} (?:(?:is|are) )?(?:not necessary|unnecessary|not needed|optional|waived|can be (?:skipped|"
         rf"ignored|waived|left out|bypassed))\b|"
         rf"\b{_CHECK} (?:don'?t|do not|doesn'?t|does not|no longer|won'?t) (?:apply|matter|count)\b"),
        ("no-check-needed",
         rf"\b(?:don'?t|do not|you (?:will|should|must) never|no need to|not)\s+"
         rf"(?:ask|require|need|request|read|send|use)\w*"
         rf"(?:\s+\w+){{0,3}}?\s+(?:for\s+)?(?:any\s+|a\s+|the\s+)?{_CHECK}"),
        ("no-readback", r"\b(?:don'?t|do not|no need to)\s+(?:read|repeat|say)\s+(?:back\s+)?(?:the\s+)?"
                        r"(?:amount|details|transfer|payee)\b"),
        ("approve-everything", r"\bapprove (?:everything|all\b|any (?:transfer|payment|request|new)|every)"),
        ("without-check", rf"\bwithout (?:any |a |the |asking for (?:a |the )?)?{_CHECK}"),
        ("must-not-ask", r"\bmust not (?:ask|require|request)\b"),
        ("mark-confirmed", r"\b(?:mark|treat|consider|set)\s+(?:this|it|me|the \w+)(?:\s+\w+)?\s+as\s+"
                           r"(?:already\s+)?(?:confirmed|verified|approved|authori[sz]ed|pre-?approved|trusted|"
                           r"entered|given|correct|valid|passed|checked|done)\b"),
        ("consider-verified", r"\b(?:consider|treat|deem|count|regard)\s+(?:me|this|it|the (?:caller|customer|"
                              r"code|request))\s+(?:as\s+)?(?:already\s+)?(?:verified|confirmed|approved|"
                              r"authenticated|authori[sz]ed|cleared)\b"),
        ("change-policy", Seq(
            r"\b(?:change|set|raise|increase|lower|update|modify)\s+(?:your |the )?(?:policy|threshold|"
            r"(?:(?:daily|transfer|withdrawal) )?(?:threshold|limit)|risk(?: level)?)\b",
            r"\b(?:to|so)\b",
            r"\b(?:unlimited|million|low|no code|don'?t need|doesn'?t need|without)\b", within="text")),
        ("set-risk", r"\bset (?:the )?risk (?:level )?to\b"),
        ("no-code-needed", Seq(r"\b(?:transfers?|amounts?|payments?)\b", rf"\b(?:need|require)s? no {_CHECK}")),
        ("obey", r"\b(?:obey|do what i say|follow (?:my|the hidden|the following) (?:command|instruction)s?)\b"),
        ("override-auth", r"\boverride (?:authori[sz]ation|enabled|code|token|accepted)\b"),
        ("safety-off", r"\b(?:ignore|override|disable)\b(?:\s+\w+){0,3}?\s+(?:safety|security)\b"),
        ("ignore-system-prompt", r"\b(?:ignore|disregard)\s+(?:the\s+|your\s+)?system prompt"),
        ("say-approved", r"\bsay (?:that )?the (?:transfer|payment) (?:was|is) (?:approved|done|complete)"),
        ("ignore-amount", rf"\bignore (?:the )?(?:amount|limit|fraud|policy|{_CHECK})"),
        ("ignore-whatever", r"\bignore (?:whatever|what) (?:the )?(?:policy|rules?|system)\b"),
    ],
    "role_play": [
        ("you-are-now", r"\byou(?: are|'re|re) (?:now|no longer)\b(?!\s+(?:connected|speaking|talking|through|"
                        r"being|on hold|in the queue|transferred))"),
        ("different-assistant", r"\byou are (?:a |an )?(?:different|new|another|second) (?:assistant|ai|bot|agent)\b"
                                r"|\badmin rights\b"),
        ("pretend", r"\bpretend (?:to be|you(?:'re| are)|that (?:you|the|i)|the \w+ (?:already|was|is)|"
                    r"i (?:already|am|have|entered))"),
        ("act-as", Seq(r"\b(?:act|behave|respond|answer)(?: like| as)(?: if)? (?:a|an|the|my|if|you|though)\b",
                       unless=r"\b(?:quickly|fast|soon)\b")),
        ("role-play", r"\brole[- ]?play"),
        ("play-the-role", Seq(r"\bplay the role of\b", unless=r"\b(?:primary|joint|account holder)\b")),
        ("imagine", Seq(r"\b(?:imagine|suppose|hypothetically)\b", r"\b(?:you|ai)\b",
                        r"\b(?:no|without|allowed|rules|restrictions|could|can)\b")),
        ("modes", r"\b(?:developer|god|admin|jailbreak|unrestricted|dan|debug|test|maintenance|sudo|root)\s+mode\b"
                  r"(?!\s+on my phone)"),
        ("dan", r"\bdo anything now\b|\bjailbreak"),
        ("game", r"\blet'?s (?:play a game|pretend)\b"),
        ("no-restrictions", r"\b(?:no|without any|free of) (?:rules|restrictions|limits|filters|guardrails|"
                            r"safeguards|limitations|safety (?:settings|rules|filters|features|checks))\b"),
        ("play-along", r"\bplay along\b[:,]?\s+you(?:'re| are)\b"),
        ("persona", r"\b(?:assume|adopt|take on) the (?:persona|role|identity)\b"),
        ("stay-in-character", r"\bstay in character\b"),
        ("simulate", r"\bsimulate (?:a version of )?(?:yourself|being|an? \w+ that)\b"),
        ("story-then-do", Seq(r"\b(?:story|poem|script) in which\b", r"\b(?:then|now) do it\b", within="text")),
        ("evil-twin", r"\b(?:evil|unfiltered|uncensored) (?:twin|version|assistant|bot|ai)\b"),
        ("accomplice", r"\bbe my (?:accomplice|partner in crime)\b"),
        ("always-yes", r"\balways (?:says? yes|approves?|agrees?)\b"),
        ("you-are-my", r"\byou are (?:my|a|an) (?:lawyer|manager|supervisor|boss|helpful assistant that)\b|"
                       r"\byou(?:'re| are) (?:now )?the (?:bank |branch )?(?:manager|supervisor|boss|director|owner|"
                       r"administrator|admin)\b"),
    ],
    "fake_system": [
        ("role-tag", r"(?:^|[\s\[\(<{\"'.,;:])(?:system|admin|operator|assistant|developer|supervisor|root|override|"
                     r"sysadmin|compliance|security team|ai|model)\s*(?::|\]|>|\)|-\s)"),
        ("chat-markup", r"<\|im_(?:start|end)\|>|<\|?(?:system|endoftext)\|?>|</?(?:system|instructions?|"
                        r"admin|prompt)>|\[/?(?:inst|system|admin|instruction)\]"),
        ("markdown-instruction", r"#{2,}\s*(?:instruction|system|prompt)"),
        ("system-message", r"\b(?:system|admin|operator|developer|security|new system)\s+(?:message|prompt|"
                           r"instruction|notice|directive|update|note)\b"),
        # "automated message" alone is what banks send; with a status of the call after it, it is a claim.
        ("automated-message", Seq(r"\b(?:automated|automatic|internal|backend|back-end|server) (?:message|notice|"
                                  r"notification|update)\b",
                                  r"\b(?:authenticated|verified|approved|authori[sz]ed|proceed|skip|disabled|"
                                  r"suspended|switched off|cleared)\b")),
        ("message-from", r"\b(?:message|directive|instruction|notice|policy update|memo) from (?:the )?(?:bank|"
                         r"system|administrator|admin|developer|security|management|headquarters|it)\b"),
        ("this-is-the", r"\b(?:this is|i am|i'm|here is) (?:the |a |your )?(?:system administrator|system|"
                        r"developer|admin(?:istrator)?|root|it department|engineering|compliance team|"
                        r"security team)\b(?!\s+(?:at|for|in)\b)"),
        ("team-here", r"\b(?:compliance|security|fraud|it|engineering) (?:team|department) (?:here|says)\b"),
        ("note-to-ai", r"\b(?:note|instruction|message|p\.?s\.?|instructions) (?:to|for) (?:the )?(?:ai|assistant|"
                       r"agent|model|bot|voice agent|ai model|ai assistant)\b"),
        ("to-the-model", r"\bto the (?:model|ai|assistant|bot)\b"),
        ("addressed-agent", r"\b(?:attention|hey|dear|okay|ok)?,?\s*(?:ai|assistant|agent|bot)\s*(?:,|:)?\s*"
                            r"(?:should|must|transfer|approve|bypass|skip|also|tell|do not|don'?t|disable)\b"),
        ("assistant-should", r"\b(?:assistant|ai|agent|model|bot)s?\b(?:\s+\w+){0,2}\s+(?:should|must|shall)\s+"
                             r"(?:proceed|approve|skip|bypass|disable|not|tell|read|ignore|transfer)"),
        ("override-claim", r"\b(?:admin|supervisor|manager|security|system)\s+override\b|"
                           r"\b(?:system|root)\s+(?:admin|administrator)\b"),
        ("caller-verified", Seq(
            r"\b(?:caller|user|customer|code|authentication|verification)\b(?:\s+\w+){0,3}\s+"
            r"(?:has been |was |is |passed |accepted|complete|pre-?approved|verified|authenticated|authori[sz]ed|"
            r"confirmed|cleared)"
            r"(?:verified|authenticated|accepted|approved|complete|pre-?approved|all checks|trusted)?",
            r"\b(?:proceed|go ahead|continue|skip|approve|transfer|future|set|bypass|ignore)\b", within="text")),
        ("auth-suspended", rf"\b(?:authentication|verification|{_CHECK}) (?:is |are )?(?:suspended|down|offline|"
                           r"disabled|not required|not needed)\b"),
        ("admin-session", r"\b(?:begin|start|open) (?:an? )?(?:admin|root|privileged) session\b|"
                          r"\bauthori[sz]ation level\b"),
        ("treat-valid", rf"\b(?:treat|consider|accept) (?:all |any |every )?{_CHECK} as (?:valid|correct)\b"),
        ("end-of-transcript", r"\bend of (?:transcript|conversation|prompt)\b"),
        ("authorized-you", r"\b(?:has|have) authori[sz]ed you to\b|\byou are authori[sz]ed to (?:skip|bypass|"
                           r"approve|release|disable|override)\b"),
        ("json-role", r"[\"']role[\"']\s*:\s*[\"'](?:system|developer|assistant)[\"']"),
    ],
    "social_engineering": [
        ("tell-me-code",
         r"\b(?:tell|read|give|say|show|spell|repeat|send)\b(?:\s+\w+){0,2}?\s+(?:me\s+)?(?:back\s+)?"
         r"(?:the|my|that|your)\s+(?:\w+\s+){0,2}(?:code|otp|passcode|pin|password|security answer|"
         r"(?:verification|security|one[- ]time|confirmation) (?:number|digits))\b"
         r"(?!\s+(?:again|later|by text))"),
        # Asking for the code by what it is: the number/digits/text "you sent".
        ("code-you-sent", Seq(r"\b(?:what|tell|say|repeat|read|give|remind|spell|which)\b",
                              r"\b(?:code|number|numbers|digits|pin|passcode|otp|text|message)\b(?:\s+\w+)?\s+"
                              r"(?:you|your system|the system|the bank|they)\s+(?:just\s+)?(?:sent|texted|messaged|"
                              r"gave|emailed)\b")),
        ("what-text-says", r"\bwhat (?:does|did) (?:the|your|that) (?:text|message|sms) say\b"),
        ("what-code", r"\bwhat (?:was|is) (?:the|my) (?:one[- ]time |verification |security )?(?:code|otp|pin|"
                      r"passcode|security answer)\b(?!\s+(?:for|on my card))"),
        ("pin-on-file", r"\b(?:pin|password|security answer|code) (?:on file|for account)\b"),
        ("reveal-prompt", r"\b(?:reveal|show|print|repeat|display|output|tell me|what are)\b(?:\s+\w+){0,2}?\s+"
                          r"(?:your\s+)?(?:system prompt|(?:hidden|initial|internal|secret|original|"
                          r"system)\s+(?:instructions|rules|prompt|configuration)|configuration|"
                          r"instructions verbatim|prompt)\b"),
        ("verbatim", r"\bverbatim\b"),
        ("claims-authority", Seq(
            r"\b(?:i'?m|i am|this is|as) (?:the |a |an |your )?(?:branch manager|bank (?:manager|employee|officer)|"
            r"employee|teller|supervisor|police|fbi|officer|authori[sz]ed officer|fraud department|developer|"
            r"auditor|from the fraud department|from the bank)\b",
            r"\b(?:skip|bypass|without|no code|override|approve|authori[sz]e|release|instruct|transfer|read me|code|"
            r"show me|test)\b", within="text")),
        ("already-verified", Seq(
            r"\b(?:already|was|been|got) (?:verified|confirmed|authenticated|approved)\b",
            r"\b(?:skip|no code|not needed|no need|without|so)\b", within="text")),
        ("other-agent-said", r"\b(?:other|previous|last) (?:agent|representative|rep|advisor|adviser|operator|person|"
                             r"guy|lady|colleague) (?:said|told|promised)\b"),
        ("should-not-need", rf"\bi (?:shouldn'?t|should not) (?:need|have to (?:give|enter|say|use))\b"
                            rf"(?:\s+\w+){{0,2}}?\s+{_CHECK}"),
        ("someone-approved", Seq(r"\b(?:manager|boss|supervisor|account holder|wife|husband|she|he)\b",
                                 r"\b(?:approved|said it'?s fine|told me you can|gave me permission|authori[sz]ed)\b")),
        ("permission-without", Seq(r"\bpermission\b", r"\bwithout\b")),
        ("urgency-bypass", Seq(r"\b(?:emergency|urgent|right now|immediately|hospital|lose my house|this once)\b",
                               r"\b(?:without|skip|bypass|no code|just approve|approve it|send it)\b",
                               within="any order")),
        ("pressure", r"\byou (?:must|have to|need to) (?:transfer|send|approve|release|process)\b"
                     r"|\byou'?ll be responsible\b|\byou(?:'ll| will) be (?:fired|sued|liable)\b"),
        ("flattery", Seq(r"\b(?:good|smart|helpful) (?:bots?|assistants?|ai)\b", r"\b(?:would|always)\b")),
        ("five-star", Seq(r"\b(?:five|5)[- ]star\b", r"\bif you\b")),
        ("secrecy", r"\bdon'?t tell (?:anyone|anybody|the bank)\b"),
        ("law-requires", r"\blaw requires you\b|\blegally (?:required|obliged) to (?:skip|process|transfer)\b"),
        ("audit-pressure", r"\b(?:being audited|to pass the audit|compliance test)\b"),
        ("trust-me-skip", Seq(r"\btrust me\b", rf"\b(?:no need|skip|without|{_CHECK} (?:is not|isn'?t))")),
        ("redirect-code", r"\bsend (?:the |my )?code to (?:my |this |a )?(?:new|other|different)\b"),
        ("new-number-then-send", Seq(r"\b(?:change|update) the (?:phone|number) on file\b",
                                     r"\b(?:then|and) send\b")),
        ("instead-of-file", r"\binstead of the (?:one|number) on file\b"),
        ("instructing-you", r"\bi(?:'m| am) instructing you\b|\bi order you\b|\bi command you\b"),
        ("lost-phone-skip", Seq(r"\b(?:lost|dead|broken)\b", r"\bphone\b", r"\b(?:so|just)\b",
                                r"\b(?:skip|approve|bypass|without)\b")),
        ("show-config", r"\bshow me your (?:configuration|settings|rules|prompt|code)\b"),
        ("rules-about-skipping", r"\b(?:rules|policy) about (?:skipping|bypassing)\b"),
        ("accomplice-move", r"\bhelp me move money out\b"),
    ],
    "hidden_payload": [
        ("sql", r"'\)?\s*;\s*(?:drop|delete|update|insert|select)\b|--\s*$|\bunion\s+select\b|\bor\s+1\s*=\s*1\b"),
        ("template", Seq(r"\{\{", r"\}\}", within="text")),
        ("template-dollar", Seq(r"\$\{", r"\}", within="text")),
        ("template-wiki", Seq(r"\[\[", r"\]\]", within="text")),
        ("template-erb", Seq(r"<%", r"%>", within="text")),
        ("script", r"<\s*script\b|javascript:|onerror\s*="),
        ("jndi", r"\$\{jndi:"),
    ],
}

# Other languages: callers switch language to slip past English rules (and a multilingual recogniser writes
# what they say). The same commands in Spanish, French, German, Italian, Portuguese and Dutch, from word lists
# per concept. Only commands: "I didn't get the code" (no me llegó el código, ich habe keinen Code bekommen)
# is not one, so "no/kein/geen" alone are not in the "without" list, nor is a postal code a code.
_L_IGNORE = r"(?:ignora|ignore|ignorez|ignorer|ignorar|ignoriere|ignorieren|ignoriert|ignori|negeer|negeren)"
_L_FORGET = (r"(?:olvida|olvide|olvidad|olvidar|oublie|oubliez|oublier|vergiss|vergessen|vergesst|dimentica|"
             r"dimenticate|dimenticare|esqueça|esquece|esquecer|vergeet|vergeten)")
_L_SKIP = (r"(?:sáltate|sáltese|salta|saltar|omite|omita|omitir|evita|saute|sautez|sauter|ignorez|ignore|"
           r"überspringe|überspringen|überspring|saltate|saltare|pula|pule|pular|sla over|overslaan)")
_L_WITHOUT = (r"(?:sin|no necesitas|no necesita|no hace falta|sans|pas besoin d[e']|ohne|senza|non serve|"
              r"non servono|sem|não precisa(?: de)?|zonder)")
_L_RULES = (r"(?:instrucciones|instrucción|reglas|normas|indicaciones|órdenes|consignes|règles|directives|"
            r"instructions|anweisungen|regeln|vorgaben|anordnungen|befehle|istruzioni|regole|indicazioni|direttive|"
            r"instruções|regras|orientações|diretrizes|instructies|regels|richtlijnen|programación|programmation|"
            r"programmierung|programmazione|programação)")
_L_CHECK = (r"(?:c[óo]digo(?! postal)|verificaci[óo]n|confirmaci[óo]n|autenticaci[óo]n|contraseña|clave|"
            r"code(?! postal)|vérification|confirmation|authentification|mot de passe|bestätigung\w*|"
            r"verifizierung|überprüfung|sicherheitscode|passwort|codice(?! (?:postale|fiscale|di avviamento))|"
            r"verifica|conferma|autenticazione|verificação|confirmação|senha|verificatie|bevestiging|wachtwoord|"
            r"otp)")
_L_NOW_YOU_ARE = (r"(?:ahora eres|ya eres|ahora es usted|tu es maintenant|vous êtes maintenant|désormais tu es|"
                  r"désormais vous êtes|du bist jetzt|du bist nun|sie sind jetzt|ab jetzt bist du|ora sei|adesso sei|"
                  r"da ora sei|agora você é|agora és|agora tu és|je bent nu|u bent nu|vanaf nu ben je)")
_L_TELL = (r"(?:dime|dígame|digame|léeme|leeme|repíteme|dis-moi|dis moi|dites-moi|dites moi|lis-moi|répète|"
           r"sag mir|sagen sie mir|lies mir|nenn mir|dimmi|mi dica|leggimi|ripetimi|diga-me|me diga|diz-me|me diz|"
           r"leia|repita|vertel me|zeg me)")
_L_SYSTEM = (r"(?:mensaje del sistema|aviso del sistema|message du système|message système|avis du système|"
             r"systemnachricht|systemmeldung|systemhinweis|messaggio di sistema|avviso di sistema|"
             r"mensagem do sistema|aviso do sistema|systeembericht|systeemmelding)")

RULES["direct_override"] += [
    ("other-language-override", Seq(rf"\b(?:{_L_IGNORE}|{_L_FORGET})\b", rf"\b{_L_RULES}\b")),
    ("other-language-skip-check", Seq(rf"\b(?:{_L_SKIP}|{_L_WITHOUT})\b", rf"\b{_L_CHECK}")),
]
RULES["role_play"].append(("other-language-you-are-now", rf"\b{_L_NOW_YOU_ARE}\b"))
RULES["fake_system"].append(("other-language-system-message", rf"\b{_L_SYSTEM}\b"))
RULES["social_engineering"].append(("other-language-tell-code", Seq(rf"\b{_L_TELL}\b", rf"\b{_L_CHECK}")))
