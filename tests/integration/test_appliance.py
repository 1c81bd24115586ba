"""The packaged product end to end: the .deb, the bootable appliance and the OCI image.

Heavy (root, a few minutes, Debian's mirror and PyPI); not part of the
everyday suite.  Run it with ``python -m pytest -q tests/integration``.

* ``packaging/build-deb`` builds the .deb; lintian has nothing to say.
* ``packaging/build-appliance`` makes a Debian 12 root with it installed
  (so it installs on a minimal root, outside a running systemd), which is
  booted with ``systemd-nspawn -b`` on a veth pair.  From the host: DNS is
  answered; inside: the unit is active, its journal has the start-up and
  leadership lines, its exposure is at most dnsdist's, reload and stop
  behave, and an upgrade and a purge (then a fresh install) are clean.
* ``packaging/build-image`` builds the OCI image; it runs as uid 153,
  answers on port 53 and its HEALTHCHECK passes.

Every root, container, veth and image made here is removed at the end.
Skipped, with the missing tool named, where they cannot run.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, List, Optional

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGING = REPO / "packaging"
VERSION = re.search(r'__version__ = "(.*)"', (REPO / "opengslb" / "__init__.py").read_text()).group(1)
#: dnsdist's Debian unit scores 2.1 in `systemd-analyze security`, gdnsd's 6.1.
EXPOSURE_BAR = 2.1

pytestmark = pytest.mark.timeout(900)

if sys.platform != "linux" or os.geteuid() != 0:
    pytest.skip("needs root on Linux (mmdebstrap, systemd-nspawn, podman)", allow_module_level=True)
for _tool, _package in [("dpkg-deb", "dpkg"), ("unshare", "util-linux"), ("nsenter", "util-linux"),
                        ("ip", "iproute2")]:
    if shutil.which(_tool) is None:
        pytest.skip(f"{_tool} is not installed (apt-get install {_package})", allow_module_level=True)


def run(args: List[str], timeout: float = 120, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess:
    """Run a command; on failure the assertion shows the end of its output."""
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                          **kwargs)  # type: ignore[call-overload]
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {done.returncode}:\n"
                             f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def query(address: str, name: str = "app.example.com", tcp: bool = False,
          timeout: float = 1.0) -> Optional[dns.message.Message]:
    """One A query to address:53; None when nothing answers."""
    message = dns.message.make_query(name, "A")
    try:
        if tcp:
            return dns.query.tcp(message, address, port=53, timeout=timeout)
        return dns.query.udp(message, address, port=53, timeout=timeout)
    except (OSError, dns.exception.Timeout):
        return None


def wait_for(what: str, condition, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def namespaces_work() -> Optional[str]:
    """None when this process may create the namespaces containers need, else why not."""
    done = subprocess.run(["unshare", "--mount", "--pid", "--net", "--fork", "true"],
                          capture_output=True, text=True)
    return None if done.returncode == 0 else f"cannot create namespaces here: {done.stderr.strip()}"


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The .deb built from this checkout."""
    out = tmp_path_factory.mktemp("deb")
    run([PACKAGING / "build-deb", out], timeout=600)
    built = list(out.glob(f"opengslb_{VERSION}_*.deb"))
    assert len(built) == 1, built
    return built[0]


