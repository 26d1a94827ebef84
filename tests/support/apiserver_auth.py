"""Authentication, ServiceAccount tokens and RBAC of the emulator, as kube-apiserver v1.36 does.

Every request is authenticated first: no (or a non-bearer) Authorization header is the anonymous
user, a bearer token must be the admin token, a static user's token (`ApiServer.add_user`, as a
token file) or a ServiceAccount token from the TokenRequest API; anything else is 401 on every
path. Then it is authorized from the attributes its path alone gives (so a forbidden request to a
resource that does not exist is 403, not 404): `system:masters` may do anything, everyone else
only what the stored Roles, ClusterRoles, RoleBindings and ClusterRoleBindings grant, including
the bootstrap ones every real server has (discovery for authenticated users, /healthz and
/version for everybody). Messages and Status bodies are worded as the real server words them.

Deliberately stricter than a real server: a token whose ServiceAccount was deleted is refused at
once (the real server caches a successful token review for 10 s), and an expired token has no
minute of leeway.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .apiserver_types import ApiError, Cause, Obj, ResourceType, bad_request, new_uid, now_ts

ADMIN_TOKEN = "kopflow-emulator-admin"
ISSUER = "https://kubernetes.default.svc"
RBAC = "rbac.authorization.k8s.io"
MIN_TOKEN_SECONDS = 600
MAX_TOKEN_SECONDS = 2**32
DEFAULT_TOKEN_SECONDS = 3600
_NAMESPACE_SUBRESOURCES = ("status", "finalize")
_METHOD_VERBS = {
    "POST": "create",
    "GET": "get",
    "HEAD": "get",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}


@dataclass(frozen=True)
class UserInfo:
    """Who a request is: what RBAC subjects and SelfSubjectReview see."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def privileged(self) -> bool:
        return "system:masters" in self.groups

    def review(self) -> Obj:
        """status.userInfo of a SelfSubjectReview."""
        out: Obj = {"username": self.name}
        if self.uid:
            out["uid"] = self.uid
        out["groups"] = list(self.groups)
        if self.extra:
            out["extra"] = {k: list(v) for k, v in self.extra.items()}
        return out


ANONYMOUS = UserInfo("system:anonymous", ("system:unauthenticated",))
ADMIN = UserInfo("admin", ("system:masters", "system:authenticated"))


def unauthorized() -> ApiError:
    """The real 401: no details at all."""
    return ApiError(401, "Unauthorized", "Unauthorized", details=None)


# -- request attributes (k8s.io/apiserver RequestInfoFactory) -------------------------------------


def parse_bool(value: str) -> bool | None:
    """Go's strconv.ParseBool: None when it is not a boolean."""
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


def is_watch(query: Mapping[str, str]) -> bool:
    """The `watch` parameter as the server reads it (anything but a false value is true)."""
    if "watch" not in query:
        return False
    value = query["watch"]
    parsed = parse_bool(value)
    return parsed if parsed is not None else value.lower() not in ("false", "0")


