"""Assertions of scripts/deploy-check.sh on the deploy files, each against the one list of
daemons (scripts/lib/daemons.txt, passed as JSON) and ops/prometheus/alerts.yml. Every failure
names the file and what is wrong; exit status 1.

    deploy_check.py dockerfile DAEMONS_JSON Dockerfile .dockerignore
    deploy_check.py compose DAEMONS_JSON SCENARIO PROJECT_JSON
    deploy_check.py prometheus DAEMONS_JSON deploy/compose/prometheus.yml
    deploy_check.py chart DAEMONS_JSON ALERTS_YML RENDERED_YAML [--replicas-api N]
    deploy_check.py crs CRD_DIR RENDERED_YAML
"""

import json
import re
import sys
from pathlib import Path

import jsonschema
import yaml

problems = []


def problem(message):
    problems.append(message)


def daemons_of(path):
    # [{"name": "api", "port": 8000, "var": "PEDIDOS_API__LISTEN"}, …]
    return json.loads(Path(path).read_text())


# --- Dockerfile ---------------------------------------------------------------------------------
def check_dockerfile(daemons, dockerfile, dockerignore):
    text = Path(dockerfile).read_text()
    # Stages: "FROM … AS name" up to the next FROM.
    stages = {}
    for block in re.split(r"(?m)^(?=FROM )", text):
        head = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", block)
        if head:
            stages[head.group(1)] = block
    # The build compiles and copies out the daemons of the list itself; the list and each daemon's
    # crate must be in the build context, which .dockerignore opens file by file.
    if "scripts/lib/daemons.txt" not in stages.get("build", ""):
        problem(f"{dockerfile}: the build stage does not read scripts/lib/daemons.txt")
    allowed = {line.strip() for line in Path(dockerignore).read_text().splitlines()}
    if "!scripts/lib/daemons.txt" not in allowed:
        problem(f"{dockerignore}: scripts/lib/daemons.txt is not let into the build context")
    for d in daemons:
        name, port, var = d["name"], d["port"], d["var"]
        stage = stages.get(name)
        if stage is None:
            problem(f"{dockerfile}: no stage `FROM runtime AS {name}`")
            continue
        if not re.search(rf'(?m)^ENTRYPOINT \["/usr/local/bin/{name}"\]', stage):
            problem(f'{dockerfile}: stage {name} lacks ENTRYPOINT ["/usr/local/bin/{name}"]')
        if not re.search(rf"(?m)^ENV {var}=0\.0\.0\.0:{port}$", stage):
            problem(f"{dockerfile}: stage {name} lacks ENV {var}=0.0.0.0:{port}")
        if not re.search(rf"(?m)^EXPOSE {port}$", stage):
            problem(f"{dockerfile}: stage {name} lacks EXPOSE {port}")
        if f"!{name}/" not in allowed:
            problem(f"{dockerignore}: the crate {name}/ is not let into the build context")
    for required in ("STOPSIGNAL SIGTERM", "USER 10001:10001", 'VOLUME ["/var/lib/pedidos"]'):
        if required not in stages.get("runtime", ""):
            problem(f"{dockerfile}: the runtime stage lacks {required}")


# --- compose.yaml -------------------------------------------------------------------------------
OBSERVING = {"prometheus", "alertmanager", "grafana"}
BROKERS = {
    "local": {"kafka"},
    "kafka3": {"kafka-1", "kafka-2", "kafka-3"},
    "postgres": {"kafka", "postgres"},
    "confluent": set(),
    "none": set(),
}


