"""The typed service contract (agent/protocol/services.py), and docs/protocol.md §8 against it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from agent.errors import CallError, ProtocolError
from agent.protocol import services
from agent.protocol.services import (
    CALLS,
    TRANSITIONS,
    CancelScriptRequest,
    ExitCode,
    Isolation,
    LogRun,
    ScriptFile,
    ScriptLimits,
    ScriptStatus,
    ScriptStatusRequest,
    StartScriptRequest,
    State,
    Syntax,
    TransitionError,
    UploadRequest,
    WireType,
    check_transition,
    describe_exit_code,
    wire_fields,
)

PROTOCOL_MD = Path(__file__).parents[3] / "docs" / "protocol.md"

# -- docs/protocol.md §8 against the types ------------------------------------------


def section_8() -> str:
    text = PROTOCOL_MD.read_text()
    start = text.index("## 8. Services")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def table(header: str) -> list[list[str]]:
    """The rows of the §8 table whose header row starts with ``| header |``."""
    lines = section_8().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip().strip("`") for cell in line.strip().strip("|").split("|")])
    return rows


def documented_types() -> list[type[WireType]]:
    found: list[type[WireType]] = []
    for request, reply in CALLS:
        found += [t for t in (request, reply) if t is not None and t not in found]
    records = [ScriptFile, ScriptLimits, LogRun]  # the records inside the calls
    return found + records


def test_every_method_is_documented_with_its_request_and_reply_types() -> None:
    documented = {row[0]: (row[1], row[2]) for row in table("Method")}
    in_code = {
        request.METHOD: (request.__name__, reply.__name__ if reply else "null")
        for request, reply in CALLS
    }
    missing = sorted(set(in_code) - set(documented))
    extra = sorted(set(documented) - set(in_code))
    assert not missing, f"docs/protocol.md §8 lacks the methods {missing} (see CALLS)"
    assert not extra, f"docs/protocol.md §8 documents {extra}, which CALLS does not have"
    for method, types in in_code.items():
        assert documented[method] == types, (
            f"docs/protocol.md §8 says {method} is {documented[method]}, the code {types}"
        )


def test_every_field_is_documented_as_the_types_define_it() -> None:
    documented: dict[str, list[tuple[str, str, str, str]]] = {}
    for name, field, kind, required, default in table("Type"):
        documented.setdefault(name, [])
        if field != "-":
            documented[name].append((field, kind, required, default))
    for kind in documented_types():
        expected = [
            (f.name, f.kind.doc, "yes" if f.required else "no", f.default_doc)
            for _, f in wire_fields(kind)
        ]
        assert kind.__name__ in documented, f"docs/protocol.md §8 has no rows for {kind.__name__}"
        rows = documented.pop(kind.__name__)
        for want, have in zip(expected, rows, strict=False):
            assert want == have, (
                f"docs/protocol.md §8, {kind.__name__}: the docs say {have} "
                f"(field, kind, required, default), the code {want}"
            )
        assert len(rows) == len(expected), (
            f"docs/protocol.md §8, {kind.__name__}: the docs list "
            f"{[r[0] for r in rows]}, the code {[e[0] for e in expected]}"
        )
    assert not documented, f"docs/protocol.md §8 documents unknown types {sorted(documented)}"


def test_the_table_check_notices_drift(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above would fail if the code gained a field the docs lack."""
    real = services.wire_fields

    def with_extra(kind: Any) -> tuple[tuple[str, services.WireField], ...]:
        extra = ("extra", services.WireField("NewField", services.TEXT, required=True))
        return (*real(kind), extra) if kind is ScriptStatusRequest else real(kind)

    monkeypatch.setattr(__name__ + ".wire_fields", with_extra)
    with pytest.raises(AssertionError, match="ScriptStatusRequest: the docs list"):
        test_every_field_is_documented_as_the_types_define_it()


# -- parsing requests -------------------------------------------------------------


