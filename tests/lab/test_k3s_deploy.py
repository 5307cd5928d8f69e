"""`dirac-release deploy` of an environment that runs DiracX on k3s, end to end on a lab host.

The chain: render pinned to the version → Ansible places the manifests on the host (role
diracx_k3s, real SSH) → the rollout is waited for through the `kubernetes` client → recorded.
A rollout that fails is rolled back by placing the previous version's render again and
waiting for that one. No k3s or API server can run here: the host has k3s's manifests folder
and the stand-in `k3s` of tests/lab/standins/, and the API server is tests/k8s_fake.py,
listening on the loopback of the lab's client namespace, where the command runs. Its Jobs
carry creation times after the placement, as helm-controller's would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from release.build import BuildReport
from release.config import load_config
from release.demo import fixture as demo
from release.lab import LabNetwork, lab_hosts
from tests import k8s_fake as kube
from tests.conftest import lab_skip
from tests.lab.demo_releases import publish_demo_releases

pytestmark = pytest.mark.lab
HOST = "cctbk3s02"
STANDIN = Path(__file__).resolve().parent / "standins" / "k3s.py"
MANIFESTS = "/var/lib/rancher/k3s/server/manifests"


@dataclass
class Site:
    root: Path
    net: LabNetwork

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kube" / "config.yaml"


def _config_text(address: str, key: Path) -> str:
    """The demo's release.toml with its certification environment on k3s, on the lab host."""
    import tomlkit

    text = demo.demo_config_text(hosts={"certification": {HOST: address}}, ssh_key=key,
                                 platforms=["x86_64"])  # fmt: skip
    document = tomlkit.parse(text)
    env = document["environments"]["certification"]
    env.pop("secrets_file", None)  # the chart's secrets come from the cluster, not a vault here
    env["runtime"] = "k3s"
    k3s = tomlkit.table()
    k3s["chart"] = {"repo": "https://diracgrid.github.io/diracx-charts", "name": "diracx",
                    "version": "1.1.6"}  # fmt: skip
    k3s["hostname"] = "diracx.cctb.lab"
    k3s["kubeconfig"] = "kube/config.yaml"
    k3s["rollout_timeout"] = 60.0
    env["k3s"] = k3s
    return tomlkit.dumps(document)


