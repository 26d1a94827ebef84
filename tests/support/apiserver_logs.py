"""The emulator's `GET /api/v1/namespaces/{ns}/pods/{name}/log`, answered as the real API server
answers it (registry/core/pod/rest/log.go), checked against v1.36.2:

- options are decoded first (400 BadRequest with Go's parse message, e.g.
  `strconv.ParseInt: parsing "x": invalid syntax`), then validated (422 Invalid, kind
  PodLogOptions: tailLines >= 0, limitBytes and sinceSeconds > 0);
- then the pod (404 `pods "x" not found`) and the container: without `container` a pod of one
  container uses it, else 400 `a container name must be specified for pod P, choose one of:
  [a b]`; an unknown one is 400 `container C is not valid for pod P`;
- a pod not bound to a node: 204 No Content (an empty log);
- else the node's kubelet answers (its `log_source`, see container_logs): its 400 becomes
  BadRequest with the kubelet's text as message (`container "main" in pod "p" is waiting to
  start: ContainerCreating`), its 404 becomes NotFound `the server could not find the
  requested resource ( pods/log P)`; a 200 streams the log as text/plain.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web

from .apiserver_types import ApiError, Cause, Obj, invalid
from .container_logs import LogError, LogOptions, invalid_options, parse_options

LogSource = Callable[[Obj, str, LogOptions], AsyncIterator[bytes]]
"""The kubelet's side: (pod, container, options) -> the log's bytes; raises LogError."""


def _bad(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def container_of(pod: Obj, wanted: str | None) -> str:
    """The container a log request reads (validateContainer of the real server)."""
    name = pod["metadata"]["name"]
    spec = pod.get("spec") or {}
    names = [
        str(c.get("name", ""))
        for field in ("initContainers", "containers", "ephemeralContainers")
        for c in spec.get(field) or []
    ]
    if not wanted:
        containers = spec.get("containers") or []
        if len(containers) == 1:
            return str(containers[0].get("name", ""))
        if not containers:
            raise _bad(f"a container name must be specified for pod {name}")
        choices = " ".join(names)
        raise _bad(f"a container name must be specified for pod {name}, choose one of: [{choices}]")
    if wanted not in names:
        raise _bad(f"container {wanted} is not valid for pod {name}")
    return wanted


async def pod_log(
    request: web.Request, name: str, get_pod: Callable[[], Obj], source: LogSource | None
) -> web.StreamResponse:
    """The answer to one pods/log GET of pod `name`; ApiError for a refusal."""
    try:
        opts = parse_options(request.query)
    except ValueError as exc:
        raise _bad(str(exc)) from None
    causes = invalid_options(opts)
    if causes:
        raise invalid("PodLogOptions", name, [Cause(f, "FieldValueInvalid", m) for f, m in causes])
    pod = get_pod()
    container = container_of(pod, request.query.get("container"))
    if not (pod.get("spec") or {}).get("nodeName") or source is None:
        return web.Response(status=204)
    stream = source(pod, container, opts)
    try:
        first = await anext(stream, b"")
    except LogError as exc:
        if exc.status == 400:
            raise _bad(exc.message) from None
        if exc.status == 404:
            raise ApiError(
                404,
                "NotFound",
                f"the server could not find the requested resource ( pods/log {name})",
                details={"name": name, "kind": "pods/log"},
            ) from None
        raise ApiError(exc.status, "InternalError", exc.message) from None
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        if first:
            await response.write(first)
        async for chunk in stream:
            await response.write(chunk)
        await response.write_eof()
    except ConnectionError:
        pass
    finally:
        await stream.aclose()
    return response
