"""The pod template of a task: the core/v1 pod and container fields platform teams set.

Typed from the core/v1 schema (the subset a batch task needs) and bounded, so the CRD rejects a
wrong type or value at `kubectl apply` with the field's path, and `kopflow validate` says the
same before anything reaches a cluster. Fields keep their Kubernetes names and meaning.

A task's `podTemplate` is merged over `taskDefaults.podTemplate` field by field (see
`PodTemplate`); kopflow's safe container defaults (no privilege escalation, all capabilities
dropped, RuntimeDefault seccomp) stay unless a template sets those very fields.
"""

# No `from __future__ import annotations` here: pydantic would evaluate every field's annotation
# from its string when the class is created, a quarter to a third of the cost of importing these
# models (`kopflow validate` imports them on every start).

from typing import Annotated, Literal, Self

from pydantic import Field, WithJsonSchema, field_validator, model_validator

from kopflow.api.base import DNS_LABEL, ENV_NAME, FreeForm, Model

Name = Annotated[str, Field(min_length=1, max_length=253)]
"""An object name (DNS subdomain length)."""
Text = Annotated[str, Field(max_length=4096)]
Path = Annotated[str, Field(min_length=1, max_length=1024)]
Id = Annotated[int, Field(ge=0, le=2_147_483_647)]
"""A Linux user or group id."""
Mode = Annotated[int, Field(ge=0, le=0o777)]
"""File permission bits (YAML `0644` reads as octal in YAML 1.1 only: write 420 or "0644")."""
VolumeName = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]
LabelValue = Annotated[
    str, Field(max_length=63, pattern=r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
]
Quantity = Annotated[
    int | str,
    WithJsonSchema({"x-kubernetes-int-or-string": True}),
]
"""A Kubernetes quantity (`1Gi`, `500m`, 2)."""

MAX_VOLUMES = 64
RESERVED_LABEL_PREFIXES = ("kopflow.dev/", "batch.kubernetes.io/", "controller-uid", "job-name")
"""Labels kopflow and the Job controller set on every pod; a template may not override them."""


class KeyRef(Model):
    """Reference to a whole Secret or ConfigMap."""

    name: Annotated[str, Field(max_length=253)]
    """Name of the Secret or ConfigMap in the run's namespace."""
    optional: bool | None = None
    """Do not fail when it does not exist."""


class EnvFromSource(Model):
    """Import every key of a Secret or ConfigMap as environment variables."""

    prefix: Annotated[str, Field(max_length=253)] | None = None
    """Prepended to every imported variable name."""
    secret_ref: KeyRef | None = None
    """The Secret to import."""
    config_map_ref: KeyRef | None = None
    """The ConfigMap to import."""


class EnvVar(Model):
    """One environment variable of a task."""

    name: Annotated[str, Field(min_length=1, max_length=253, pattern=ENV_NAME)]
    """Variable name."""
    value: Text | None = None
    """Literal value; may use templates (`{{ params.x }}`, `{{ tasks.t.outputs.k }}`)."""
    value_from: FreeForm | None = None
    """A Kubernetes EnvVarSource (secretKeyRef, configMapKeyRef, fieldRef...)."""


# -- security ------------------------------------------------------------------------------------


class SeccompProfile(Model):
    """The seccomp filter of the pod or container."""

    type: Literal["RuntimeDefault", "Localhost", "Unconfined"]
    """RuntimeDefault (kopflow's default), Localhost (a profile file on the node), Unconfined."""
    localhost_profile: Name | None = None
    """The profile file, relative to the kubelet's seccomp directory (type Localhost only)."""

    @model_validator(mode="after")
    def _localhost(self) -> Self:
        if (self.type == "Localhost") != (self.localhost_profile is not None):
            raise ValueError("localhostProfile is required with type Localhost and only then")
        return self


class AppArmorProfile(Model):
    """The AppArmor profile of the pod or container."""

    type: Literal["RuntimeDefault", "Localhost", "Unconfined"]
    """Which profile applies."""
    localhost_profile: Name | None = None
    """The profile loaded on the node (type Localhost only)."""


class SELinuxOptions(Model):
    """SELinux labels applied to the container."""

    user: Name | None = None
    role: Name | None = None
    type: Name | None = None
    level: Name | None = None


class Sysctl(Model):
    """A namespaced kernel parameter set for the pod."""

    name: Name
    value: Name


class Capabilities(Model):
    """Linux capabilities added and dropped; kopflow drops ALL unless `drop` is set."""

    add: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=64)] | None = None
    """Capabilities to add (Pod Security restricted allows only NET_BIND_SERVICE)."""
    drop: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=64)] | None = None
    """Capabilities to drop; kopflow's default is [ALL]."""


