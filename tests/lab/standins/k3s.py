#!/usr/bin/env python3
"""Stand-in for `k3s kubectl delete` on a lab host, where no k3s can run.

Modelled on kubectl's documented behaviour for what the diracx_k3s role asks of it:
`k3s kubectl delete [--ignore-not-found] -f FILE` deletes every object the file declares and
prints `<kind>.<group> "<name>" deleted` for each one that existed; `k3s kubectl delete
[--ignore-not-found] -n NS addon NAME` deletes one k3s AddOn. An object that does not exist is
`Error from server (NotFound)` and exit 1, unless --ignore-not-found (then nothing is
printed). The "cluster" is a JSON list of "Kind/namespace/name" in STATE, which the test
fills as k3s's deploy controller would have (every object of every placed manifest, plus one
AddOn per file). Only `kind`, `metadata.name` and `metadata.namespace` are read from the
manifests (top-level keys and the metadata block, as dirac-release renders them).
"""

import json
import os
import sys

STATE = os.environ.get("K3S_STANDIN_STATE", "/var/lib/k3s-standin/objects.json")
GROUPS = {
    "HelmChart": "helmchart.helm.cattle.io",
    "HelmChartConfig": "helmchartconfig.helm.cattle.io",
    "Namespace": "namespace",
    "Addon": "addon.k3s.cattle.io",
    "Secret": "secret",
}


def objects(path):
    found, kind, name, namespace, in_meta = [], None, None, "", False
    with open(path, encoding="utf-8") as handle:
        for raw in [*handle.read().splitlines(), "---"]:
            line = raw.rstrip()
            if line == "---":
                if kind and name:
                    found.append((kind, namespace, name))
                kind, name, namespace, in_meta = None, None, "", False
            elif line.startswith("kind:"):
                kind = line.split(":", 1)[1].strip().strip("'\"")
            elif line.startswith("metadata:"):
                in_meta = True
            elif in_meta and line.startswith("  name:"):
                name = line.split(":", 1)[1].strip().strip("'\"")
            elif in_meta and line.startswith("  namespace:"):
                namespace = line.split(":", 1)[1].strip().strip("'\"")
            elif line and not line.startswith(" "):
                in_meta = False
    return found


def main(argv):
    if argv[:2] != ["kubectl", "delete"]:
        print(f"stand-in k3s: only 'kubectl delete' is modelled, not {argv}", file=sys.stderr)
        return 2
    args = argv[2:]
    ignore = "--ignore-not-found" in args
    args = [a for a in args if a != "--ignore-not-found"]
    if args[:1] == ["-f"]:
        wanted = objects(args[1])
    elif args[:1] == ["-n"] and len(args) == 4 and args[2] == "addon":
        wanted = [("Addon", args[1], args[3])]
    else:
        print(f"stand-in k3s: unmodelled arguments {args}", file=sys.stderr)
        return 2
    with open(STATE, encoding="utf-8") as handle:
        cluster = json.load(handle)
    code = 0
    for kind, namespace, name in wanted:
        key = f"{kind}/{namespace}/{name}"
        shown = f'{GROUPS.get(kind, kind.lower())} "{name}"'
        if key in cluster:
            cluster.remove(key)
            print(f"{shown} deleted")
        elif not ignore:
            print(f"Error from server (NotFound): {shown} not found", file=sys.stderr)
            code = 1
    tmp = f"{STATE}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(cluster, handle)
    os.replace(tmp, STATE)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
