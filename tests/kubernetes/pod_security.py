"""The Kubernetes Pod Security Standards, "baseline" and "restricted" profiles (policy version latest, as of
Kubernetes 1.30-1.37), as a checker over a pod spec: what Pod Security Admission rejects in a namespace
labelled `pod-security.kubernetes.io/enforce: <level>`. One function per control of
https://kubernetes.io/docs/concepts/security/pod-security-standards/, each returning the violations it
finds as readable strings. Not modelled: Windows pods (hostProcess is checked, the Windows-only
exemptions are not) and the per-version differences of policy versions older than 1.25.

    violations(pod_spec, "restricted") -> ["containers[nextflow]: allowPrivilegeEscalation must be false", ...]
"""

# Capabilities "baseline" allows a container to add (everything else is refused).
BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
RESTRICTED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
}
LEVELS = ("privileged", "baseline", "restricted")


def containers(spec):
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            yield f"{key}[{c.get('name', '?')}]", c


def _sc(obj):
    return obj.get("securityContext") or {}


# ---------------------------------------------------------------- baseline


def host_process(spec):
    found = []
    if (_sc(spec).get("windowsOptions") or {}).get("hostProcess"):
        found.append("securityContext.windowsOptions.hostProcess must not be true")
    for where, c in containers(spec):
        if (_sc(c).get("windowsOptions") or {}).get("hostProcess"):
            found.append(f"{where}: windowsOptions.hostProcess must not be true")
    return found


def host_namespaces(spec):
    return [f"{key} must not be true" for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key)]


def privileged(spec):
    return [f"{where}: privileged must not be true" for where, c in containers(spec) if _sc(c).get("privileged")]


def capabilities_baseline(spec):
    found = []
    for where, c in containers(spec):
        added = set((_sc(c).get("capabilities") or {}).get("add") or [])
        if added - BASELINE_CAPABILITIES:
            found.append(f"{where}: capabilities.add {sorted(added - BASELINE_CAPABILITIES)} not allowed")
    return found


def host_path_volumes(spec):
    return [f"volume {v.get('name')}: hostPath not allowed" for v in spec.get("volumes") or [] if "hostPath" in v]


def host_ports(spec):
    found = []
    for where, c in containers(spec):
        for port in c.get("ports") or []:
            if port.get("hostPort", 0):
                found.append(f"{where}: hostPort {port['hostPort']} not allowed")
    return found


def apparmor(spec):
    found = []
    allowed = {None, "RuntimeDefault", "Localhost"}
    if (_sc(spec).get("appArmorProfile") or {}).get("type") not in allowed:
        found.append("securityContext.appArmorProfile must be RuntimeDefault or Localhost")
    for where, c in containers(spec):
        if (_sc(c).get("appArmorProfile") or {}).get("type") not in allowed:
            found.append(f"{where}: appArmorProfile must be RuntimeDefault or Localhost")
    return found


def selinux(spec):
    found = []
    for where, obj in [("securityContext", spec)] + list(containers(spec)):
        options = _sc(obj).get("seLinuxOptions") or {}
        if options.get("type") not in (None, "", "container_t", "container_init_t", "container_kvm_t",
                                       "container_engine_t"):
            found.append(f"{where}: seLinuxOptions.type {options['type']!r} not allowed")
        if options.get("user") or options.get("role"):
            found.append(f"{where}: seLinuxOptions.user/role must not be set")
    return found


def proc_mount(spec):
    return [f"{where}: procMount must be Default" for where, c in containers(spec)
            if _sc(c).get("procMount") not in (None, "Default")]


def seccomp_baseline(spec):
    found = []
    if (_sc(spec).get("seccompProfile") or {}).get("type") == "Unconfined":
        found.append("securityContext.seccompProfile must not be Unconfined")
    for where, c in containers(spec):
        if (_sc(c).get("seccompProfile") or {}).get("type") == "Unconfined":
            found.append(f"{where}: seccompProfile must not be Unconfined")
    return found


def sysctls(spec):
    return [f"sysctl {s.get('name')} not allowed" for s in _sc(spec).get("sysctls") or []
            if s.get("name") not in SAFE_SYSCTLS]


# ---------------------------------------------------------------- restricted


def volume_types(spec):
    found = []
    for v in spec.get("volumes") or []:
        kinds = set(v) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            found.append(f"volume {v.get('name')}: type {sorted(kinds - RESTRICTED_VOLUME_TYPES)} not allowed")
    return found


def privilege_escalation(spec):
    return [f"{where}: allowPrivilegeEscalation must be false" for where, c in containers(spec)
            if _sc(c).get("allowPrivilegeEscalation") is not False]


def running_as_non_root(spec):
    found = []
    pod_level = _sc(spec).get("runAsNonRoot")
    if pod_level is False:
        found.append("securityContext.runAsNonRoot must not be false")
    for where, c in containers(spec):
        own = _sc(c).get("runAsNonRoot")
        if own is False or (own is None and pod_level is not True):
            found.append(f"{where}: runAsNonRoot must be true (pod or container)")
    return found


def running_as_non_root_user(spec):
    found = []
    if _sc(spec).get("runAsUser") == 0:
        found.append("securityContext.runAsUser must not be 0")
    for where, c in containers(spec):
        if _sc(c).get("runAsUser") == 0:
            found.append(f"{where}: runAsUser must not be 0")
    return found


def seccomp_restricted(spec):
    found = []
    allowed = {"RuntimeDefault", "Localhost"}
    pod_level = (_sc(spec).get("seccompProfile") or {}).get("type")
    if pod_level is not None and pod_level not in allowed:
        found.append("securityContext.seccompProfile must be RuntimeDefault or Localhost")
    for where, c in containers(spec):
        own = (_sc(c).get("seccompProfile") or {}).get("type")
        if (own or pod_level) not in allowed:
            found.append(f"{where}: seccompProfile must be RuntimeDefault or Localhost (pod or container)")
    return found


def capabilities_restricted(spec):
    found = []
    for where, c in containers(spec):
        caps = _sc(c).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            found.append(f"{where}: capabilities must drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            found.append(f"{where}: capabilities may add only NET_BIND_SERVICE")
    return found


BASELINE = [host_process, host_namespaces, privileged, capabilities_baseline, host_path_volumes, host_ports,
            apparmor, selinux, proc_mount, seccomp_baseline, sysctls]
RESTRICTED = BASELINE + [volume_types, privilege_escalation, running_as_non_root, running_as_non_root_user,
                         seccomp_restricted, capabilities_restricted]


def violations(spec, level="restricted"):
    assert level in LEVELS, level
    checks = {"privileged": [], "baseline": BASELINE, "restricted": RESTRICTED}[level]
    return [v for check in checks for v in check(spec)]
