#!/usr/bin/env python3
"""Checks deploy/ the way a cluster would read it (run by .ci/run).

  deploy/check.py TOKENGATE_BINARY

- deploy/Dockerfile passes hadolint;
- every deploy/kubernetes/*/ renders with `kubectl kustomize` and every object
  validates with `kubernetes-validate --strict` against Kubernetes 1.33;
- every ConfigMap's tokengate.yaml passes `tokengate check` (files it names
  under /var/run or /etc/tokengate, mounted in a pod, are stood in for by
  placeholder files: a certificate for *.crt, text for the rest);
- every probe of a tokengate container names a port and path the config's
  admin listener serves on an address the kubelet can reach (not loopback).
Exit 1 with every problem listed.
"""
import pathlib
import re
import subprocess
import sys
import tempfile

import yaml

KUBERNETES = "1.33.0"
DEPLOY = pathlib.Path(__file__).resolve().parent
ADMIN_PATHS = {"/healthz", "/readyz", "/metrics"}
LOOPBACK = ("127.", "localhost", "[::1]", "::1")

problems = []

# Stands in for a mounted CA certificate (*.crt) such as the cluster CA: a
# self-signed EC certificate that only has to parse.
STAND_IN_CERTIFICATE = """\
-----BEGIN CERTIFICATE-----
MIIBqTCCAU+gAwIBAgIUYYRFJm2M7NRlrg0UX9fojoIOx2QwCgYIKoZIzj0EAwIw
KTEnMCUGA1UEAwwedG9rZW5nYXRlIGNoZWNrLnB5IHN0YW5kLWluIENBMCAXDTI2
MTEzMDAwMzIxN1oYDzIxMjYxMTA2MDAzMjE3WjApMScwJQYDVQQDDB50b2tlbmdh
dGUgY2hlY2sucHkgc3RhbmQtaW4gQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC
AAStiU35peDJyev132A/3lxuPVQb2J1ZaSzkX+L5NCdYrypfJp9oyCCX53kidMLF
+5xOk9ir4oUJMdBT/lo7+gqro1MwUTAdBgNVHQ4EFgQU0hAWgq8itJRKYcbw6hQJ
GI+BsbUwHwYDVR0jBBgwFoAU0hAWgq8itJRKYcbw6hQJGI+BsbUwDwYDVR0TAQH/
BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiEAi9M5Hhbky0zAjAHULPt+hU6aFdgE
ffIDOPXbTHPly5YCIB8zLFIC+yi+YCtrYN4Amf/50uplQv3GZzlknI8kGgdL
-----END CERTIFICATE-----
"""


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)


def check_config(binary, name, text):
    """`tokengate check` on a ConfigMap's config, mounted files stood in for."""
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)

        def stand_in(match):
            path = root / match.group(0).lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix == ".crt":
                path.write_text(STAND_IN_CERTIFICATE)
            else:
                path.write_text("placeholder-placeholder-placeholder-0123456789\n")
            return str(path)

        text = re.sub(r"/(?:var/run|etc/tokengate)/[\w./-]+", stand_in, text)
        config = root / "tokengate.yaml"
        config.write_text(text)
        out = run([binary, "check", "--config", str(config)])
        if out.returncode != 0:
            problems.append(f"{name}: tokengate check failed:\n{out.stderr}{out.stdout}")


def check_probes(name, pod, configs):
    containers = pod.get("initContainers", []) + pod.get("containers", [])
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for c in containers:
        if not c.get("image", "").startswith("tokengate"):
            continue
        config = None
        for m in c.get("volumeMounts", []):
            source = volumes.get(m["name"], {}).get("configMap")
            if source and m["mountPath"] == "/etc/tokengate":
                config = configs.get(source["name"])
        if config is None:
            problems.append(f"{name}/{c['name']}: no ConfigMap mounted at /etc/tokengate")
            continue
        listen = config.get("admin", {}).get("listen", "127.0.0.1:9901")
        host, _, port = listen.rpartition(":")
        if host.startswith(LOOPBACK):
            problems.append(f"{name}/{c['name']}: admin.listen {listen} is loopback; the kubelet probes the pod IP")
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = c.get(kind)
            if probe is None:
                problems.append(f"{name}/{c['name']}: no {kind}")
                continue
            get = probe.get("httpGet", {})
            probe_port = get.get("port")
            probe_port = ports.get(probe_port, probe_port)
            if str(probe_port) != port:
                problems.append(f"{name}/{c['name']}: {kind} port {probe_port} is not the admin port {port}")
            if get.get("path") not in ADMIN_PATHS:
                problems.append(f"{name}/{c['name']}: {kind} path {get.get('path')} is not an admin path")


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/tokengate"
    out = run(["hadolint", str(DEPLOY / "Dockerfile")])
    if out.returncode != 0:
        problems.append(f"hadolint:\n{out.stdout}{out.stderr}")
    dirs = sorted(p.parent for p in (DEPLOY / "kubernetes").glob("*/kustomization.yaml"))
    if not dirs:
        problems.append("no kustomize directories under deploy/kubernetes")
    for d in dirs:
        name = d.name
        out = run(["kubectl", "kustomize", str(d)])
        if out.returncode != 0:
            problems.append(f"{name}: kubectl kustomize failed:\n{out.stderr}")
            continue
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as rendered:
            rendered.write(out.stdout)
            rendered.flush()
            valid = run(["kubernetes-validate", "--strict", "--quiet", "-k", KUBERNETES, rendered.name])
            if valid.returncode != 0:
                problems.append(f"{name}: kubernetes-validate:\n{valid.stdout}{valid.stderr}")
        objects = [o for o in yaml.safe_load_all(out.stdout) if o]
        configs = {}
        for o in objects:
            if o["kind"] == "ConfigMap" and "tokengate.yaml" in o.get("data", {}):
                text = o["data"]["tokengate.yaml"]
                check_config(binary, f"{name}/{o['metadata']['name']}", text)
                configs[o["metadata"]["name"]] = yaml.safe_load(text)
        for o in objects:
            if o["kind"] in ("Deployment", "DaemonSet", "StatefulSet"):
                check_probes(f"{name}/{o['metadata']['name']}", o["spec"]["template"]["spec"], configs)
        print(f"deploy/kubernetes/{name}: {len(objects)} objects checked")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)


main()
