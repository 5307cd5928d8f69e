#!/usr/bin/python3
"""Install, verify, activate and prune DIRAC versions under /opt/dirac (runs on the host)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import struct
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: dirac_version
short_description: Manage DIRAC server versions under /opt/dirac
description:
  - C(install) copies C(<source>/<tag>/Linux-<arch>) into C(<root>/versions/<tag>/Linux-<arch>)
    (copy into a temporary folder, verify against the manifest, then rename). An installed
    version that verifies is left alone. Files the manifests of the new version and of pro give
    the same content (and the same mode, owner and mtime) are hard-linked from pro instead of
    copied; when the result does not verify (a file of pro edited in place), everything is
    copied from the source.
  - C(verify) checks an installed version file by file against its manifest.
  - C(activate) points C(<root>/pro) at a version (new link then rename(2), like C(mv -T)) and
    records the version it replaces in C(<root>/previous).
  - C(prune) keeps the newest C(keep) versions (by install time), never pro nor previous, and
    drops the bytecode cached for versions no longer installed. What it drops is renamed into
    C(<root>/.trash) at once and deleted there by a detached, low-priority C(rm), which also
    finishes what an interrupted prune left.
  - C(info) reports pro, previous, installed versions, free space and the machine.
options:
  action:
    description: What to do.
    type: str
    required: true
    choices: [install, verify, activate, prune, info]
  root:
    description: The DIRAC root folder.
    type: path
    default: /opt/dirac
  version:
    description: The version tag (install, verify, activate).
    type: str
  arch:
    description: The machine, as in C(Linux-<arch>).
    type: str
    default: x86_64
  source:
    description: The folder holding the version folders (e.g. C(/cvmfs/<repo>/<prefix>)).
    type: path
  keep:
    description: How many versions C(prune) keeps.
    type: int
    default: 3
  pycache:
    description:
      - The services' C(PYTHONPYCACHEPREFIX). C(install) seeds the new version's bytecode there
        from the version it replaces, for every source file the two manifests say is the same;
        C(prune) removes what belonged to removed versions.
    type: path
"""

MANIFEST = ".dirac-release/manifest.json"
TRASH = ".trash"  # under root: what prune took out of use, deleted in the background
SHOW = 10


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_tree(tree):
    """The problems of tree against its own manifest (empty: every file matches)."""
    try:
        with open(os.path.join(tree, MANIFEST), encoding="utf-8") as handle:
            manifest = json.load(handle)
        listed = {entry["path"]: entry for entry in manifest["files"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{MANIFEST}: unreadable ({exc})"]
    problems = []
    seen = set()
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, tree)
        names = filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        for name in sorted(names):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel == MANIFEST:
                continue
            seen.add(rel)
            path = os.path.join(dirpath, name)
            expected = listed.get(rel)
            st = os.lstat(path)
            if expected is None:
                problems.append(f"{rel}: not in the manifest")
            elif "link" in expected:
                if not stat.S_ISLNK(st.st_mode) or os.readlink(path) != expected["link"]:
                    problems.append(f"{rel}: link differs from the manifest")
            elif not stat.S_ISREG(st.st_mode):
                problems.append(f"{rel}: not a regular file")
            elif st.st_size != expected.get("size", st.st_size):
                problems.append(f"{rel}: size differs from the manifest")
            elif _sha256(path) != expected.get("sha256"):
                problems.append(f"{rel}: sha256 differs from the manifest")
            elif "mode" in expected and (
                bool(st.st_mode & 0o111) != bool(int(expected["mode"], 8) & 0o111)
            ):
                problems.append(f"{rel}: mode differs from the manifest")
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
    problems.extend(f"{rel}: missing" for rel in sorted(set(listed) - seen))
    return problems


def _file_sums(tree):
    """path -> sha256 of every file in a tree's manifest ({} when unreadable)."""
    try:
        with open(os.path.join(tree, MANIFEST), encoding="utf-8") as handle:
            files = json.load(handle)["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {
        str(e["path"]): e["sha256"]
        for e in files
        if isinstance(e, dict) and "path" in e and "sha256" in e
    }


def _py_hashes(tree):
    """path -> sha256 of the .py files in a tree's manifest ({} when unreadable)."""
    return {path: digest for path, digest in _file_sums(tree).items() if path.endswith(".py")}


def _same_file(old, new):
    """Whether a hard link to old gives what a copy of new would: type, mode, size, mtime, and
    the owner (root copies it; anyone else owns what they copy)."""
    return (
        stat.S_ISREG(old.st_mode)
        and old.st_mode == new.st_mode
        and old.st_size == new.st_size
        and int(old.st_mtime) == int(new.st_mtime)
        and (os.geteuid() != 0 or (old.st_uid, old.st_gid) == (new.st_uid, new.st_gid))
    )


def _own(path, st):
    """The owner of st on path, as cp -a gives it: only root can."""
    if os.geteuid() == 0:
        os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)


