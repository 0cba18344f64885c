"""voiceivr: a voice agent that answers phone calls, with a fast path and a provable safe path."""

__version__ = "0.1.0"