@pytest.fixture(scope="module")
def site(lab_rootfs: Path, demo_build: BuildReport, demo_workdir: Path,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:  # fmt: skip
    if shutil.which("ansible-playbook") is None:
        lab_skip("ansible-playbook is not installed (pip install ansible-core)")
    root = tmp_path_factory.mktemp("k3sdeploy")
    # Deploy refuses what was never published: publish the three versions (builds cached).
    publish_demo_releases(root, _config_text("192.0.2.1", root / "none"), demo_workdir / ".cache")
    (root / "kube").mkdir()
    with lab_hosts([HOST], lab_rootfs, root / "hosts") as net:
        host = net.host(HOST)
        host.run("cat > /usr/local/bin/k3s && chmod 0755 /usr/local/bin/k3s",
                 input=STANDIN.read_bytes())  # fmt: skip
        host.run(f"mkdir -p {MANIFESTS} && echo 'kind: HelmChart' > {MANIFESTS}/traefik.yaml")
        (root / "release.toml").write_text(_config_text(host.address, host.ssh_key))
        yield Site(root, net)


def cli(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIRAC_RELEASE_")}
    env["GITHUB_STEP_SUMMARY"] = str(site.root / "step-summary.md")
    return subprocess.run(
        [*site.net.exec_prefix(), sys.executable, "-m", "release",
         "--config", str(site.root / "release.toml"), *args],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip


def cluster(site: Site, *, job_states: list[tuple[float, Any]]) -> kube.FakeKube:
    """The API server of the k3s cluster, scripted: the HelmChart, its install Job's states,
    and DiracX's Deployment, Available."""
    fake = kube.FakeKube(netns=site.net.client_netns)
    fake.put(kube.helmchart())
    fake.put(job_states)
    fake.put(kube.available())
    return fake


def succeeded() -> dict[str, Any]:
    return kube.job(succeeded=1, created=kube.AT_STATE_START,
                    conditions=[kube.condition("Complete", "True")])  # fmt: skip


def failed() -> dict[str, Any]:
    return kube.job(failed=1, created=kube.AT_STATE_START, conditions=[kube.condition(
        "Failed", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit")])  # fmt: skip


def placed(site: Site, name: str = "diracx.yaml") -> str:
    return site.net.host(HOST).run(f"cat {MANIFESTS}/{name}").stdout.decode()


def deploys(site: Site) -> list[dict[str, Any]]:
    ledger = json.loads(
        (site.root / "state" / "vodemo" / "environments" / "ledger.json").read_text()
    )
    return [r for r in ledger["records"] if r["stage"] == "deploy"]


def test_deploy_places_the_manifests_and_waits_for_the_rollout(site: Site) -> None:
    for tag in ("v1.0.0", "v1.0.1"):
        with cluster(site, job_states=[(0.0, succeeded())]) as fake:
            fake.write_kubeconfig(site.kubeconfig)
            proc = cli(site, "deploy", "--env", "certification", "--version", tag)
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
            # The wait asked the API server for the chart, its Job and the Deployments.
            assert fake.count("/helmcharts/diracx") and fake.count("/jobs/helm-install-diracx")
            assert fake.count("/deployments")
            assert all(r.authorized for r in fake.requests)
        assert f"tag: {tag}" in placed(site)
        mode = site.net.host(HOST).run(f"stat -c %a {MANIFESTS}/diracx.yaml").stdout.decode()
        assert mode.strip() == "600"
        assert placed(site, "traefik.yaml").strip() == "kind: HelmChart"  # k3s's own, untouched
        assert "k3s rollout of diracx" in proc.stdout and "succeeded" in proc.stdout
    last = deploys(site)[-1]
    assert last["version"] == "v1.0.1" and last["previous"] == "v1.0.0"
    assert last["exit_code"] == 0 and last["rollout"]["ok"] is True
    assert [h["running"] for h in last["hosts"]] == ["v1.0.1"]
    assert last["hosts"][0]["result"] == "placed"

    # Again, nothing new: the files are left as they are, k3s has nothing to do, the wait
    # accepts the Job that is there (no newer one is needed).
    with cluster(site, job_states=[(0.0, kube.job(succeeded=1))]) as fake:
        fake.write_kubeconfig(site.kubeconfig)
        again = cli(site, "--json", "deploy", "--env", "certification", "--version", "v1.0.1")
    assert again.returncode == 0, again.stderr[-3000:]
    result = json.loads(again.stdout)
    assert result["hosts"][0]["result"] == "unchanged" and result["hosts"][0]["changed"] == 0


def test_a_failed_rollout_is_rolled_back_to_the_previous_version(site: Site) -> None:
    # The install Job of v1.1.0a1 fails at once; once the previous manifests are placed again,
    # helm-controller makes a new Job (20 s on: after the rollback began), which succeeds.
    with cluster(site, job_states=[(0.0, failed()), (20.0, succeeded())]) as fake:
        fake.write_kubeconfig(site.kubeconfig)
        proc = cli(site, "deploy", "--env", "certification", "--version", "v1.1.0a1")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    # The error names the failure with the Job's conditions, and what the rollback did.
    assert "the rollout of v1.1.0a1 on certification failed (rolled back to v1.0.1)" in proc.stderr
    assert "BackoffLimitExceeded" in proc.stderr
    assert "rollback: rolled back" in proc.stderr
    assert "tag: v1.0.1" in placed(site)  # the previous version's pins are back in place
    last = deploys(site)[-1]
    assert last["version"] == "v1.1.0a1" and last["rollout"]["ok"] is False
    assert "BackoffLimitExceeded" in last["rollout"]["error"]["message"]
    assert last["rollback"] == {"to": "v1.0.1", "result": "rolled back", "ok": True}
    assert [(h["running"], h["result"]) for h in last["hosts"]] == [
        ("v1.0.1", "failed, rolled back")
    ]
    # A later deploy rolls back to the last one that succeeded, never to the failed one.
    from release.deploy.k3s import previous_version

    config = load_config(site.root / "release.toml", environ={})
    assert previous_version(config, "certification", "v1.2.0") == "v1.0.1"


def test_no_kubeconfig_places_and_says_the_rollout_was_not_watched(site: Site) -> None:
    text = (site.root / "release.toml").read_text()
    (site.root / "release.toml").write_text(text.replace('kubeconfig = "kube/config.yaml"\n', ""))
    try:
        proc = cli(site, "deploy", "--env", "certification", "--version", "v1.0.0")
    finally:
        (site.root / "release.toml").write_text(text)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        "rollout not waited for: no kubeconfig in [environments.certification.k3s]" in proc.stderr
    )
    assert "tag: v1.0.0" in placed(site)


def test_rollback_places_the_version_deployed_before(site: Site) -> None:
    # The environment runs v1.0.0 now (the test above); the deploy before it was v1.0.1.
    with cluster(site, job_states=[(0.0, succeeded())]) as fake:
        fake.write_kubeconfig(site.kubeconfig)
        proc = cli(site, "rollback", "--env", "certification")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "tag: v1.0.1" in placed(site)
    last = deploys(site)[-1]
    assert last["action"] == "rollback" and last["version"] == "v1.0.1"
    assert last["previous"] == "v1.0.0" and last["rollout"]["ok"] is True


def test_a_broken_kubeconfig_is_refused_before_any_host_is_touched(site: Site) -> None:
    before = placed(site)
    site.kubeconfig.write_text("clusters: [\n")
    proc = cli(site, "deploy", "--env", "certification", "--version", "v1.0.1")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "kubeconfig" in proc.stderr and str(site.kubeconfig) in proc.stderr
    assert placed(site) == before