@dataclass(frozen=True)
class Attributes:
    """What a request asks to do, as the authorizer sees it (derived from the path alone)."""

    verb: str
    path: str
    resource_request: bool = False
    group: str = ""
    version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""

    @property
    def qualified(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource


def request_attributes(method: str, path: str, query: Mapping[str, str]) -> Attributes:
    """Path -> attributes, as RequestInfoFactory.NewRequestInfo parses it."""
    verb = method.lower()
    parts = [p for p in path.strip("/").split("/") if p] if path.strip("/") else []
    if not parts or parts[0] not in ("api", "apis"):
        return Attributes(verb, path)
    prefix, parts = parts[0], parts[1:]
    group = ""
    if prefix == "apis":
        if len(parts) < 2:  # /apis and /apis/{group}: discovery
            return Attributes(verb, path)
        group, parts = parts[0], parts[1:]
    if not parts:  # /api: discovery
        return Attributes(verb, path)
    version, parts = parts[0], parts[1:]
    if not parts:  # /api/v1, /apis/{group}/{version}: discovery
        return Attributes(verb, path)
    if parts[0] == "watch" and len(parts) >= 2:
        verb, parts = "watch", parts[1:]
    else:
        verb = _METHOD_VERBS.get(method.upper(), "")
    namespace = ""
    if parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        if len(parts) > 2 and parts[2] not in _NAMESPACE_SUBRESOURCES:
            parts = parts[2:]
    resource = parts[0]
    name = parts[1] if len(parts) >= 2 else ""
    subresource = parts[2] if len(parts) >= 3 else ""
    if not name and verb == "get":
        verb = "watch" if is_watch(query) else "list"
        name = _exact_name(query.get("fieldSelector", ""))
    if not name and verb == "delete":
        verb = "deletecollection"
    return Attributes(verb, path, True, group, version, namespace, resource, subresource, name)


def _exact_name(selector: str) -> str:
    for term in selector.split(","):
        key, op, value = term.partition("==") if "==" in term else term.partition("=")
        if op and key.strip() == "metadata.name" and not key.endswith("!"):
            value = value.strip()
            if value not in (".", "..") and "/" not in value and "%" not in value:
                return value
    return ""


# -- RBAC ------------------------------------------------------------------------------------------


def _has(values: Iterable[str] | None, wanted: str) -> bool:
    values = list(values or [])
    return "*" in values or wanted in values


def rule_allows(rule: Obj, attrs: Attributes) -> bool:
    """One PolicyRule against a request (rbac/v1 helpers' matching, `*` and `*/sub` included)."""
    if not _has(rule.get("verbs"), attrs.verb):
        return False
    if not attrs.resource_request:
        for url in rule.get("nonResourceURLs") or []:
            if url == "*" or url == attrs.path:
                return True
            if url.endswith("*") and attrs.path.startswith(url[:-1]):
                return True
        return False
    if not _has(rule.get("apiGroups"), attrs.group):
        return False
    combined = attrs.resource + (f"/{attrs.subresource}" if attrs.subresource else "")
    matched = False
    for res in rule.get("resources") or []:
        if res in ("*", combined) or (attrs.subresource and res == f"*/{attrs.subresource}"):
            matched = True
            break
    if not matched:
        return False
    names = rule.get("resourceNames") or []
    return not names or attrs.name in names


def _applies(subject: Obj, user: UserInfo, binding_namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name", "")
    if kind == "User":
        return bool(user.name == name)
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return bool(namespace) and user.name == f"system:serviceaccount:{namespace}:{name}"
    return False


class Authorizer:
    """RBAC evaluated from the stored rbac.authorization.k8s.io/v1 objects on every request."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def _type(self, plural: str) -> ResourceType:
        rt: ResourceType = self.store.storage[(RBAC, plural)]
        return rt

    def _rules(self, ref: Obj, namespace: str, errors: list[str]) -> list[Obj]:
        kind, name = ref.get("kind"), ref.get("name", "")
        if kind == "ClusterRole":
            role = self.store.find(self._type("clusterroles"), "", name)
            if role is None:
                errors.append(f'clusterrole.{RBAC} "{name}" not found')
                return []
            return self._aggregated(role)
        role = self.store.find(self._type("roles"), namespace, name)
        if role is None:
            errors.append(f'role.{RBAC} "{name}" not found')
            return []
        return list(role.get("rules") or [])

    def _aggregated(self, role: Obj) -> list[Obj]:
        """A ClusterRole's rules, plus those its aggregationRule selects (the controller's job)."""
        rules = list(role.get("rules") or [])
        selectors = (role.get("aggregationRule") or {}).get("clusterRoleSelectors") or []
        if not selectors:
            return rules
        from .apiserver_selectors import LabelSelector

        parsed = [_label_selector(LabelSelector, s) for s in selectors]
        for other in self.store.iter_objects(self._type("clusterroles"), None):
            if other is role or other["metadata"]["name"] == role["metadata"]["name"]:
                continue
            labels = other["metadata"].get("labels") or {}
            if any(sel.matches(labels) for sel in parsed):
                rules += [r for r in other.get("rules") or [] if r not in rules]
        return rules

    def _bindings(self, user: UserInfo, namespace: str) -> Iterator[tuple[Obj, Obj, str]]:
        """(binding, the subject that names the user, binding namespace): cluster ones first."""
        for binding in self.store.iter_objects(self._type("clusterrolebindings"), None):
            for subject in binding.get("subjects") or []:
                if _applies(subject, user, ""):
                    yield binding, subject, ""
                    break
        if namespace:
            for binding in self.store.iter_objects(self._type("rolebindings"), namespace):
                for subject in binding.get("subjects") or []:
                    if _applies(subject, user, namespace):
                        yield binding, subject, namespace
                        break

    def authorize(self, user: UserInfo, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, reason), as the RBAC authorizer gives them: an allowed request names the
        binding that allowed it; a denied one lists roles that bindings name but that are missing.
        """
        if user.privileged:
            return True, ""
        errors: list[str] = []
        namespace = attrs.namespace if attrs.resource_request else ""
        for binding, subject, ns in self._bindings(user, namespace):
            ref = binding.get("roleRef") or {}
            if any(rule_allows(r, attrs) for r in self._rules(ref, ns, errors)):
                return True, _allowed_by(binding, subject, ns)
        if not errors:
            return False, ""
        joined = errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"
        return False, f"RBAC: {joined}"

    def rules_for(self, user: UserInfo, namespace: str) -> list[Obj]:
        """Every rule that applies to the user in a namespace (SelfSubjectRulesReview)."""
        rules: list[Obj] = []
        for binding, _, ns in self._bindings(user, namespace):
            rules += self._rules(binding.get("roleRef") or {}, ns, [])
        return rules


def _allowed_by(binding: Obj, subject: Obj, namespace: str) -> str:
    ref, name = binding.get("roleRef") or {}, binding["metadata"]["name"]
    what = f'RoleBinding "{name}/{namespace}"' if namespace else f'ClusterRoleBinding "{name}"'
    who = subject.get("name", "")
    if subject.get("kind") == "ServiceAccount":
        who = f"{who}/{subject.get('namespace') or namespace}"
    return (
        f'RBAC: allowed by {what} of {ref.get("kind")} "{ref.get("name")}" to '
        f'{subject.get("kind")} "{who}"'
    )


def _label_selector(cls: Any, selector: Obj) -> Any:
    terms = [f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
        if op == "In":
            terms.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            terms.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            terms.append(key)
        elif op == "DoesNotExist":
            terms.append(f"!{key}")
    return cls.parse(",".join(terms))


def forbidden(user: UserInfo, attrs: Attributes, reason: str = "") -> ApiError:
    """403 worded as k8s.io/apiserver's responsewriters.Forbidden words it."""
    headers = {"X-Content-Type-Options": "nosniff"}
    suffix = f": {reason}" if reason else ""
    if not attrs.resource_request:
        message = f'forbidden: User "{user.name}" cannot {attrs.verb} path "{attrs.path}"'
        return ApiError(403, "Forbidden", message + suffix, details={}, headers=headers)
    resource = attrs.resource + (f"/{attrs.subresource}" if attrs.subresource else "")
    where = f' in the namespace "{attrs.namespace}"' if attrs.namespace else " at the cluster scope"
    what = f'{attrs.qualified} "{attrs.name}"' if attrs.name else attrs.qualified
    message = (
        f'{what} is forbidden: User "{user.name}" cannot {attrs.verb} resource "{resource}" '
        f'in API group "{attrs.group}"{where}'
    )
    details: Obj = {"name": attrs.name} if attrs.name else {}
    if attrs.group:
        details["group"] = attrs.group
    details["kind"] = attrs.resource
    return ApiError(403, "Forbidden", message + suffix, details=details, headers=headers)


# -- tokens ----------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Authenticator:
    """Bearer tokens: the admin's, static users' and signed ServiceAccount tokens (JWTs)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.static: dict[str, UserInfo] = {ADMIN_TOKEN: ADMIN}
        self._key = secrets.token_bytes(32)
        self.expired: set[str] = set()  # jti of tokens a test expired early

    def authenticate(self, header: str) -> UserInfo:
        """The user of an Authorization header; raises 401 for a bearer token that is not valid."""
        header = header.strip()
        kind, _, rest = header.partition(" ")
        if kind.lower() != "bearer":
            return ANONYMOUS
        token = rest.split(" ", 1)[0]
        if not token:
            return ANONYMOUS
        user = self.static.get(token) or self._service_account(token)
        if user is None:
            raise unauthorized()
        return user

    # -- ServiceAccount tokens -----------------------------------------------------------------

    def issue(
        self,
        service_account: Obj,
        seconds: int,
        audiences: list[str] | None = None,
        bound: tuple[str, Obj] | None = None,
    ) -> tuple[str, int]:
        """A signed token for this ServiceAccount object and its expiry (epoch seconds).

        `bound` is (kind, object) of a Pod or Secret the token dies with."""
        now = int(time.time())
        m = service_account["metadata"]
        claims: Obj = {
            "aud": list(audiences or [ISSUER]),
            "exp": now + seconds,
            "iat": now,
            "iss": ISSUER,
            "jti": new_uid(),
            "kubernetes.io": {
                "namespace": m["namespace"],
                "serviceaccount": {"name": m["name"], "uid": m["uid"]},
            },
            "nbf": now,
            "sub": f"system:serviceaccount:{m['namespace']}:{m['name']}",
        }
        if bound is not None:
            kind, obj = bound
            ref = {"name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"]}
            claims["kubernetes.io"][kind.lower()] = ref
        head = _b64(json.dumps({"alg": "HS256", "kid": "kopflow-emulator"}).encode())
        body = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"{head}.{body}.{self._sign(head, body)}", now + seconds

    def _sign(self, head: str, body: str) -> str:
        return _b64(hmac.new(self._key, f"{head}.{body}".encode(), hashlib.sha256).digest())

    def claims(self, token: str) -> Obj | None:
        """The claims of a token this server signed (None: not one of ours)."""
        parts = token.split(".")
        if len(parts) != 3 or not hmac.compare_digest(self._sign(parts[0], parts[1]), parts[2]):
            return None
        try:
            claims: Obj = json.loads(_unb64(parts[1]))
        except ValueError:
            return None
        return claims

    def _service_account(self, token: str) -> UserInfo | None:
        claims = self.claims(token)
        if claims is None or claims.get("jti") in self.expired:
            return None
        if int(claims.get("exp", 0)) <= time.time() or ISSUER not in (claims.get("aud") or []):
            return None  # expired, or meant for another audience than this API server
        ref = claims.get("kubernetes.io") or {}
        for kind, plural in (("pod", "pods"), ("secret", "secrets")):
            bound = ref.get(kind)
            if bound:
                obj = self.store.find(
                    self.store.storage[("", plural)], ref.get("namespace"), bound["name"]
                )
                if obj is None or obj["metadata"]["uid"] != bound.get("uid"):
                    return None  # the object the token was bound to is gone
        namespace, sa = ref.get("namespace", ""), ref.get("serviceaccount") or {}
        sa_type = self.store.storage[("", "serviceaccounts")]
        obj = self.store.find(sa_type, namespace, sa.get("name"))
        if obj is None or obj["metadata"]["uid"] != sa.get("uid"):
            return None  # deleted, or deleted and created again: not the account it was for
        if obj["metadata"].get("deletionTimestamp"):
            return None
        return UserInfo(
            f"system:serviceaccount:{namespace}:{sa['name']}",
            (
                "system:serviceaccounts",
                f"system:serviceaccounts:{namespace}",
                "system:authenticated",
            ),
            uid=sa["uid"],
            extra={"authentication.kubernetes.io/credential-id": (f"JTI={claims['jti']}",)},
        )

    def expire(self, token: str) -> None:
        """Make a token this server issued expired from now on (tests cannot wait 10 minutes)."""
        claims = self.claims(token)
        if claims is None:
            raise ValueError("not a ServiceAccount token of this emulator")
        self.expired.add(str(claims["jti"]))


def token_request(
    auth: Authenticator, store: Any, namespace: str, name: str, body: Any, manager: str
) -> Obj:
    """POST serviceaccounts/{name}/token: validation, 404s and the TokenRequest answer."""
    if body is None:
        raise bad_request(
            "the object provided is unrecognized (must be of type TokenRequest): couldn't get "
            "version/kind; json parse error: unexpected end of JSON input (<empty>)"
        )
    if not isinstance(body, dict):
        raise bad_request("the object provided is unrecognized (must be of type TokenRequest)")
    spec = body.get("spec") or {}
    seconds = spec.get("expirationSeconds", DEFAULT_TOKEN_SECONDS)
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        raise bad_request(
            'TokenRequest in version "v1" cannot be handled as a TokenRequest: json: cannot '
            "unmarshal into Go struct field TokenRequestSpec.spec.expirationSeconds of type int64"
        )
    problem = None
    if seconds < MIN_TOKEN_SECONDS:
        problem = "may not specify a duration less than 10 minutes"
    elif seconds > MAX_TOKEN_SECONDS:
        problem = "may not specify a duration larger than 2^32 seconds"
    if problem:
        cause = Cause(
            "spec.expirationSeconds", "FieldValueInvalid", f"Invalid value: {seconds}: {problem}"
        )
        raise ApiError(
            422,
            "Invalid",
            f'TokenRequest.authentication.k8s.io "" is invalid: {cause.field}: {cause.message}',
            details={
                "group": "authentication.k8s.io",
                "kind": "TokenRequest",
                "causes": [cause.to_json()],
            },
        )
    namespaces = store.namespaces
    if store.find(namespaces, "", namespace) is None:
        raise ApiError(
            404,
            "NotFound",
            f'namespaces "{namespace}" not found',
            details={"name": namespace, "kind": "namespaces"},
        )
    sa_type = store.storage[("", "serviceaccounts")]
    sa = store.find(sa_type, namespace, name)
    if sa is None:
        raise ApiError(
            404,
            "NotFound",
            f'serviceaccounts "{name}" not found',
            details={"name": name, "kind": "serviceaccounts"},
        )
    bound, ref = None, spec.get("boundObjectRef")
    if isinstance(ref, dict):
        kind = str(ref.get("kind", ""))
        if kind not in ("Pod", "Secret") or ref.get("apiVersion", "v1") != "v1":
            raise bad_request(
                f"cannot bind token to object of type /{ref.get('apiVersion', '')}, Kind={kind}"
            )
        plural = kind.lower() + "s"
        obj = store.find(store.storage[("", plural)], namespace, str(ref.get("name", "")))
        if obj is None:
            raise ApiError(
                404,
                "NotFound",
                f'{plural} "{ref.get("name", "")}" not found',
                details={"name": ref.get("name", ""), "kind": plural},
            )
        bound = (kind, obj)
        ref = {**ref, "uid": obj["metadata"]["uid"]}
    audiences = list(spec.get("audiences") or [ISSUER])
    token, expires = auth.issue(sa, seconds, audiences, bound)
    m = sa["metadata"]
    return {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {
            "name": m["name"],
            "namespace": m["namespace"],
            "uid": m["uid"],
            "creationTimestamp": m.get("creationTimestamp"),
            "managedFields": [
                {
                    "manager": manager,
                    "operation": "Update",
                    "apiVersion": "authentication.k8s.io/v1",
                    "time": now_ts(),
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:expirationSeconds": {}}},
                    "subresource": "token",
                }
            ],
        },
        "spec": {
            "audiences": audiences,
            "expirationSeconds": seconds,
            "boundObjectRef": ref,
        },
        "status": {
            "token": token,
            "expirationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)),
        },
    }


def self_subject_review(user: UserInfo) -> Obj:
    """POST authentication.k8s.io/v1 selfsubjectreviews: who am I (`kubectl auth whoami`)."""
    return {
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": now_ts()},
        "status": {"userInfo": user.review()},
    }


# -- impersonation and access reviews ----------------------------------------------------------


def _service_account_of(name: str) -> tuple[str, str] | None:
    parts = name.split(":")
    if len(parts) == 4 and parts[:2] == ["system", "serviceaccount"]:
        return parts[2], parts[3]
    return None


def impersonate(
    user: UserInfo, headers: Any, authorizer: Authorizer, attrs: Attributes
) -> UserInfo:
    """The user an `Impersonate-User`/`Impersonate-Group` request acts as (`kubectl --as`).

    The requester needs the `impersonate` verb on the users, service accounts and groups named
    (system:masters has it); a refusal is worded as v1.36's constrained impersonation words it.
    """
    name = headers.get("Impersonate-User", "")
    groups = tuple(headers.getall("Impersonate-Group", []))
    if not name and not groups:
        return user
    if not name:
        shown = ", ".join(json.dumps(g) for g in groups)
        raise bad_request(
            f'requested &user.DefaultInfo{{Name:"", UID:"", Groups:[]string{{{shown}}}, '
            "Extra:map[string][]string(nil)} without impersonating a user name"
        )
    account = _service_account_of(name)
    targets = [
        Attributes("impersonate", "", True, "", "v1", account[0], "serviceaccounts", "", account[1])
        if account
        else Attributes("impersonate", "", True, "", "v1", "", "users", "", name)
    ]
    targets += [Attributes("impersonate", "", True, "", "v1", "", "groups", "", g) for g in groups]
    for target in targets:
        if not authorizer.authorize(user, target)[0]:
            mode = "serviceaccount" if account else "user-info"
            raise forbidden(user, replace(attrs, verb=f"impersonate-on:{mode}:{attrs.verb}"))
    if name == ANONYMOUS.name:
        return UserInfo(name, (*groups, "system:unauthenticated"))
    if account and not groups:
        groups = ("system:serviceaccounts", f"system:serviceaccounts:{account[0]}")
    return UserInfo(name, (*groups, "system:authenticated"))


def _review_attributes(spec: Obj) -> Attributes:
    res, non = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if (res is None) == (non is None):
        message = "exactly one of nonResourceAttributes or resourceAttributes must be specified"
        cause = Cause(
            "spec.resourceAttributes", "FieldValueInvalid", f"Invalid value: null: {message}"
        )
        raise ApiError(
            422,
            "Invalid",
            f'.authorization.k8s.io "" is invalid: {cause.field}: {cause.message}',
            details={"group": "authorization.k8s.io", "causes": [cause.to_json()]},
        )
    if non is not None:
        return Attributes(str(non.get("verb", "")), str(non.get("path", "")))
    assert isinstance(res, dict)
    return Attributes(
        str(res.get("verb", "")),
        "",
        True,
        str(res.get("group", "")),
        str(res.get("version", "")),
        str(res.get("namespace", "")),
        str(res.get("resource", "")),
        str(res.get("subresource", "")),
        str(res.get("name", "")),
    )


def access_review(
    kind: str, body: Any, requester: UserInfo, authorizer: Authorizer, namespace: str = ""
) -> Obj:
    """POST authorization.k8s.io/v1 *AccessReviews and SelfSubjectRulesReview (`kubectl auth
    can-i`): what RBAC answers for the requester, or for the user a SubjectAccessReview names."""
    spec: Obj = dict((body or {}).get("spec") or {}) if isinstance(body, dict) else {}
    meta: Obj = {"namespace": namespace} if namespace else {}
    answer: Obj = {"kind": kind, "apiVersion": "authorization.k8s.io/v1", "metadata": meta}
    if kind == "SelfSubjectRulesReview":
        resource, non_resource = [], []
        for rule in authorizer.rules_for(requester, str(spec.get("namespace", ""))):
            if rule.get("nonResourceURLs"):
                non_resource.append(
                    {"verbs": rule.get("verbs"), "nonResourceURLs": rule["nonResourceURLs"]}
                )
            else:
                out: Obj = {k: rule[k] for k in ("verbs", "apiGroups", "resources") if k in rule}
                if rule.get("resourceNames"):
                    out["resourceNames"] = rule["resourceNames"]
                resource.append(out)
        status = {"resourceRules": resource, "nonResourceRules": non_resource, "incomplete": False}
        echoed = {k: v for k, v in spec.items() if k != "namespace"}  # as the real server
        return {**answer, "spec": echoed, "status": status}
    subject = requester
    if kind != "SelfSubjectAccessReview":
        subject = UserInfo(str(spec.get("user", "")), tuple(spec.get("groups") or ()))
    attrs = _review_attributes(spec)
    allowed, reason = authorizer.authorize(subject, attrs)
    result: Obj = {"allowed": allowed}
    if reason:
        result["reason"] = reason
    return {**answer, "spec": spec, "status": result}


# -- the bootstrap policy every real server creates ----------------------------------------------


def _meta(name: str) -> Obj:
    return {
        "name": name,
        "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
    }


def _group(name: str) -> Obj:
    return {"kind": "Group", "apiGroup": RBAC, "name": name}


_DISCOVERY_URLS = [
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/healthz",
    "/livez",
    "/openapi",
    "/openapi/*",
    "/readyz",
    "/version",
    "/version/",
]
_PUBLIC_URLS = ["/healthz", "/livez", "/readyz", "/version", "/version/"]


def bootstrap_policy() -> list[tuple[str, Obj]]:
    """(plural, object): the ClusterRoles and bindings that decide what is open to whom.

    Copied from a real v1.36.2 server: cluster-admin for system:masters, discovery and the
    self-reviews for every authenticated user, /healthz and /version for everybody.
    """
    roles = {
        "cluster-admin": [
            {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
            {"verbs": ["*"], "nonResourceURLs": ["*"]},
        ],
        "system:discovery": [{"verbs": ["get"], "nonResourceURLs": _DISCOVERY_URLS}],
        "system:basic-user": [
            {
                "verbs": ["create"],
                "apiGroups": ["authorization.k8s.io"],
                "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
            },
            {
                "verbs": ["create"],
                "apiGroups": ["authentication.k8s.io"],
                "resources": ["selfsubjectreviews"],
            },
        ],
        "system:public-info-viewer": [{"verbs": ["get"], "nonResourceURLs": _PUBLIC_URLS}],
    }
    subjects = {
        "cluster-admin": [_group("system:masters")],
        "system:discovery": [_group("system:authenticated")],
        "system:basic-user": [_group("system:authenticated")],
        "system:public-info-viewer": [
            _group("system:authenticated"),
            _group("system:unauthenticated"),
        ],
    }
    out: list[tuple[str, Obj]] = []
    for name, rules in roles.items():
        out.append(("clusterroles", {"metadata": _meta(name), "rules": rules}))
    for name, who in subjects.items():
        ref = {"apiGroup": RBAC, "kind": "ClusterRole", "name": name}
        binding = {"metadata": _meta(name), "subjects": who, "roleRef": ref}
        out.append(("clusterrolebindings", binding))
    return out
