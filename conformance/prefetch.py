"""Jobs: the requests of independent checks, sent together before the checks judge them.

A check whose requests do not depend on what other checks found declares them as a *job*: a
function of session fixtures (and of the check's own parameters) that sends and returns what came
back, without judging it (`@job(...)` makes it a fixture of that name). When the bulk identity
has room (not a frugal Free key), the first check that needs a job starts every job the
selection needs at once, within each identity's concurrency (`ApiClient.concurrency`: the plan's,
less one slot) and under the pacer, and waits until all have ended: nothing of theirs is in flight
afterwards, so the checks that observe a window or the concurrency cap (test_ratelimit, which the
plugin runs last) still have their key to themselves. Otherwise each job runs when its check takes
it, one after the other, as the checks did before.

A check takes its job's outcome (`pending.take()`): the job's exchanges become its evidence
(transcript, replay line), its requests count in its `sent`, and an exception the sending raised
(a refusal of the run, a DISABLED or BLOCKED skip) is raised in the check, as if it had sent them
itself. The invariants see a job's exchanges with the requirements of the checks that take it, as
they would have seen them from those checks.
"""

from __future__ import annotations

import contextvars
import inspect
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from opconform.client import ApiClient, Exchange
    from opconform.conformance.evidence import Recorder
    from opconform.conformance.invariants import Context

_CURRENT: contextvars.ContextVar[Instance | None] = contextvars.ContextVar(
    "opconform_job", default=None
)
_LEDGER = pytest.StashKey["Ledger"]()
_BEFORE = pytest.StashKey[dict[str, int]]()
BULK = "bulk"  # a job's identity placeholder: the run's bulk key (Pro when given)


@dataclass(frozen=True)
class Spec:
    name: str
    send: Callable[..., Any]
    params: tuple[str, ...]
    # Requests at once per identity (BULK or a key label) the job may have in flight.
    slots: dict[str, int]
    sends: dict[str, int | str]  # what it sends, for the plan (opconform.conformance.plan)
    streams: bool = False  # it opens streams of the suite's own client
    # It sends through another client (an SDK), which the run's breaker does not stop.
    after_streams: bool = False


SPECS: dict[str, Spec] = {}


def job(
    *,
    slots: int = 1,
    others: Iterable[str] = (),
    sends: Mapping[str, int | str] | None = None,
    streams: bool = False,
    after_streams: bool = False,
    name: str | None = None,
) -> Callable[[Callable[..., Any]], Any]:
    """Declare a check's sending as a job, the fixture `name` (default: the function's name):
    `slots` requests at once on the bulk key at most, one at a time on each of `others` (key
    labels); `sends`: what it sends per identity, for the run's plan (opconform.conformance.plan;
    default
    one request on the bulk key). `streams`: it opens streams; `after_streams`: it sends through
    another client (an SDK), which the run's breaker does not stop. In a wave both start once
    one stream has come back whole, and not at all when it did not (they would only wait out
    their deadlines). Its parameters are session
    fixtures or the check's own parametrize arguments."""

    def register(send: Callable[..., Any]) -> Any:
        fixture_name = name or send.__name__
        known = SPECS.get(fixture_name)
        if known is not None and known.send.__module__ != send.__module__:
            raise ValueError(f"two jobs named {fixture_name}")
        budget = {BULK: slots, **{label: 1 for label in others}}
        params = tuple(inspect.signature(send).parameters)
        cost: dict[str, int | str] = dict(sends) if sends is not None else {BULK: 1}
        SPECS[fixture_name] = Spec(fixture_name, send, params, budget, cost, streams, after_streams)

        def fixture(request: pytest.FixtureRequest, jobs: Jobs) -> Pending:
            return jobs.pending(fixture_name, request.node)

        fixture.__name__ = fixture_name
        fixture.__doc__ = f"The outcome of job {fixture_name} (opconform.conformance.prefetch)."
        return pytest.fixture(name=fixture_name)(fixture)

    return register


class Ledger:
    """Requests sent inside jobs, and the ones each check took: a check's `sent` is what it sent
    itself plus what the jobs it took sent, never what other checks' jobs sent meanwhile."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_jobs: dict[str, int] = {}
        self.taken: dict[str, dict[str, int]] = {}
        self.jobs_of: dict[str, list[Instance]] = {}  # check (nodeid) -> the jobs it takes

    def add(self, instance: Instance, label: str, n: int = 1) -> None:
        with self._lock:
            self.in_jobs[label] = self.in_jobs.get(label, 0) + n
            instance.sent[label] = instance.sent.get(label, 0) + n

    def take(self, nodeid: str, sent: dict[str, int]) -> None:
        with self._lock:
            mine = self.taken.setdefault(nodeid, {})
            for label, n in sent.items():
                mine[label] = mine.get(label, 0) + n


def ledger(config: pytest.Config) -> Ledger:
    return config.stash.setdefault(_LEDGER, Ledger())


def sent_already(item: pytest.Item) -> bool:
    """Every job the check takes has ended: its evidence was gathered before the run stopped
    sending (a breaker opened by other jobs of the same wave), so it is judged, not blocked."""
    jobs = ledger(item.config).jobs_of.get(item.nodeid, [])
    return bool(jobs) and all(instance.done for instance in jobs)


def mark_start(item: pytest.Item) -> None:
    """Before a check's fixtures: what jobs had sent so far (see `sent_by`)."""
    item.stash[_BEFORE] = dict(ledger(item.config).in_jobs)


