"""Script-mode serving calls the user's handlers as the scikit-learn container does (its
``sagemaker_containers`` transformer and worker: src/sagemaker_containers/_transformer.py and
_worker.py): text bodies for application/json and text/csv, the model's default Accept for
none or */*, transform_fn instead of the three handlers. Called directly, no server."""

from __future__ import annotations

import asyncio
import json
import types

import numpy as np
import pytest

from ferry.sagemaker.algorithms import AlgorithmError
from ferry.sagemaker.model_process import ScriptServable
from ferry.sagemaker.script_mode import ScriptModel
from ferry.sagemaker.serving import RequestError


def script(**handlers) -> types.ModuleType:
    module = types.ModuleType("user_script")
    for name, handler in handlers.items():
        setattr(module, name, handler)
    return module


def invoke(model: ScriptModel, content_type: str, accept: str, body: bytes) -> tuple[bytes, str]:
    return asyncio.run(ScriptServable(model).invoke(content_type, accept, body))


@pytest.mark.parametrize(("content_type", "kind"), [("application/json", str), ("text/csv", str),
                                                    ("text/csv;label_size=0", bytes),
                                                    ("application/x-npy", bytes), ("text/plain", bytes)])
def test_input_fn_gets_text_for_the_containers_utf8_types_only(content_type, kind):
    seen = []

    def input_fn(body, content_type):
        seen.append(type(body))
        return np.zeros((1, 2))

    model = ScriptModel(script(input_fn=input_fn), types.SimpleNamespace(predict=lambda x: [1]), "s.py")
    invoke(model, content_type, "application/json", b"1,2")
    assert seen == [kind]


def test_a_body_that_is_not_utf8_is_the_callers_fault():
    model = ScriptModel(script(), types.SimpleNamespace(predict=lambda x: [1]), "s.py")
    with pytest.raises(RequestError) as refused:
        invoke(model, "application/json", "application/json", b"\xff\xfe[1]")
    assert refused.value.status == 400


@pytest.mark.parametrize(("accept", "environment", "answered"), [
    ("", {}, "application/json"), ("*/*", {}, "application/json"),
    ("*/*", {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"}, "text/csv"),
    ("application/x-npy", {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"}, "application/x-npy"),
])
def test_no_accept_means_the_models_default_accept(accept, environment, answered):
    model = ScriptModel(script(), types.SimpleNamespace(predict=lambda x: np.array([7, 8])), "s.py", environment)
    _body, content_type = invoke(model, "text/csv", accept, b"1,2\n3,4\n")
    assert content_type == answered


def test_transform_fn_does_the_whole_request():
    calls = []

    def transform_fn(model, body, content_type, accept):
        calls.append((model, body, content_type, accept))
        return json.dumps({"echo": body}), "application/vnd.echo+json"

    model = ScriptModel(script(transform_fn=transform_fn), "the model", "s.py")
    assert invoke(model, "text/csv", "*/*", b"1,2") == (b'{"echo": "1,2"}', "application/vnd.echo+json")
    assert calls == [("the model", "1,2", "text/csv", "application/json")]
    plain = ScriptModel(script(transform_fn=lambda m, b, c, a: b"raw"), None, "s.py")
    assert invoke(plain, "application/x-npy", "application/x-npy", b"x") == (b"raw", "application/x-npy")


def test_transform_fn_beside_the_other_handlers_is_refused_at_load():
    with pytest.raises(AlgorithmError, match="cannot use transform_fn with input_fn"):
        ScriptModel(script(transform_fn=lambda *a: b"", input_fn=lambda b, c: b), None, "s.py")


def test_a_failing_transform_fn_is_a_model_error():
    def transform_fn(model, body, content_type, accept):
        raise RuntimeError("boom")

    with pytest.raises(RequestError) as failed:
        invoke(ScriptModel(script(transform_fn=transform_fn), None, "s.py"), "text/csv", "", b"1")
    assert (failed.value.status, failed.value.error_type) == (424, "ModelError")


# -- the model's own process (ferry.sagemaker.model_process), started for real, no stack ---------------

def model_process(tmp_path, script_text: str, environment: dict[str, str] | None = None):
    from ferry.sagemaker.model_process import ModelProcess

    code = tmp_path / "code"
    code.mkdir()
    (code / "serve.py").write_text(script_text)
    (tmp_path / "model").mkdir()
    return ModelProcess("unit", tmp_path / "model", code, {"SAGEMAKER_PROGRAM": "serve.py", **(environment or {})})


SLOW_OR_EXITING = """
import sys, time

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    if body == b"exit":
        sys.exit(3)  # in the user's code: a ModelError for this request, not the process's end
    if body == b"slow":
        time.sleep(3)
    return b"ok", "text/plain"
"""


def test_a_model_that_exits_or_hangs_fails_its_request_only(tmp_path, monkeypatch):
    from ferry.sagemaker import model_process as module

    monkeypatch.setattr(module, "INVOCATION_TIMEOUT", 0.5)
    process = model_process(tmp_path, SLOW_OR_EXITING)

    async def scenario():
        await process.start()
        try:
            with pytest.raises(RequestError) as exited:
                await process.invoke("application/octet-stream", "*/*", b"exit")
            assert (exited.value.status, exited.value.error_type) == (424, "ModelError")
            assert "SystemExit" in exited.value.message
            with pytest.raises(RequestError) as slow:
                await process.invoke("application/octet-stream", "*/*", b"slow")
            assert "did not answer within 0.5 seconds" in slow.value.message
            await asyncio.sleep(3)  # the slow answer holds its own process (as one container), then it serves
            assert await process.invoke("application/octet-stream", "*/*", b"x") == (b"ok", "text/plain")
        finally:
            await process.close(drain_timeout=0)
        return process.process.returncode

    assert asyncio.run(scenario()) == 0  # it ended when its socket closed


@pytest.mark.parametrize(("script_text", "reason"), [
    ("def model_fn(model_dir):\n    raise RuntimeError('weights are corrupt')\n", "RuntimeError: weights are corrupt"),
    ("import os\ndef model_fn(model_dir):\n    os._exit(9)\n", "exited with status 9 while loading"),
    ("x = 1\n", "has no model_fn"),
], ids=["raises", "dies", "no-model-fn"])
def test_a_model_that_does_not_load_says_why(tmp_path, script_text, reason):
    process = model_process(tmp_path, script_text)
    with pytest.raises(AlgorithmError, match=reason):
        asyncio.run(process.start())


def test_messages_cut_short_or_out_of_bounds_are_refused():
    from ferry.sagemaker.model_process import ProtocolError, _answer, read_message

    async def read(data: bytes):
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await read_message(reader)

    assert asyncio.run(read(b"")) is None
    for hostile in (b"\x00\x00", b"\x00\x00\x00\x05\x00\x00\x00\x00{\"a\"", b"\x7f\xff\xff\xff\x00\x00\x00\x00",
                    b"\x00\x00\x00\x01\x00\x00\x00\x00[", b"\x00\x00\x00\x02\x00\x00\x00\x00[]"):
        with pytest.raises(ProtocolError):
            asyncio.run(read(hostile))
    for header in ({"status": 500, "error_type": "X", "message": "m"}, {"status": 200}, {"status": "200"}):
        with pytest.raises(RequestError) as refused:
            _answer(header, b"")
        assert (refused.value.status, refused.value.error_type) == (424, "ModelError")