class PodSecurityContext(Model):
    """core/v1 PodSecurityContext: users, groups and profiles of every container of the pod."""

    run_as_non_root: bool | None = None
    """Refuse to start a container whose user is root (Pod Security restricted requires true)."""
    run_as_user: Id | None = None
    """User id of the containers' processes (restricted: not 0)."""
    run_as_group: Id | None = None
    """Primary group id of the containers' processes."""
    fs_group: Id | None = None
    """Group that owns the pod's volumes and is added to every process."""
    fs_group_change_policy: Literal["OnRootMismatch", "Always"] | None = None
    """When to change volume ownership to fsGroup."""
    supplemental_groups: Annotated[list[Id], Field(max_length=64)] | None = None
    """Further group ids of every process."""
    supplemental_groups_policy: Literal["Merge", "Strict"] | None = None
    """Whether the image's /etc/group memberships are added."""
    seccomp_profile: SeccompProfile | None = None
    """Seccomp filter; kopflow's default is RuntimeDefault."""
    app_armor_profile: AppArmorProfile | None = None
    """AppArmor profile."""
    se_linux_options: SELinuxOptions | None = None
    """SELinux labels."""
    sysctls: Annotated[list[Sysctl], Field(max_length=32)] | None = None
    """Namespaced sysctls (most are refused by Pod Security baseline)."""


class SecurityContext(Model):
    """core/v1 SecurityContext of the task container (and default of its sidecars)."""

    allow_privilege_escalation: bool | None = None
    """Whether a process may gain more privileges than its parent; kopflow's default false."""
    capabilities: Capabilities | None = None
    """Added and dropped capabilities, merged over kopflow's `drop: [ALL]` by field."""
    privileged: bool | None = None
    """Run as privileged (refused by Pod Security baseline and restricted)."""
    read_only_root_filesystem: bool | None = None
    """Mount the container's root filesystem read-only."""
    run_as_non_root: bool | None = None
    """Refuse to start when the user is root."""
    run_as_user: Id | None = None
    """User id of the process (overrides the pod's)."""
    run_as_group: Id | None = None
    """Primary group id of the process (overrides the pod's)."""
    seccomp_profile: SeccompProfile | None = None
    """Seccomp filter; kopflow's default is RuntimeDefault."""
    app_armor_profile: AppArmorProfile | None = None
    """AppArmor profile."""
    se_linux_options: SELinuxOptions | None = None
    """SELinux labels."""
    proc_mount: Literal["Default", "Unmasked"] | None = None
    """How /proc is mounted (Unmasked is refused by Pod Security baseline)."""

    def escalates(self) -> bool:
        """privileged, or CAP_SYS_ADMIN added: Kubernetes then refuses
        allowPrivilegeEscalation false."""
        added = {
            c.upper().removeprefix("CAP_") for c in (self.capabilities or Capabilities()).add or ()
        }
        return bool(self.privileged) or "SYS_ADMIN" in added

    @model_validator(mode="after")
    def _escalation(self) -> Self:
        if self.allow_privilege_escalation is False and self.escalates():
            raise ValueError(
                "allowPrivilegeEscalation false contradicts privileged true or adding SYS_ADMIN "
                "(the API server refuses the Job); drop one of them"
            )
        return self


# -- scheduling ----------------------------------------------------------------------------------


class LabelSelectorRequirement(Model):
    """One expression of a label selector."""

    key: Annotated[str, Field(min_length=1, max_length=316)]
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: Annotated[list[LabelValue], Field(max_length=64)] | None = None


class LabelSelector(Model):
    """core/v1 LabelSelector: all of matchLabels and matchExpressions must hold."""

    match_labels: Annotated[dict[str, LabelValue], Field(max_length=64)] | None = None
    match_expressions: Annotated[list[LabelSelectorRequirement], Field(max_length=16)] | None = None


class NodeSelectorRequirement(Model):
    """One expression on node labels (or fields)."""

    key: Annotated[str, Field(min_length=1, max_length=316)]
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    values: Annotated[list[LabelValue], Field(max_length=64)] | None = None


class NodeSelectorTerm(Model):
    """Expressions that must all hold for a node."""

    match_expressions: Annotated[list[NodeSelectorRequirement], Field(max_length=16)] | None = None
    match_fields: Annotated[list[NodeSelectorRequirement], Field(max_length=16)] | None = None