def check_compose(daemons, scenario, project_path):
    project = json.loads(Path(project_path).read_text())
    services = project["services"]
    names = {d["name"] for d in daemons}
    expected = names | OBSERVING | BROKERS[scenario]
    if set(services) != expected:
        problem(f"compose.yaml ({scenario}): services {sorted(services)}, expected {sorted(expected)}")
    for d in daemons:
        service = services.get(d["name"])
        if service is None:
            continue
        build = service.get("build") or {}
        if build.get("target") != d["name"]:
            problem(f"compose.yaml: service {d['name']} builds target {build.get('target')!r}")
        env = service.get("environment") or {}
        bootstrap = env.get("PEDIDOS_KAFKA__BOOTSTRAP_SERVERS")
        want = {
            "local": "kafka:9092",
            "postgres": "kafka:9092",
            "none": "kafka:9092",
            "kafka3": "kafka-1:9092,kafka-2:9092,kafka-3:9092",
            "confluent": "pkc-xxxxx.us-east-1.aws.confluent.cloud:9092",
        }[scenario]
        if bootstrap != want:
            problem(f"compose.yaml ({scenario}): {d['name']} has bootstrap {bootstrap!r}, expected {want!r}")
        if scenario == "confluent":
            for key in ("PEDIDOS_KAFKA__SECURITY_PROTOCOL", "PEDIDOS_KAFKA__SASL_USERNAME",
                        "PEDIDOS_KAFKA__SASL_PASSWORD"):
                if not env.get(key):
                    problem(f"compose.yaml (confluent): {d['name']} does not get {key} from .env")
        if service.get("restart") != "on-failure":
            problem(f"compose.yaml: {d['name']} has no `restart: on-failure`")
    # Every file a service mounts exists (the project JSON holds absolute paths).
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            if volume.get("type") == "bind" and not Path(volume["source"]).exists():
                problem(f"compose.yaml: service {name} mounts {volume['source']}, which does not exist")
    api = services.get("api", {})
    published = [p for p in api.get("ports") or [] if p.get("host_ip") != "127.0.0.1"]
    if published:
        problem("compose.yaml: the API (anonymous by default) is published beyond 127.0.0.1")


# --- compose's Prometheus -----------------------------------------------------------------------
def check_prometheus(daemons, config_path):
    """A scrape job per daemon, named as it, at its service's name and port."""
    config = yaml.safe_load(Path(config_path).read_text())
    jobs = {job["job_name"]: [t for c in job.get("static_configs", []) for t in c.get("targets", [])]
            for job in config.get("scrape_configs", [])}
    for d in daemons:
        want = f"{d['name']}:{d['port']}"
        if jobs.get(d["name"]) != [want]:
            problem(f"{config_path}: job {d['name']} scrapes {jobs.get(d['name'])}, expected [{want!r}]")


# --- the chart ----------------------------------------------------------------------------------
SECRET_VAR = re.compile(r"PASSWORD|SECRET|STORE_URL|TOKEN")


def documents(path):
    return [doc for doc in yaml.safe_load_all(Path(path).read_text()) if doc]