def test_a_start_request_parses_with_its_defaults_and_round_trips() -> None:
    request = StartScriptRequest.parse({"ScriptTicket": "t1", "ScriptBody": "true", "Extra": 1})
    assert request == StartScriptRequest("t1", "true")
    assert (request.syntax, request.isolation, request.mutex_name, request.grace) == (
        Syntax.BASH, Isolation.FULL, "RunningScript", 10.0,
    )  # fmt: skip
    assert request.mutex_timeout is None
    assert StartScriptRequest.parse(request.to_wire()) == request
    assert "IsolationMutexTimeout" not in request.to_wire()  # None is "not given": left out


def test_blank_texts_take_the_default_where_tentacle_does() -> None:
    request = StartScriptRequest.parse(
        {"ScriptTicket": "t", "ScriptBody": "", "Syntax": "", "Isolation": None,
         "IsolationMutexName": "", "Files": [{"Name": "a", "Length": 3}]}
    )  # fmt: skip
    assert (request.body, request.syntax, request.isolation) == ("", Syntax.BASH, Isolation.FULL)
    assert request.files == (ScriptFile("a", 3),)


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        (ScriptStatusRequest, {"ScriptTicket": "t"},
         "scripts.status needs 'LastLogSequence' as int, got None"),
        (ScriptStatusRequest, {"ScriptTicket": "t", "LastLogSequence": True},
         "'LastLogSequence' as int"),
        (CancelScriptRequest, {"LastLogSequence": 0}, "scripts.cancel needs 'ScriptTicket' as str"),
        (CancelScriptRequest, {"ScriptTicket": "t", "LastLogSequence": -1},
         "LastLogSequence must be 0 or"),
        (StartScriptRequest, {"ScriptTicket": "t"}, "scripts.start needs 'ScriptBody' as str"),
        (StartScriptRequest, {"ScriptTicket": "t", "ScriptBody": "", "Syntax": "perl"},
         "Syntax must be one of bash, sh, python, not 'perl'"),
        (StartScriptRequest, {"ScriptTicket": "t", "ScriptBody": "", "Isolation": "partial"},
         "Isolation must be full or none, not 'partial'"),
        (StartScriptRequest, {"ScriptTicket": "t", "ScriptBody": "", "Grace": float("inf")},
         "Grace must be a number of seconds"),
        (StartScriptRequest, {"ScriptTicket": "t", "ScriptBody": "", "Files": [{"Name": "a"}]},
         "each of Files needs Name (text) and Length (bytes)"),
        (StartScriptRequest, {"ScriptTicket": "t", "ScriptBody": "", "Arguments": "a b"},
         "Arguments must be a list of strings"),
        (UploadRequest, {"Path": "a", "Length": -1}, "Length must be 0 or more bytes, got -1"),
    ],
)  # fmt: skip
def test_a_bad_request_is_bad_params_naming_the_field(
    kind: type[WireType], params: dict[str, Any], message: str
) -> None:
    with pytest.raises(CallError) as caught:
        kind.parse(params)
    assert caught.value.kind == "bad_params"
    assert message in str(caught.value)


def test_a_malformed_reply_is_a_protocol_error_naming_the_field() -> None:
    with pytest.raises(ProtocolError, match="'NextLogSequence' as int"):
        ScriptStatus.parse_reply({"Ticket": "t", "State": "Complete", "ExitCode": 0, "Logs": []})


def test_a_status_round_trips_with_streamed_runs_leaving_text_out() -> None:
    run = LogRun(services.LogSource.STDOUT, 1, 2, 3, "2026-12-01T00:00:00+00:00")
    status = ScriptStatus("t", State.RUNNING, None, (run,), 2, True)
    wire = status.to_wire()
    assert wire["ExitCode"] is None  # required: null until Complete, never left out
    assert "Text" not in wire["Logs"][0]
    assert ScriptStatus.parse_reply(wire) == status
    assert LogRun.parse({**wire["Logs"][0], "Text": ""}).text == ""  # an empty line stays ""