class NodeSelector(Model):
    """Nodes matching any of the terms."""

    node_selector_terms: Annotated[list[NodeSelectorTerm], Field(min_length=1, max_length=16)]


class PreferredSchedulingTerm(Model):
    """A weighted node preference."""

    weight: Annotated[int, Field(ge=1, le=100)]
    preference: NodeSelectorTerm


class NodeAffinity(Model):
    """Which nodes the pod must or should run on."""

    required_during_scheduling_ignored_during_execution: NodeSelector | None = None
    preferred_during_scheduling_ignored_during_execution: (
        Annotated[list[PreferredSchedulingTerm], Field(max_length=16)] | None
    ) = None


class PodAffinityTerm(Model):
    """Pods (selected by labels, in namespaces) to run near or away from, per topology key."""

    label_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    namespaces: Annotated[list[Name], Field(max_length=16)] | None = None
    topology_key: Annotated[str, Field(min_length=1, max_length=316)]
    match_label_keys: Annotated[list[Name], Field(max_length=16)] | None = None
    mismatch_label_keys: Annotated[list[Name], Field(max_length=16)] | None = None


class WeightedPodAffinityTerm(Model):
    """A weighted pod (anti-)affinity preference."""

    weight: Annotated[int, Field(ge=1, le=100)]
    pod_affinity_term: PodAffinityTerm


class PodAffinity(Model):
    """Run near pods matching the terms (also used for anti-affinity)."""

    required_during_scheduling_ignored_during_execution: (
        Annotated[list[PodAffinityTerm], Field(max_length=16)] | None
    ) = None
    preferred_during_scheduling_ignored_during_execution: (
        Annotated[list[WeightedPodAffinityTerm], Field(max_length=16)] | None
    ) = None


class Affinity(Model):
    """core/v1 Affinity: node affinity, pod affinity and pod anti-affinity."""

    node_affinity: NodeAffinity | None = None
    pod_affinity: PodAffinity | None = None
    pod_anti_affinity: PodAffinity | None = None


class TopologySpreadConstraint(Model):
    """core/v1 TopologySpreadConstraint: spread matching pods across zones or nodes."""

    max_skew: Annotated[int, Field(ge=1, le=1000)]
    topology_key: Annotated[str, Field(min_length=1, max_length=316)]
    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"]
    label_selector: LabelSelector | None = None
    min_domains: Annotated[int, Field(ge=1, le=1000)] | None = None
    node_affinity_policy: Literal["Honor", "Ignore"] | None = None
    node_taints_policy: Literal["Honor", "Ignore"] | None = None
    match_label_keys: Annotated[list[Name], Field(max_length=16)] | None = None


class LocalObjectReference(Model):
    """An object in the run's namespace, by name."""

    name: Name


# -- volumes -------------------------------------------------------------------------------------


class KeyToPath(Model):
    """Put one key of a Secret or ConfigMap at a path inside the volume."""

    key: Name
    path: Path
    """Relative path of the file (no `..`)."""
    mode: Mode | None = None


class SecretVolumeSource(Model):
    """The keys of a Secret as files; kopflow passes the name, the kubelet reads the Secret."""

    secret_name: Name
    items: Annotated[list[KeyToPath], Field(max_length=64)] | None = None
    """Only these keys, at these paths (all keys, named by key, when unset)."""
    default_mode: Mode | None = None
    optional: bool | None = None


class ConfigMapVolumeSource(Model):
    """The keys of a ConfigMap as files."""

    name: Name
    items: Annotated[list[KeyToPath], Field(max_length=64)] | None = None
    """Only these keys, at these paths (all keys, named by key, when unset)."""
    default_mode: Mode | None = None
    optional: bool | None = None


class PersistentVolumeClaimVolumeSource(Model):
    """A PersistentVolumeClaim in the run's namespace."""

    claim_name: Name
    read_only: bool | None = None


class EmptyDirVolumeSource(Model):
    """A scratch directory that lives as long as the pod."""

    medium: Literal["", "Memory"] | None = None
    size_limit: Quantity | None = None


class ObjectFieldSelector(Model):
    """A field of the pod (downward API)."""

    field_path: Name
    api_version: Annotated[str, Field(max_length=64)] | None = None


class ResourceFieldSelector(Model):
    """A resource request or limit of a container (downward API)."""

    resource: Name
    container_name: Annotated[str, Field(max_length=63)] | None = None
    divisor: Quantity | None = None


