#!/usr/bin/env python3
"""The deployment's own rules, checked on every rendered overlay (`just deploy-check`).

kubernetes-validate says the manifests are valid Kubernetes; this says they are a safe doorsync:

* every pod can read every Secret file it mounts (the files are root's: without fsGroup or a
  readable mode, a non-root pod crash-loops at start);
* each role mounts only the Secret keys it reads, and every file its configuration names is
  mounted;
* NetworkPolicies: the webhook port only from the ingress controller's namespace, the admin port
  only from the monitoring namespace and doorsync's pods, NATS's client port only from
  doorsync's pods, and no other port of theirs open;
* every doorsync container writes its logs as JSON (DOORSYNC_LOG__FORMAT=json or log.format);
* the Dockerfile pins every base image by digest, and .dockerignore keeps target/ and .git out;
* deploy/monitoring: every metric the alert rules and the dashboard's panels name is one doorsync
  reports (monitoring/metrics.txt, which a test of doorsync-node keeps equal to what /metrics
  serves), each alert has a `for`, a severity and a summary and description for the operator,
  and the dashboard reads a Prometheus data source chosen by a variable.

Usage: check.py <overlay name> <rendered.yaml>   (one overlay)
       check.py --repository                      (Dockerfile and .dockerignore)
       check.py --monitoring                      (alert rules and dashboard)
Prints what is wrong and exits 1, or prints a summary.
"""

import json
import re
import sys
import tomllib
from pathlib import Path

import yaml

REPOSITORY = Path(__file__).resolve().parent.parent

INGRESS_NAMESPACE = "ingress-nginx"
MONITORING_NAMESPACE = "monitoring"
DOORSYNC_PODS = {"app.kubernetes.io/name": "doorsync"}
NATS_PODS = {"app.kubernetes.io/name": "nats"}
WEBHOOK_PORT = 8080
ADMIN_PORT = 9090
NATS_CLIENT_PORT = 4222

# What each command reads: Secret keys (secret name without kustomize's hash suffix, key) and
# the configuration keys that name files. `reconcile` only asks the writer over HTTP.
ROLE_SECRETS = {
    "run": {
        ("doorsync-credentials", "kisi-api-key"),
        ("doorsync-credentials", "nexudus-username"),
        ("doorsync-credentials", "nexudus-password"),
        ("doorsync-credentials", "nexudus-webhook-secret"),
        ("doorsync-credentials", "admin-token"),
    },
    "ingest": {
        ("doorsync-credentials", "nexudus-username"),
        ("doorsync-credentials", "nexudus-password"),
        ("doorsync-credentials", "nexudus-webhook-secret"),
        ("doorsync-credentials", "admin-token"),
        ("doorsync-nats-ingest", "nkey-seed"),
        ("nats-server-tls", "ca.crt"),
    },
    "engine": {
        ("doorsync-credentials", "admin-token"),
        ("doorsync-nats-engine", "nkey-seed"),
        ("nats-server-tls", "ca.crt"),
    },
    "writer": {
        ("doorsync-credentials", "kisi-api-key"),
        ("doorsync-credentials", "admin-token"),
        ("doorsync-nats-writer", "nkey-seed"),
        ("nats-server-tls", "ca.crt"),
    },
    "reconcile": {("doorsync-credentials", "admin-token")},
}
JETSTREAM_FILES = ["log.nats_nkey_seed_file", "log.nats_creds_file", "log.nats_password_file", "log.tls_ca_file"]
ROLE_FILES = {
    "run": ["kisi.api_key_file", "nexudus.password_file", "nexudus.webhook_secret_file", "admin.token_file"],
    "ingest": ["nexudus.password_file", "nexudus.webhook_secret_file", "admin.token_file", *JETSTREAM_FILES],
    "engine": ["admin.token_file", *JETSTREAM_FILES],
    "writer": ["kisi.api_key_file", "admin.token_file", *JETSTREAM_FILES],
    "reconcile": ["admin.token_file"],
}

problems = []


def problem(text):
    problems.append(text)


def unhashed(name):
    """A generated Secret's name without the hash suffix kustomize adds."""
    return re.sub(r"-[a-z0-9]{10}$", "", name)


def pod_templates(documents):
    for document in documents:
        kind, name = document.get("kind"), document.get("metadata", {}).get("name")
        spec = document.get("spec", {})
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield f"{kind}/{name}", spec["template"]
        elif kind == "CronJob":
            yield f"{kind}/{name}", spec["jobTemplate"]["spec"]["template"]
        elif kind == "Pod":
            yield f"{kind}/{name}", document


