"""The out-of-process recognizer: same results as in-process, errors carried across, a dead worker only
fails its own streams and is restarted."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from tests.support.speech_fixtures import entries, frames, grammar_phrases
from voiceivr.settings import Settings
from voiceivr.speech.registry import build_stt_in_process
from voiceivr.speech.stt.grammar import GrammarError
from voiceivr.speech.stt.pocketsphinx_stt import PocketsphinxEngine
from voiceivr.speech.stt.remote import RemoteSttEngine, SttWorkerError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def remote() -> Iterator[RemoteSttEngine]:
    engine = RemoteSttEngine(Settings(), workers=2, build=build_stt_in_process)
    yield engine
    engine.close()


def test_same_results_as_in_process(remote: RemoteSttEngine) -> None:
    local = PocketsphinxEngine()
    phrases = grammar_phrases()
    assert remote.name == "pocketsphinx" and remote.capabilities.releases_gil and remote.capabilities.grammar
    for e in [x for x in entries("phrase", "tel") if "piper" in x["voice"]][:6]:
        streams = [remote.stream(8000, phrases), local.stream(8000, phrases)]
        for f in frames(e["file"]):
            for s in streams:
                s.feed(f)
        got, want = (s.finish() for s in streams)
        assert got.text == want.text and got.confidence == want.confidence and got.is_final
        assert got.decode_seconds > 0 and streams[0].engine_seconds > 0


def test_interleaved_streams_on_shared_workers(remote: RemoteSttEngine) -> None:
    files = [x for x in entries("phrase", "tel") if x["voice"] == "piper-joe"][:5]
    streams = [remote.stream(8000, grammar_phrases()) for _ in files]
    per_file = [frames(e["file"]) for e in files]
    for i in range(max(len(f) for f in per_file)):
        for s, fr in zip(streams, per_file, strict=True):
            if i < len(fr):
                s.feed(fr[i])
    texts = [s.finish().text for s in streams]
    assert sum(t == e["text"] for t, e in zip(texts, files, strict=True)) >= 4


def test_grammar_errors_cross_the_process_boundary(remote: RemoteSttEngine) -> None:
    with pytest.raises(GrammarError, match="flibbertygib") as err:
        remote.stream(8000, ["flibbertygib"])
    assert err.value.hint and "speech.pocketsphinx_extra_dict" in err.value.hint


def test_a_dead_worker_fails_its_streams_and_is_restarted(remote: RemoteSttEngine) -> None:
    e = next(x for x in entries("phrase", "tel") if x["intent"] == "goodbye" and x["voice"] == "piper-joe")
    doomed = remote.stream(8000, grammar_phrases())
    victim = doomed._worker
    other = next(w for w in remote._workers if w is not victim)
    survivor = remote.stream(8000, grammar_phrases())
    if survivor._worker is victim:  # make sure one stream lives on the other worker
        survivor.cancel()
        survivor = remote.stream(8000, grammar_phrases())
    assert survivor._worker is other
    os.kill(victim.process.pid, signal.SIGKILL)
    victim.process.join(10)
    with pytest.raises(SttWorkerError):
        for f in frames(e["file"]):
            doomed.feed(f)
        doomed.finish()
    for f in frames(e["file"]):
        survivor.feed(f)
    assert survivor.finish().text == "goodbye"
    again = remote.stream(8000, grammar_phrases())  # the dead worker is replaced
    for f in frames(e["file"]):
        again.feed(f)
    assert again.finish().text == "goodbye"


def test_a_worker_that_cannot_start_reports_why() -> None:
    settings = Settings()
    settings.speech.stt_engine = "vosk"  # no speech.vosk_model
    with pytest.raises(Exception, match=r"speech\.vosk_model"):
        RemoteSttEngine(settings, workers=1, build=build_stt_in_process)
