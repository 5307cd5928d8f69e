"""The demo product's real DiracX, installed, upgraded and kept running by the Ansible role on
two lab hosts through `dirac-release deploy`: state outside the versions, secrets from vault."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from release.build import BuildReport
from release.demo import fixture as demo
from release.lab import LabHost, LabNetwork, lab_hosts
from tests.conftest import lab_skip
from tests.lab.demo_releases import publish_demo_releases

pytestmark = pytest.mark.lab
REPO = "vodemo.egi.eu"
HOSTS = ["cctbdirac01", "cctbdirac02"]
PRODUCTION = "diracprod01"
STATE = "/opt/dirac/state"


@dataclass
class Site:
    root: Path
    net: LabNetwork
    legacy_key: str
    vault_password: Path

    def cert_hosts(self) -> list[LabHost]:
        return [h for h in self.net if h.name in HOSTS]


def _config_text(hosts: dict[str, str] | None, key: Path) -> str:
    hosts = hosts or dict.fromkeys([*HOSTS, PRODUCTION], "")
    return demo.demo_config_text(
        hosts={
            "certification": {h: hosts[h] for h in HOSTS},
            "production": {PRODUCTION: hosts[PRODUCTION]},
        },
        ssh_key=key,
        platforms=["x86_64"],  # the lab hosts are x86_64: build and publish that only
    )


@pytest.fixture(scope="module")
def site(
    lab_rootfs: Path, demo_build: BuildReport, demo_workdir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Site]:  # fmt: skip
    if shutil.which("ansible-playbook") is None:
        lab_skip("ansible-playbook is not installed (pip install ansible-core)")
    root = tmp_path_factory.mktemp("diracxsite")
    publish_demo_releases(root, _config_text(None, root / "none"), demo_workdir / ".cache")
    # The demo's secrets: a legacy-exchange key, in an Ansible vault for the hosts.
    password = demo.prepare_secrets(root)
    legacy_key = (root / "secrets" / "legacy-exchange.key").read_text().strip()
    assert legacy_key not in (root / "secrets" / "secrets.yml").read_text()
    stratum = root / "stratum" / REPO
    names = [*HOSTS, PRODUCTION]
    with lab_hosts(
        names, lab_rootfs, root / "hosts", binds=[(stratum, f"/cvmfs/{REPO}", True)]
    ) as net:
        addresses = {h.name: h.address for h in net}
        (root / "release.toml").write_text(_config_text(addresses, net[0].ssh_key))
        yield Site(root, net, legacy_key, password)


def cli(site: Site, *args: str, config: str = "release.toml") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIRAC_RELEASE_")}
    env["ANSIBLE_VAULT_PASSWORD_FILE"] = str(site.vault_password)
    env["GITHUB_STEP_SUMMARY"] = str(site.root / "step-summary.md")
    return subprocess.run(
        [*site.net.exec_prefix(), sys.executable, "-m", "release",
         "--config", str(site.root / config), *args],
        capture_output=True, text=True, env=env, timeout=900, check=False,
    )  # fmt: skip


GET = """\
import json, sys, urllib.request, urllib.error
req = urllib.request.Request("http://127.0.0.1:8000" + sys.argv[1])
if len(sys.argv) > 2:
    req.add_header("Authorization", "Bearer " + sys.argv[2])
try:
    r = urllib.request.urlopen(req, timeout=10); print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
"""


def http(host: LabHost, path: str, token_file: str = "") -> tuple[int, str]:
    """GET on the host's own DiracX; a token is read from a file there, never on a command line."""
    token = f'"$(cat {token_file})"' if token_file else ""
    out = host.run(f"python3 - '{path}' {token}", input=GET.encode()).stdout.decode()
    status, _, body = out.partition("\n")
    return int(status), body


def running_tree(host: LabHost) -> str:
    """Where the DiracX process runs: its working folder, asked of the process."""
    status = host.run("sv status /opt/dirac/startup/VODemo_DiracX").stdout.decode()
    pid = status.split("(pid ")[1].split(")")[0]
    return host.run(f"readlink /proc/{pid}/cwd").stdout.decode().strip()


def token_on(host: LabHost) -> None:
    """Exchange the host's legacy key for a token, kept in a file on the host."""
    script = (
        "import sys, json, urllib.request, urllib.parse\n"
        "key = open('/opt/dirac/state/secrets/legacy-exchange.key').read().strip()\n"
        "q = urllib.parse.urlencode({'preferred_username': 'demo', 'scope': 'vo:vodemo group:vodemo_user'})\n"
        "req = urllib.request.Request('http://127.0.0.1:8000/api/auth/legacy-exchange?' + q,\n"
        "    headers={'Authorization': 'Bearer diracx:legacy:' + key})\n"
        "tok = json.load(urllib.request.urlopen(req, timeout=10))['access_token']\n"
        "open('/root/token', 'w').write(tok)\n"
    )
    host.run("python3 -", input=script.encode())