def test_deb_is_lintian_clean(deb: Path) -> None:
    if shutil.which("lintian") is None:
        pytest.skip("lintian is not installed (apt-get install lintian)")
    done = run(["lintian", "--fail-on", "error,warning", deb], timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    fields = run(["dpkg-deb", "-f", deb, "Package", "Version", "Depends"]).stdout
    assert f"Version: {VERSION}" in fields and "adduser" in fields


class Appliance:
    """An appliance root booted with systemd-nspawn: ``run`` executes inside it, and
    ``address`` is its address on the host's veth or bridge."""

    def __init__(self, root: Path, deb: Path, name: str, address: str, nspawn_args: List[str]) -> None:
        self.root = root
        self.deb = deb
        self.name = name                          # veth: ve-<name> or vb-<name>, at most 15 characters
        self.address = address
        self.nspawn_args = nspawn_args
        self.log = root.parent / f"{name}.console.log"
        self.process: Optional[subprocess.Popen] = None
        self.leader = 0
        self.booted_at = 0.0

    def boot(self) -> None:
        self.booted_at = time.monotonic()
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                ["systemd-nspawn", "--quiet", "--boot", "--directory", str(self.root), f"--machine={self.name}",
                 "--keep-unit", "--register=no", "--console=read-only", *self.nspawn_args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.leader = wait_for(f"{self.name}'s init", self._find_init, 20)

    def _find_init(self) -> int:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"systemd-nspawn exited:\n{self.console()}")
        for children in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
            for pid in children.read_text().split():
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return int(pid)
        return 0

    def console(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run a command inside the booted appliance (every namespace of its init)."""
        return run(["nsenter", "--target", str(self.leader), "--all", "--", "env", "-i",
                    "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive",
                    *args], check=check, timeout=timeout)

    def query_inside(self, address: str = "127.0.0.1") -> bool:
        """Whether address:53 answers inside the appliance's network namespace (host's Python)."""
        script = ("import sys, dns.message, dns.query\n"
                  f"dns.query.udp(dns.message.make_query('app.example.com', 'A'), '{address}', port=53, timeout=1)\n")
        return run(["nsenter", "--target", str(self.leader), "--net", "--", sys.executable, "-c", script],
                   check=False).returncode == 0

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("systemctl", "--no-pager", *args, check=check)

    def active(self) -> str:
        return self.systemctl("is-active", "opengslb", check=False).stdout.strip()

    def show(self, prop: str) -> str:
        return self.systemctl("show", "-p", prop, "--value", "opengslb").stdout.strip()

    def journal(self) -> str:
        """The service's log of this boot (volatile nodes see their root's older boots)."""
        return self.run("journalctl", "--no-pager", "--boot", "-o", "cat", "-u", "opengslb").stdout

    def shutdown(self) -> None:
        """Power off (systemd-nspawn removes its veth); idempotent."""
        if self.process is None:
            return
        if self.process.poll() is None and self.leader:
            self.run("systemctl", "poweroff", check=False, timeout=10)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        if self.process.poll() is None:
            self.process.terminate()        # systemd-nspawn halts the container on SIGTERM
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)


def network_file(address: str) -> str:
    """The guest's static address on host0 (as cloud-init would configure it)."""
    return f"[Match]\nName=host0\n\n[Network]\nAddress={address}/24\nLinkLocalAddressing=no\n"


@pytest.fixture(scope="module")
def appliance(deb: Path) -> Iterator[Appliance]:
    """The appliance built by packaging/build-appliance from the .deb, booted on a veth pair."""
    for tool, package in [("systemd-nspawn", "systemd-container"), ("mmdebstrap", "mmdebstrap")]:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install {package})")
    why = namespaces_work()
    if why:
        pytest.skip(f"systemd-nspawn cannot run: {why}")
    work = Path(tempfile.mkdtemp(prefix="opengslb-appliance-"))
    suffix = os.getpid() % 100000
    subnet = f"10.253.{20 + suffix % 200}"
    machine = Appliance(work / "root", deb, f"ogslb{suffix}", f"{subnet}.2", ["--network-veth"])
    try:
        run([PACKAGING / "build-appliance", machine.root, deb], timeout=600)
        (machine.root / "etc/systemd/network/10-test-host0.network").write_text(network_file(machine.address))
        machine.boot()
        veth = f"ve-{machine.name}"
        run(["ip", "addr", "add", f"{subnet}.1/24", "dev", veth])
        run(["ip", "link", "set", veth, "up"])
        yield machine
    finally:
        machine.shutdown()
        mounted = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                   if line.split()[1].startswith(str(work))]
        assert not mounted, f"still mounted, {work} left in place: {mounted}"
        shutil.rmtree(work)


