"""The supervisor of ``keyguard serve``: one process that holds the listening sockets and runs
the gateway in pre-forked worker processes.

* **Sockets.** The supervisor binds the proxy and admin ports once; every worker inherits the
  same listening sockets and accepts from them (one accept queue per port, shared). A worker
  that stops accepting leaves queued connections to the others, and while the supervisor
  holds a socket no connection is refused, even between two generations of workers.
* **Crashes.** A worker that dies without being asked to is restarted after a back-off (0.5 s,
  1 s, 2 s, 4 s ...); the fifth crash within a minute stops everything and ``keyguard serve``
  exits 1, so a crash loop never turns into a fork loop.
* **Signals.** SIGTERM and SIGINT are forwarded to the workers, which drain (readiness false,
  then in-flight requests and streams finish, up to ``listen.drain_timeout_s``); the
  supervisor closes its copy of the sockets and exits 0 when they are done. SIGHUP reloads
  (:meth:`Supervisor.reload`); SIGUSR1 is a reload the admin API asked for (already audited
  by the worker that took the call).
* **Reload.** The file is read and validated; an invalid one is refused with a log line and a
  ``config_reload_rejected`` security event, and nothing changes. A valid one starts a new
  generation of workers with it; once all of them are ready the old ones are retired (they
  stop accepting and finish what they hold). A new generation that does not come up is
  stopped and the old one keeps serving. With in-process limit counters (one worker) the old
  worker is retired first and the new one started after it finished, so the counters it
  saves are the ones the new one loads (connections wait in the accept queue meanwhile).
  Reloads run one at a time, at most one a second: a storm of signals is one or two reloads.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from ..config import Settings, load_settings
from ..errors import ConfigurationError
from ..events import AdminAction, Event, SecurityEvent
from .reload import plan_reload
from .sockets import listening_socket

__all__ = ["Supervisor", "WorkerMain", "restart_delay"]

log = logging.getLogger("keyguard.supervisor")

#: the child's main: (settings, sockets, generation, notify fd) -> exit status
WorkerMain = Callable[[Settings, Mapping[str, socket.socket], int, int], int]
#: writes events to the audit log (in a short-lived child process)
Recorder = Callable[[Settings, Sequence[Event]], None]

CRASH_WINDOW_S = 60.0
MAX_CRASHES = 5  # in CRASH_WINDOW_S: give up
START_TIMEOUT_S = 180.0  # a worker that is not serving by then failed to start
RELOAD_MIN_INTERVAL_S = 1.0
_PROXY_BACKLOG = 1024


def restart_delay(crashes: Sequence[float], now: float) -> float | None:
    """Seconds to wait before restarting a crashed worker, given the times of the crashes so
    far (the last one included); ``None``: too many in the window, give up."""
    recent = [t for t in crashes if now - t < CRASH_WINDOW_S]
    if len(recent) >= MAX_CRASHES:
        return None
    return min(30.0, 0.5 * 2.0 ** max(0, len(recent) - 1))


@dataclass
class _Worker:
    pid: int
    slot: int
    generation: int
    notify: int  # the read end of the pipe the worker writes b"R" to once it serves
    ready: bool = False
    retiring: bool = False
    starting: bool = False  # one of a generation being started (not a restart)
    status: int | None = None  # exit status once reaped


class Supervisor:
    def __init__(
        self,
        config_path: str,
        settings: Settings,
        workers: int,
        main: WorkerMain,
        *,
        record: Recorder | None = None,
        load: Callable[[str], Settings] = load_settings,
    ) -> None:
        self.config_path = config_path
        self.settings = settings
        self.count = workers
        self._main = main
        self._record = record
        self._load = load
        self.generation = 1
        self._workers: dict[int, _Worker] = {}
        self._crashes: list[float] = []
        self._restarts: dict[int, float] = {}  # slot -> when to restart it
        self._sockets: dict[str, socket.socket] = {}
        self._stop: int | None = None
        self._reload: str | None = None  # "signal" or "api"
        self._last_reload = -float("inf")
        self._failed = False
        self._wake_r, self._wake_w = os.pipe()

    # -- the main loop ---------------------------------------------------------------------

    def run(self) -> int:
        listen = self.settings.listen
        self._sockets = {
            "proxy": listening_socket(listen.proxy, _PROXY_BACKLOG, "listen.proxy"),
            "admin": listening_socket(listen.admin, 128, "listen.admin"),
        }
        self._signals()
        started = self._spawn_generation(self.settings, self.generation)
        if not started:
            log.error("keyguard serve: the workers did not start (see above)")
            self._shutdown(signal.SIGTERM)
            return 1
        log.info("keyguard supervisor (pid %d): %d workers serving", os.getpid(), self.count)
        while True:
            self._wait(self._next_timeout())
            if self._stop is not None:
                return self._shutdown(self._stop)
            if self._failed:
                log.error(
                    "keyguard serve: workers keep crashing (%d within %g s); stopping",
                    MAX_CRASHES,
                    CRASH_WINDOW_S,
                )
                self._shutdown(signal.SIGTERM)
                return 1
            self._restart_due()
            if (
                self._reload is not None
                and time.monotonic() - self._last_reload >= RELOAD_MIN_INTERVAL_S
            ):
                via, self._reload = self._reload, None
                self._last_reload = time.monotonic()
                self.reload(via)

    def _next_timeout(self) -> float:
        now = time.monotonic()
        due = [at - now for at in self._restarts.values()]
        if self._reload is not None:
            due.append(self._last_reload + RELOAD_MIN_INTERVAL_S - now)
        return max(0.01, min([1.0, *due]))

    def _wait(self, timeout: float) -> None:
        """Sleep until a signal, a worker's notice, or ``timeout``; then take the notices
        and reap the workers that exited."""
        waiting = [w.notify for w in self._workers.values() if not w.ready and w.notify >= 0]
        try:
            readable, _, _ = select.select([self._wake_r, *waiting], [], [], timeout)
        except InterruptedError:  # pragma: no cover - PEP 475 retries select
            readable = []
        if self._wake_r in readable:
            os.read(self._wake_r, 4096)
        for worker in self._workers.values():
            if worker.notify in readable:
                got = os.read(worker.notify, 16)
                worker.ready = worker.ready or b"R" in got
                if not got or worker.ready:
                    os.close(worker.notify)
                    worker.notify = -1
        self._reap()

    def _signals(self) -> None:
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)

        def stop(signum: int, _: object) -> None:
            self._stop = signum

        def reload(signum: int, _: object) -> None:
            self._reload = "api" if signum == signal.SIGUSR1 and self._reload is None else "signal"

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)
        signal.signal(signal.SIGUSR1, reload)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the select through the fd

    # -- workers ---------------------------------------------------------------------------

    def _fork(self, settings: Settings, slot: int, generation: int) -> _Worker:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.close(read)
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
                    signal.signal(sig, signal.SIG_DFL)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                os.close(self._wake_r)
                os.close(self._wake_w)
                for other in self._workers.values():
                    if other.notify >= 0:
                        os.close(other.notify)
                code = self._main(settings, self._sockets, generation, write)
            except BaseException:
                traceback.print_exc()
            finally:
                logging.shutdown()
                os._exit(code)
        os.close(write)
        worker = _Worker(pid, slot, generation, read)
        self._workers[pid] = worker
        return worker

    def _spawn_generation(self, settings: Settings, generation: int) -> bool:
        """Start ``count`` workers with ``settings``; true once all of them serve. On failure
        the ones that started are stopped."""
        new = [self._fork(settings, slot, generation) for slot in range(self.count)]
        for worker in new:
            worker.starting = True
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(w.ready for w in new):
            if any(w.status is not None for w in new) or time.monotonic() > deadline:
                break
            if self._stop is not None:
                break
            self._wait(0.5)
        else:
            for worker in new:
                worker.starting = False
            return True
        for worker in new:
            self._kill(worker)
        return False

    def _kill(self, worker: _Worker) -> None:
        if worker.status is None:
            worker.retiring = True
            _signal(worker.pid, signal.SIGKILL)
            _, status = os.waitpid(worker.pid, 0)
            worker.status = status
            self._workers.pop(worker.pid, None)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self._workers.pop(pid, None)
            if worker is None:
                continue
            worker.status = status
            if worker.notify >= 0:
                os.close(worker.notify)
                worker.notify = -1
            expected = worker.retiring or self._stop is not None
            if expected or worker.generation != self.generation or worker.starting:
                continue  # a generation that fails to start is _spawn_generation's to handle
            code = os.waitstatus_to_exitcode(status)
            now = time.monotonic()
            self._crashes = [t for t in self._crashes if now - t < CRASH_WINDOW_S] + [now]
            delay = restart_delay(self._crashes, now)
            log.error("worker %d exited (%s) without being asked to", pid, _how(code))
            if delay is None:
                self._failed = True
            else:
                log.info("restarting worker %d in %g s", worker.slot, delay)
                self._restarts[worker.slot] = now + delay

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot, at in list(self._restarts.items()):
            if at <= now:
                del self._restarts[slot]
                self._fork(self.settings, slot, self.generation)

    def _retire(self, workers: Sequence[_Worker]) -> None:
        for worker in workers:
            worker.retiring = True
            _signal(worker.pid, signal.SIGUSR2)

    def _wait_exit(self, workers: Sequence[_Worker], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while any(w.status is None for w in workers) and time.monotonic() < deadline:
            self._wait(0.2)
        for worker in workers:
            if worker.status is None:
                log.error("worker %d did not stop in time; killing it", worker.pid)
                self._kill(worker)

    def _shutdown(self, signum: int) -> int:
        forward = signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM
        workers = list(self._workers.values())
        for worker in workers:
            worker.retiring = True
            _signal(worker.pid, forward)
        for sock in self._sockets.values():
            sock.close()  # the workers' copies close after their grace: then refused
        listen = self.settings.listen
        self._wait_exit(workers, listen.drain_grace_s + listen.drain_timeout_s + 10)
        log.info("keyguard supervisor: stopped")
        return 0

    # -- reload ----------------------------------------------------------------------------

    def reload(self, via: str = "signal") -> bool:
        """Reload the configuration file; true if the new one serves."""
        now = _utcnow()
        try:
            new = self._load(self.config_path)
        except ConfigurationError as exc:
            log.error("reload refused, the running configuration stays: %s", exc)
            self._audit([_rejected(now, str(exc))])
            return False
        plan = plan_reload(self.settings, new)
        if plan.restart_required:
            log.warning(
                "reload: %s changed; the new value is used after a restart",
                ", ".join(plan.restart_required),
            )
        old = [w for w in self._workers.values() if not w.retiring]
        previous, generation = self.settings, self.generation + 1
        self.generation = generation
        self._restarts.clear()
        if not (plan.settings.shared_limits and previous.shared_limits):
            # in-process counters: the old worker saves them as it stops; then the new loads
            self._retire(old)
            self._wait_exit(old, previous.listen.drain_timeout_s + 10)
            if not self._spawn_generation(plan.settings, generation):
                self._failed_reload(now, "the workers with the new configuration did not start")
                self.generation += 1
                if not self._spawn_generation(previous, self.generation):
                    self._failed = True
                return False
        else:
            if not self._spawn_generation(plan.settings, generation):
                self.generation = generation - 1
                self._failed_reload(now, "the workers with the new configuration did not start")
                return False
            self._retire(old)
        self.settings = plan.settings
        log.info("reloaded (generation %d): %s", generation, ", ".join(plan.changed) or "no change")
        if via == "signal":
            self._audit([AdminAction(now, "signal:SIGHUP", "config.reload", "config", None,
                                     plan.answer("reloaded"))])  # fmt: skip
        return True

    def _failed_reload(self, now: datetime, reason: str) -> None:
        log.error("reload failed, the running configuration stays: %s", reason)
        self._audit([_rejected(now, reason)])

    def _audit(self, events: Sequence[Event]) -> None:
        if self._record is None:
            return
        try:
            self._record(self.settings, events)
        except Exception:  # the audit of a reload must not stop the supervisor
            log.exception("could not write the reload to the audit log")


def _rejected(now: datetime, reason: str) -> SecurityEvent:
    return SecurityEvent(
        now,
        "config_reload_rejected",
        "medium",
        f"configuration reload refused, the running configuration stays: {reason}"[:500],
    )


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _how(code: int) -> str:
    return f"signal {-code}" if code < 0 else f"status {code}"