def test_diracx_install_upgrade_keeps_state(site: Site) -> None:
    first = cli(
        site, "--json", "deploy", "--env", "certification", "--version", "v1.0.0", "--install"
    )
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    rows = {h["host"]: h for h in json.loads(first.stdout)["hosts"]}
    assert {
        h: (r["previous"], r["running"], r["result"]) for h, r in rows.items()
    } == dict.fromkeys(HOSTS, (None, "v1.0.0", "installed"))
    states = {}
    for host in site.cert_hosts():
        assert running_tree(host) == "/opt/dirac/versions/v1.0.0/Linux-x86_64"
        status, body = http(host, "/.well-known/dirac-metadata")
        assert status == 200 and "vodemo" in json.loads(body)["virtual_organizations"]
        assert http(host, "/api/config/")[0] == 401
        key = host.run(
            f"stat -c %a {STATE}/secrets/legacy-exchange.key; cat {STATE}/secrets/legacy-exchange.key"
        )
        mode, content = key.stdout.decode().split("\n", 1)
        assert mode == "600" and content.strip() == site.legacy_key  # from the vault
        token_on(host)
        status, body = http(host, "/api/auth/userinfo", "/root/token")
        assert status == 200 and json.loads(body)["preferred_username"] == "demo"
        states[host.name] = host.run(f"sha256sum {STATE}/secrets/jwks.json {STATE}/db/*.db").stdout

    plan = cli(site, "--json", "deploy", "--env", "certification", "--version", "v1.0.1", "--plan")
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert {h["host"]: h["result"] for h in json.loads(plan.stdout)["hosts"]} == dict.fromkeys(
        HOSTS, "would upgrade"
    )
    for host in site.cert_hosts():  # check mode changed nothing
        assert running_tree(host) == "/opt/dirac/versions/v1.0.0/Linux-x86_64"
        assert host.run("test -e /opt/dirac/versions/v1.0.1", check=False).returncode == 1

    upgraded = cli(site, "deploy", "--env", "certification", "--version", "v1.0.1")
    assert upgraded.returncode == 0, upgraded.stdout[-3000:] + upgraded.stderr[-3000:]
    table = upgraded.stdout
    for name in HOSTS:  # the table: host, previous, now running, result
        assert any(name in line and "v1.0.0" in line and "v1.0.1" in line and "upgraded" in line
                   for line in table.splitlines()), table  # fmt: skip
    for host in site.cert_hosts():
        assert running_tree(host) == "/opt/dirac/versions/v1.0.1/Linux-x86_64"
        assert (
            host.run("readlink /opt/dirac/pro").stdout.decode().strip().endswith("versions/v1.0.1")
        )
        assert (
            host.run("test -d /opt/dirac/versions/v1.0.0/Linux-x86_64", check=False).returncode == 0
        )
        # The state survived the upgrade: same signing keys and databases, and a token made
        # before the upgrade is still accepted by the new version.
        assert (
            host.run(f"sha256sum {STATE}/secrets/jwks.json {STATE}/db/*.db").stdout
            == states[host.name]
        )
        status, body = http(host, "/api/auth/userinfo", "/root/token")
        assert status == 200 and json.loads(body)["preferred_username"] == "demo"
        assert not host.run("find /opt/dirac/versions -name '*.db'").stdout.strip()

    again = cli(site, "--json", "deploy", "--env", "certification", "--version", "v1.0.1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert {(h["result"], h["changed"]) for h in json.loads(again.stdout)["hosts"]} == {
        ("unchanged", 0)
    }

    # The vault's secret never shows: not in output, ledger or rendered files.
    outputs = [
        first.stdout,
        first.stderr,
        plan.stdout,
        plan.stderr,
        upgraded.stdout,
        upgraded.stderr,
    ]
    places = [p for p in (site.root / "state").rglob("*") if p.is_file()]
    places += [p for p in (site.root / "rendered").rglob("*") if p.is_file()]
    assert places
    assert all(site.legacy_key not in text for text in outputs)
    assert all(site.legacy_key not in p.read_text(errors="replace") for p in places)


def _checks(proc: subprocess.CompletedProcess[str]) -> dict[tuple[str, str], dict[str, object]]:
    record = json.loads(proc.stdout)
    return {(c["name"], c["target"]): c for c in record["checks"]}