def test_appliance_boots_and_answers_from_outside(appliance: Appliance) -> None:
    reply = wait_for(f"a DNS answer from {appliance.address}", lambda: query(appliance.address), 60)
    answered = time.monotonic() - appliance.booted_at
    assert reply.rcode() == dns.rcode.NOERROR and reply.answer, reply
    assert query(appliance.address, tcp=True) is not None
    # Active once READY=1: DNS bound and the first round of health checks done.
    wait_for("opengslb to be active", lambda: appliance.active() == "active", 60)
    ready = time.monotonic() - appliance.booted_at
    print(f"\nappliance: DNS answered {answered:.1f}s after systemd-nspawn started, active after {ready:.1f}s")
    assert appliance.show("StatusText").startswith("standalone: 1 domains")
    assert appliance.run("systemctl", "is-enabled", "opengslb").stdout.strip() == "enabled"


def test_journal_has_the_startup_lines(appliance: Appliance) -> None:
    journal = appliance.journal()
    assert "OK" in journal.splitlines()                      # ExecStartPre=opengslb --validate
    assert "opengslb serving DNS on :53 (1 domains, 2 servers)" in journal
    assert f"DNS over UDP on {appliance.address}:53" in journal
    assert "told systemd the service is ready" in journal


def test_sandbox_user_capabilities_and_exposure(appliance: Appliance) -> None:
    pid = appliance.show("MainPID")
    status = appliance.run("cat", f"/proc/{pid}/status").stdout
    uid = appliance.run("id", "-u", "opengslb").stdout.strip()
    assert re.search(rf"^Uid:\s+{uid}\s+{uid}\s+{uid}\s+{uid}$", status, re.M), status
    assert re.search(r"^CapEff:\s+0000000000000400$", status, re.M), status    # CAP_NET_BIND_SERVICE only
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M)
    assert re.search(r"^Seccomp:\s+2$", status, re.M)
    analysis = appliance.run("systemd-analyze", "security", "opengslb").stdout
    exposure = float(re.search(r"Overall exposure level for opengslb.service: ([0-9.]+)", analysis).group(1))
    print(f"\nsystemd-analyze security opengslb: {exposure}")
    assert exposure <= EXPOSURE_BAR, analysis


def test_reload_applies_a_valid_file_and_refuses_an_invalid_one(appliance: Appliance) -> None:
    assert appliance.systemctl("reload", "opengslb").returncode == 0
    wait_for("the reload in the journal", lambda: "configuration reloaded from /etc/opengslb/config.yaml"
             in appliance.journal(), 10)
    config = appliance.root / "etc/opengslb/config.yaml"
    good = config.read_text()
    try:
        config.write_text(good.replace("  default_ttl: 60\n", "  default_ttl: -5\n"))
        refused = appliance.systemctl("reload", "opengslb", check=False)
        assert refused.returncode != 0
        assert "dns.default_ttl: must be between 0 and 2147483647" in appliance.journal()
        assert appliance.active() == "active"
        assert query(appliance.address) is not None
    finally:
        config.write_text(good)


def write_config(appliance: Appliance, text: str) -> None:
    """Replace the appliance's configuration, keeping root:opengslb 0640."""
    path = appliance.root / "etc/opengslb/config.yaml"
    path.write_text(text)
    appliance.run("chown", "root:opengslb", "/etc/opengslb/config.yaml")
    appliance.run("chmod", "0640", "/etc/opengslb/config.yaml")


def test_cluster_mode_logs_leadership_and_serves(appliance: Appliance) -> None:
    # One node bootstrapping a cluster; its own DNS port over TCP is the backend,
    # so the first round of checks is over at once.
    key = run(["sh", "-c", "head -c 32 /dev/urandom | base64"]).stdout.strip()
    write_config(appliance, f"""\
dns: {{listen_address: ":53"}}
logging: {{format: text}}
regions:
  - name: local
    servers: [{{address: {appliance.address}, port: 53}}]
    health_check: {{type: tcp, interval: 1s, timeout: 500ms}}
domains:
  - {{name: app.example.com, regions: [local]}}
cluster:
  mode: cluster
  bootstrap: true
  bind_address: "0.0.0.0:7946"
  advertise_address: "{appliance.address}:7946"
  gossip: {{encryption_key: "{key}"}}
""")
    appliance.systemctl("restart", "opengslb")
    assert appliance.active() == "active"
    # The seed's check: journalctl -u opengslb | grep -i "leader\\|raft\\|cluster"
    lines = [line for line in appliance.journal().splitlines() if re.search("leader|raft|cluster", line, re.I)]
    assert any(f"bootstrapping a new cluster as {appliance.address}:7946" in line for line in lines), lines
    wait_for("the leadership line", lambda: re.search(
        rf"raft: leader \(term \d+, leader {re.escape(appliance.address)}:7946\)", appliance.journal(), re.I), 20)
    wait_for("a DNS answer from the leader", lambda: query(appliance.address), 20)
    wait_for("STATUS= with the role", lambda: appliance.show("StatusText").startswith("cluster leader"), 10)
    owner = appliance.run("stat", "-c", "%U %a", "/var/lib/opengslb/raft").stdout.split()
    assert owner[0] == "opengslb", owner


