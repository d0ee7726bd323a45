"""Kubernetes I/O for the operator: idempotent child writes, reads of what the state machine
observes, status patches. Every write is create-if-absent then patch-on-drift of our fields only,
so other controllers' fields (KServe's status, defaults) are left alone.

kr8s finds the credentials (in-cluster ServiceAccount or $KUBECONFIG, as kubectl would) and
aiohttp carries the requests: against a real kube-apiserver, 32 GETs in flight, kr8s's own
httpx session cost the operator about 1.8 ms of CPU per request (its connection pool checks every
pooled socket on each request) and aiohttp about 0.17 ms; a thousand CreditModels applied at once
make some fourteen thousand requests."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import kr8s
import kr8s.asyncio
import orjson

from creditmodel.operator import builders
from creditmodel.operator.model import GROUP, PLURAL, VERSION
from creditmodel.operator.patches import merge_patch_body, subset_differs, without_none
from creditmodel.operator.rollout import JobState

logger = logging.getLogger(__name__)
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}
JSON = {"Content-Type": "application/json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}
NAMESPACE_TERMINATING = "NamespaceTerminating"
"""The cause the API server gives for refusing a create in a namespace being deleted."""
NOT_OWNED = "NotOwned"
"""A child's name is taken by an object this CreditModel does not own (builders.claim)."""
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=60, connect=10)
"""A request the API server has not answered in a minute failed: the pass retries."""