def selects(selector, labels):
    """Whether a label selector (matchLabels and matchExpressions) selects `labels`."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def readable(mode, uid, groups, file_group):
    """A Secret file is root's (uid 0), group `file_group` (the pod's fsGroup, else 0)."""
    if uid == 0 or mode & 0o004:
        return True
    return bool(mode & 0o040) and file_group in groups


def check_secrets(overlay, workload, template, config_text):
    pod = template["spec"]
    pod_security = pod.get("securityContext") or {}
    volumes = {volume["name"]: volume for volume in pod.get("volumes") or []}
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        where = f"{overlay}: {workload} container {container['name']}"
        security = {**pod_security, **(container.get("securityContext") or {})}
        uid = security.get("runAsUser")
        if uid is None:
            problem(f"{where}: no runAsUser, so which user reads the Secrets depends on the image")
            continue
        fs_group = pod_security.get("fsGroup")
        groups = {security.get("runAsGroup", 0), *pod_security.get("supplementalGroups", [])}
        if fs_group is not None:
            groups.add(fs_group)
        role = (container.get("args") or [None])[0]
        allowed = ROLE_SECRETS.get(role)
        if allowed is None:
            problem(f"{where}: unknown command {role!r}; add what it reads to deploy/check.py")
            continue
        mounted = {}
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"], {})
            secret = volume.get("secret")
            if secret is None:
                continue
            name = unhashed(secret["secretName"])
            if not secret.get("items"):
                problem(f"{where}: mounts every key of Secret {name}; list the keys it reads in `items`")
                continue
            for item in secret["items"]:
                mode = item.get("mode", secret.get("defaultMode", 0o644))
                path = f"{mount['mountPath'].rstrip('/')}/{item['path']}"
                mounted[path] = (name, item["key"])
                if (name, item["key"]) not in allowed:
                    problem(f"{where}: `doorsync {role}` does not read {name}/{item['key']}, yet mounts it")
                if not readable(mode, uid, groups, fs_group if fs_group is not None else 0):
                    problem(
                        f"{where}: cannot read {path} ({name}/{item['key']}): mode {mode:o}, owner root, "
                        f"group {fs_group if fs_group is not None else 0}, and it runs as {uid} in groups "
                        f"{sorted(groups)}; set the pod's fsGroup to its group (mode 0440) or make it readable"
                    )
        env_secrets = {
            (unhashed(variable["valueFrom"]["secretKeyRef"]["name"]), variable["valueFrom"]["secretKeyRef"]["key"])
            for variable in container.get("env") or []
            if (variable.get("valueFrom") or {}).get("secretKeyRef")
        }
        for secret in env_secrets - allowed:
            problem(f"{where}: `doorsync {role}` does not read {secret[0]}/{secret[1]}, yet gets it in its environment")
        check_config_files(where, role, container, config_text, mounted)


def check_config_files(where, role, container, config_text, mounted):
    """Every file the configuration names for this role is mounted from a Secret."""
    config = tomllib.loads(config_text)
    overrides = {
        variable["name"]: variable.get("value")
        for variable in container.get("env") or []
        if variable["name"].startswith("DOORSYNC_")
    }
    backend = overrides.get("DOORSYNC_LOG__BACKEND", config.get("log", {}).get("backend"))
    for key in ROLE_FILES[role]:
        if key in JETSTREAM_FILES and backend != "jetstream":
            continue
        section, name = key.split(".")
        variable = f"DOORSYNC_{section.upper()}__{name.upper()}"
        path = overrides.get(variable, config.get(section, {}).get(name))
        if path is None:
            continue
        if path not in mounted:
            problem(f"{where}: `{key}` names {path}, which no Secret mount of this container provides")


def check_log_format(overlay, workload, template, config_text):
    """Every container writes JSON log lines, which the cluster's log collector reads field by field."""
    configured = tomllib.loads(config_text).get("log", {}).get("format", "text")
    for container in template["spec"].get("containers", []) + template["spec"].get("initContainers", []):
        overrides = {variable["name"]: variable.get("value") for variable in container.get("env") or []}
        if overrides.get("DOORSYNC_LOG__FORMAT", configured) != "json":
            problem(
                f"{overlay}: {workload} container {container['name']}: logs are not JSON; set "
                "DOORSYNC_LOG__FORMAT=json in its env (or log.format = \"json\" in doorsync.toml)"
            )