def test_finished_without_more_logs_falls_back_to_whether_lines_came() -> None:
    done = ScriptStatus("t", State.COMPLETE, 0, (), 0)
    assert done.finished
    assert not ScriptStatus("t", State.RUNNING, None, (), 0, False).finished
    assert not ScriptStatus("t", State.COMPLETE, 0, (), 0, True).finished


# -- states and exit codes -------------------------------------------------------------

ALLOWED = {
    (State.PENDING, State.RUNNING),
    (State.PENDING, State.COMPLETE),
    (State.RUNNING, State.COMPLETE),
}


@pytest.mark.parametrize("current", list(State))
@pytest.mark.parametrize("new", list(State))
def test_the_transition_table(current: State, new: State) -> None:
    if (current, new) in ALLOWED:
        assert check_transition(current, new) is new
    else:
        with pytest.raises(TransitionError, match=f"from {current} to {new}"):
            check_transition(current, new)


def test_the_table_holds_exactly_the_allowed_moves() -> None:
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == ALLOWED


def test_a_complete_script_state_cannot_run_again() -> None:
    from agent.scripts.state import ScriptSpec, ScriptState

    done = ScriptState(ScriptSpec("t")).moved_to(State.COMPLETE, exit_code=0)
    with pytest.raises(TransitionError, match="from Complete to Running"):
        done.moved_to(State.RUNNING)
    with pytest.raises(TypeError, match="moved_to"):
        done.but(state=State.PENDING)


def test_reserved_exit_codes_keep_tentacles_values() -> None:
    assert [int(code) for code in ExitCode][:6] == [-41, -42, -43, -44, -45, -46]
    assert [int(code) for code in ExitCode][6:] == [-47]  # this agent's own: out of memory
    assert describe_exit_code(-45) == "unknown script ticket"
    assert describe_exit_code(3) == "exit code 3"


# The two sides of the contract. outputlog.py still builds the log runs' dicts itself
# (a hot path, being reworked on another branch); the command line reads AgentClient's
# reply dicts to print them.
SIDES = ("services", "client", "scripts")
NOT_YET = {"scripts/outputlog.py"}


def test_the_wire_vocabulary_is_written_only_in_the_contract() -> None:
    """No module of the agent or client side spells a call's field names but the contract."""
    names = {f.name for kind in documented_types() for _, f in wire_fields(kind)}
    # too common to search for ("Files": also a folder of an SSH worker's root)
    # ("Limits": also agent.protocol.limits's class, exported by the client)
    names -= {"Length", "Path", "Text", "Count", "OS", "Name", "Files", "Limits"}
    package = Path(services.__file__).parents[1]
    offenders = []
    for side in SIDES:
        for path in sorted((package / side).rglob("*.py")):
            relative = str(path.relative_to(package))
            if relative in NOT_YET:
                continue
            text = path.read_text()
            offenders += [f"{relative}: {n}" for n in sorted(names)
                          if re.search(rf"[\"']{n}[\"']", text)]  # fmt: skip
    assert not offenders, f"wire names outside agent/protocol/services.py: {offenders}"


def test_the_clients_start_request_is_what_the_agent_parses(tmp_path: Path) -> None:
    from agent.client.scripts import ScriptRequest

    (tmp_path / "f").write_bytes(b"abc")
    request = ScriptRequest("echo", syntax="sh", files=[("sub/f", tmp_path / "f")], grace=2)
    start = request.to_start()
    assert StartScriptRequest.parse(start.to_wire()) == start
    assert (start.syntax, start.files, start.grace) == (Syntax.SH, (ScriptFile("sub/f", 3),), 2)
    with pytest.raises(CallError, match="Syntax must be one of bash, sh, python, not 'perl'"):
        ScriptRequest("echo", syntax="perl").to_start()