def copy_linking(src, dest, reuse):
    """Copy the tree src to dest, hard-linking from reuse each file both manifests give the same
    content and whose metadata is what the copy would have. Returns how many were linked.

    A new version shares most of its files with the one it replaces; copying them again writes
    ~200 MB per host on every upgrade, the largest part of an install. Installed versions are
    never written to, so they may share those files, as `rsync --link-dest` backups and Nix's
    store optimisation do. The caller verifies the result against the manifest, which reads
    every linked file: one edited in place under pro is found there, and the caller copies
    everything from the source instead. Symbolic links are made again; what cannot be linked
    (another file system, too many links) is copied.
    """
    new_sums, old_sums = _file_sums(src), _file_sums(reuse)
    linked = 0
    folders = []
    for dirpath, dirnames, filenames in os.walk(src):
        rel_dir = os.path.relpath(dirpath, src)
        out = dest if rel_dir == "." else os.path.join(dest, rel_dir)
        os.mkdir(out)
        folders.append((dirpath, out))
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        dirnames[:] = [d for d in dirnames if d not in links]
        for name in filenames + links:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            source, target = os.path.join(dirpath, name), os.path.join(out, name)
            st = os.lstat(source)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(source), target)
                _own(target, st)
                continue
            digest = new_sums.get(rel)
            if digest is not None and old_sums.get(rel) == digest:
                old = os.path.join(reuse, rel)
                try:
                    if _same_file(os.lstat(old), st):
                        os.link(old, target)
                        linked += 1
                        continue
                except OSError:
                    pass  # copied below
            shutil.copyfile(source, target)
            _own(target, st)  # before the mode: chown clears set-user-ID bits
            shutil.copystat(source, target)
    for source, target in reversed(folders):  # deepest first: a folder's mtime is its last write
        _own(target, os.lstat(source))
        shutil.copystat(source, target)
    return linked


def _copy_all(module, src, dest, tmp, versions, version):
    """cp -a src dest, or fail naming what could not be copied."""
    proc = subprocess.run(["cp", "-a", "--", src, dest], capture_output=True, text=True,
                          check=False)  # fmt: skip
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        module.fail_json(
            msg=f"cannot install {version} into {versions} (copying from {src}): "
            + proc.stderr.strip()[-2000:]
        )


def _cache_of(pycache, tree):
    """Where Python keeps the bytecode of tree under a PYTHONPYCACHEPREFIX."""
    return os.path.join(pycache, os.path.abspath(tree).lstrip(os.sep))


def seed_pycache(pycache, old_tree, new_tree):
    """Give new_tree the bytecode old_tree's services compiled, where the source is the same.

    A new version shares most of its files with the one it replaces, but its paths are new, so
    its services would start by compiling everything again (seconds of CPU per process, on every
    host, while the service is down). A .pyc records its source's mtime and size, which Python
    checks; the manifests' hashes decide that the content is the same, so a .pyc is reused only
    for an identical source: linked when the recorded mtime already matches, else copied with
    the new file's mtime, which is the .pyc Python would write. Returns how many were reused.
    """
    old_cache, new_cache = _cache_of(pycache, old_tree), _cache_of(pycache, new_tree)
    if not os.path.isdir(old_cache):
        return 0
    old_hashes, new_hashes = _py_hashes(old_tree), _py_hashes(new_tree)
    reused = 0
    for dirpath, _dirnames, filenames in os.walk(old_cache):
        rel_dir = os.path.relpath(dirpath, old_cache)
        for name in filenames:
            if not name.endswith(".pyc"):
                continue
            source = (name.split(".", 1)[0] + ".py") if rel_dir == "." else (
                f"{rel_dir}/{name.split('.', 1)[0]}.py")  # fmt: skip
            digest = new_hashes.get(source)
            if digest is None or old_hashes.get(source) != digest:
                continue
            try:
                st = os.stat(os.path.join(new_tree, source))
                with open(os.path.join(dirpath, name), "rb") as handle:
                    data = handle.read()
                flags, mtime, size = struct.unpack("<III", data[4:16])
                if flags != 0 or size != st.st_size & 0xFFFFFFFF:
                    continue  # hash-based, or not the size Python would check: leave it to Python
                dest = os.path.join(new_cache, rel_dir, name)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                if mtime == int(st.st_mtime) & 0xFFFFFFFF:
                    os.link(os.path.join(dirpath, name), dest)
                else:
                    tmp = f"{dest}.{os.getpid()}.tmp"
                    with open(tmp, "wb") as handle:
                        handle.write(data[:8] + struct.pack("<I", int(st.st_mtime) & 0xFFFFFFFF))
                        handle.write(data[12:])
                    os.replace(tmp, dest)
            except (OSError, struct.error):
                continue  # a cache is an optimisation: Python compiles what is not there
            reused += 1
    return reused


