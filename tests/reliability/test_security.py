"""Security: nobody gets in without a key, keys never reach the log, answers name no software.

Routes are enumerated from the app itself (every route, the ones hidden from OpenAPI included) and checked
against the live service's /openapi.json, so a route added tomorrow without auth fails here without anyone
editing a list; only the open probes below are allowed to answer without a key. The rest checks the code
and the process the way an attacker would meet them: how the key is compared, where the socket listens,
what a pickle in a model directory does, and whether any request field can reach a path or an `eval`.
"""

from __future__ import annotations

import ast
import inspect
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.reliability.conftest import API_KEY, Summary, SuiteRow, peak_rss_mb
from tests.reliability.test_generated_bad_input import GOOD
from tests.reliability.traffic import enveloped, item
from tests.support.service_process import ServiceProcess

pytestmark = pytest.mark.reliability

OPEN = {"/health/live", "/health/ready", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
"""The only routes that answer without a key: probes, the scrape endpoint and the API's own documentation."""
WRONG_KEY = API_KEY[:-1] + chr(ord(API_KEY[-1]) + 1)  # same length, same prefix: what a timing attack probes
SOFTWARE = re.compile(r"uvicorn|starlette|fastapi|python|gunicorn|hypercorn|h11|httptools|torch", re.I)
REQUEST_PATH_CODE = ["service/api", "service/scoring", "service/objectives/judges", "clients/protocol.py",
                     "clients/wire_values.py"]
SINKS = re.compile(r"\bopen\(|\bPath\(|\beval\(|\bexec\(|__import__|importlib|subprocess|os\.system|os\.popen|"
                   r"pickle|marshal|yaml\.load|from_string\(|Template\(|shutil\.")


def app_routes() -> list[tuple[str, str]]:
    """(method, path) of every route the app mounts, HEAD left out (it is GET without a body)."""
    from service.app import create_app
    from service.settings import ServiceSettings

    app = create_app(ServiceSettings(api_keys=API_KEY))
    return sorted((method, route.path) for route in app.routes  # type: ignore[attr-defined]
                  for method in getattr(route, "methods", None) or () if method != "HEAD")


def protected_routes(target: ServiceProcess) -> list[tuple[str, str]]:
    routes = app_routes()
    documented = {(m.upper(), p) for p, ops in httpx.get(target.url + "/openapi.json").json()["paths"].items()
                  for m in ops}
    assert documented <= set(routes), f"routes in /openapi.json the app does not mount: {documented - set(routes)}"
    protected = [(m, p) for m, p in routes if p not in OPEN]
    assert len(protected) >= 6, protected  # /v1/score, /get_reward, /v1/model, /v1/judge, /v1/judges, /v1/pama
    return protected


def intruders() -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """(label, headers, query) of requests that must all get a 401."""
    return [
        ("no key", {}, {}),
        ("wrong key, same length and prefix", {"Authorization": f"Bearer {WRONG_KEY}"}, {}),
        ("random key, same length", {"Authorization": f"Bearer {secrets.token_urlsafe(32)[:len(API_KEY)]}"}, {}),
        ("right key, Basic scheme", {"Authorization": f"Basic {API_KEY}"}, {}),
        ("right key, no scheme", {"Authorization": API_KEY}, {}),
        ("right key in the query string", {}, {"api_key": API_KEY}),
        ("right key in X-API-Key", {"X-API-Key": API_KEY}, {}),
        ("bearer scheme, no token", {"Authorization": "Bearer"}, {}),
    ]


def check_401(client: httpx.Client, method: str, path: str, label: str, headers: dict[str, str],
              query: dict[str, str], row: SuiteRow) -> httpx.Response:
    # An unparseable body: a 401 rather than a 422 shows auth runs before the body is read.
    answer = client.request(method, path, headers={"content-type": "application/json", **headers}, params=query,
                            content=b"{not json" if method == "POST" else None)
    row.cases += 1
    if not (answer.status_code == 401 and enveloped(answer) and answer.headers.get("www-authenticate") == "Bearer"):
        row.failures += 1
        row.examples.append(f"{method} {path} ({label}): {answer.status_code} {answer.text[:120]}")
    return answer


def check_admitted(client: httpx.Client, method: str, path: str, row: SuiteRow) -> httpx.Response:
    """The right key gets through: the same request answered by the route (200 for a good body)."""
    body = GOOD.get(path)
    answer = client.request(method, path, headers={"Authorization": f"Bearer {API_KEY}"},
                            json=body if method == "POST" else None)
    row.cases += 1
    expected = 200 if method == "GET" or body is not None else 422  # a body-less POST: past auth, then 422
    if answer.status_code != expected:
        row.failures += 1
        row.examples.append(f"{method} {path} with the key: {answer.status_code} {answer.text[:120]}")
    return answer


def test_every_protected_route_refuses_without_the_key(target: ServiceProcess, summary: Summary) -> None:
    row = SuiteRow("security: 401 on every protected route")
    summary.rows.append(row)
    routes = protected_routes(target)
    with httpx.Client(base_url=target.url, timeout=30) as client:
        for method, path in routes:
            for label, headers, query in intruders():
                check_401(client, method, path, label, headers, query, row)
            check_admitted(client, method, path, row)
    row.max_rss_mb = peak_rss_mb(target.process.pid)  # type: ignore[union-attr]
    row.note = f"{len(routes)} routes x {len(intruders())} intruders: " + ", ".join(f"{m} {p}" for m, p in routes)
    assert row.failures == 0, "\n".join(row.examples[:10])


def test_answers_name_no_software(target: ServiceProcess, summary: Summary) -> None:
    """No `server`, no `x-powered-by`, no header value naming the stack, on success and on every error kind."""
    row = SuiteRow("security: headers name no software")
    summary.rows.append(row)
    key = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=target.url, timeout=30) as client:
        answers = [client.get("/health/live"), client.get("/metrics"), client.get("/openapi.json"),
                   client.post("/v1/score", json={}),  # 401
                   client.post("/v1/score", json=GOOD["/v1/score"], headers=key),
                   client.post("/v1/score", json={"items": "x"}, headers=key),  # 422
                   client.post("/v1/score", content=b"x" * 70_000, headers=key),  # 413
                   client.get("/v1/score", headers=key),  # 405
                   client.get("/nowhere", headers=key)]  # 404
    for answer in answers:
        row.cases += 1
        leaks = [f"{name}: {value}" for name, value in answer.headers.items()
                 if name in {"server", "x-powered-by"} or SOFTWARE.search(value)]
        if leaks:
            row.failures += 1
            row.examples.append(f"{answer.request.method} {answer.request.url.path} {answer.status_code}: {leaks}")
    assert row.failures == 0, row.examples