def ingress_rules(policies, labels):
    selecting = [
        policy for policy in policies
        if "Ingress" in policy["spec"].get("policyTypes", ["Ingress"]) and selects(policy["spec"]["podSelector"], labels)
    ]
    return selecting, [rule for policy in selecting for rule in policy["spec"].get("ingress") or []]


def peer_is(peer, namespace=None, pods=None):
    """Whether a NetworkPolicy peer is exactly the namespace `namespace` or the pods `pods`."""
    if "ipBlock" in peer:
        return False
    namespace_selector, pod_selector = peer.get("namespaceSelector"), peer.get("podSelector")
    if namespace is not None:
        return namespace_selector == {"matchLabels": {"kubernetes.io/metadata.name": namespace}} and (
            pod_selector is None
        )
    return namespace_selector is None and pod_selector == {"matchLabels": pods}


def allowed_from(rules, port, allowed_peers):
    """The rules that open `port`, each checked to admit only `allowed_peers`; True when some do."""
    opened = False
    for rule in rules:
        ports = rule.get("ports")
        if not ports:
            problem(f"an ingress rule opens every port: {rule}")
            continue
        if not any(entry.get("port") == port for entry in ports):
            continue
        peers = rule.get("from")
        if not peers:
            problem(f"port {port} is open to everyone: {rule}")
            continue
        for peer in peers:
            if not any(check(peer) for check in allowed_peers):
                problem(f"port {port} is open to {peer}")
        opened = True
    return opened


def check_network(overlay, documents):
    policies = [document for document in documents if document.get("kind") == "NetworkPolicy"]
    from_ingress = lambda peer: peer_is(peer, namespace=INGRESS_NAMESPACE)  # noqa: E731
    from_monitoring = lambda peer: peer_is(peer, namespace=MONITORING_NAMESPACE)  # noqa: E731
    from_doorsync = lambda peer: peer_is(peer, pods=DOORSYNC_PODS)  # noqa: E731
    for workload, template in pod_templates(documents):
        labels = template.get("metadata", {}).get("labels") or {}
        selecting, rules = ingress_rules(policies, labels)
        where = f"{overlay}: {workload}"
        if not selecting:
            problem(f"{where}: no NetworkPolicy selects its pods, so anything in the cluster may reach them")
            continue
        open_ports = {entry.get("port") for rule in rules for entry in rule.get("ports") or []}
        declared = {
            port["containerPort"]: port.get("name")
            for container in template["spec"]["containers"]
            for port in container.get("ports") or []
        }
        if WEBHOOK_PORT in declared and not allowed_from(rules, WEBHOOK_PORT, [from_ingress]):
            problem(f"{where}: the webhook port {WEBHOOK_PORT} is not opened to the ingress controller")
        if ADMIN_PORT in declared and not allowed_from(rules, ADMIN_PORT, [from_monitoring, from_doorsync]):
            problem(f"{where}: the admin port {ADMIN_PORT} is not opened to monitoring and doorsync's pods")
        for port in open_ports - {WEBHOOK_PORT, ADMIN_PORT}:
            problem(f"{where}: port {port} is open, which doorsync does not serve")
    nats_rules = ingress_rules(policies, NATS_PODS)[1]
    if not ingress_rules(policies, NATS_PODS)[0]:
        problem(f"{overlay}: no NetworkPolicy selects NATS's pods ({NATS_PODS})")
    elif not allowed_from(nats_rules, NATS_CLIENT_PORT, [from_doorsync]):
        problem(f"{overlay}: NATS's client port {NATS_CLIENT_PORT} is not opened to doorsync's pods")


def check_overlay(overlay, rendered):
    documents = [document for document in yaml.safe_load_all(Path(rendered).read_text()) if document]
    configs = [
        document["data"]["doorsync.toml"]
        for document in documents
        if document.get("kind") == "ConfigMap" and "doorsync.toml" in (document.get("data") or {})
    ]
    if len(configs) != 1:
        problem(f"{overlay}: expected one ConfigMap with doorsync.toml, found {len(configs)}")
        return
    workloads = list(pod_templates(documents))
    for workload, template in workloads:
        check_secrets(overlay, workload, template, configs[0])
        check_log_format(overlay, workload, template, configs[0])
    check_network(overlay, documents)
    return len(workloads)