def test_stop_finishes_within_5_seconds(appliance: Appliance) -> None:
    started = time.monotonic()
    appliance.systemctl("stop", "opengslb")
    took = time.monotonic() - started
    print(f"\nsystemctl stop opengslb (cluster leader): {took:.2f}s")
    assert took < 5
    assert appliance.active() == "inactive"
    assert appliance.show("Result") == "success"
    appliance.systemctl("start", "opengslb")
    assert appliance.active() == "active"


def test_upgrade_restarts_and_keeps_the_configuration(appliance: Appliance, tmp_path: Path) -> None:
    newer = f"{VERSION}+test1"
    unpacked = tmp_path / "deb"
    run(["dpkg-deb", "-R", appliance.deb, unpacked])
    control = unpacked / "DEBIAN/control"
    control.write_text(re.sub(r"^Version: .*$", f"Version: {newer}", control.read_text(), flags=re.M))
    run(["dpkg-deb", "--root-owner-group", "-Zxz", "-b", unpacked, appliance.root / "var/tmp/newer.deb"])
    config = (appliance.root / "etc/opengslb/config.yaml").read_text()
    before = appliance.show("MainPID")
    appliance.run("dpkg", "--force-confold", "-i", "/var/tmp/newer.deb", timeout=180)
    assert appliance.run("dpkg-query", "-W", "-f", "${Version} ${db:Status-Abbrev}", "opengslb").stdout.strip() \
        == f"{newer} ii"
    assert appliance.active() == "active"
    assert appliance.show("MainPID") != before                       # restarted into the new files
    assert (appliance.root / "etc/opengslb/config.yaml").read_text() == config
    assert appliance.run("stat", "-c", "%U:%G %a", "/etc/opengslb/config.yaml").stdout.strip() \
        == "root:opengslb 640"
    wait_for("a DNS answer after the upgrade", lambda: query(appliance.address), 20)


def test_purge_is_clean_and_a_fresh_install_starts(appliance: Appliance) -> None:
    appliance.run("dpkg", "--purge", "opengslb", timeout=180)
    assert appliance.active() == "inactive"
    for path in ["opt/opengslb", "etc/opengslb", "var/lib/opengslb", "lib/systemd/system/opengslb.service",
                 "usr/bin/opengslb", "etc/systemd/system/multi-user.target.wants/opengslb.service"]:
        assert not (appliance.root / path).exists() and not (appliance.root / path).is_symlink(), path
    assert "opengslb" not in appliance.run("dpkg-statoverride", "--list").stdout
    # The system user stays, as Debian's packages leave theirs.
    assert appliance.run("getent", "passwd", "opengslb", check=False).returncode == 0

    # A fresh install into a running system starts the service with the
    # package's default configuration: loopback only.
    shutil.copy(appliance.deb, appliance.root / "var/tmp/fresh.deb")
    appliance.run("dpkg", "-i", "/var/tmp/fresh.deb", timeout=180)
    wait_for("opengslb to be active after installation", lambda: appliance.active() == "active", 60)
    assert appliance.run("stat", "-c", "%U:%G %a", "/etc/opengslb/config.yaml").stdout.strip() \
        == "root:opengslb 640"
    assert appliance.query_inside("127.0.0.1")
    assert query(appliance.address, timeout=0.5) is None


