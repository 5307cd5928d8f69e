"""The diracx_k3s role (ansible/k3s.yml) on a real SSH lab host.

No k3s can run here: the host gets the manifests folder k3s's deploy controller reads and, for
removal, a stand-in `k3s kubectl delete` (tests/lab/standins/k3s.py) that keeps the objects
k3s would have deployed from the placed files. Shown: placement with k3s's modes, a second run
that changes nothing, a new version's render replacing the files, a manifest no
longer rendered left alone and reported, refusal of a name k3s cannot take before anything is
touched, and removal the k3s way (the objects deleted through the API, then the files) that
leaves k3s's own manifests alone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from release.lab import LabHost, LabNetwork, lab_hosts
from tests.conftest import lab_skip

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = ROOT / "ansible"
STANDIN = Path(__file__).resolve().parent / "standins" / "k3s.py"
MANIFESTS = "/var/lib/rancher/k3s/server/manifests"
STATE = "/var/lib/k3s-standin/objects.json"


def render(out: Path, version: str) -> Path:
    """The manifests `dirac-release render` writes for the shipped certification environment
    (DiracX on k3s, checked offline as it renders them)."""
    from release.config import load_config
    from release.render import render_environment

    config = load_config(ROOT / "release.toml", environ={})
    render_environment(config, "certification", version, out)
    return out / "certification" / version / "k8s" / "manifests"


@pytest.fixture(scope="module")
def lab(lab_rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabNetwork]:
    if shutil.which("ansible-playbook") is None:
        lab_skip("ansible-playbook is not installed (pip install ansible-core)")
    with lab_hosts(["cctbk3s01"], lab_rootfs, tmp_path_factory.mktemp("k3slab")) as net:
        host = net.host("cctbk3s01")
        host.run("cat > /usr/local/bin/k3s && chmod 0755 /usr/local/bin/k3s",
                 input=STANDIN.read_bytes())  # fmt: skip
        # k3s's own packaged manifest, which the role must never touch.
        host.run(f"mkdir -p {MANIFESTS} && echo 'kind: HelmChart' > {MANIFESTS}/traefik.yaml")
        yield net


def play(lab: LabNetwork, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    host = lab.host("cctbk3s01")
    inventory = tmp / "inventory.json"
    inventory.write_text(json.dumps({"all": {"children": {"k3s_servers": {"hosts": {host.name: {
        "ansible_host": host.address, "ansible_user": "root",
        "ansible_ssh_private_key_file": str(host.ssh_key),
        "ansible_python_interpreter": "/usr/bin/python3"}}}}}}))  # fmt: skip
    env = {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-tmp"),
           "ANSIBLE_SSH_ARGS": "-o ControlMaster=no -o StrictHostKeyChecking=no "
                               "-o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes"}  # fmt: skip
    return subprocess.run([*lab.exec_prefix(), "ansible-playbook", "-i", str(inventory),
                           "k3s.yml", *extra], cwd=ANSIBLE_DIR, env=env, capture_output=True,
                          text=True, timeout=300, check=False)  # fmt: skip


def changed(proc: subprocess.CompletedProcess[str]) -> int:
    match = re.search(r"cctbk3s01\s+:\s+ok=\d+\s+changed=(\d+)", proc.stdout)
    assert match, proc.stdout[-3000:] + proc.stderr[-2000:]
    return int(match.group(1))


def files(host: LabHost) -> dict[str, str]:
    """name -> 'mode owner' of the files in the manifests folder."""
    out = host.run(f"stat -c '%n %a %U' {MANIFESTS}/* {MANIFESTS}").stdout.decode()
    return {line.split()[0].rsplit("/", 1)[-1] if line.split()[0] != MANIFESTS else ".":
            " ".join(line.split()[1:]) for line in out.splitlines()}  # fmt: skip


def test_manifests_are_placed_replaced_and_removed_the_k3s_way(
    lab: LabNetwork, tmp_path: Path
) -> None:
    host = lab.host("cctbk3s01")
    v1 = render(tmp_path / "rendered", "v0.7.0")
    first = play(lab, tmp_path, "-e", f"diracx_k3s_source={v1}")
    assert first.returncode == 0, first.stdout[-3000:]
    assert files(host) == {".": "700 root", "traefik.yaml": "644 root",
                           "diracx-namespace.yaml": "600 root", "diracx.yaml": "600 root",
                           "diracx-traefik-config.yaml": "600 root"}  # fmt: skip
    placed = host.run(f"cat {MANIFESTS}/diracx.yaml").stdout.decode()
    assert placed == (v1 / "diracx.yaml").read_text() and "tag: v0.7.0" in placed

    again = play(lab, tmp_path, "-e", f"diracx_k3s_source={v1}")
    assert again.returncode == 0 and changed(again) == 0  # k3s sees no change, applies nothing

    # The next release: every file carries the version (labels), each is replaced by the new
    # render; the chart's pins follow the tag.
    v2 = render(tmp_path / "rendered", "v0.8.0")
    upgrade = play(lab, tmp_path, "-e", f"diracx_k3s_source={v2}")
    assert upgrade.returncode == 0 and changed(upgrade) == 1, upgrade.stdout[-3000:]
    for name in ("diracx-namespace.yaml", "diracx.yaml", "diracx-traefik-config.yaml"):
        placed = host.run(f"cat {MANIFESTS}/{name}").stdout.decode()
        assert placed == (v2 / name).read_text() and "v0.8.0" in placed
    assert "tag: v0.8.0" in host.run(f"cat {MANIFESTS}/diracx.yaml").stdout.decode()

    # A manifest an earlier render had and this one has not: k3s would keep its objects, so the
    # role leaves it and says so; it never deletes on its own.
    host.run(f"cp {MANIFESTS}/diracx-namespace.yaml {MANIFESTS}/diracx-old.yaml")
    left = play(lab, tmp_path, "-e", f"diracx_k3s_source={v2}", "-v")
    assert left.returncode == 0 and "diracx-old.yaml" in left.stdout
    assert "diracx-old.yaml" in files(host)

    # A render with a name k3s refuses (an underscore): refused before anything is touched.
    bad = tmp_path / "bad"
    shutil.copytree(render(tmp_path / "rendered", "v0.9.0"), bad)
    (bad / "diracx.yaml").rename(bad / "diracx_chart.yaml")
    refused = play(lab, tmp_path, "-e", f"diracx_k3s_source={bad}")
    assert refused.returncode != 0 and "diracx_chart.yaml" in refused.stdout
    assert "tag: v0.8.0" in host.run(f"cat {MANIFESTS}/diracx.yaml").stdout.decode()

    # Removal: what k3s deployed from our files (and their AddOns) deleted through the API,
    # then the files; k3s's own manifest and objects stay.
    cluster = ["Namespace//diracx", "HelmChart/kube-system/diracx",
               "HelmChartConfig/kube-system/traefik", "HelmChart/kube-system/traefik",
               *(f"Addon/kube-system/{n}" for n in ("diracx-namespace", "diracx",
                                                   "diracx-traefik-config", "traefik"))]  # fmt: skip
    host.run(f"mkdir -p /var/lib/k3s-standin && cat > {STATE}", input=json.dumps(cluster).encode())
    removed = play(lab, tmp_path, "-e", "diracx_k3s_state=absent")
    assert removed.returncode == 0, removed.stdout[-3000:]
    assert set(files(host)) == {".", "traefik.yaml"}
    remaining = json.loads(host.run(f"cat {STATE}").stdout)
    assert remaining == ["HelmChart/kube-system/traefik", "Addon/kube-system/traefik"]
    # Removing again finds nothing of ours and changes nothing.
    twice = play(lab, tmp_path, "-e", "diracx_k3s_state=absent")
    assert twice.returncode == 0 and changed(twice) == 0