class DownwardAPIVolumeFile(Model):
    """A file holding a pod field or a container resource."""

    path: Path
    field_ref: ObjectFieldSelector | None = None
    resource_field_ref: ResourceFieldSelector | None = None
    mode: Mode | None = None


class DownwardAPIVolumeSource(Model):
    """Pod fields as files."""

    items: Annotated[list[DownwardAPIVolumeFile], Field(max_length=32)] | None = None
    default_mode: Mode | None = None


class SecretProjection(Model):
    """A Secret's keys inside a projected volume."""

    name: Name
    items: Annotated[list[KeyToPath], Field(max_length=64)] | None = None
    optional: bool | None = None


class ConfigMapProjection(Model):
    """A ConfigMap's keys inside a projected volume."""

    name: Name
    items: Annotated[list[KeyToPath], Field(max_length=64)] | None = None
    optional: bool | None = None


class DownwardAPIProjection(Model):
    """Pod fields inside a projected volume."""

    items: Annotated[list[DownwardAPIVolumeFile], Field(max_length=32)] | None = None


class ServiceAccountTokenProjection(Model):
    """A bound token of the pod's service account (e.g. for workload identity)."""

    path: Path
    audience: Name | None = None
    expiration_seconds: Annotated[int, Field(ge=600, le=2**32)] | None = None


class VolumeProjection(Model):
    """One source of a projected volume (set exactly one)."""

    secret: SecretProjection | None = None
    config_map: ConfigMapProjection | None = None
    downward_api: DownwardAPIProjection | None = Field(default=None, alias="downwardAPI")
    service_account_token: ServiceAccountTokenProjection | None = None


class ProjectedVolumeSource(Model):
    """Several Secrets, ConfigMaps, pod fields and tokens in one directory."""

    sources: Annotated[list[VolumeProjection], Field(max_length=16)]
    default_mode: Mode | None = None


class CSIVolumeSource(Model):
    """An inline CSI volume (e.g. the Secrets Store CSI driver)."""

    driver: Name
    read_only: bool | None = None
    fs_type: Annotated[str, Field(max_length=64)] | None = None
    volume_attributes: Annotated[dict[str, Text], Field(max_length=64)] | None = None
    node_publish_secret_ref: LocalObjectReference | None = None


VOLUME_SOURCES = (
    "persistent_volume_claim",
    "config_map",
    "secret",
    "empty_dir",
    "projected",
    "downward_api",
    "csi",
)


class Volume(Model):
    """core/v1 Volume of the task pod: a PVC, ConfigMap, Secret, emptyDir, projected,
    downwardAPI or CSI volume (exactly one). Other kinds (hostPath, nfs...) are not offered:
    Pod Security baseline refuses hostPath, and a PVC covers the rest."""

    name: VolumeName
    """Name the volumeMounts refer to."""
    persistent_volume_claim: PersistentVolumeClaimVolumeSource | None = None
    config_map: ConfigMapVolumeSource | None = None
    secret: SecretVolumeSource | None = None
    empty_dir: EmptyDirVolumeSource | None = None
    projected: ProjectedVolumeSource | None = None
    downward_api: DownwardAPIVolumeSource | None = Field(default=None, alias="downwardAPI")
    csi: CSIVolumeSource | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        given = [f for f in VOLUME_SOURCES if getattr(self, f) is not None]
        if len(given) != 1:
            names = ", ".join(Volume.model_fields[f].alias or f for f in VOLUME_SOURCES)
            raise ValueError(f"set exactly one volume source ({names})")
        return self

    def source(self) -> str:
        """The wire name of the volume's source (persistentVolumeClaim, secret...)."""
        field = next(f for f in VOLUME_SOURCES if getattr(self, f) is not None)
        return Volume.model_fields[field].alias or field


class VolumeMount(Model):
    """core/v1 VolumeMount: where a volume appears in the task container."""

    name: VolumeName
    """The volume (in `volumes`) to mount."""
    mount_path: Annotated[
        str, Field(min_length=1, max_length=1024, json_schema_extra={"pattern": "^/"})
    ]
    """Absolute path in the container."""
    sub_path: Path | None = None
    """Mount only this path inside the volume."""
    read_only: bool | None = None
    """Mount read-only (Secret, ConfigMap, downwardAPI and projected volumes always are)."""

    @field_validator("mount_path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"mountPath must be an absolute path, got {value!r}")
        return value


# -- sidecars ------------------------------------------------------------------------------------


class ContainerPort(Model):
    """A port a sidecar listens on (informational, as in Kubernetes)."""

    container_port: Annotated[int, Field(ge=1, le=65535)]
    name: Annotated[str, Field(max_length=15)] | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] | None = None


