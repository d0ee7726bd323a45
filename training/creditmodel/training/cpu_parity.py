"""Does a model score the same on every x86-64 kernel family? Run it under qemu-user CPU models.

onnxruntime picks its integer and float kernels from the CPU it runs on (AVX-512 VNNI, AVX-512
core, AVX2, SSE4.1). For the quantized matmuls those kernels only agree when the integer arithmetic
is exact on each of them, which depends on the quantization choices (u8s8 saturates int16 pair sums
on AVX2 and AVX-512 core but not on VNNI). Rather than trust a reading of the kernels, this module
scores the same rows natively and inside `qemu-x86_64 -cpu MODEL` processes, whose CPUID hides the
newer instruction sets, and reports the largest probability difference per CPU model.

The child side (`python -m creditmodel.training.cpu_parity score DIR`) imports only numpy and
onnxruntime, so it starts in about two seconds under emulation.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The qemu CPU models checked by default and the kernel family each one makes onnxruntime pick.
CPU_MODELS: dict[str, str] = {
    "Haswell": "AVX2, no AVX-512",
    "Nehalem": "SSE4.2, no AVX",
}
QEMU = "qemu-x86_64"
TIMEOUT_SECONDS = 600
_KERNEL_PINS = frozenset({"OPENBLAS_CORETYPE", "MKL_ENABLE_INSTRUCTIONS", "ORT_DISABLE_AVX512"})
# The ISA extensions that change which onnxruntime kernels run, best first.
_NATIVE_FAMILIES = (
    ("avx512_vnni", "AVX-512 VNNI"),
    ("avx512bw", "AVX-512 core"),
    ("avx_vnni", "AVX-VNNI"),
    ("avx2", "AVX2"),
    ("sse4_1", "SSE4.1"),
)


class CpuParityError(RuntimeError):
    """The check could not run (qemu missing, child failed): the bundle is not proven portable."""


@dataclass(frozen=True)
class CpuRun:
    cpu_model: str
    kernels: str
    max_abs_dp: float
    seconds: float


@dataclass(frozen=True)
class CpuParity:
    native: str
    rows: int
    runs: tuple[CpuRun, ...]

    @property
    def max_abs_dp(self) -> float:
        return max((run.max_abs_dp for run in self.runs), default=0.0)

    def describe(self) -> str:
        """Host-independent (it goes into the model card, which must not depend on the build
        machine): the emulated models, not the native CPU."""
        checked = ", ".join(f"{run.cpu_model} ({run.kernels})" for run in self.runs)
        return f"{self.rows} rows, native vs qemu {checked}"

    def record(self) -> dict[str, object]:
        """Everything measured, for the manifest's lineage (which names the build machine)."""
        return {
            "native_kernels": self.native,
            "rows": self.rows,
            "runs": [
                {"cpu_model": r.cpu_model, "kernels": r.kernels, "max_abs_dp": r.max_abs_dp}
                for r in self.runs
            ],
        }


def native_kernels(cpuinfo: str | None = None) -> str:
    """The kernel family onnxruntime picks on this machine, from the CPU flags."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "unknown"
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            break
    return next((name for flag, name in _NATIVE_FAMILIES if flag in flags), "unknown")


def qemu_available() -> bool:
    return shutil.which(QEMU) is not None


def _save_feed(path: Path, feed: dict[str, np.ndarray]) -> list[str]:
    """Numeric arrays as they are, string arrays as fixed-width unicode (no pickle needed)."""
    names = list(feed)
    arrays = {
        f"x{i}": (values.astype(str) if values.dtype == object else values)
        for i, values in enumerate(feed.values())
    }
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return names


def _load_feed(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as stored:
        out = {}
        for i, name in enumerate(names):
            values = stored[f"x{i}"]
            out[name] = values.astype(object) if values.dtype.kind == "U" else values
        return out


def score(model_path: Path, feed: dict[str, np.ndarray], output: str) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    runner = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    return np.asarray(runner.run([output], feed)[0], dtype=np.float32)


def check(
    model: bytes,
    feed: dict[str, np.ndarray],
    output: str,
    cpu_models: tuple[str, ...] = tuple(CPU_MODELS),
) -> CpuParity:
    """Score `feed` natively and under each qemu CPU model; raise CpuParityError if one cannot
    run. Every run is a fresh process, so onnxruntime dispatches its kernels anew."""
    unknown = [name for name in cpu_models if name not in CPU_MODELS]
    if unknown:
        raise CpuParityError(f"unknown CPU model(s) {unknown}; known: {sorted(CPU_MODELS)}")
    if cpu_models and not qemu_available():
        raise CpuParityError(
            f"{QEMU} not found: install qemu-user (Debian) to check the bundle on other CPUs,"
            " or pass --cpu-models none to skip the check"
        )
    with tempfile.TemporaryDirectory(prefix="creditmodel-cpu-") as tmp:
        work = Path(tmp)
        (work / "model.onnx").write_bytes(model)
        names = _save_feed(work / "feed.npz", feed)
        (work / "names.json").write_text(json.dumps(names), encoding="utf-8")
        (work / "output.txt").write_text(output, encoding="utf-8")
        native = _run(work, None)
        runs = []
        for cpu_model in cpu_models:
            started = time.perf_counter()
            emulated = _run(work, cpu_model)
            runs.append(
                CpuRun(
                    cpu_model=cpu_model,
                    kernels=CPU_MODELS[cpu_model],
                    max_abs_dp=float(
                        np.max(np.abs(emulated.astype(np.float64) - native), initial=0.0)
                    ),
                    seconds=round(time.perf_counter() - started, 1),
                )
            )
    return CpuParity(native=native_kernels(), rows=len(native), runs=tuple(runs))


def _child_env() -> dict[str, str]:
    """The environment minus kernel pins: a reference build pins OpenBLAS to its Haswell kernels,
    which an emulated SSE-only CPU cannot execute (SIGILL in numpy's import)."""
    return {key: value for key, value in os.environ.items() if key not in _KERNEL_PINS}


def _run(work: Path, cpu_model: str | None) -> np.ndarray:
    out = work / f"scores-{cpu_model or 'native'}.npy"
    command = [
        sys.executable,
        "-m",
        "creditmodel.training.cpu_parity",
        "score",
        str(work),
        out.name,
    ]
    if cpu_model is not None:
        command = [QEMU, "-cpu", cpu_model, *command]
    try:
        process = subprocess.run(  # fixed argv, no shell
            command,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
            env=_child_env(),
        )
    except subprocess.TimeoutExpired as exc:
        raise CpuParityError(f"scoring under {cpu_model} took over {TIMEOUT_SECONDS} s") from exc
    if process.returncode != 0:
        # qemu prints one warning per CPUID feature TCG lacks; the child's own error is last.
        tail = [line for line in process.stderr.splitlines() if "TCG doesn't support" not in line]
        raise CpuParityError(
            f"scoring under {cpu_model or 'the native CPU'} failed (exit {process.returncode}): "
            + " | ".join(tail[-3:])
        )
    scores: np.ndarray = np.load(work / out.name, allow_pickle=False).astype(np.float64)
    return scores


def _child(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] != "score":
        print("usage: python -m creditmodel.training.cpu_parity score DIR OUT", file=sys.stderr)
        return 2
    work = Path(argv[1])
    names = json.loads((work / "names.json").read_text(encoding="utf-8"))
    feed = _load_feed(work / "feed.npz", names)
    output = (work / "output.txt").read_text(encoding="utf-8")
    np.save(work / argv[2], score(work / "model.onnx", feed, output))
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