def check_chart(daemons, alerts_path, rendered_path, api_replicas):
    docs = documents(rendered_path)
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    if by_kind.get("ConfigMap"):
        for cm in by_kind["ConfigMap"]:
            for key in (cm.get("data") or {}):
                if SECRET_VAR.search(key.upper()):
                    problem(f"chart: ConfigMap {cm['metadata']['name']} holds {key}: secrets belong in a Secret")
    rules = by_kind.get("PrometheusRule", [])
    alerts = yaml.safe_load(Path(alerts_path).read_text())
    if len(rules) != 1:
        problem(f"chart: {len(rules)} PrometheusRules rendered, expected 1")
    elif rules[0]["spec"] != alerts:
        problem(f"chart: the PrometheusRule's spec differs from {alerts_path}")
    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    pdbs = {p["metadata"]["name"]: p for p in by_kind.get("PodDisruptionBudget", [])}
    for d in daemons:
        name = f"pedidos-{d['name']}"
        deployment = deployments.get(name)
        if deployment is None:
            problem(f"chart: no Deployment {name}")
            continue
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        if not container["image"].endswith(f"pedidos-{d['name']}:0.1.0"):
            problem(f"chart: {name} runs image {container['image']}")
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        if ports.get("http") != d["port"]:
            problem(f"chart: {name}'s http port is {ports.get('http')}, scripts/lib/daemons.sh says {d['port']}")
        env = {e["name"]: e for e in container.get("env", [])}
        listen = env.get(d["var"], {}).get("value")
        if listen != f"0.0.0.0:{d['port']}":
            problem(f"chart: {name} sets {d['var']}={listen!r}, expected 0.0.0.0:{d['port']}")
        for var, entry in env.items():
            if SECRET_VAR.search(var) and "value" in entry and not entry["value"].startswith("sqlite:"):
                problem(f"chart: {name} sets {var} in plain text; it must come from a Secret")
        for probe, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready"),
                            ("startupProbe", "/health")):
            got = container.get(probe, {}).get("httpGet", {})
            if (got.get("path"), got.get("port")) != (path, "http"):
                problem(f"chart: {name}'s {probe} is {got}, expected GET {path} on http")
        if not container.get("resources", {}).get("requests"):
            problem(f"chart: {name} has no resource requests")
        if not container.get("securityContext", {}).get("readOnlyRootFilesystem"):
            problem(f"chart: {name}'s root filesystem is writable")
        if name not in services:
            problem(f"chart: no Service {name}")
        if name not in pdbs:
            problem(f"chart: no PodDisruptionBudget {name}")
    api = deployments.get("pedidos-api")
    if api and api_replicas is not None and api["spec"]["replicas"] != api_replicas:
        problem(f"chart: the API has {api['spec']['replicas']} replicas, expected {api_replicas}")


# --- prometheus-operator's resources ------------------------------------------------------------
def strict(schema):
    """The CRD's structural schema with unknown properties refused, as kubernetes-validate
    --strict does for built-in kinds."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if (schema.get("type") == "object" and "properties" in schema
                and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


class CrdLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """YAML 1.1's `=` (the "value" tag) as the plain string it is in these CRDs."""


CrdLoader.add_constructor("tag:yaml.org,2002:value", yaml.constructor.SafeConstructor.construct_yaml_str)


def check_crs(crd_dir, rendered_path):
    schemas = {}
    kinds = {doc["kind"] for doc in documents(rendered_path)
             if doc["apiVersion"].startswith("monitoring.coreos.com/")}
    for kind in kinds:
        crd_file = Path(crd_dir) / f"monitoring.coreos.com_{kind.lower()}s.yaml"
        if not crd_file.exists():
            problem(f"chart: no CRD for {kind} in {crd_dir}")
            continue
        crd = yaml.load(crd_file.read_text(), Loader=CrdLoader)
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            api_version = f"{crd['spec']['group']}/{version['name']}"
            schemas[(api_version, kind)] = strict(version["schema"]["openAPIV3Schema"])
    checked = 0
    for doc in documents(rendered_path):
        key = (doc["apiVersion"], doc["kind"])
        if not doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue
        if key not in schemas:
            problem(f"chart: no CRD schema for {key}")
            continue
        for error in jsonschema.Draft7Validator(schemas[key]).iter_errors(doc):
            path = ".".join(str(p) for p in error.absolute_path)
            problem(f"chart: {doc['kind']} {doc['metadata']['name']}: {path}: {error.message}")
        checked += 1
    print(f"{checked} prometheus-operator resources valid against their CRDs")


def main(argv):
    command = argv[1]
    if command == "dockerfile":
        check_dockerfile(daemons_of(argv[2]), argv[3], argv[4])
    elif command == "compose":
        check_compose(daemons_of(argv[2]), argv[3], argv[4])
    elif command == "prometheus":
        check_prometheus(daemons_of(argv[2]), argv[3])
    elif command == "chart":
        replicas = int(argv[6]) if len(argv) > 6 and argv[5] == "--replicas-api" else None
        check_chart(daemons_of(argv[2]), argv[3], argv[4], replicas)
    elif command == "crs":
        check_crs(argv[2], argv[3])
    else:
        sys.exit(f"unknown command {command}")
    for message in problems:
        print(message, file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main(sys.argv)
