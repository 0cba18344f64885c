"""Any recognizer, run in a small pool of worker processes: the same :class:`SttEngine` interface.

Why: pocketsphinx holds the GIL while it decodes (2-3 ms per 20 ms frame, tens of ms at the end of a turn),
so in a process that also carries pjsua2 media every call's audio would stall behind it. Here the decoding
runs in other processes; the calling thread only pickles a frame onto a pipe, which releases the GIL.

- Workers are started with the ``spawn`` method (a fresh interpreter: nothing of the parent's threads or
  SIP library state is inherited) and each builds the engine named by the settings.
- Many streams share one worker: messages carry a stream id; a reader thread per worker hands replies to
  the stream they belong to. ``feed`` never waits for the worker (it returns the newest partial that has
  arrived); ``finish`` waits for the final result; ``stream`` waits for the worker to accept the grammar,
  so a bad grammar is the same GrammarError as in-process.
- A new stream goes to the worker with the fewest open streams. If a worker dies, its open streams fail
  with :class:`SttWorkerError` and the next stream restarts it; other workers' calls are untouched.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from voiceivr.audio.frames import Frame
from voiceivr.errors import VoiceivrError
from voiceivr.settings import Settings
from voiceivr.speech.base import SttCapabilities, SttEngine, SttResult, SttStream

log = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0
FINISH_TIMEOUT_S = 30.0


class SttWorkerError(VoiceivrError):
    """A recognizer worker process failed or could not start."""


def _error_message(exc: BaseException) -> tuple[str, str, str, str | None]:
    return ("error", type(exc).__name__, str(exc), getattr(exc, "hint", None))


def _rebuild_error(kind: str, message: str, hint: str | None) -> VoiceivrError:
    from voiceivr.speech.stt.grammar import GrammarError
    from voiceivr.speech.stt.pocketsphinx_stt import SttModelError

    cls: type[VoiceivrError] = {"GrammarError": GrammarError, "SttModelError": SttModelError}.get(
        kind, SttWorkerError
    )
    return cls(message, hint=hint)


def _worker_main(conn: Connection, settings: Settings, build: Callable[[Settings], SttEngine]) -> None:
    """The worker process: build the engine, then serve open/feed/finish/cancel messages until told to stop."""
    try:
        engine = build(settings)
    except BaseException as exc:
        conn.send(("fatal", *_error_message(exc)[1:]))
        return
    conn.send(("ready", engine.name, engine.capabilities))
    engine.warm()  # this process serves calls: what the engine loads lazily, load now, off the callers' turns
    streams: dict[int, SttStream] = {}
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        op, sid = msg[0], msg[1]
        try:
            if op == "feed":
                stream = streams.get(sid)
                if stream is None:
                    continue  # already failed; the client was told
                partial = stream.feed(Frame(np.frombuffer(msg[2], dtype="<i2").astype(np.int16), msg[3], msg[4]))
                if partial is not None:
                    conn.send(("partial", sid, partial))
            elif op == "open":
                streams[sid] = engine.stream(msg[2], msg[3], repeat=msg[4], sequence=msg[5], builtin=msg[6],
                                             open_transcript=msg[7], noisy_check=msg[8])
                conn.send(("opened", sid))
            elif op == "finish":
                stream = streams.pop(sid, None)
                if stream is not None:
                    result = stream.finish()
                    conn.send(("final", sid, result, stream.engine_seconds))
            elif op == "cancel":
                stream = streams.pop(sid, None)
                if stream is not None:
                    stream.cancel()
        except Exception as exc:  # one stream's failure is reported to that stream only
            streams.pop(sid, None)
            conn.send((_error_message(exc)[0], sid, *_error_message(exc)[1:]))


class _Worker:
    def __init__(self, engine: RemoteSttEngine, index: int) -> None:
        self.engine = engine
        self.index = index
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=_worker_main, args=(child, engine.settings, engine.build), name=f"voiceivr-stt-{index}", daemon=True
        )
        self.process.start()
        child.close()
        self.send_lock = threading.Lock()
        self.inboxes: dict[int, queue.Queue[tuple[Any, ...]]] = {}
        self.inbox_lock = threading.Lock()
        self.alive = True
        self.ready = threading.Event()
        self.hello: tuple[Any, ...] | None = None
        self.reader = threading.Thread(target=self._read, name=f"voiceivr-stt-reader-{index}", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                break
            if msg[0] in ("ready", "fatal"):
                self.hello = msg
                self.ready.set()
                if msg[0] == "fatal":
                    break
                continue
            with self.inbox_lock:
                inbox = self.inboxes.get(msg[1])
            if inbox is not None:
                inbox.put(msg)
        self.alive = False
        self.ready.set()
        with self.inbox_lock:
            inboxes = list(self.inboxes.values())
        for inbox in inboxes:
            inbox.put(("error", -1, "SttWorkerError", f"recognizer worker {self.index} exited", None))

    def send(self, msg: tuple[Any, ...]) -> None:
        if not self.alive:
            raise SttWorkerError(f"recognizer worker {self.index} is not running")
        try:
            with self.send_lock:
                self.conn.send(msg)
        except (OSError, ValueError) as exc:
            self.alive = False
            raise SttWorkerError(f"recognizer worker {self.index} cannot be reached: {exc}") from None

    def register(self, sid: int) -> queue.Queue[tuple[Any, ...]]:
        inbox: queue.Queue[tuple[Any, ...]] = queue.Queue()
        with self.inbox_lock:
            self.inboxes[sid] = inbox
        return inbox

    def unregister(self, sid: int) -> None:
        with self.inbox_lock:
            self.inboxes.pop(sid, None)

    @property
    def load(self) -> int:
        with self.inbox_lock:
            return len(self.inboxes)

    def stop(self) -> None:
        try:
            with self.send_lock:
                self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self.conn.close()


class RemoteStream(SttStream):
    def __init__(self, worker: _Worker, sid: int, inbox: queue.Queue[tuple[Any, ...]], rate: int) -> None:
        self._worker = worker
        self._sid = sid
        self._inbox = inbox
        self._rate = rate
        self._done = False
        self._failed: VoiceivrError | None = None
        self.engine_seconds = 0.0

    def _drain(self) -> SttResult | None:
        newest = None
        while True:
            try:
                msg = self._inbox.get_nowait()
            except queue.Empty:
                return newest
            if msg[0] == "partial":
                newest = msg[2]
            elif msg[0] == "error":
                self._failed = _rebuild_error(msg[2], msg[3], msg[4])

    def feed(self, frame: Frame) -> SttResult | None:
        if self._done:
            raise RuntimeError("feed() after finish() or cancel(): start a new stream for the next turn")
        if frame.rate != self._rate:
            raise ValueError(f"STT stream is at {self._rate} Hz, frame is at {frame.rate} Hz")
        partial = self._drain()
        if self._failed is not None:
            self._close()
            raise self._failed
        self._worker.send(("feed", self._sid, frame.to_bytes(), frame.rate, frame.t))
        return partial

    def finish(self) -> SttResult:
        if self._done:
            raise RuntimeError("finish() called twice")
        t0 = time.perf_counter()
        try:
            self._drain()
            if self._failed is not None:
                raise self._failed
            self._worker.send(("finish", self._sid))
            deadline = time.monotonic() + FINISH_TIMEOUT_S
            while True:
                try:
                    msg = self._inbox.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    raise SttWorkerError(
                        f"recognizer worker {self._worker.index} gave no result within {FINISH_TIMEOUT_S:.0f} s"
                    ) from None
                if msg[0] == "final":
                    self.engine_seconds = float(msg[3])
                    return replace(msg[2], decode_seconds=time.perf_counter() - t0)
                if msg[0] == "error":
                    raise _rebuild_error(msg[2], msg[3], msg[4])
        finally:
            self._close()

    def cancel(self) -> None:
        if self._done:
            return
        try:
            self._worker.send(("cancel", self._sid))
        except SttWorkerError:
            pass  # a dead worker has nothing left to cancel
        finally:
            self._close()

    def _close(self) -> None:
        self._done = True
        self._worker.unregister(self._sid)


class RemoteSttEngine(SttEngine):
    """``workers`` processes, each running the recogniser that ``build`` makes from the settings (a module-level
    function: the spawned process imports it by reference; the registry passes ``build_stt_in_process``)."""

    def __init__(self, settings: Settings, workers: int, *, build: Callable[[Settings], SttEngine]) -> None:
        if workers < 1:
            raise ValueError("a remote recognizer needs at least one worker process")
        self.settings = settings
        self.build = build
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._workers = [_Worker(self, i) for i in range(workers)]
        for worker in self._workers:
            self._await_ready(worker)
        hello = self._workers[0].hello
        assert hello is not None
        self.name = f"{hello[1]}"
        caps: SttCapabilities = hello[2]
        self.capabilities = replace(caps, releases_gil=True)
        self.workers = workers

    def _await_ready(self, worker: _Worker) -> None:
        if not worker.ready.wait(START_TIMEOUT_S):
            worker.stop()
            raise SttWorkerError(f"recognizer worker {worker.index} did not start within {START_TIMEOUT_S:.0f} s")
        hello = worker.hello
        if hello is None or hello[0] != "ready":
            worker.stop()
            if hello is not None:
                raise _rebuild_error(hello[1], hello[2], hello[3])
            raise SttWorkerError(f"recognizer worker {worker.index} exited while starting")

    def _pick(self) -> _Worker:
        with self._lock:
            for i, worker in enumerate(self._workers):
                if not worker.alive:
                    log.warning("restarting recognizer worker", extra={"worker": i})
                    worker.stop()
                    self._workers[i] = _Worker(self, i)
                    self._await_ready(self._workers[i])
            return min(self._workers, key=lambda w: w.load)

    def stream(self, rate: int, grammar: Sequence[str] | None = None, *,
        repeat: tuple[int, int] | None = None, sequence: Sequence[str] = (), builtin: str | None = None,
        open_transcript: bool = False, noisy_check: bool = False,
    ) -> RemoteStream:
        worker = self._pick()
        sid = next(self._ids)
        inbox = worker.register(sid)
        try:
            worker.send(("open", sid, rate, list(grammar) if grammar is not None else None, repeat, list(sequence),
                         builtin, open_transcript, noisy_check))
            msg = inbox.get(timeout=START_TIMEOUT_S)
        except queue.Empty:
            worker.unregister(sid)
            raise SttWorkerError(f"recognizer worker {worker.index} did not answer") from None
        except BaseException:
            worker.unregister(sid)
            raise
        if msg[0] != "opened":
            worker.unregister(sid)
            raise _rebuild_error(msg[2], msg[3], msg[4])
        return RemoteStream(worker, sid, inbox, rate)

    def close(self) -> None:
        with self._lock:
            for worker in self._workers:
                worker.stop()