def _drop_caches(pycache, versions, keep, trash):
    """Discard the bytecode cached for versions that are not in keep; names what it dropped."""
    folder = _cache_of(pycache, versions)
    if not os.path.isdir(folder):
        return []
    gone = sorted(name for name in os.listdir(folder) if name not in keep)
    for name in gone:
        _discard(os.path.join(folder, name), trash)
    return gone


def _discard(path, trash):
    """Take path out of use at once: renamed into trash (emptied by _empty_trash). Where a
    rename cannot reach the trash (another file system), it is removed here and now."""
    try:
        os.makedirs(trash, exist_ok=True)
        os.rename(
            path, os.path.join(trash, f"{os.path.basename(path)}-{os.getpid()}-{time.time_ns()}")
        )
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


def _empty_trash(trash):
    """Delete what the trash holds (this run's and any an interrupted one left) in a detached,
    low-priority process: removing a version tree of ~10^4 files takes seconds on an overlay
    or a busy disk, which would otherwise be spent inside every upgrade. Nothing of it is in
    use any more; a deletion cut short (a reboot) is finished by the next prune.
    Returns how many entries it is deleting."""
    try:
        entries = [os.path.join(trash, name) for name in sorted(os.listdir(trash))]
    except OSError:
        return 0
    if not entries:
        return 0
    command = ["rm", "-rf", "--", *entries]
    if shutil.which("nice"):
        command = ["nice", "-n", "19", *command]
    try:
        # Detached, with no descriptor shared with this module: the SSH session of the task
        # ends without waiting for it.
        subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)  # fmt: skip
    except OSError:
        for entry in entries:
            shutil.rmtree(entry, ignore_errors=True)
    return len(entries)


def _fail_destination(module, versions, version, exc):
    """Fail naming the install area that could not be written, and why."""
    reason = exc.strerror or str(exc)
    where = f" ({exc.filename})" if exc.filename and exc.filename != versions else ""
    module.fail_json(
        msg=f"cannot install {version}: the install area {versions} is not writable: "
        f"{reason}{where}",
    )


def _link_target(path):
    try:
        return os.readlink(path)
    except OSError:
        return None


def _version_of(root, target):
    """The version name a pro/previous link target designates (versions/<tag>)."""
    if not target:
        return None
    full = os.path.normpath(os.path.join(root, target))
    versions = os.path.join(root, "versions")
    if os.path.dirname(full) != versions:
        return None
    return os.path.basename(full)


def _relink(root, name, version):
    """Point root/name at versions/<version>: a new link, then rename(2) over the old one."""
    tmp = os.path.join(root, f".{name}.new")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(os.path.join("versions", version), tmp)
    os.rename(tmp, os.path.join(root, name))


def _installed(root):
    versions = os.path.join(root, "versions")
    if not os.path.isdir(versions):
        return []
    found = [n for n in os.listdir(versions) if not n.startswith(".")]
    return sorted(found, key=lambda n: os.stat(os.path.join(versions, n)).st_mtime, reverse=True)