def _no_token(site: Site, *texts: str) -> None:
    """Neither the legacy key nor any JWT (they start with eyJ) appears anywhere we write."""
    places = [site.root / "step-summary.md", *(site.root / "state").rglob("*.json")]
    places += list(site.root.glob("*.xml"))
    contents = [*texts, *(p.read_text(errors="replace") for p in places if p.is_file())]
    assert contents
    for text in contents:
        assert site.legacy_key not in text and "eyJ" not in text


def test_certify_passes_on_the_deployment(site: Site) -> None:
    junit = site.root / "certify.xml"
    proc = cli(
        site,
        "--json",
        "certify",
        "--env",
        "certification",
        "--version",
        "v1.0.1",
        "--junit",
        str(junit),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    checks = _checks(proc)
    for host in site.cert_hosts():
        url = f"http://{host.address}:8000"
        for name in ("health ready", "openid-configuration issuer", "jwks has keys", "dirac-metadata lists the VOs",
                     "openapi title", "config refuses anonymous", "token (legacy exchange)", "userinfo",
                     "config ETag", "job submit", "job search", "job summary"):  # fmt: skip
            assert checks[(name, url)]["result"] == "passed", checks[(name, url)]
        # The hosts run DiracX's task workers: the dummy executor walks the job to Done.
        final = checks[("job reaches a final state", url)]
        assert final["result"] == "passed" and " Done after " in str(final["evidence"]), final
        assert checks[("runs v1.0.1", host.name)]["result"] == "passed"
        assert "demo" in str(checks[("userinfo", url)]["evidence"])
        # DIRAC's real pilot wrapper ran on the host against the published pilot files: every
        # file matched, and the pilot sourced the release's diracosrc from the host's /cvmfs.
        pilot = checks[("pilot wrapper", host.name)]
        assert pilot["result"] == "passed", pilot
        assert f"/cvmfs/{REPO}/{demo.CVMFS_PREFIX}/v1.0.1/pilot/vodemo" in str(pilot["evidence"])
        assert "6 files matched checksums.sha512" in str(pilot["evidence"])
        assert "InstallDIRAC: vodemo 1.0.1 from /cvmfs/" in str(pilot["evidence"])
    assert (
        checks[("Linux-x86_64 verifies", f"/cvmfs/{REPO}/{demo.CVMFS_PREFIX}/v1.0.1/Linux-x86_64")][
            "result"
        ]
        == "passed"
    )
    tree = junit.read_text()
    assert 'failures="0"' in tree and 'errors="0"' in tree and "job submit" in tree
    record = json.loads((site.root / "state" / "vodemo" / "v1.0.1" / "ledger.json").read_text())[
        "records"
    ][-1]
    assert record["stage"] == "certify" and record["passed"] and record["manifest_sha256"]["x86_64"]
    # certification never moves pro
    assert "pro" not in os.listdir(site.root / "stratum" / REPO / demo.CVMFS_PREFIX)
    _no_token(site, proc.stdout, proc.stderr)


def test_broken_deployments_fail_the_right_check(site: Site) -> None:
    second = site.net.host("cctbdirac02")
    url2 = f"http://{second.address}:8000"
    # A stopped service: runit shows it down, its DiracX does not answer.
    second.run("sv stop /opt/dirac/startup/VODemo_DiracX")
    try:
        proc = cli(site, "--json", "certify", "--env", "certification", "--version", "v1.0.1")
    finally:
        second.run("sv start /opt/dirac/startup/VODemo_DiracX")
    assert proc.returncode == 3, proc.stderr[-2000:]
    checks = _checks(proc)
    assert checks[("services up", "cctbdirac02")]["result"] == "failed"
    assert "down" in str(checks[("services up", "cctbdirac02")]["evidence"])
    assert checks[("services up", "cctbdirac01")]["result"] == "passed"
    assert checks[("health live", url2)]["result"] == "unreachable"

    # A host running the previous version.
    second.run("ln -sfn /opt/dirac/versions/v1.0.0 /opt/dirac/pro.tmp && mv -T /opt/dirac/pro.tmp /opt/dirac/pro"
               " && sv restart /opt/dirac/startup/VODemo_DiracX")  # fmt: skip
    try:
        proc = cli(site, "--json", "certify", "--env", "certification", "--version", "v1.0.1")
    finally:
        second.run("ln -sfn /opt/dirac/versions/v1.0.1 /opt/dirac/pro.tmp && mv -T /opt/dirac/pro.tmp /opt/dirac/pro"
                   " && sv restart /opt/dirac/startup/VODemo_DiracX")  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    wrong = _checks(proc)[("runs v1.0.1", "cctbdirac02")]
    assert wrong["result"] == "failed" and "/opt/dirac/versions/v1.0.0/" in str(wrong["evidence"])

    # A VO missing from the configuration, and a wrong issuer.
    text = (site.root / "release.toml").read_text()
    section = "[environments.certification.certify]\n"
    (site.root / "novo.toml").write_text(
        text.replace('vos = ["vodemo"]', 'vos = ["vodemo", "lhcb"]', 1)
    )
    (site.root / "issuer.toml").write_text(
        text.replace(section, section + 'issuer = "https://diracx.example.org"\n')
    )
    proc = cli(
        site,
        "--json",
        "certify",
        "--env",
        "certification",
        "--version",
        "v1.0.1",
        config="novo.toml",
    )
    assert proc.returncode == 1
    missing = _checks(proc)[("dirac-metadata lists the VOs", url2)]
    assert missing["result"] == "failed" and "lhcb missing" in str(missing["evidence"])
    proc = cli(
        site,
        "--json",
        "certify",
        "--env",
        "certification",
        "--version",
        "v1.0.1",
        config="issuer.toml",
    )
    assert proc.returncode == 1
    issuer = _checks(proc)[("openid-configuration issuer", url2)]
    assert issuer["result"] == "failed" and "https://diracx.example.org" in str(issuer["evidence"])
    assert f"http://{second.address}:8000" in str(issuer["evidence"])


def _replace_file(path: Path, data: bytes) -> None:
    """Replace a published file by a new inode (others may be hardlinks to it)."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def test_promotion_gate_and_promotion(site: Site) -> None:
    outputs: list[str] = []

    def promote(*args: str) -> subprocess.CompletedProcess[str]:
        proc = cli(site, "promote", *args)
        outputs.extend([proc.stdout, proc.stderr])
        return proc

    prerelease = promote("--version", "v1.1.0a1")
    assert prerelease.returncode == 2 and "pre-release" in prerelease.stderr
    never = promote("--version", "v1.0.0")
    assert never.returncode == 2 and "never certified" in never.stderr
    failed_last = promote("--version", "v1.0.1")  # the last certification (wrong issuer) failed
    assert failed_last.returncode == 2 and "did not pass" in failed_last.stderr

    good = cli(site, "--json", "certify", "--env", "certification", "--version", "v1.0.1")
    assert good.returncode == 0, good.stderr[-2000:]
    outputs += [good.stdout, good.stderr]
    # Bundles changed after the certification: a file and its manifest entry both rewritten,
    # so the tree still verifies, but it is not what was certified.
    tree = site.root / "stratum" / REPO / demo.CVMFS_PREFIX / "v1.0.1" / "Linux-x86_64"
    manifest_path = tree / ".dirac-release" / "manifest.json"
    original_manifest = manifest_path.read_bytes()
    target = tree / "diracosrc"
    original = target.read_bytes()
    manifest = json.loads(original_manifest)
    changed = original + b"# changed after certification\n"
    entry = next(e for e in manifest["files"] if e["path"] == "diracosrc")
    entry.update(size=len(changed), sha256=__import__("hashlib").sha256(changed).hexdigest())
    _replace_file(target, changed)
    _replace_file(manifest_path, json.dumps(manifest).encode())
    try:
        tampered = promote("--version", "v1.0.1")
    finally:
        _replace_file(target, original)
        _replace_file(manifest_path, original_manifest)
    assert tampered.returncode == 2 and "changed after their certification" in tampered.stderr
    assert "pro" not in os.listdir(
        site.root / "stratum" / REPO / demo.CVMFS_PREFIX
    )  # nothing moved

    plan = promote("--version", "v1.0.1", "--install", "--plan")
    assert plan.returncode == 0 and "would run site.yml on diracprod01" in plan.stdout
    assert "pro" not in os.listdir(site.root / "stratum" / REPO / demo.CVMFS_PREFIX)

    done = promote("--version", "v1.0.1", "--install")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert os.readlink(site.root / "stratum" / REPO / demo.CVMFS_PREFIX / "pro") == "v1.0.1"
    # The pilot files moved with pro: the wrapper's default location now serves v1.0.1's.
    pilot_link = site.root / "stratum" / REPO / demo.CVMFS_PREFIX / "pilot"
    assert os.readlink(pilot_link) == "v1.0.1/pilot/vodemo"
    production = site.net.host(PRODUCTION)
    assert running_tree(production) == "/opt/dirac/versions/v1.0.1/Linux-x86_64"
    records = json.loads((site.root / "state" / "vodemo" / "v1.0.1" / "ledger.json").read_text())[
        "records"
    ]
    assert [r["stage"] for r in records][-2:] == ["certify", "promote"]
    assert records[-2]["environment"] == "production" and records[-2]["passed"]
    assert records[-1]["passed"] is True
    _no_token(site, *outputs)
