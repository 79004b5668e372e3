#!/usr/bin/env python3
"""Checks deploy/ the way a cluster would read it (run by .ci/run).

  deploy/check.py TOKENGATE_BINARY

- deploy/Dockerfile passes hadolint, and stands in a file for every target
  Cargo.toml names (else the image build fails at manifest load);
- every deploy/kubernetes/*/ renders with `kubectl kustomize` and every object
  validates with `kubernetes-validate --strict` against Kubernetes 1.33;
- every ConfigMap's tokengate.yaml passes `tokengate check` as is (files it
  names that exist only in the pod are warnings, not failures);
- every probe of a tokengate container names a port and path the config's
  admin listener serves on an address the kubelet can reach (not loopback);
- forward-auth: every ingress that asks tokengate (ingress-nginx `auth-url`, a
  Traefik `forwardAuth` Middleware, an Envoy `ext_authz` cluster) names a
  Service port that reaches the authz listener (`/authz`) or its gRPC port,
  copies exactly the config's identity headers, and a NetworkPolicy guards
  the authz pods.
Exit 1 with every problem listed.
"""
import pathlib
import re
import subprocess
import sys
import tempfile
import tomllib

import yaml

KUBERNETES = "1.33.0"
DEPLOY = pathlib.Path(__file__).resolve().parent
ADMIN_PATHS = {"/healthz", "/readyz", "/metrics"}
LOOPBACK = ("127.", "localhost", "[::1]", "::1")

problems = []

def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)


def check_dockerfile_stubs():
    """The Dockerfile's dependency layer stands in a file for every target
    Cargo.toml names; a missing one fails the image build at manifest load."""
    manifest = tomllib.loads((DEPLOY.parent / "Cargo.toml").read_text())
    paths = [t.get("path", f"benches/{t['name']}.rs") for t in manifest.get("bench", [])]
    paths += [t.get("path", f"examples/{t['name']}.rs") for t in manifest.get("example", [])]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for path in paths:
        if path not in dockerfile:
            problems.append(f"deploy/Dockerfile: no stand-in for {path}, which Cargo.toml names")


def check_config(binary, name, text):
    """`tokengate check` on a ConfigMap's config, as is: files it names that
    exist only in the pod (a mounted Secret, a projected token) are warnings."""
    with tempfile.TemporaryDirectory() as tmp:
        config = pathlib.Path(tmp) / "tokengate.yaml"
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


def check_forward_auth(name, objects, configs):
    """The ingress snippets reach the authz listener and copy its identity."""
    authz = {n: c["authz"] for n, c in configs.items() if c.get("authz")}
    if not authz:
        return
    # container port number -> what listens there, for pods mounting an authz config
    listening, selectors = {}, []
    for o in objects:
        if o["kind"] != "Deployment":
            continue
        pod = o["spec"]["template"]["spec"]
        volumes = {v["name"]: v.get("configMap", {}).get("name") for v in pod.get("volumes", [])}
        for c in pod.get("containers", []):
            for m in c.get("volumeMounts", []):
                config = authz.get(volumes.get(m["name"]))
                if config is None:
                    continue
                selectors.append(o["spec"]["selector"]["matchLabels"])
                wanted = {int(config["listen"].rpartition(":")[2]): "http"}
                if config.get("grpc_listen"):
                    wanted[int(config["grpc_listen"].rpartition(":")[2])] = "grpc"
                headers = sorted(h.lower() for h in config.get("forward", {}).get("claims_to_headers", {}).values())
                for p in c.get("ports", []):
                    if p["containerPort"] in wanted:
                        listening[p.get("name")] = listening[p["containerPort"]] = (wanted[p["containerPort"]], headers)
    services = {}
    for o in objects:
        if o["kind"] == "Service" and o["spec"].get("selector") in selectors:
            for p in o["spec"]["ports"]:
                services[(o["metadata"]["name"], p["port"])] = listening.get(p.get("targetPort", p["port"]))
    asks = []
    for o in objects:
        annotations = o["metadata"].get("annotations", {})
        if o["kind"] == "Ingress" and "nginx.ingress.kubernetes.io/auth-url" in annotations:
            asks.append((f"Ingress {o['metadata']['name']}", "http", annotations["nginx.ingress.kubernetes.io/auth-url"],
                         annotations.get("nginx.ingress.kubernetes.io/auth-response-headers", "").split(",")))
        if o["kind"] == "Middleware" and "forwardAuth" in o.get("spec", {}):
            fa = o["spec"]["forwardAuth"]
            asks.append((f"Middleware {o['metadata']['name']}", "http", fa["address"], fa.get("authResponseHeaders", [])))
        if o["kind"] == "ConfigMap":
            for key, text in o.get("data", {}).items():
                if "envoy.filters.http.ext_authz" in text:
                    envoy = yaml.safe_load(text)
                    for cluster in envoy.get("clusters", []):
                        for e in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]:
                            a = e["endpoint"]["address"]["socket_address"]
                            asks.append((f"ConfigMap {o['metadata']['name']}/{key}", "grpc",
                                         f"http://{a['address']}:{a['port_value']}", None))
    if not asks:
        problems.append(f"{name}: an authz config, and no ingress asks it")
    for what, protocol, url, headers in asks:
        m = re.match(r"http://([\w-]+)(?:\.[\w.-]+)?:(\d+)(/[^?]*)?$", url)
        reached = m and services.get((m.group(1), int(m.group(2))))
        if not reached or reached[0] != protocol:
            problems.append(f"{name}: {what} asks {url}, which is not the authz {protocol} listener")
            continue
        if protocol == "http" and m.group(3) != "/authz":
            problems.append(f"{name}: {what} asks {url}: the authz path is /authz")
        if headers is not None and sorted(h.strip().lower() for h in headers if h.strip()) != reached[1]:
            problems.append(f"{name}: {what} copies {headers}, not the identity headers {reached[1]}")
    guarded = any(o["kind"] == "NetworkPolicy" and o["spec"]["podSelector"].get("matchLabels") in selectors
                  for o in objects)
    if not guarded:
        problems.append(f"{name}: no NetworkPolicy guards the authz pods, which trust X-Forwarded-* headers")


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/tokengate"
    check_dockerfile_stubs()
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
        check_forward_auth(name, objects, configs)
        print(f"deploy/kubernetes/{name}: {len(objects)} objects checked")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)


main()