def check_repository():
    dockerfile = (REPOSITORY / "deploy/Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.upper().startswith("FROM "):
            image = line.split()[1]
            if not re.fullmatch(r"[^@\s]+@sha256:[0-9a-f]{64}", image):
                problem(f"deploy/Dockerfile: `{line}` is not pinned by digest (image:tag@sha256:<64 hex digits>)")
    ignore = REPOSITORY / ".dockerignore"
    entries = {line.strip().strip("/") for line in ignore.read_text().splitlines()} if ignore.exists() else set()
    for needed in ("target", ".git"):
        if needed not in entries:
            problem(f".dockerignore does not keep {needed}/ out of the build context")


MONITORING = REPOSITORY / "deploy/monitoring"
METRIC_NAME = re.compile(r"\bdoorsync_[a-z0-9_]+\b")
SEVERITIES = {"critical", "warning"}


def reported_metrics():
    """The series names doorsync reports: `<name> <type>` per line of monitoring/metrics.txt."""
    listed = MONITORING / "metrics.txt"
    return {line.split()[0] for line in listed.read_text().splitlines() if line.strip()}


def check_expression(where, expression, known):
    named = set(METRIC_NAME.findall(expression))
    if not named:
        problem(f"{where}: `{expression}` names no doorsync metric")
    for name in sorted(named - known):
        problem(
            f"{where}: {name} is not a metric doorsync reports (deploy/monitoring/metrics.txt); "
            "was it renamed? Use the name /metrics serves"
        )


def check_rules(known):
    """Every alert is built from reported metrics and tells the operator how bad and what to do."""
    rules = yaml.safe_load((MONITORING / "doorsync.rules.yml").read_text())
    alerts = 0
    for group in rules.get("groups") or []:
        for rule in group.get("rules") or []:
            name = rule.get("alert") or rule.get("record")
            where = f"deploy/monitoring/doorsync.rules.yml: {name}"
            check_expression(where, str(rule.get("expr", "")), known)
            if "alert" not in rule:
                continue
            alerts += 1
            if "for" not in rule:
                problem(f"{where}: no `for:`, so one scrape's blip pages someone")
            severity = (rule.get("labels") or {}).get("severity")
            if severity not in SEVERITIES:
                problem(f"{where}: severity {severity!r} is not one of {sorted(SEVERITIES)}")
            annotations = rule.get("annotations") or {}
            for needed in ("summary", "description"):
                if not str(annotations.get(needed, "")).strip():
                    problem(f"{where}: no {needed} annotation for the operator")
    return alerts


def dashboard_panels(panels):
    for panel in panels:
        yield panel
        yield from dashboard_panels(panel.get("panels") or [])


def check_dashboard(known):
    """The dashboard parses, reads the Prometheus chosen by its variable, and every query names
    reported metrics."""
    path = MONITORING / "doorsync-dashboard.json"
    try:
        dashboard = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        problem(f"deploy/monitoring/doorsync-dashboard.json does not parse: {error}")
        return 0
    variables = (dashboard.get("templating") or {}).get("list") or []
    if not any(variable.get("type") == "datasource" and variable.get("query") == "prometheus" for variable in variables):
        problem("deploy/monitoring/doorsync-dashboard.json: no Prometheus data source variable")
    queries = 0
    for panel in dashboard_panels(dashboard.get("panels") or []):
        if panel.get("type") == "row":
            continue
        where = f"deploy/monitoring/doorsync-dashboard.json: panel {panel.get('title')!r}"
        targets = panel.get("targets") or []
        if not targets:
            problem(f"{where}: no query")
        for target in targets:
            queries += 1
            check_expression(where, target.get("expr", ""), known)
            if (target.get("datasource") or panel.get("datasource") or {}).get("uid") != "${datasource}":
                problem(f"{where}: reads another data source than the dashboard's variable")
    return queries


def main(arguments):
    if arguments == ["--repository"]:
        check_repository()
        summary = "Dockerfile pinned by digest, .dockerignore keeps target/ and .git out"
    elif arguments == ["--monitoring"]:
        known = reported_metrics()
        alerts, queries = check_rules(known), check_dashboard(known)
        summary = f"{alerts} alerts and {queries} dashboard queries, all from the {len(known)} series doorsync reports"
    elif len(arguments) == 2:
        count = check_overlay(*arguments)
        summary = f"{count} workloads: Secrets readable and only those used, JSON logs, NetworkPolicies as required"
    else:
        print(__doc__, file=sys.stderr)
        return 2
    if problems:
        for text in problems:
            print(f"deploy-check: {text}", file=sys.stderr)
        return 1
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
