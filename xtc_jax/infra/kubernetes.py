"""A Kubernetes manifest for a multi-process run (what launch/slurm.sh is to SLURM).

  python -m xtc_jax.infra.kubernetes --processes=2 --image=IMAGE \\
      --config=configs/normal.py --workdir=/shared/runs/normal [--name=xtc] [--port=1234] \\
      [--gpus_per_process=1] [--claim=PVC --mount=/shared] [--config.FIELD=VALUE ...] \\
      | kubectl apply -f -

Prints a headless Service and an Indexed Job:
one pod per process, pod i reachable as {name}-i.{name} because the Job's pods take
the Service as subdomain. Each runs `python -m xtc_jax.main --config --workdir
--distributed [extra flags]` with JAX_COORDINATOR_ADDRESS={name}-0.{name}:{port},
JAX_NUM_PROCESSES=N and JOB_COMPLETION_INDEX (the process id, set by Kubernetes and
mapped here from the pod's annotation too, for clusters that do not set it).
The work directory must be shared by all pods (e.g. --claim, a ReadWriteMany volume).
A lost pod fails the Job (backoffLimit 0); rerunning it resumes from the last checkpoint.
YAML is written by hand (no dependency): plain or JSON-quoted scalars in block style.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any, NoReturn

_DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]{0,40}[a-z0-9])?")
_PLAIN = re.compile(r"[A-Za-z][\w./-]*")  # strings YAML reads back as the same string
_RESERVED = {"true", "false", "yes", "no", "on", "off", "y", "n", "null", "none"}
_INDEX_ANNOTATION = "metadata.annotations['batch.kubernetes.io/job-completion-index']"


def manifest(processes: int, image: str, config: str, workdir: str, name: str = "xtc",
             port: int = 1234, gpus_per_process: int = 1, extra: tuple[str, ...] = (),
             claim: str = "", mount: str = "/shared") -> list[dict[str, Any]]:  # fmt: skip
    """The Service and Job documents, as plain dicts."""
    command = ["python", "-m", "xtc_jax.main", f"--config={config}", f"--workdir={workdir}",
               "--distributed", *extra]  # fmt: skip
    env = [
        {"name": "JAX_COORDINATOR_ADDRESS", "value": f"{name}-0.{name}:{port}"},
        {"name": "JAX_NUM_PROCESSES", "value": str(processes)},
        {"name": "JOB_COMPLETION_INDEX",
         "valueFrom": {"fieldRef": {"fieldPath": _INDEX_ANNOTATION}}},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]  # fmt: skip
    container: dict[str, Any] = {
        "name": "xtc",
        "image": image,
        "command": command,
        "env": env,
        "ports": [{"containerPort": port, "name": "coordinator"}],
    }
    pod: dict[str, Any] = {"subdomain": name, "restartPolicy": "Never", "containers": [container]}
    if gpus_per_process:
        container["resources"] = {"limits": {"nvidia.com/gpu": gpus_per_process}}
    if claim:
        container["volumeMounts"] = [{"name": "shared", "mountPath": mount}]
        pod["volumes"] = [{"name": "shared", "persistentVolumeClaim": {"claimName": claim}}]
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                 "selector": {"job-name": name},
                 "ports": [{"name": "coordinator", "port": port}]},
    }  # fmt: skip
    job = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"completionMode": "Indexed", "completions": processes,
                 "parallelism": processes, "backoffLimit": 0,
                 "template": {"spec": pod}},  # Kubernetes labels the pods job-name
    }  # fmt: skip
    return [service, job]


def to_yaml(value: Any, indent: int = 0) -> str:
    """Block-style YAML for dicts, lists, strings, ints and bools (what `manifest` holds)."""
    pad = " " * indent
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:\n{to_yaml(item, indent + 2)}")
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
        return "\n".join(lines)
    if isinstance(value, list):
        lines = []
        for item in value:
            if isinstance(item, (dict, list)) and item:
                nested = to_yaml(item, indent + 2)
                lines.append(f"{pad}- {nested[indent + 2 :]}")
            else:
                lines.append(f"{pad}- {_scalar(item)}")
        return "\n".join(lines)
    return pad + _scalar(value)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (dict, list)):
        return "{}" if isinstance(value, dict) else "[]"
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in _RESERVED:
        return text
    return json.dumps(text)  # a JSON string is a valid double-quoted YAML scalar


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    """Parses the flags (unknown ones go to xtc_jax.main) and prints the manifest."""
    parser = _Parser(
        prog="python -m xtc_jax.infra.kubernetes",
        allow_abbrev=False,
        description="Prints a Kubernetes manifest for a multi-process run.",
    )
    parser.add_argument("--processes", type=int, required=True, help="processes (pods), N >= 1")
    parser.add_argument("--image", required=True, help="container image holding this repo")
    parser.add_argument("--config", required=True, help="experiment config, e.g. configs/normal.py")
    parser.add_argument("--workdir", required=True, help="work directory shared by all pods")
    parser.add_argument("--name", default="xtc", help="Job and Service name (a DNS label)")
    parser.add_argument("--port", type=int, default=1234, help="coordinator port")
    parser.add_argument("--gpus_per_process", type=int, default=1, help="nvidia.com/gpu per pod")
    parser.add_argument("--claim", default="", help="PersistentVolumeClaim to mount (optional)")
    parser.add_argument("--mount", default="/shared", help="where --claim is mounted")
    args, extra = parser.parse_known_args(argv)
    if args.processes < 1:
        parser.error(f"--processes={args.processes}: need at least 1 process.")
    if not _DNS_LABEL.fullmatch(args.name):
        parser.error(f"--name={args.name!r}: use a lowercase DNS label of at most 42 characters.")
    if not 0 < args.port < 65536:
        parser.error(f"--port={args.port}: not a TCP port.")
    if args.gpus_per_process < 0:
        parser.error(f"--gpus_per_process={args.gpus_per_process}: must be >= 0.")
    if bad := [flag for flag in extra if not flag.startswith("--")]:
        parser.error(f"unexpected arguments: {' '.join(bad)} (flags for xtc_jax.main start --)")
    options = {key: value for key, value in vars(args).items() if key != "processes"}
    documents = manifest(args.processes, extra=tuple(extra), **options)
    print("\n---\n".join(to_yaml(document) for document in documents))


if __name__ == "__main__":
    main()