class Sidecar(Model):
    """A helper container that starts before the task and stops after it: a native sidecar
    (an init container with `restartPolicy: Always`, Kubernetes 1.29+). It gets kopflow's safe
    securityContext defaults, then the template's containerSecurityContext, then its own."""

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]
    """Container name (not `main`, the task's container)."""
    image: Name
    command: Annotated[list[Text], Field(max_length=64)] | None = None
    args: Annotated[list[Text], Field(max_length=64)] | None = None
    env: Annotated[list[EnvVar], Field(max_length=64)] | None = None
    env_from: Annotated[list[EnvFromSource], Field(max_length=16)] | None = None
    ports: Annotated[list[ContainerPort], Field(max_length=16)] | None = None
    resources: FreeForm | None = None
    """Kubernetes ResourceRequirements (requests, limits)."""
    volume_mounts: Annotated[list[VolumeMount], Field(max_length=MAX_VOLUMES)] | None = None
    security_context: SecurityContext | None = None

    @field_validator("name")
    @classmethod
    def _not_main(cls, value: str) -> str:
        if value == "main":
            raise ValueError('"main" is the task container\'s name; pick another')
        return value


# -- the template --------------------------------------------------------------------------------


class PodMetadata(Model):
    """Labels and annotations of the task pods (sidecar injectors and policies key on them)."""

    labels: Annotated[dict[str, LabelValue], Field(max_length=64)] | None = None
    """Added to the pod's labels; kopflow's own (kopflow.dev/*, the Job's) cannot be set."""
    annotations: Annotated[dict[str, Text], Field(max_length=64)] | None = None
    """Added to the pod's annotations."""

    @field_validator("labels", "annotations")
    @classmethod
    def _keys(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key in value or {}:
            prefix, _, name = key.rpartition("/")
            if not name or len(name) > 63 or len(prefix) > 253:
                raise ValueError(f"key {key!r}: a name of 1-63 characters, optional prefix/")
            if key.startswith(RESERVED_LABEL_PREFIXES):
                raise ValueError(f"key {key!r} is kopflow's or the Job controller's; pick another")
        return value


class PodTemplate(Model):
    """Pod and Job settings of a task. A task's podTemplate is merged over
    taskDefaults.podTemplate field by field: a field the task sets wins; metadata labels and
    annotations merge by key; securityContext and containerSecurityContext merge field by field
    (capabilities by add/drop); lists (sidecars, imagePullSecrets, topologySpreadConstraints)
    and affinity are replaced whole. kopflow's safe defaults (allowPrivilegeEscalation false,
    capabilities drop ALL, RuntimeDefault seccomp) stay unless a template sets those fields."""

    metadata: PodMetadata | None = None
    """Labels and annotations added to the task pods."""
    service_account_name: Name | None = None
    """Service account of the task pods (overrides spec.serviceAccountName)."""
    security_context: PodSecurityContext | None = None
    """Pod-level security: runAsNonRoot, runAsUser/Group, fsGroup, seccompProfile..."""
    container_security_context: SecurityContext | None = None
    """Security of the task container and sidecars, over kopflow's safe defaults."""
    affinity: Affinity | None = None
    """core/v1 Affinity: node affinity, pod affinity and anti-affinity. Kept as written by the
    CRD schema (typed it would be 45% of the task schema, three times per CRD); kopflow
    validates it (`kopflow validate`, the operator: run Invalid) and so does the Job's API."""
    topology_spread_constraints: (
        Annotated[list[TopologySpreadConstraint], Field(max_length=8)] | None
    ) = None
    """Spread task pods across topology domains."""
    image_pull_secrets: Annotated[list[LocalObjectReference], Field(max_length=16)] | None = None
    """Secrets (by name) the kubelet uses to pull private images."""
    priority_class_name: Name | None = None
    """PriorityClass of the task pods."""
    runtime_class_name: Name | None = None
    """RuntimeClass (e.g. gvisor, kata) of the task pods."""
    sidecars: Annotated[list[Sidecar], Field(max_length=8)] | None = None
    """Native sidecars: started before the task container, stopped after it."""
    job_ttl_seconds_after_finished: Annotated[int, Field(ge=0, le=31_536_000)] | None = None
    """The Job's ttlSecondsAfterFinished: Kubernetes deletes each attempt's Job (and pod) this
    long after it finished, before the run is deleted. The operator reads the result from the
    pod, so a Job deleted while the operator is down makes that attempt Lost: keep it above
    the operator's expected downtime."""