def test_keys_are_compared_in_constant_time(summary: Summary) -> None:
    """Read the auth code: `hmac.compare_digest` against every key, and no `==` or `in` touching the token."""
    from service.api import auth

    row = SuiteRow("security: constant-time key comparison")
    summary.rows.append(row)
    tree = ast.parse(inspect.getsource(auth.check_bearer))
    secret_names = {"token", "supplied", "key", "keys", "header"}
    calls = [ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)]
    compares = [ast.unparse(node) for node in ast.walk(tree) if isinstance(node, ast.Compare)
                and {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} & secret_names]
    row.cases = 2
    row.failures = int("hmac.compare_digest" not in calls) + int(bool(compares))
    row.examples = compares
    row.note = "check_bearer: hmac.compare_digest over every key (no early exit), no ==/in on the token"
    assert row.failures == 0, f"compare_digest used: {'hmac.compare_digest' in calls}; plain comparisons: {compares}"


@pytest.fixture(scope="module")
def debug_service(tiny_armorm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    log = tmp_path_factory.mktemp("security-log") / "serve.log"
    with ServiceProcess(tiny_armorm_dir, args=["--log-level", "debug"], env={"PARETORM_API_KEYS": API_KEY},
                        log_path=log) as service:
        yield service


def test_keys_never_reach_the_log(debug_service: ServiceProcess, summary: Summary) -> None:
    """Good and bad keys, on good and bad requests, at debug level: neither string appears in the log."""
    row = SuiteRow("security: keys never logged (debug level)")
    summary.rows.append(row)
    with httpx.Client(base_url=debug_service.url, timeout=30) as client:
        for key in (API_KEY, WRONG_KEY):
            auth = {"Authorization": f"Bearer {key}"}
            for body in ({"items": [item(1, "log")]}, {"items": "not a list"}, {"unknown": 1}):
                client.post("/v1/score", json=body, headers=auth)
                row.cases += 1
            client.post("/v1/judge", content=b"\xff\xfe", headers=auth)
            client.get("/v1/model", headers=auth)
            row.cases += 2
    debug_service.terminate()
    log = debug_service.log_path.read_text(errors="replace")  # type: ignore[union-attr]
    # Nothing in the stack logs headers at debug (uvicorn's header dump is its `trace` level, which serve
    # does not offer); the requests themselves must be in the log, or the grep below proves nothing.
    assert '"POST /v1/score HTTP/1.1" 401' in log and '"POST /v1/score HTTP/1.1" 200' in log, log[-2000:]
    found = [key for key in (API_KEY, WRONG_KEY) if key in log]
    row.failures = len(found)
    row.note = f"{len(log.splitlines())} log lines grepped for the key and a wrong key: {len(found)} hits"
    assert not found, f"keys in the log: {found}"


def listening_addresses(pid: int, port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp{,6}) of the sockets listening on `port`."""
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.append(address)
    return found


def test_default_bind_is_loopback(target: ServiceProcess, summary: Summary) -> None:
    """The target was started without --host: it must listen on 127.0.0.1 only, as the settings default says."""
    from service.settings import ServiceSettings

    row = SuiteRow("security: default bind loopback")
    summary.rows.append(row)
    addresses = listening_addresses(target.process.pid, target.port)  # type: ignore[union-attr]
    row.cases = 2
    row.failures = int(ServiceSettings.model_fields["host"].default != "127.0.0.1") + int(addresses != ["0100007F"])
    row.note = f"listening on {addresses} (0100007F = 127.0.0.1); containers set PARETORM_HOST=0.0.0.0 themselves"
    assert row.failures == 0, addresses


class _Payload:
    """Unpickling this calls `open(marker, "w")`: proof that a pickle ran code is the marker file existing."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (self.marker, "w")


def pickle_checkpoint(tiny_armorm_dir: Path, out: Path, marker: Path) -> Path:
    """The tiny checkpoint's config and tokenizer with its weights replaced by a hostile pytorch_model.bin."""
    import torch

    out.mkdir()
    for source in tiny_armorm_dir.iterdir():
        if source.is_file() and source.suffix != ".safetensors":
            (out / source.name).write_bytes(source.read_bytes())
    torch.save({"model.embed_tokens.weight": _Payload(marker)}, out / "pytorch_model.bin")
    return out


@pytest.mark.parametrize("allow", [False, True], ids=["default", "allow-pickle"])
def test_pickle_weights_never_run_code(allow: bool, tiny_armorm_dir: Path, tmp_path: Path, summary: Summary) -> None:
    """Refused by default; with --allow-pickle read by torch.load(weights_only=True), which refuses `open`."""
    row = SuiteRow(f"security: hostile pickle, {'--allow-pickle' if allow else 'default'}")
    summary.rows.append(row)
    marker = tmp_path / "pickle-ran-code"
    model = pickle_checkpoint(tiny_armorm_dir, tmp_path / "model", marker)
    service = ServiceProcess(model, args=["--allow-pickle"] if allow else [], log_path=tmp_path / "serve.log")
    service.start(wait=False)
    try:
        exit_code = service.process.wait(timeout=120)  # type: ignore[union-attr]
    finally:
        service.kill()
    log = (tmp_path / "serve.log").read_text(errors="replace")
    expected = "Weights only load failed" if allow else "pickle .bin weights refused"
    row.cases = 3
    row.failures = int(marker.exists()) + int(exit_code == 0) + int(expected not in log)
    row.note = f"exit {exit_code}, marker file {'WRITTEN' if marker.exists() else 'absent'}, log says {expected!r}"
    assert row.failures == 0, log[-2000:]


def test_no_request_field_reaches_a_path_or_eval(summary: Summary) -> None:
    """An audit of the code a request runs through: no file, import, eval, shell or template sink in it.

    Request fields only ever become token ids, numbers and judge arguments (judges are looked up by name in
    a fixed registry; the chat template comes from the checkpoint, request text is its data, never its
    source). A new sink in these modules fails here and must be justified before it is allowed.
    """
    row = SuiteRow("security: request fields reach no path/eval")
    summary.rows.append(row)
    root = Path(__file__).resolve().parents[2]
    files = [f for entry in REQUEST_PATH_CODE for f in ([root / entry] if entry.endswith(".py")
                                                      else sorted((root / entry).rglob("*.py")))]
    hits = [f"{f.relative_to(root)}:{n}: {line.strip()}" for f in files
            for n, line in enumerate(f.read_text().splitlines(), 1) if SINKS.search(line.split("#")[0])]
    row.cases = len(files)
    row.failures = len(hits)
    row.examples = hits
    row.note = f"{len(files)} modules on the request path grepped for file/import/eval/shell/template sinks: {len(hits)}"
    assert not hits, "\n".join(hits)