def sent_by(item: pytest.Item, own: dict[str, int]) -> dict[str, int]:
    """A check's requests: `own` (the run's count over its setup and call) less what jobs sent
    meanwhile (a wave started by its setup is every check's), plus what its jobs sent."""
    book = ledger(item.config)
    before = item.stash.get(_BEFORE, {})
    sent = dict(own)
    for label, n in book.in_jobs.items():
        sent[label] = sent.get(label, 0) - (n - before.get(label, 0))
    for label, n in book.taken.get(item.nodeid, {}).items():
        sent[label] = sent.get(label, 0) + n
    return {label: n for label, n in sent.items() if n > 0}


@dataclass(eq=False)
class Instance:
    """One job with its arguments, shared by the checks that take the same arguments."""

    spec: Spec
    arguments: dict[str, Any] | BaseException
    context: Context
    book: Ledger
    exchanges: list[Exchange] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)
    value: Any = None
    error: BaseException | None = None
    done: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> None:
        with self.lock:
            if self.done:
                return
            token = _CURRENT.set(self)
            try:
                if isinstance(self.arguments, BaseException):
                    raise self.arguments
                self.value = self.spec.send(**self.arguments)
            except BaseException as exc:  # raised again in each check that takes it
                self.error = exc
            finally:
                _CURRENT.reset(token)
                self.done = True


def current() -> Instance | None:
    """The job sending from this thread (or from the `ApiClient.gather` call it made), if any."""
    return _CURRENT.get()


def record(exchange: Exchange) -> bool:
    """Keep an exchange a job made for the checks that take it; False outside jobs."""
    instance = _CURRENT.get()
    if instance is None:
        return False
    instance.exchanges.append(exchange)  # under the client's lock (ApiClient.settle)
    instance.book.add(instance, exchange.key_label or "anonymous")
    return True


def count(instance: Instance | None, label: str, n: int = 1) -> None:
    """Requests another client (an SDK) sent for the job `instance`."""
    if instance is not None and n:
        instance.book.add(instance, label, n)


def context_or(default: Context) -> Context:
    """Whom the invariants credit an exchange to: the checks of the job that sent it."""
    instance = _CURRENT.get()
    return default if instance is None else instance.context


class Pending:
    """A check's handle on its job: `take()` once in the check's body."""

    def __init__(self, instance: Instance, nodeid: str, recorder: Recorder, api: ApiClient) -> None:
        self._instance = instance
        self._nodeid = nodeid
        self._recorder = recorder
        self._api = api

    def take(self) -> Any:
        instance = self._instance
        instance.run()  # no-op when the wave ran it
        for exchange in instance.exchanges:
            self._recorder.attach(exchange)
        instance.book.take(self._nodeid, instance.sent)
        if instance.error is not None:
            raise instance.error
        unended = self._api.unended
        if (
            unended is not None
            and unended not in instance.exchanges
            and any(_past_cap(e) for e in instance.exchanges)
        ):
            # Sent at the same time as the stream that did not end: one after the other, it would
            # not have been sent (one never-ending stream is one finding).
            from opconform.client import StreamsDoNotEnd

            raise StreamsDoNotEnd(unended)
        return instance.value


def _ended_well(probe: Instance | None) -> bool:
    """The wave's first stream came back whole: the other streams may go at once. Otherwise
    (cut at its cap, a transport failure, the run stopped) they wait for their checks, which
    may then be blocked instead of each waiting out its own deadline at the same time."""
    if probe is None:
        return True
    return probe.error is None and all(e.error is None and e.status == 200 for e in probe.exchanges)


def _past_cap(exchange: Exchange) -> bool:
    """A stream cut at its cap, as ApiClient.settle marks the first one (`unended`)."""
    return exchange.error_kind == "stream-cap" and not exchange.aborted


