"""``python -m voiceivr``: the same command as ``voiceivr`` (serve starts its workers this way)."""

from voiceivr.cli import main

main()
