"""The batch Jobs' exit codes and termination message: whatever creditmodel-train renders fits the
kubelet's 4096 bytes and parses back; whatever a pod leaves there parses to a message or None."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from creditmodel.core import jobs
from creditmodel.core.jobs import ExitCode, TerminationMessage

pytestmark = pytest.mark.unit

texts = st.text(max_size=6000)
messages = st.builds(
    TerminationMessage,
    exit_code=st.one_of(st.none(), st.sampled_from(list(ExitCode)), st.integers(-300, 300)),
    kind=st.one_of(st.none(), st.sampled_from([c.kind for c in ExitCode])),
    model_name=st.one_of(st.none(), st.text(max_size=80)),
    version=st.one_of(st.none(), st.text(max_size=80)),
    uri=st.one_of(st.none(), st.text(max_size=300)),
    gates_passed=st.one_of(st.none(), st.booleans()),
    failed_gates=st.lists(st.text(max_size=150), max_size=60),
    error=st.one_of(st.none(), texts),
)


def test_exit_codes_are_the_documented_ones() -> None:
    assert {c.value: c.kind for c in ExitCode} == {
        0: "ok",
        2: "bad_input",
        3: "gate_failed",
        4: "storage",
    }


@given(messages)
def test_rendered_messages_fit_the_kubelet_and_parse_back(message: TerminationMessage) -> None:
    text = jobs.render(message)
    assert len(text.encode()) <= jobs.TERMINATION_MESSAGE_MAX_BYTES
    parsed = jobs.parse(text)
    assert parsed is not None
    assert parsed.exit_code == message.exit_code
    assert parsed.kind == message.kind
    # Shortening keeps a prefix of the gates and of the error, never invents either.
    assert parsed.failed_gates == message.failed_gates[: len(parsed.failed_gates)]
    if parsed.error is not None:
        assert message.error is not None
        assert message.error.startswith(parsed.error.removesuffix("..."))


def test_a_message_that_fits_is_kept_whole() -> None:
    message = TerminationMessage(exit_code=3, kind="gate_failed", failed_gates=["auc"], error="x")
    assert jobs.parse(jobs.render(message)) == message


def test_a_long_error_is_shortened_before_the_gates() -> None:
    gates = [f"gate_{i}" for i in range(20)]
    message = TerminationMessage(exit_code=3, failed_gates=gates, error="é" * 2000)
    parsed = jobs.parse(jobs.render(message))
    assert parsed is not None
    assert parsed.failed_gates == gates
    assert (parsed.error or "").endswith("...")


@given(st.one_of(texts, st.binary(max_size=5000)))
def test_parse_never_raises(text: str | bytes) -> None:
    parsed = jobs.parse(text)
    assert parsed is None or isinstance(parsed, TerminationMessage)


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "not json",
        '["a list"]',
        '{"exit_code": "3"}',
        '{"exit_code": 3.5}',
        '{"exit_code": true}',
        '{"exit_code": 3, "failed_gates": "auc"}',
        '{"exit_code": 3' + " " * 5000 + "}",
        "2024-01-01 Traceback (most recent call last): ...",
    ],
)
def test_garbage_parses_to_none(text: str | None) -> None:
    assert jobs.parse(text) is None


def test_unknown_fields_and_codes_are_tolerated() -> None:
    parsed = jobs.parse('{"exit_code": 137, "new_field": {"x": 1}, "failed_gates": []}')
    assert parsed is not None
    assert parsed.exit_code == 137
    assert parsed.code is None


def test_texts_read_from_a_pod_are_bounded() -> None:
    text = json.dumps({"exit_code": 2, "error": "x" * 2500, "failed_gates": ["g" * 300] * 3})
    parsed = jobs.parse(text)
    assert parsed is not None
    assert len(parsed.error or "") == jobs.ERROR_MAX_CHARS
    assert all(len(gate) == jobs.GATE_NAME_MAX_CHARS for gate in parsed.failed_gates)