class _Slots:
    """Requests at once per identity across the jobs of a wave; a job starts when every slot it
    needs is free (taken all at once, so two jobs never wait on each other)."""

    def __init__(self, capacity: dict[str, int]) -> None:
        self._free = dict(capacity)
        self._ready = threading.Condition()

    def take(self, needs: dict[str, int]) -> None:
        with self._ready:
            self._ready.wait_for(lambda: all(self._free[k] >= n for k, n in needs.items()))
            for label, n in needs.items():
                self._free[label] -= n

    def give(self, needs: dict[str, int]) -> None:
        with self._ready:
            for label, n in needs.items():
                self._free[label] += n
            self._ready.notify_all()


class Jobs:
    """The jobs of a run's selection (the session fixture `jobs`)."""

    def __init__(
        self,
        request: pytest.FixtureRequest,
        api: ApiClient,
        bulk_key: str,
        recorder: Recorder,
        *,
        together: Callable[[], bool],
    ) -> None:
        from opconform.conformance.invariants import Context

        self._api = api
        self._bulk = bulk_key
        self._recorder = recorder
        self._book = ledger(request.config)
        self.instances: dict[tuple[str, str], Instance] = {}
        self._of_item: dict[tuple[str, str], Instance] = {}
        takers: dict[tuple[str, str], list[pytest.Item]] = {}
        for item in request.session.items:
            for name in getattr(item, "fixturenames", ()):
                spec = SPECS.get(name)
                if spec is not None:
                    key = instance_key(spec, item)
                    takers.setdefault(key, []).append(item)
                    self._of_item[(name, item.nodeid)] = self.instances.get(key) or Instance(
                        spec, {}, Context(), self._book
                    )
                    self.instances.setdefault(key, self._of_item[(name, item.nodeid)])
                    self._book.jobs_of.setdefault(item.nodeid, []).append(self.instances[key])
        for key, items in takers.items():
            instance = self.instances[key]
            ids = frozenset(r for i in items for m in i.iter_markers("requirement") for r in m.args)
            instance.context = Context(ids, items[0].nodeid)
            instance.arguments = _arguments(request, instance.spec, items[0])
        # Decided once the arguments are in: the model list, say, has shown what the key states.
        if self.instances and together():
            self._wave()

    def _needs(self, spec: Spec) -> dict[str, int]:
        needs: dict[str, int] = {}
        for label, n in spec.slots.items():
            identity = self._bulk if label == BULK else label
            if label != BULK and not self._api.has_key(identity):
                continue
            room = self._api.concurrency.get(identity, 1)
            needs[identity] = needs.get(identity, 0) + max(1, min(n, room))
        for identity in list(needs):
            needs[identity] = min(needs[identity], self._api.concurrency.get(identity, 1))
        return needs

    def _wave(self) -> None:
        capacity = {label: self._api.concurrency.get(label, 1) for label in self._api.concurrency}
        slots = _Slots(capacity)

        # One stream goes first: a target whose streams never end shows it once, and the other
        # streams are then not sent (StreamsDoNotEnd when their checks take them), as one after
        # the other; many streams cut at their cap at once would open the target breaker.
        probe = next((i for i in self.instances.values() if i.spec.streams), None)
        probed = threading.Event()
        if probe is None:
            probed.set()

        def work(instance: Instance) -> None:
            if instance is not probe and (instance.spec.streams or instance.spec.after_streams):
                probed.wait()
                if not _ended_well(probe):
                    return  # taken later, if at all: refused without sending, or blocked
            needs = {k: v for k, v in self._needs(instance.spec).items() if k in capacity}
            slots.take(needs)
            try:
                instance.run()
            finally:
                slots.give(needs)
                if instance is probe:
                    probed.set()

        threads = [
            threading.Thread(target=work, args=(i,), name=f"opconform-job-{i.spec.name}")
            for i in self.instances.values()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            # Each request is bounded by the run's deadlines, so every job ends.
            thread.join()

    def pending(self, name: str, item: pytest.Item) -> Pending:
        return Pending(self._of_item[(name, item.nodeid)], item.nodeid, self._recorder, self._api)


def instance_key(spec: Spec, item: pytest.Item) -> tuple[str, str]:
    """The job and the check's parametrize arguments it takes: checks with the same key share
    one run of it."""
    callspec = getattr(item, "callspec", None)
    params = callspec.params if callspec is not None else {}
    return spec.name, ",".join(f"{p}={params[p]!r}" for p in spec.params if p in params)


def _arguments(
    request: pytest.FixtureRequest, spec: Spec, item: pytest.Item
) -> dict[str, Any] | BaseException:
    """The job's arguments, here in pytest's thread (its fixtures are not thread-safe). A
    fixture that cannot be had (a model list that blocks, say) is raised in the checks that take
    the job, as it would have been."""
    callspec = getattr(item, "callspec", None)
    params = callspec.params if callspec is not None else {}
    try:
        return {p: params[p] if p in params else request.getfixturevalue(p) for p in spec.params}
    except BaseException as exc:  # pytest's skip outcomes are BaseExceptions
        return exc