def main():
    module = AnsibleModule(
        argument_spec={
            "action": {
                "type": "str",
                "required": True,
                "choices": ["install", "verify", "activate", "prune", "info"],
            },
            "root": {"type": "path", "default": "/opt/dirac"},
            "version": {"type": "str"},
            "arch": {"type": "str", "default": "x86_64"},
            "source": {"type": "path"},
            "keep": {"type": "int", "default": 3},
            "pycache": {"type": "path"},
        },
        supports_check_mode=True,
    )
    p = module.params
    root, action, version, arch = p["root"], p["action"], p["version"], p["arch"]
    versions = os.path.join(root, "versions")
    platform = f"Linux-{arch}"
    if action in ("install", "verify", "activate") and not version:
        module.fail_json(msg=f"action={action} needs a version")
    if version and (os.sep in version or version.startswith(".")):
        module.fail_json(msg=f"invalid version name {version!r}")

    if action == "info":
        pro = _version_of(root, _link_target(os.path.join(root, "pro")))
        previous = _version_of(root, _link_target(os.path.join(root, "previous")))
        existing = root
        while not os.path.isdir(existing):  # free space where root is, or will be, created
            existing = os.path.dirname(existing) or "/"
        vfs = os.statvfs(existing)
        module.exit_json(
            changed=False,
            pro=pro,
            previous=previous,
            installed=_installed(root),
            free_bytes=vfs.f_bavail * vfs.f_frsize,
            machine=os.uname().machine,
        )

    if action == "verify":
        tree = os.path.join(versions, version, platform)
        if not os.path.isdir(tree):
            module.fail_json(msg=f"{version} is not installed ({tree} is missing)")
        problems = verify_tree(tree)
        if problems:
            module.fail_json(
                msg=f"{tree} does not match its manifest: " + "; ".join(problems[:SHOW]),
                problems=problems,
            )
        module.exit_json(changed=False, path=tree)

    if action == "install":
        dest_version = os.path.join(versions, version)
        tree = os.path.join(dest_version, platform)
        if os.path.isdir(tree):
            problems = verify_tree(tree)
            if not problems:
                module.exit_json(changed=False, path=tree, verified=True)
            if not os.path.isdir(os.path.join(p["source"] or "/nonexistent", version, platform)):
                module.fail_json(
                    msg=f"installed {tree} is damaged and no source to reinstall from: "
                    + "; ".join(problems[:SHOW]),
                    problems=problems,
                )
            damaged = problems
        else:
            damaged = []
        if not p["source"]:
            module.fail_json(msg="action=install needs a source")
        src = os.path.join(p["source"], version, platform)
        if not os.path.isfile(os.path.join(src, MANIFEST)):
            module.fail_json(msg=f"{src}/{MANIFEST} not found: is {version} published for {arch}?")
        if module.check_mode:
            module.exit_json(changed=True, path=tree)
        tmp = os.path.join(versions, f".tmp-{version}-{os.getpid()}")
        try:
            os.makedirs(versions, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
        except OSError as exc:
            # The install area is what cannot be written (read-only, full, not ours): name
            # it, not the source, which is only read.
            _fail_destination(module, versions, version, exc)
        pro = _version_of(root, _link_target(os.path.join(root, "pro")))
        reuse = os.path.join(versions, pro, platform) if pro and pro != version else None
        linked, problems = 0, ["not copied yet"]
        if reuse and os.path.isdir(reuse):
            try:
                linked = copy_linking(src, os.path.join(tmp, platform), reuse)
                problems = verify_tree(os.path.join(tmp, platform))
            except OSError:
                pass  # the plain copy below says what is wrong, if anything is
            if problems:  # e.g. a file of pro edited in place: copy everything from the source
                linked = 0
                shutil.rmtree(os.path.join(tmp, platform), ignore_errors=True)
        if problems:
            _copy_all(module, src, os.path.join(tmp, platform), tmp, versions, version)
            problems = verify_tree(os.path.join(tmp, platform))
        if problems:
            shutil.rmtree(tmp, ignore_errors=True)
            module.fail_json(
                msg=f"the copy of {src} does not match its manifest: " + "; ".join(problems[:SHOW]),
                problems=problems,
            )
        try:
            if os.path.lexists(dest_version):
                old = os.path.join(versions, f".old-{version}-{os.getpid()}")
                os.rename(dest_version, old)
                os.rename(tmp, dest_version)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, dest_version)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            _fail_destination(module, versions, version, exc)
        now = time.time()
        os.utime(dest_version, (now, now))
        seeded = 0
        if p["pycache"] and pro and pro != version:
            seeded = seed_pycache(p["pycache"], os.path.join(versions, pro, platform), tree)
        module.exit_json(changed=True, path=tree, verified=True, repaired=damaged[:SHOW],
                         bytecode_reused=seeded, files_linked=linked)  # fmt: skip

    if action == "activate":
        tree = os.path.join(versions, version, platform)
        pro = _version_of(root, _link_target(os.path.join(root, "pro")))
        if not os.path.isdir(tree):
            if module.check_mode:  # the install task before us only said it would install
                module.exit_json(changed=True, pro=version, previous=pro)
            module.fail_json(msg=f"cannot activate {version}: {tree} is not installed")
        if pro == version:
            module.exit_json(
                changed=False,
                pro=version,
                previous=_version_of(root, _link_target(os.path.join(root, "previous"))),
            )
        if not module.check_mode:
            if pro and os.path.isdir(os.path.join(versions, pro)):
                _relink(root, "previous", pro)
            _relink(root, "pro", version)
        module.exit_json(changed=True, pro=version, previous=pro)

    if action == "prune":
        keep = max(p["keep"], 1)
        protected = {
            _version_of(root, _link_target(os.path.join(root, name)))
            for name in ("pro", "previous")
        }
        installed = _installed(root)
        remove = [v for v in installed[keep:] if v not in protected]
        kept = [v for v in installed if v not in remove]
        caches = []
        deleting = 0
        if not module.check_mode:
            trash = os.path.join(root, TRASH)
            for name in remove:
                _discard(os.path.join(versions, name), trash)
            if p["pycache"]:
                caches = _drop_caches(p["pycache"], versions, set(kept), trash)
            deleting = _empty_trash(trash)
        module.exit_json(changed=bool(remove or caches), removed=remove, kept=kept,
                         bytecode_dropped=caches, deleting_in_background=deleting)  # fmt: skip


if __name__ == "__main__":
    main()