def test_three_appliances_on_a_bridge_form_a_cluster(appliance: Appliance, tmp_path: Path) -> None:
    """The seed's deployment: the first node bootstraps, the others join it; the
    leader answers, followers refuse, and stopping the leader hands over."""
    appliance.shutdown()        # its root is now the read-only lower layer of three volatile nodes
    suffix = os.getpid() % 100000
    bridge, subnet = f"br-og{suffix}", f"10.254.{20 + suffix % 200}"
    gid = next(line.split(":")[2] for line in (appliance.root / "etc/group").read_text().splitlines()
               if line.startswith("opengslb:"))
    key = run(["sh", "-c", "head -c 32 /dev/urandom | base64"]).stdout.strip()
    addresses = [f"{subnet}.{10 + index}" for index in (1, 2, 3)]
    # The same file on every node but for its name, address and start (bootstrap or join);
    # the backends are the nodes' own DNS ports, so the first round of checks is immediate.
    servers = ", ".join(f"{{address: {address}, port: 53}}" for address in addresses)
    nodes: List[Appliance] = []
    run(["ip", "link", "add", bridge, "type", "bridge"])
    try:
        run(["ip", "addr", "add", f"{subnet}.1/24", "dev", bridge])
        run(["ip", "link", "set", bridge, "up"])
        for index, address in enumerate(addresses, 1):
            start = "bootstrap: true" if index == 1 else f'join: ["{subnet}.11:7946"]'
            config, network = tmp_path / f"node{index}.yaml", tmp_path / f"node{index}.network"
            config.write_text(f"""\
dns: {{listen_address: ":53"}}
logging: {{format: text}}
regions:
  - name: local
    servers: [{servers}]
    health_check: {{type: tcp, interval: 1s, timeout: 500ms}}
domains:
  - {{name: app.example.com, regions: [local]}}
cluster:
  mode: cluster
  node_name: node{index}
  {start}
  bind_address: "0.0.0.0:7946"
  advertise_address: "{address}:7946"
  gossip: {{encryption_key: "{key}"}}
""")
            os.chown(config, 0, int(gid))
            os.chmod(config, 0o640)
            network.write_text(network_file(address))
            node = Appliance(appliance.root, appliance.deb, f"{appliance.name}c{index}", address,
                             ["--volatile=overlay", f"--network-bridge={bridge}",
                              f"--bind-ro={config}:/etc/opengslb/config.yaml",
                              f"--bind-ro={network}:/etc/systemd/network/10-test-host0.network"])
            nodes.append(node)
            node.boot()
        for node in nodes:
            wait_for(f"{node.name} to be active", lambda node=node: node.active() == "active", 90, interval=1)

        def roles() -> List[str]:
            return [node.show("StatusText").split(" (")[0] for node in nodes]

        # A joiner reports "cluster joining" until the entry adding it is in its log.
        wait_for("one leader and two followers", lambda: sorted(roles()) == [
            "cluster follower", "cluster follower", "cluster leader"], 30)
        leader = nodes[roles().index("cluster leader")]
        print(f"\ncluster: {dict(zip([n.name for n in nodes], roles()))}")
        reply = wait_for("the leader's answer", lambda: query(leader.address), 20)
        assert reply.answer[0][0].to_text() in addresses
        for node in nodes:
            if node is not leader:
                assert query(node.address).rcode() == dns.rcode.REFUSED
                # journald may take a moment to store what the service already wrote
                wait_for(f"{node.name}'s log of its leader", lambda node=node: re.search(
                    r"raft: follower \(term \d+, leader ", node.journal(), re.I), 10, interval=1)
        for node in nodes[1:]:
            assert re.search(r"\bjoin", node.journal(), re.I), node.journal()

        started = time.monotonic()
        leader.systemctl("stop", "opengslb")
        took = time.monotonic() - started
        assert took < 5
        assert "handed leadership over to" in leader.journal()
        others = [node for node in nodes if node is not leader]
        successor = wait_for("a new leader", lambda: next(
            (node for node in others if node.show("StatusText").startswith("cluster leader")), None), 15)
        reply = wait_for("the new leader's answer", lambda: query(successor.address), 10)
        assert reply.answer[0][0].to_text() in addresses
        print(f"cluster: leader stop {took:.2f}s, {successor.name} took over")
    finally:
        for node in nodes:
            node.shutdown()
        run(["ip", "link", "delete", bridge], check=False)