class KubeError(Exception):
    """The API server refused or failed a request the operator needs (message has the details)."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        reason: str = "",
        causes: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(message)
        self.status, self.reason, self.causes = status, reason, causes
        self.detail = message

    @property
    def terminating(self) -> bool:
        """The namespace is being deleted: the API server creates nothing more in it."""
        return NAMESPACE_TERMINATING in self.causes

    @property
    def refused(self) -> bool:
        """A verdict on the object or on our rights (admission webhook, policy, quota, schema,
        RBAC), not an outage: retrying the same write soon will not change it."""
        return self.status in (400, 403, 422) or self.reason == NOT_OWNED


@dataclass(frozen=True)
class Kind:
    base: str
    version: str
    plural: str


KINDS = {
    "InferenceService": Kind("/apis/serving.kserve.io", "v1beta1", "inferenceservices"),
    "HTTPRoute": Kind("/apis/gateway.networking.k8s.io", "v1", "httproutes"),
    "Job": Kind("/apis/batch", "v1", "jobs"),
    "CronJob": Kind("/apis/batch", "v1", "cronjobs"),
    "NetworkPolicy": Kind("/apis/networking.k8s.io", "v1", "networkpolicies"),
    "Pod": Kind("/api", "v1", "pods"),
    "CreditModel": Kind(f"/apis/{GROUP}", VERSION, PLURAL),
    "Namespace": Kind("/api", "v1", "namespaces"),
}


class Kube:
    """A thin async client for the API server, on kr8s's credentials."""

    def __init__(self, api: kr8s.asyncio.Api) -> None:
        self.api = api
        self._session: aiohttp.ClientSession | None = None
        # Told of every object `ensure` created or patched, as the API server answered: the
        # watch then tells our own writes from other people's edits (handlers.child_changed).
        self.written: Callable[[Mapping[str, Any]], None] = _ignore

    @classmethod
    async def connect(cls) -> Kube:
        """In-cluster ServiceAccount or $KUBECONFIG, as kubectl would pick them."""
        return cls(await kr8s.asyncio.api())

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            auth = self.api.auth
            headers = {"User-Agent": "creditmodel-operator", "Accept": "application/json"}
            if auth.token:
                headers["Authorization"] = f"Bearer {auth.token}"
            self._session = aiohttp.ClientSession(
                headers=headers,
                connector=aiohttp.TCPConnector(ssl=await auth.ssl_context()),  # type: ignore[no-untyped-call]
                timeout=REQUEST_TIMEOUT,
            )
        return self._session

    async def _call(
        self,
        method: str,
        kind: str,
        namespace: str,
        name: str = "",
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        subresource: str = "",
    ) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body). Credentials the API server no longer accepts (a rotated
        token) are read again once; a request that never got an answer raises ConnectionError."""
        spec = KINDS[kind]
        path = "/".join(part for part in (spec.plural, name, subresource) if part)
        namespaced = f"namespaces/{namespace}/" if namespace else ""
        url = f"{self.api.auth.server.rstrip('/')}{spec.base}/{spec.version}/{namespaced}{path}"
        extra: dict[str, Any] = {
            "headers": {**(JSON if body is not None else {}), **(headers or {})}
        }
        if body is not None:
            extra["data"] = orjson.dumps(body)
        if query:
            extra["params"] = dict(query)
        if self.api.auth.tls_server_name:
            extra["server_hostname"] = self.api.auth.tls_server_name
        if self.api.auth.proxy:
            extra["proxy"] = self.api.auth.proxy
        for attempt in (1, 2):
            session = await self._open()
            try:
                async with session.request(method, url, **extra) as response:
                    status, raw = response.status, await response.read()
            except aiohttp.ClientError as exc:
                raise ConnectionError(f"{method} {url}: {exc!r}") from exc
            if status == 401 and attempt == 1:
                await self.api.auth.reauthenticate()
                await self.close()
                continue
            break
        return status, _json(raw)

    def _fail(self, what: str, status: int, data: dict[str, Any]) -> KubeError:
        message = str(data.get("message", data))
        details = data.get("details")
        found = details.get("causes") if isinstance(details, dict) else None
        causes = frozenset(
            str(cause.get("reason")) for cause in found or () if isinstance(cause, dict)
        )
        reason = str(data.get("reason", ""))
        error = KubeError(f"{what}: HTTP {status}: {message}", status, reason, causes)
        error.detail = message
        return error

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        status, data = await self._call("GET", kind, namespace, name)
        if status == 404:
            return None
        if status != 200:
            raise self._fail(f"get {kind} {namespace}/{name}", status, data)
        return data

    async def ensure(
        self, manifest: dict[str, Any], create_first: bool = False, patch_first: bool = False
    ) -> str:
        """Create if absent, patch our fields on drift. Returns created, patched or unchanged. A
        field the manifest sets to None must be absent: left out of a create, deleted by a patch.
        `create_first` saves the GET when the child most likely does not exist yet;
        `patch_first` saves it when the child is as our last write left it (the watch saw no
        one else change it) and our manifest has changed since: the patch is then due anyway."""
        kind, meta = manifest["kind"], manifest["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        wanted = {
            "metadata": {key: meta[key] for key in ("labels", "annotations") if key in meta},
            "spec": manifest.get("spec", {}),
        }
        if patch_first and kind != "Job":
            outcome = await self._patch(kind, namespace, name, wanted)
            if outcome is not None:
                return outcome
            create_first = True  # gone meanwhile: create it
        current = None if create_first else await self.get(kind, namespace, name)
        if current is None:
            body = without_none(manifest)
            status, data = await self._call("POST", kind, namespace, body=body)
            if status in (200, 201):
                self.written(data)
                return "created"
            if status != 409:
                raise self._fail(f"create {kind} {namespace}/{name}", status, data)
            current = await self.get(kind, namespace, name)
            if current is None:  # deleted in between: the next pass creates it
                return "unchanged"
        claim = builders.claim(manifest, current)
        if claim.refusal:
            message = f"{kind} {namespace}/{name} exists and is not this CreditModel's"
            raise KubeError(f"{message} ({claim.refusal}): delete or rename it", 409, NOT_OWNED)
        if claim.adopt is not None:
            wanted["metadata"]["ownerReferences"] = claim.adopt
        if kind == "Job":  # a Job's pod template is immutable: only an orphan's owner is written
            wanted = {"metadata": {"ownerReferences": claim.adopt}} if claim.adopt else {}
        if not wanted or not subset_differs(wanted, current):
            return "unchanged"
        return await self._patch(kind, namespace, name, wanted) or "unchanged"

    async def _patch(
        self, kind: str, namespace: str, name: str, wanted: dict[str, Any]
    ) -> str | None:
        """Merge-patch our fields; None when the object is not there."""
        status, data = await self._call(
            "PATCH", kind, namespace, name, body=merge_patch_body(wanted), headers=MERGE_PATCH
        )
        if status == 404:
            return None
        if status != 200:
            raise self._fail(f"patch {kind} {namespace}/{name}", status, data)
        self.written(data)
        return "patched"

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        status, data = await self._call(
            "DELETE", kind, namespace, name, body={"propagationPolicy": "Background"}
        )
        if status not in (200, 202, 404):
            raise self._fail(f"delete {kind} {namespace}/{name}", status, data)

    async def prune_inferenceservices(
        self, owner: str, namespace: str, keep: set[str]
    ) -> list[str]:
        """Delete this CreditModel's InferenceServices that are no longer desired (old stable after
        promotion, canary after rollback), found by label so a crash between writes leaks none."""
        selector = (
            f"{builders.MODEL_LABEL}={owner},app.kubernetes.io/managed-by={builders.MANAGED_BY}"
        )
        status, data = await self._call(
            "GET", "InferenceService", namespace, query={"labelSelector": selector}
        )
        if status != 200:
            raise self._fail(f"list InferenceServices in {namespace}", status, data)
        removed = []
        for item in data.get("items", []):
            name = item["metadata"]["name"]
            if name not in keep:
                await self.delete("InferenceService", namespace, name)
                removed.append(name)
        return removed

    async def delete_if_ours(self, kind: str, namespace: str, name: str, owner: str) -> bool:
        """Delete `name` only if this CreditModel's labels are on it: a same-named object
        someone else made is left alone. Returns whether it was deleted."""
        current = await self.get(kind, namespace, name)
        found = (current or {}).get("metadata", {}).get("labels") or {}
        if (
            found.get(builders.MODEL_LABEL) != owner
            or found.get("app.kubernetes.io/managed-by") != builders.MANAGED_BY
        ):
            return False
        await self.delete(kind, namespace, name)
        return True

    async def job_state(self, namespace: str, name: str, owner: str, uid: str) -> JobState:
        job = await self.get("Job", namespace, name)
        if job is None:
            return JobState("Missing", "JobMissing", f"training Job {name} no longer exists")
        ours = {"metadata": {"ownerReferences": [{"controller": True, "uid": uid, "name": owner}]}}
        refusal = builders.claim(ours, job).refusal
        if refusal:  # someone else's Job under our name: its outcome is not our training's
            return JobState("Failed", NOT_OWNED, f"training Job {name}: {refusal}")
        publishes = builders.training_job_publishes(job)
        for condition in job.get("status", {}).get("conditions", []):
            if condition.get("status") != "True":
                continue
            if condition.get("type") in ("Complete", "SuccessCriteriaMet"):
                return JobState("Succeeded", publishes=publishes)
            if condition.get("type") in ("Failed", "FailureTarget"):
                return JobState(
                    "Failed",
                    condition.get("reason") or "JobFailed",
                    condition.get("message") or f"training Job {name} failed",
                    await self.termination_message(namespace, name),
                    publishes,
                )
        return JobState("Active", publishes=publishes)

    async def termination_message(self, namespace: str, job: str) -> str | None:
        """The last terminated training container's message (what `kubectl describe` shows)."""
        status, data = await self._call(
            "GET", "Pod", namespace, query={"labelSelector": f"batch.kubernetes.io/job-name={job}"}
        )
        if status != 200:
            return None  # the Job's own condition still explains the failure
        latest: tuple[str, str] | None = None
        for pod in data.get("items", []):
            for container in pod.get("status", {}).get("containerStatuses", []):
                terminated = container.get("state", {}).get("terminated") or {}
                if terminated.get("message"):
                    stamp = terminated.get("finishedAt") or ""
                    if latest is None or stamp >= latest[0]:
                        latest = (stamp, terminated["message"])
        return latest[1] if latest else None

    async def get_creditmodel(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.get("CreditModel", namespace, name)

    async def patch_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch the CreditModel's status; the object as the API server stored it."""
        code, data = await self._call(
            "PATCH",
            "CreditModel",
            namespace,
            name,
            body={"status": status},
            headers=MERGE_PATCH,
            subresource="status",
        )
        if code != 200:
            raise self._fail(f"patch status of CreditModel {namespace}/{name}", code, data)
        return data

    async def remove_annotation(self, namespace: str, name: str, key: str) -> dict[str, Any]:
        code, data = await self._call(
            "PATCH",
            "CreditModel",
            namespace,
            name,
            body={"metadata": {"annotations": {key: None}}},
            headers=MERGE_PATCH,
        )
        if code != 200:
            raise self._fail(
                f"remove annotation {key} of CreditModel {namespace}/{name}", code, data
            )
        return data

    async def terminating_namespaces(self) -> list[str]:
        """The namespaces being deleted."""
        status, data = await self._call("GET", "Namespace", "")
        if status != 200:
            raise self._fail("list namespaces", status, data)
        items = data.get("items") or []
        return [
            str(item["metadata"]["name"])
            for item in items
            if (item.get("metadata") or {}).get("deletionTimestamp")
        ]

    async def release_deleted(self, namespace: str, finalizer: str) -> list[str]:
        """Release `finalizer` from every CreditModel in `namespace` being deleted; their names."""
        status, data = await self._call("GET", "CreditModel", namespace)
        if status != 200:
            raise self._fail(f"list CreditModels in {namespace}", status, data)
        released = []
        for item in data.get("items") or []:
            meta = item.get("metadata") or {}
            if meta.get("deletionTimestamp") and finalizer in (meta.get("finalizers") or []):
                await self.release_finalizer(namespace, meta["name"], finalizer)
                released.append(str(meta["name"]))
        return released

    async def release_finalizer(self, namespace: str, name: str, finalizer: str) -> None:
        """Remove `finalizer` from the CreditModel, if it still holds it (a JSON patch whose
        `test` fails when the list changed meanwhile: then the next call reads it again)."""
        body = await self.get("CreditModel", namespace, name)
        held = list(((body or {}).get("metadata") or {}).get("finalizers") or [])
        if finalizer not in held:
            return
        index = held.index(finalizer)
        path = f"/metadata/finalizers/{index}"
        patch = [{"op": "test", "path": path, "value": finalizer}, {"op": "remove", "path": path}]
        code, data = await self._call(
            "PATCH", "CreditModel", namespace, name, body=patch, headers=JSON_PATCH
        )
        if code not in (200, 404):
            raise self._fail(f"release finalizer of CreditModel {namespace}/{name}", code, data)


def _json(raw: bytes) -> dict[str, Any]:
    """The answer's JSON object; a body that is not one (a proxy's HTML page) as its message."""
    if not raw:
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"message": raw[:512].decode("utf-8", "replace")}
    return data if isinstance(data, dict) else {"message": str(data)[:512]}


def _ignore(_: Mapping[str, Any]) -> None:
    return None
