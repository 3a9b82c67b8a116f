"""A script-mode model in a process of its own, as SageMaker gives each model a container.

The endpoint server fetches the model and its code, then starts ``python -m
ferry.sagemaker.model_process`` (:class:`ModelProcess`) with the model's ``Environment`` and
SageMaker's serving variables, and nothing of the stack's (no S3 key pair, no database
password): the user's ``model_fn`` and handlers run there (:class:`ScriptServable`), read their
own variables from ``os.environ``, import their modules by bare names without meeting another
endpoint's, and a slow or crashing script stalls or fails its own endpoint only. What the
process prints goes to the endpoint server's log, each line under the endpoint's name.

The two talk over a socket pair, in messages of an 8-byte prefix (the JSON header's length and
the body's), the JSON header, then the body:

- the model process's first message says the model loaded (``{"ready": true}``) or why not
  (``{"failed": reason}``, the reason the deploy fails with);
- a request is ``{"id", "content_type", "accept"}`` with the request body; its answer
  ``{"id", "status": 200, "content_type"}`` with the answer's body, or ``{"id", "status",
  "error_type", "message"}`` (SageMaker's error, see ferry.sagemaker.serving.RequestError).

Why this and not HTTP to a container-style ``/invocations`` server inside the process: an HTTP
server in the model process and a client in the endpoint server would parse every request twice
more; these messages cost one small write and one read each way, and requests stay batched
(``ROW_BATCHING``) in the model process as they arrive.

The model process exits when its socket closes, however the endpoint server went (``kill -9``
included; it also asks the kernel to kill it with its parent). A model process that dies fails
the requests it held with ``ModelError`` and is started again for the endpoint's next request,
as SageMaker replaces a failed instance; one that does not answer within
:data:`INVOCATION_TIMEOUT` seconds fails the request, as InvokeEndpoint times out.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from ferry.sagemaker.algorithms import AlgorithmError
from ferry.sagemaker.formats import UnsupportedAccept
from ferry.sagemaker.script_mode import InputRejected, ScriptModel, import_script_model, user_code_environment
from ferry.sagemaker.serving import Batcher, RequestError

log = logging.getLogger("ferry.endpoint")

#: SageMaker's InvokeEndpoint waits this long for a model's answer.
INVOCATION_TIMEOUT = 60.0
#: How long a model's ``model_fn`` may take to load it (SageMaker's container health check
#: allows up to an hour, configurable; a model this server can hold loads in far less).
LOAD_TIMEOUT = 600.0
_PREFIX = struct.Struct("!II")
_MAX_HEADER = 64 * 1024
#: No message body is larger: requests are capped at SageMaker's 6 MB, answers here at this.
_MAX_BODY = 64 * 1024 * 1024


class ProtocolError(Exception):
    """A message that is cut short or out of bounds: the other side is not speaking this protocol."""


async def read_message(reader: asyncio.StreamReader) -> tuple[dict[str, Any], bytes] | None:
    """The next message, or None when the other side closed between messages."""
    try:
        prefix = await reader.readexactly(_PREFIX.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ProtocolError("a message cut short") from None
        return None
    header_size, body_size = _PREFIX.unpack(prefix)
    if header_size > _MAX_HEADER or body_size > _MAX_BODY:
        raise ProtocolError(f"a message of {header_size} + {body_size} bytes")
    try:
        header = json.loads(await reader.readexactly(header_size))
        body = await reader.readexactly(body_size)
    except asyncio.IncompleteReadError:
        raise ProtocolError("a message cut short") from None
    except ValueError:
        raise ProtocolError("a header that is not JSON") from None
    if not isinstance(header, dict):
        raise ProtocolError("a header that is not a JSON object")
    return header, body


def write_message(writer: asyncio.StreamWriter, header: dict[str, Any], body: bytes = b"") -> None:
    encoded = json.dumps(header).encode()
    writer.writelines([_PREFIX.pack(len(encoded), len(body)) + encoded, body])


# -- the endpoint server's end ----------------------------------------------------------------------

class ModelProcess:
    """One endpoint's script-mode model, served by a process of its own (see the module docstring).

    ``model_dir`` holds the unpacked model archive, ``code_dir`` the code (the endpoint server
    has fetched both); ``environment`` is the model's ``Environment``.
    """

    def __init__(self, name: str, model_dir: Path, code_dir: Path, environment: dict[str, str]) -> None:
        self.name, self.model_dir, self.code_dir, self.environment = name, model_dir, code_dir, environment
        self.algorithm = f"script:{environment.get('SAGEMAKER_PROGRAM')}"
        self.process: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._ids = itertools.count()
        self._starting = asyncio.Lock()
        self._closing = False
        self._tasks: set[asyncio.Task] = set()
        #: The process's last lines of output, for the reason when it fails.
        self._output: collections.deque[str] = collections.deque(maxlen=5)

    def process_environment(self) -> dict[str, str]:
        """SageMaker's serving variables (the scikit-learn image's), then the model's ``Environment``."""
        image = {"SM_MODEL_DIR": str(self.model_dir), "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        return user_code_environment(image, self.environment)

    async def start(self) -> None:
        """Start the process and wait until its model has loaded; AlgorithmError with the reason if it does not."""
        self._output.clear()
        ours, theirs = socket.socketpair()
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ferry.sagemaker.model_process", "--socket-fd", str(theirs.fileno()),
                "--parent", str(os.getpid()), "--model-dir", str(self.model_dir), "--code-dir", str(self.code_dir),
                pass_fds=(theirs.fileno(),), env=self.process_environment(), cwd=self.code_dir,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._spawn(self._echo(self.process.stdout))
        reader, writer = await asyncio.open_connection(sock=ours)
        try:
            first = await asyncio.wait_for(read_message(reader), LOAD_TIMEOUT)
        except (asyncio.TimeoutError, ProtocolError, OSError) as exc:
            first, reason = None, f"the model did not load within {LOAD_TIMEOUT:g} seconds" \
                if isinstance(exc, asyncio.TimeoutError) else f"the model's process broke off: {exc}"
        else:
            reason = ""
        if first is None or first[0].get("ready") is not True:
            writer.close()
            status = await self._ended()
            if first is not None:
                reason = str(first[0].get("failed") or "the model's process did not say it loaded")
            raise AlgorithmError(reason or f"the model's process exited with status {status} while loading: "
                                           f"{' | '.join(self._output)[-500:]}")
        self._writer = writer
        self._spawn(self._read_answers(reader, writer))

    async def invoke(self, content_type: str, accept: str, body: bytes) -> tuple[bytes, str]:
        if self._writer is None:
            await self._restart()
        loop = asyncio.get_running_loop()
        request_id = next(self._ids)
        future = self._pending[request_id] = loop.create_future()
        timer = loop.call_later(INVOCATION_TIMEOUT, _expire, future)
        try:
            write_message(self._writer, {"id": request_id, "content_type": content_type, "accept": accept}, body)
            await self._writer.drain()
            header, answer = await future
        except (ConnectionError, RuntimeError) as exc:  # the process went while this was sent
            raise RequestError(424, "ModelError", f"the model's process is gone: {exc}") from None
        finally:
            timer.cancel()
            self._pending.pop(request_id, None)
        return _answer(header, answer)

    async def close(self, drain_timeout: float = 60.0) -> None:
        """Let the requests it holds finish (up to ``drain_timeout`` seconds), then end the process."""
        self._closing = True
        deadline = time.monotonic() + drain_timeout
        while self._pending and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self._writer is not None:
            self._writer.close()
        await self._ended()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    async def _restart(self) -> None:
        async with self._starting:
            if self._writer is not None:
                return
            if self._closing:
                raise RequestError(424, "ModelError", "the endpoint's model is being replaced")
            log.warning("endpoint %s: starting its model's process again", self.name)
            try:
                await self.start()
            except Exception as exc:
                raise RequestError(424, "ModelError", f"the model's process could not start again: "
                                                      f"{str(exc)[:300]}") from None

    async def _read_answers(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Hand each answer to its request; when the process goes, fail what it held."""
        try:
            while (message := await read_message(reader)) is not None:
                future = self._pending.get(message[0].get("id"))
                if future is not None and not future.done():
                    future.set_result(message)
        except (ProtocolError, OSError) as exc:
            log.warning("endpoint %s: its model's process broke the protocol (%s); ending it", self.name, exc)
        # What this process held, taken at once: requests from now on start a new process.
        held = list(self._pending.values())
        if self._writer is writer:
            self._writer = None
        writer.close()
        status = await self._ended(grace=2.0)
        if not self._closing:
            log.warning("endpoint %s: its model's process exited with status %s", self.name, status)
        failure = RequestError(424, "ModelError", f"the model's process exited with status {status} while "
                                                  f"answering: {' | '.join(self._output)[-300:]}")
        for future in held:
            if not future.done():
                future.set_exception(failure)

    async def _ended(self, grace: float = 10.0) -> int | None:
        """The process's exit status, once it has gone (killed if it does not within ``grace`` seconds)."""
        process = self.process
        if process is None:
            return None
        try:
            return await asyncio.wait_for(process.wait(), grace)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            return await process.wait()

    async def _echo(self, stream: asyncio.StreamReader) -> None:
        """The process's output into the server's log, a line at a time under the endpoint's name."""
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line over the reader's limit: its start is dropped
                continue
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip()
            self._output.append(text)
            sys.stderr.write(f"[{self.name}] {text}\n")

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(RequestError(424, "ModelError", f"the model did not answer within "
                                                             f"{INVOCATION_TIMEOUT:g} seconds"))


def _answer(header: dict[str, Any], body: bytes) -> tuple[bytes, str]:
    """The model process's answer as the endpoint server returns it (a RequestError for its errors)."""
    status = header.get("status")
    if status == 200 and isinstance(header.get("content_type"), str):
        return body, header["content_type"]
    if isinstance(status, int) and 400 <= status < 500 and isinstance(header.get("error_type"), str) \
            and isinstance(header.get("message"), str):
        raise RequestError(status, header["error_type"], header["message"])
    raise RequestError(424, "ModelError", "the model's process answered out of protocol")


# -- the model process's end -------------------------------------------------------------------------

class ScriptServable:
    """A script-mode model: the user's input_fn/predict_fn/output_fn, on the model process's event loop.

    On the loop, as the built-in models are in the endpoint server, because a thread costs more
    than the prediction: measured at 16 clients with ferry's classifier (0.3 ms a prediction), a
    thread pool gave 573 requests/s, one dedicated thread 1,147, the loop 1,969 (bench/RESULTS.md).
    A script that declares ``ROW_BATCHING = True`` has the rows of requests that arrive together
    predicted in one ``predict_fn`` call (see :class:`Batcher`).
    """

    def __init__(self, model: ScriptModel) -> None:
        self.model = model
        #: One batcher per row width: a request of the wrong width must not fail the others' batch.
        self.batchers: dict[int, Batcher] = {}

    async def invoke(self, content_type: str, accept: str, body: bytes) -> tuple[bytes, str]:
        if self.model.transform_fn is not None:
            return self._transform(content_type, accept, body)
        try:
            data = self.model.read(body, content_type)
        except InputRejected as exc:
            raise RequestError(400, "ValidationError", f"the model's input_fn refused the body: {str(exc)[:300]}") \
                from None
        try:
            if self.model.row_batching and isinstance(data, np.ndarray) and data.ndim == 2:
                batcher = self.batchers.get(data.shape[1])
                if batcher is None:
                    batcher = self.batchers[data.shape[1]] = Batcher(_RowPredictor(self.model))
                prediction = np.asarray(await batcher.predict(data))
            else:
                prediction = self.model.predict(data)
            return self.model.write(prediction, accept)
        except UnsupportedAccept as exc:
            raise RequestError(406, "ValidationError", str(exc)) from None
        except Exception as exc:
            raise self._model_error(exc) from None

    def _transform(self, content_type: str, accept: str, body: bytes) -> tuple[bytes, str]:
        """The script's transform_fn: the whole request is its own (no row batching)."""
        try:
            return self.model.transform(body, content_type, accept)
        except InputRejected as exc:
            raise RequestError(400, "ValidationError", str(exc)[:300]) from None
        except Exception as exc:
            raise self._model_error(exc) from None

    def _model_error(self, exc: BaseException) -> RequestError:
        print(f"{self.model.program} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return RequestError(424, "ModelError", f"the model failed: {type(exc).__name__}: {str(exc)[:300]}")


class _RowPredictor:
    """A row-batching script's predict_fn in the shape :class:`Batcher` calls."""

    def __init__(self, model: ScriptModel) -> None:
        self.model = model

    def predict(self, rows: np.ndarray) -> Any:
        prediction = self.model.predict(rows)
        if len(prediction) != len(rows):
            raise ValueError(f"ROW_BATCHING: predict_fn answered {len(prediction)} rows for {len(rows)}")
        return prediction


async def _answer_request(servable: ScriptServable, writer: asyncio.StreamWriter, header: dict[str, Any],
                          body: bytes) -> None:
    request_id = header.get("id")
    try:
        answer, content_type = await servable.invoke(str(header.get("content_type")), str(header.get("accept")),
                                                     body)
        reply = {"id": request_id, "status": 200, "content_type": content_type}
    except RequestError as exc:
        answer, reply = b"", {"id": request_id, "status": exc.status, "error_type": exc.error_type,
                              "message": exc.message}
    except (Exception, SystemExit, KeyboardInterrupt) as exc:  # the user's code: sys.exit() included
        answer, error = b"", servable._model_error(exc)
        reply = {"id": request_id, "status": error.status, "error_type": error.error_type, "message": error.message}
    with contextlib.suppress(ConnectionError):  # the server went: nobody is left to answer
        write_message(writer, reply, answer)
        await writer.drain()


async def serve(socket_fd: int, model_dir: Path, code_dir: Path) -> int:
    """Load the model, say so, answer requests until the endpoint server closes the socket."""
    reader, writer = await asyncio.open_connection(sock=socket.socket(fileno=socket_fd))
    try:
        servable = ScriptServable(import_script_model(model_dir, code_dir, dict(os.environ)))
    except (Exception, SystemExit) as exc:
        traceback.print_exc()
        reason = str(exc) if isinstance(exc, AlgorithmError) else f"{type(exc).__name__}: {exc}"
        write_message(writer, {"failed": reason[:1000]})
        await writer.drain()
        writer.close()
        return 1
    write_message(writer, {"ready": True})
    tasks: set[asyncio.Task] = set()
    with contextlib.suppress(ConnectionError):  # as the socket's end: the server went
        while (message := await read_message(reader)) is not None:
            task = asyncio.get_running_loop().create_task(_answer_request(servable, writer, *message))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks)
    return 0


def _die_with(parent: int) -> None:
    """Ask Linux to kill this process when the endpoint server goes (prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    if os.getppid() != parent:  # it went before the request above was made
        os._exit(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve one script-mode model for ferry's endpoint server.")
    parser.add_argument("--socket-fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--code-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    _die_with(args.parent)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    sys.exit(runner(serve(args.socket_fd, args.model_dir, args.code_dir)))


if __name__ == "__main__":
    main()
