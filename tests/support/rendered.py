"""Run a container that a controller rendered, as a local process: the pod template KServe wrote
into an InferenceService's Deployment (`<isvc>-predictor`), or a Job's, is the source of truth for
what the process gets, so the arguments and environment a cluster would really pass are the ones
tested.

What is kept, verbatim: the container's command (else the image's ENTRYPOINT, read from this
repository's Dockerfile for that image), its args, its `env` (values, `secretKeyRef`,
`configMapKeyRef`, `fieldRef` of the namespace/pod name) and `envFrom` (Secrets and ConfigMaps,
with their prefix), resolved through the API as the kubelet would.

What is changed, and only that: the executable is this virtualenv's console script of the same name
(`.venv/bin/creditmodel-predictor` for the predictor image's ENTRYPOINT), since images do not run
here; and every listening port the container declares (`ports[].containerPort`) is replaced by a
free local port wherever the args or env name it, since several predictors share this machine's
loopback. The process also inherits this process's environment (PATH, Python settings) minus any
S3/AWS variables, so that storage credentials come from the pod spec alone; `extra_args` and
`extra_env` are a test's own additions, named at the call site.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.support.process import REPO_ROOT, ManagedProcess, free_port

VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class LocalProcess:
    """What to run for a rendered container: argv and env, and container port -> local port."""

    argv: list[str]
    env: dict[str, str]
    ports: dict[int, int] = field(default_factory=dict)

    def port(self, name_or_number: str | int, container: Mapping[str, Any]) -> int:
        """The local port standing for a container port (by number or by its `ports[].name`)."""
        for port in container.get("ports") or []:
            if name_or_number in (port.get("name"), port["containerPort"]):
                return self.ports[int(port["containerPort"])]
        raise KeyError(f"container declares no port {name_or_number!r}")


def deployment_container(
    api: client.ApiClient, namespace: str, deployment: str, container: str | None = None
) -> dict[str, Any]:
    """A container of a Deployment's pod template, as plain JSON (API field names)."""
    raw = client.AppsV1Api(api).read_namespaced_deployment(
        deployment, namespace, _preload_content=False
    )
    containers = json.loads(raw.data)["spec"]["template"]["spec"]["containers"]
    if container is None:
        return dict(containers[0])
    return next(dict(c) for c in containers if c["name"] == container)


def image_entrypoint(image: str) -> list[str]:
    """The ENTRYPOINT of this repository's image `.../<component>:<tag>` (<component>/Dockerfile)."""
    repository = image.split("@", 1)[0].rsplit(":", 1)[0] if "/" in image else image
    component = repository.rsplit("/", 1)[-1]
    dockerfile = REPO_ROOT / component / "Dockerfile"
    for line in dockerfile.read_text().splitlines():
        if line.startswith("ENTRYPOINT"):
            return list(json.loads(line.removeprefix("ENTRYPOINT").strip()))
    raise ValueError(f"{dockerfile} has no ENTRYPOINT")


def _local_executable(name: str) -> str:
    script = VENV_BIN / Path(name).name
    if not script.exists():
        raise FileNotFoundError(f"no console script {script.name} in {VENV_BIN}")
    return str(script)


def _secret(api: client.ApiClient, namespace: str, name: str) -> dict[str, str]:
    secret = client.CoreV1Api(api).read_namespaced_secret(name, namespace)
    values = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
    return {**values, **(secret.string_data or {})}


def _config_map(api: client.ApiClient, namespace: str, name: str) -> dict[str, str]:
    return dict(client.CoreV1Api(api).read_namespaced_config_map(name, namespace).data or {})


def resolve_env(
    api: client.ApiClient, namespace: str, container: Mapping[str, Any], pod_name: str = ""
) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom first, then env."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "secretRef" in source:
            found = _optional(source["secretRef"], lambda n: _secret(api, namespace, n))
        elif "configMapRef" in source:
            found = _optional(source["configMapRef"], lambda n: _config_map(api, namespace, n))
        else:
            raise ValueError(f"unsupported envFrom source: {source}")
        env.update({prefix + k: v for k, v in found.items()})
    fields = {"metadata.namespace": namespace, "metadata.name": pod_name}
    for item in container.get("env") or []:
        if "value" in item or "valueFrom" not in item:
            env[item["name"]] = str(item.get("value", ""))
            continue
        source = item["valueFrom"]
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            env[item["name"]] = _secret(api, namespace, ref["name"])[ref["key"]]
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            env[item["name"]] = _config_map(api, namespace, ref["name"])[ref["key"]]
        elif source.get("fieldRef", {}).get("fieldPath") in fields:
            env[item["name"]] = fields[source["fieldRef"]["fieldPath"]]
        else:
            raise ValueError(f"unsupported env source: {item}")
    # $(VAR) references to earlier variables, as the kubelet expands them
    return {k: _expand(v, env) for k, v in env.items()}


def _optional(ref: Mapping[str, Any], read: Any) -> dict[str, str]:
    try:
        return dict(read(ref["name"]))
    except client.ApiException as exc:
        if exc.status == 404 and ref.get("optional"):
            return {}
        raise


def _expand(value: str, env: Mapping[str, str]) -> str:
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), value)


def local_process(
    api: client.ApiClient,
    namespace: str,
    container: Mapping[str, Any],
    *,
    extra_args: Sequence[str] = (),
    extra_env: Mapping[str, str] | None = None,
) -> LocalProcess:
    """argv and env for running `container` here (see the module docstring for what changes)."""
    ports = {int(p["containerPort"]): free_port() for p in container.get("ports") or []}
    command = list(container.get("command") or image_entrypoint(container["image"]))
    argv = [_local_executable(command[0]), *command[1:], *(container.get("args") or [])]
    argv = [
        _with_local_ports(arg, ports, previous)
        for previous, arg in zip(["", *argv[:-1]], argv, strict=True)
    ]
    env = resolve_env(api, namespace, container)
    env = {k: _with_local_ports(v, ports, k) for k, v in env.items()}
    env = {k: _expand(v, env) for k, v in env.items()}
    argv = [_expand(arg, env) for arg in argv]
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_", "KUBECONFIG"))
    }
    return LocalProcess([*argv, *extra_args], {**inherited, **env, **dict(extra_env or {})}, ports)


def _with_local_ports(value: str, ports: Mapping[int, int], previous: str) -> str:
    """`value` with a container port replaced when it is a port setting: the value after a
    `--..port` flag (or of a `..PORT` variable), or `--..port=N`."""
    match = re.fullmatch(r"(--?[\w.-]*port[\w.-]*=)(\d+)", value, flags=re.IGNORECASE)
    if match and int(match[2]) in ports:
        return f"{match[1]}{ports[int(match[2])]}"
    if value.isdigit() and int(value) in ports and "port" in previous.lower():
        return str(ports[int(value)])
    return value


class _ExactEnvProcess(ManagedProcess):
    """A ManagedProcess whose environment is exactly `env` (ManagedProcess adds os.environ, which
    holds the test's own S3 credentials)."""

    def __init__(self, name: str, argv: Sequence[str], log_dir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            list(argv), stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


@contextlib.contextmanager
def run_rendered(process: LocalProcess, name: str, log_dir: Path) -> Iterator[ManagedProcess]:
    """Start the process (its environment exactly `process.env`); stopped on exit."""
    managed = _ExactEnvProcess(name, process.argv, log_dir, process.env)
    try:
        yield managed
    finally:
        managed.stop()
