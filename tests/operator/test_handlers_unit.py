"""handlers, without a cluster. child_changed: which watch events of a child wake its
CreditModel's loop. The events of the operator's own writes wake nobody (each cost a pass and a
read of the CreditModel at 1,000 applied at once); KServe moving an InferenceService's readiness,
and anyone else's edit, wake it. The readiness index, the diff-base kopf no longer builds, and the
log lines kopf no longer writes per watch event."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any, cast

import kopf
import pytest

from creditmodel.operator import builders, handlers
from creditmodel.operator.model import ACTION_ANNOTATION
from creditmodel.operator.readiness import InNamespace, Readiness
from creditmodel.operator.views import STATUSES_KEPT, status_digest

pytestmark = pytest.mark.unit

KEY = ("ns", "german")
LABELS = {builders.MODEL_LABEL: "german", **handlers.OURS}


def child(kind: str, status: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {"name": "german-1", "namespace": "ns", "generation": 1, "labels": LABELS}
        | meta,
        "status": status or {},
    }


def ready(flag: str, message: str = "") -> dict[str, Any]:
    return {"conditions": [{"type": "Ready", "status": flag, "message": message}]}


async def woken(memo: Any, event: str, body: dict[str, Any]) -> bool:
    memo.wakers[KEY].clear()
    await handlers.child_changed(type=event, body=body, labels=LABELS, namespace="ns", memo=memo)
    return memo.wakers[KEY].is_set()


@pytest.fixture
def memo() -> Any:
    return SimpleNamespace(
        children={}, edited={}, handled={}, statuses={}, wakers={KEY: asyncio.Event()}
    )


@pytest.mark.parametrize("kind", sorted(handlers.EDITABLE))
async def test_the_event_of_our_own_write_wakes_nobody(memo: Any, kind: str) -> None:
    written = child(kind)
    handlers._remember_written(memo, written)
    assert not await woken(memo, "ADDED", written)
    assert not await woken(memo, "MODIFIED", child(kind, resourceVersion="7"))
    assert memo.edited == {}


async def test_kserve_moving_readiness_wakes_without_an_edit(memo: Any) -> None:
    handlers._remember_written(memo, child("InferenceService"))
    assert await woken(memo, "MODIFIED", child("InferenceService", ready("False", "no pods")))
    assert not await woken(memo, "MODIFIED", child("InferenceService", ready("False", "no pods")))
    assert await woken(memo, "MODIFIED", child("InferenceService", ready("True")))
    assert not await woken(memo, "MODIFIED", child("InferenceService", ready("True")))
    assert await woken(memo, "MODIFIED", child("InferenceService", ready("False", "crashed")))
    assert memo.edited == {}


async def test_someone_elses_edit_or_delete_wakes_and_marks_the_child(memo: Any) -> None:
    handlers._remember_written(memo, child("HTTPRoute"))
    assert await woken(memo, "MODIFIED", child("HTTPRoute", generation=2))
    assert memo.edited == {KEY: {("HTTPRoute", "german-1")}}
    assert await woken(memo, "DELETED", child("HTTPRoute", generation=2))


async def test_a_child_never_seen_wakes(memo: Any) -> None:
    """kopf's first listing after a restart, or a watch event ahead of our write's answer."""
    assert await woken(memo, "ADDED", child("NetworkPolicy"))


def test_no_change_handler_reads_the_empty_diff_base() -> None:
    """NoDiffBase keeps no diff-base: valid only while no on.create/on.update/on.delete handler
    exists to read one."""
    assert list(kopf.get_default_registry()._changing.get_all_handlers()) == []
    storage = handlers.NoDiffBase(prefix="x.io", key="k")
    body = kopf.Body({"metadata": {"name": "a"}, "spec": {"b": 1}})
    assert storage.build(body=body) == storage.fetch(body=body) == {}


async def spec_woken(memo: Any, generation: int, observed: int | None, **annotations: str) -> bool:
    memo.wakers[KEY].clear()
    body = {
        "metadata": {"generation": generation, "annotations": annotations},
        "status": {} if observed is None else {"observedGeneration": observed},
    }
    await handlers.changed(name="german", namespace="ns", body=body, memo=memo)
    return memo.wakers[KEY].is_set()


async def test_a_creditmodel_event_wakes_its_loop_only_for_a_generation_it_has_not_reconciled(
    memo: Any,
) -> None:
    assert await spec_woken(memo, 1, None)  # nothing reconciled yet
    memo.handled[KEY] = 1  # the loop's pass read generation 1
    assert not await spec_woken(memo, 1, None)  # kopf's finalizer, before our status write shows
    assert not await spec_woken(memo, 1, 1)
    assert await spec_woken(memo, 2, 1)  # a spec edit
    assert await spec_woken(memo, 1, 1, **{ACTION_ANNOTATION: "promote"})


async def test_a_status_edited_by_someone_else_wakes_the_loop_and_its_own_writes_do_not(
    memo: Any,
) -> None:
    """`kubectl edit --subresource=status` moves no generation: the loop met the edit only at its
    next full resync, ten minutes on. A status this process wrote or read (its last few, so a
    late event of the write before last is still its own) wakes nobody."""
    assert not await spec_woken(memo, 1, 1)  # no status known yet: nothing to compare
    memo.handled[KEY] = 1
    for written in range(STATUSES_KEPT):
        memo.statuses[KEY] = (
            *memo.statuses.get(KEY, ()),
            status_digest({"status": {"observedGeneration": 1, "n": written}}),
        )
    for written in range(STATUSES_KEPT):
        body = {"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "n": written}}
        memo.wakers[KEY].clear()
        await handlers.changed(name="german", namespace="ns", body=body, memo=memo)
        assert not memo.wakers[KEY].is_set()
    assert await spec_woken(memo, 1, 1)  # {"observedGeneration": 1} alone was never written


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ([], (False, None, 0)),
        ([{"type": "Ready", "status": "True"}], (True, None, 0)),
        (
            [
                {"type": "PredictorReady", "status": "False", "message": "no pods"},
                {"type": "Ready", "status": "False", "message": "Predictor not ready"},
            ],
            (False, "Predictor not ready", 0),  # the Ready condition's own message first
        ),
        ([{"type": "Ready", "status": "Unknown", "message": "?"}], (False, None, 0)),
        ([{"type": "Ready", "status": "False", "message": "x" * 600}], (False, "x" * 512, 0)),
    ],
)
async def test_one_index_holds_ready_and_what_keeps_it_from_ready(
    conditions: list[dict[str, Any]], expected: tuple[bool, str | None, int]
) -> None:
    held = await handlers.isvc_readiness(
        name="german-1", namespace="ns", status={"conditions": conditions}
    )
    assert held == {("ns", "german-1"): expected}


@pytest.mark.parametrize(
    ("model_status", "copies"),
    [
        ({"copies": {"totalCopies": 2}}, 2),
        ({"copies": {"totalCopies": 0}}, 0),
        ({"copies": {"totalCopies": -1}}, 0),
        ({"copies": {"totalCopies": "2"}}, 0),
        ({"copies": {"totalCopies": True}}, 0),
        ({"copies": ["totalCopies"]}, 0),
        ("Loaded", 0),
        (None, 0),
    ],
)
async def test_the_index_counts_the_ready_pods_kserve_reports(
    model_status: Any, copies: int
) -> None:
    """KServe's modelStatus.copies.totalCopies (the InferenceService's ready pods), read only
    when it is a positive integer: a stable whose failed update KServe marks not Ready keeps its
    traffic only on this count (rollout.traffic.held)."""
    failed = {"type": "Ready", "status": "False", "message": "exceeded quota"}
    held = await handlers.isvc_readiness(
        name="german-1",
        namespace="ns",
        status={"conditions": [failed], "modelStatus": model_status},
    )
    assert held == {("ns", "german-1"): (False, "exceeded quota", copies)}


def test_the_reconciler_reads_both_fields_from_the_one_index() -> None:
    index = {
        ("ns", "a"): [Readiness(True)],
        ("ns", "b"): [Readiness(False, "no pods")],
        ("ns", "c"): [Readiness(False)],
        ("other", "d"): [Readiness(False, "elsewhere")],
    }
    ready = InNamespace(cast(Any, index), "ns", lambda r: r.ready)
    waiting = InNamespace(cast(Any, index), "ns", lambda r: r.waiting)
    assert dict(ready) == {"a": True, "b": False, "c": False}
    assert dict(waiting) == {"b": "no pods"}
    assert waiting.get("a") is None
    assert ready.get("d") is None


def record(message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("kopf.objects", level, __file__, 1, message, None, None)


def test_kopf_no_longer_logs_each_watch_handler_call() -> None:
    quiet = handlers.QuietWatchHandlers()
    for name in handlers.WATCH_HANDLERS:
        assert not quiet.filter(record(f"Handler '{name}' succeeded."))
        assert quiet.filter(record(f"Handler '{name}' failed with an exception.", logging.ERROR))
    assert quiet.filter(record("Daemon 'run' succeeded."))
    assert quiet.filter(record("InferenceService german-1 created"))


def test_every_watch_handler_is_registered_under_its_quiet_name() -> None:
    registry = kopf.get_default_registry()
    watching = {h.fn.__name__ for h in registry._watching.get_all_handlers()}
    assert set(handlers.WATCH_HANDLERS) <= watching