# -- the OCI image ----------------------------------------------------------------------------


def podman_run_flags() -> List[str]:
    """What `podman run` needs on this host: runc where cgroups are hybrid, and rlimits
    the runtime may set (podman's defaults are above the hard limits here, and the
    runtime may not raise them)."""
    flags = []
    if Path("/sys/fs/cgroup/unified").is_dir() and shutil.which("runc"):
        flags += ["--runtime", "runc"]
    for name, which, most in [("nofile", resource.RLIMIT_NOFILE, 65536), ("nproc", resource.RLIMIT_NPROC, 4096)]:
        hard = resource.getrlimit(which)[1]
        limit = most if hard == resource.RLIM_INFINITY else min(hard, most)
        flags += ["--ulimit", f"{name}={limit}:{limit}"]
    return flags


@pytest.fixture(scope="module")
def image(deb: Path) -> Iterator[str]:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (apt-get install podman)")
    why = namespaces_work()
    if why:
        pytest.skip(f"podman cannot run containers: {why}")
    tag = f"localhost/opengslb-test:{os.getpid()}"
    try:
        run([PACKAGING / "build-image", deb], timeout=600, env={**os.environ, "TAG": tag})
        yield tag
    finally:
        run(["podman", "rmi", "--force", tag], check=False)


def test_oci_image_runs_as_non_root_and_answers_on_53(image: str, tmp_path: Path) -> None:
    inspect = run(["podman", "image", "inspect", "--format",
                   "{{.Config.User}}|{{.Config.Healthcheck}}|{{.Config.Volumes}}|{{.Size}}", image]).stdout
    user, healthcheck, volumes, size = inspect.strip().split("|")
    print(f"\nimage {image}: {int(size) / 1e6:.0f} MB")
    assert user == "153:153"
    assert "/api/v1/ready" in healthcheck
    assert "/etc/opengslb" in volumes and "/var/lib/opengslb" in volumes

    # Configuration and state as volumes: a file readable by gid 153 only, the
    # API's own port as the backend so the first round of checks is immediate.
    config, state = tmp_path / "config", tmp_path / "state"
    config.mkdir()
    state.mkdir()
    (config / "config.yaml").write_text("""\
dns: {listen_address: ":53"}
api: {enabled: true, address: "127.0.0.1:8080"}
regions:
  - name: local
    servers: [{address: 127.0.0.1, port: 8080}]
    health_check: {type: tcp, interval: 1s, timeout: 500ms}
domains:
  - {name: app.example.com, regions: [local]}
""")
    os.chown(config / "config.yaml", 0, 153)
    os.chmod(config / "config.yaml", 0o640)
    os.chown(state, 153, 153)
    name = f"opengslb-test-{os.getpid()}"
    run(["podman", "run", "--detach", "--name", name, *podman_run_flags(),
         "--volume", f"{config}:/etc/opengslb:ro", "--volume", f"{state}:/var/lib/opengslb", image])
    try:
        address = run(["podman", "inspect", "--format", "{{.NetworkSettings.IPAddress}}", name]).stdout.strip()
        assert address, "the container has no address on podman's network"
        reply = wait_for(f"a DNS answer from the container at {address}:53",
                         lambda: query(address), 30)
        assert [rr.to_text() for rr in reply.answer[0]] == ["127.0.0.1"]
        assert run(["podman", "exec", name, "id", "-u"]).stdout.strip() == "153"
        wait_for("the HEALTHCHECK to pass", lambda: run(["podman", "healthcheck", "run", name],
                                                         check=False).returncode == 0, 30, interval=1)
        assert list(state.iterdir()), "nothing was written to the state volume"
        started = time.monotonic()
        run(["podman", "stop", "--time", "10", name])
        assert time.monotonic() - started < 5
    finally:
        run(["podman", "rm", "--force", name], check=False)
