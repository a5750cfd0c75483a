#!/usr/bin/python3
"""Side-by-side XMPP server benchmark: Aviary against Prosody and ejabberd.

Runs the same workloads with cmd/aviary-bench, on one machine in one run,
against:
  aviary     Aviary on its embedded store
  aviary-pg  Aviary on a throwaway PostgreSQL (initdb in a temp dir)
  prosody    Debian's prosody
  prosody-minimal  the same with only roster, registration, disco and ping
             (fewer features than Aviary serves; what this script ran as
             "prosody" until 2026-11-22)
  ejabberd   Debian's ejabberd
with comparable settings (STARTTLS required, in-band registration open, no
rate limiting or traffic shaping, SCRAM-SHA-1 with 4096 iterations, the same
self-signed P-256 certificate, loopback only, and the features Aviary serves
turned on: offline storage, carbons, PEP, private storage, blocking, stream
management, vcard-temp, version, last activity, ad-hoc administration). Each (server, workload,
repeat) gets a freshly started server on the same data directory, so one
run cannot warm or bloat the next; accounts are registered once, by an
unmeasured priming run, and reused. The repeats rotate through the servers
(run 1 of each server, then run 2 of each...), so a burst of other load on
the machine does not land on one server only.

Workloads (names for --workloads):
  ring     (a) 200 users in a ring, 100 messages each, 20 in flight per sender
  login    (b) logins per second for 2,000 users
  idle     (c) server memory per idle authenticated TLS session (--idle-sessions)
  cluster  (d) the ring over a three-node Aviary cluster (PostgreSQL +
           Hazelcast); Prosody and ejabberd are not clustered here
  muc      (e) group chat: --muc-users users in one room, each sending
           --muc-messages messages --muc-interval apart; every occupant
           gets every message (deliveries/s, latency, lost deliveries)
  muc-cluster  the same room with its users spread over the three-node
           Aviary cluster of (d)

--archive turns message archiving (XEP-0313) on in all of them (off
otherwise): every message is archived for its sender and its recipient.

It prints medians of --repeats runs per server and workload, and one table of
ratios Aviary/Prosody and Aviary/ejabberd (Markdown). Every server process it
starts is stopped on exit, also on Ctrl-C.

The soft RLIMIT_NOFILE is raised to the hard limit for this script and so
for every process it starts (10,000 idle sessions need 10,000 sockets in
the load tool and as many in the server).

Usage (from the repository root):
  /usr/bin/python3 cmd/aviary-bench/compare/compare.py --repeats 3
  /usr/bin/python3 cmd/aviary-bench/compare/compare.py --servers prosody,ejabberd \
      --workloads ring,login --idle-sessions 1000 --repeats 1
"""

import argparse
import atexit
import datetime
import json
import os
import platform
import pwd
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
DOMAIN = "localhost"
ALL_SERVERS = ["aviary", "aviary-pg", "prosody", "prosody-minimal", "ejabberd"]
ALL_WORKLOADS = ["ring", "login", "idle", "cluster", "muc", "muc-cluster"]
# Workloads run on the three-node Aviary cluster only.
CLUSTER_WORKLOADS = ("cluster", "muc-cluster")

_cleanups = []  # run in reverse on exit


def log(*a):
    print("[compare]", *a, file=sys.stderr, flush=True)


def at_exit(fn):
    _cleanups.append(fn)


def _cleanup():
    while _cleanups:
        fn = _cleanups.pop()
        try:
            fn()
        except Exception as e:  # keep cleaning up the rest
            log("cleanup:", e)


def _on_signal(signum, frame):
    log("signal", signum, "- cleaning up")
    _cleanup()
    sys.exit(128 + signum)


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} during start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout}s")


# ARCHIVE is --archive: every server archives every message for both
# parties (Aviary's xep0313.mam, Prosody's mod_mam, ejabberd's mod_mam, each
# with archiving on by default and on the storage the server already uses).
# Without it, archiving is off on all three (Aviary's plugin is on by
# default, so the template turns it off).
ARCHIVE = False


def archive_values():
    if ARCHIVE:
        return {"MAM_OFF": "", "PROSODY_MAM": '"mam";',
                "PROSODY_MAM_OPTIONS": 'default_archive_policy = true\narchive_expires_after = "never"',
                "EJABBERD_MAM": "mod_mam:\n    default: always"}
    return {"MAM_OFF": '"xep0313.mam"', "PROSODY_MAM": "", "PROSODY_MAM_OPTIONS": "", "EJABBERD_MAM": ""}


def fill(template, dest, **values):
    with open(os.path.join(HERE, template)) as f:
        text = f.read()
    for k, v in archive_values().items():
        values.setdefault(k, v)
    for k, v in values.items():
        text = text.replace("@@" + k + "@@", str(v))
    with open(dest, "w") as f:
        f.write(text)


def kill_group(proc, sig=signal.SIGTERM, wait=10):
    """Stops a process started with start_new_session=True, and its group."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)


def kill_pid(pid, wait=10):
    """Stops one process by pid (TERM, then KILL)."""
    if not pid:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.time() + wait
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_as(user):
    """preexec_fn switching to a system user (when running as root)."""
    if os.getuid() != 0:
        return None
    pw = pwd.getpwnam(user)

    def fn():
        os.setgid(pw.pw_gid)
        os.initgroups(user, pw.pw_gid)
        os.setuid(pw.pw_uid)
    return fn


# ---------------------------------------------------------------- servers


class Server:
    """One XMPP server under test: start() and stop() around each run."""

    name = "?"

    def __init__(self, work, cert, key):
        self.dir = os.path.join(work, self.name)
        os.makedirs(self.dir, exist_ok=True)
        self.cert, self.key = cert, key
        self.proc = None
        self.port = None

    def addrs(self):
        return [f"127.0.0.1:{self.port}"]

    def pids(self):
        return [self.proc.pid]

    def stop(self):
        kill_group(self.proc)
        self.proc = None


class Prosody(Server):
    name = "prosody"
    # Prosody runs on one thread. In the login workload it gets core 0 to
    # itself and the load tool the other core (pinned() below), so that the
    # tool never takes its CPU: its best case for logins on this machine
    # (measured 0-4% above leaving both to the scheduler; --no-pin does).
    # Aviary and ejabberd use both cores and share them with the tool. The
    # ring is not pinned: there the tool needs more than one core to keep
    # Prosody busy.
    single_threaded = True
    pin = False  # set per run by measure()

    def start(self):
        self.port = free_port()
        os.makedirs(os.path.join(self.dir, "data"), exist_ok=True)
        os.makedirs(os.path.join(self.dir, "certs"), exist_ok=True)
        cfg = os.path.join(self.dir, "prosody.cfg.lua")
        fill("prosody.cfg.lua.tmpl", cfg, DIR=self.dir, PORT=self.port,
             CERT=self.cert, KEY=self.key, DOMAIN=DOMAIN)
        self.configure(cfg)
        out = open(os.path.join(self.dir, "stdout.log"), "a")
        self.proc = subprocess.Popen(pinned(self, "server") + ["prosody", "-F", "--config", cfg], cwd=self.dir,
                                     stdout=out, stderr=out, start_new_session=True)
        wait_port(self.port, self.proc, 30, "prosody")

    def configure(self, cfg):
        pass

    def version(self):
        return deb_version("prosody")


class ProsodyMinimal(Prosody):
    """Prosody without the modules for features the workloads do not
    exercise (offline storage, PEP, blocking...): less work per login than
    Aviary does, kept so that the table shows both."""

    name = "prosody-minimal"

    def configure(self, cfg):
        text = open(cfg).read()
        start = text.index("modules_enabled = {")
        end = text.index("}", start) + 1
        text = (text[:start] + 'modules_enabled = {\n\t"roster"; "saslauth"; "tls"; "disco"; "register"; "ping";\n\t"posix";\n}'
                + text[end:]).replace('modules_disabled = { "s2s";', 'modules_disabled = { "s2s"; "offline";')
        if '"offline"' not in text:
            raise RuntimeError("prosody-minimal: the template's modules_disabled changed")
        with open(cfg, "w") as f:
            f.write(text)


class Ejabberd(Server):
    name = "ejabberd"

    def __init__(self, work, cert, key):
        super().__init__(work, cert, key)
        self.node = f"aviarybench{os.getpid()}@localhost"
        self.pem = os.path.join(self.dir, "server.pem")
        with open(self.pem, "w") as out:
            for f in (key, cert):
                out.write(open(f).read())
        self.started_epmd = False

    def ctl(self, *args):
        return ["ejabberdctl", "--config-dir", self.dir, "--spool", os.path.join(self.dir, "spool"),
                "--logs", os.path.join(self.dir, "logs"), "--node", self.node, *args]

    def env(self):
        e = dict(os.environ)
        if os.getuid() == 0:
            e["HOME"] = pwd.getpwnam("ejabberd").pw_dir  # the Erlang cookie lives there
            e["USER"] = e["LOGNAME"] = "ejabberd"
        return e

    def start(self):
        self.beam = None
        self.port = free_port()
        for d in ("spool", "logs", "contrib"):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        fill("ejabberd.yml.tmpl", os.path.join(self.dir, "ejabberd.yml"),
             DIR=self.dir, PORT=self.port, PEM=self.pem, DOMAIN=DOMAIN)
        fill("ejabberdctl.cfg.tmpl", os.path.join(self.dir, "ejabberdctl.cfg"), DIR=self.dir)
        shutil.copy("/etc/ejabberd/inetrc", os.path.join(self.dir, "inetrc"))
        pidfile = os.path.join(self.dir, "ejabberd.pid")
        if os.path.exists(pidfile):
            os.remove(pidfile)
        if os.getuid() == 0:
            subprocess.run(["chown", "-R", "ejabberd:ejabberd", self.dir], check=True)
            os.chmod(self.dir, 0o755)
        if not self.started_epmd:
            # ejabberd starts epmd if none runs; remember to stop it then.
            self.started_epmd = subprocess.run(["epmd", "-names"], capture_output=True).returncode != 0
            if self.started_epmd:
                at_exit(lambda: subprocess.run(["epmd", "-kill"], capture_output=True))
        out = open(os.path.join(self.dir, "stdout.log"), "a")
        # Run ejabberdctl as the ejabberd user ourselves: as root it would
        # switch with su, whose PAM session resets RLIMIT_NOFILE to 1024.
        self.proc = subprocess.Popen(self.ctl("foreground"), cwd=self.dir, env=self.env(),
                                     preexec_fn=run_as("ejabberd"),
                                     stdout=out, stderr=out, start_new_session=True)
        wait_port(self.port, self.proc, 120, "ejabberd")
        deadline = time.time() + 10
        while not os.path.exists(pidfile) and time.time() < deadline:
            time.sleep(0.1)
        self.beam = int(open(pidfile).read().strip())

    def pids(self):
        return [self.beam]

    def stop(self):
        if self.proc is None:
            return
        try:
            subprocess.run(self.ctl("stop"), capture_output=True, timeout=60, env=self.env(),
                           preexec_fn=run_as("ejabberd"))
        except subprocess.TimeoutExpired:
            pass
        kill_group(self.proc, wait=30)
        kill_pid(self.beam)
        self.proc = None

    def version(self):
        return deb_version("ejabberd")


class Aviary(Server):
    name = "aviary"

    def __init__(self, work, cert, key, binary, database="", name=None, hazelcast=""):
        if name:
            self.name = name
        super().__init__(work, cert, key)
        self.binary = binary
        self.database = database
        self.hazelcast = hazelcast

    def start(self):
        self.port = free_port()
        cfg = os.path.join(self.dir, "aviary.yaml")
        fill("aviary.yaml.tmpl", cfg, DIR=self.dir, PORT=self.port, CERT=self.cert,
             KEY=self.key, DOMAIN=DOMAIN, DATABASE=self.database, LINK_PORT=free_port(),
             HAZELCAST=f'"{self.hazelcast}"' if self.hazelcast else "",
             # Every node of a cluster needs its own name: without one they
             # all take the host name and overwrite each other's routes.
             NODE=self.name)
        out = open(os.path.join(self.dir, "stdout.log"), "a")
        self.proc = subprocess.Popen([self.binary, "serve", "--config", cfg], cwd=self.dir,
                                     stdout=out, stderr=out, start_new_session=True)
        wait_port(self.port, self.proc, 60, self.name)

    def version(self):
        r = subprocess.run([self.binary, "version"], capture_output=True, text=True)
        return (r.stdout.strip() or r.stderr.strip()).splitlines()[0] if (r.stdout or r.stderr) else "?"


class AviaryCluster:
    """Three Aviary nodes on one PostgreSQL and one Hazelcast member."""

    name = "aviary-cluster"

    def __init__(self, work, cert, key, binary, pg_url, hz_jar, nodes=3):
        self.work, self.cert, self.key, self.binary = work, cert, key, binary
        self.pg_url, self.hz_jar, self.n = pg_url, hz_jar, nodes
        self.nodes = []
        self.hz = None

    def start(self):
        hz_port = free_port()
        hz_dir = os.path.join(self.work, "hazelcast")
        os.makedirs(hz_dir, exist_ok=True)
        hz_cfg = os.path.join(hz_dir, "hazelcast.yaml")
        with open(hz_cfg, "w") as f:
            f.write(f"""hazelcast:
  cluster-name: aviary
  properties:
    hazelcast.phone.home.enabled: "false"
    hazelcast.wait.seconds.before.join: "0"
    hazelcast.max.wait.seconds.before.join: "1"
    hazelcast.logging.type: "jdk"
  jet:
    enabled: false
  network:
    interfaces:
      enabled: true
      interfaces:
        - 127.0.0.1
    port:
      auto-increment: false
      port: {hz_port}
    join:
      multicast:
        enabled: false
      auto-detection:
        enabled: false
""")
        out = open(os.path.join(hz_dir, "stdout.log"), "a")
        self.hz = subprocess.Popen(
            ["java", "-Xms64m", "-Xmx512m", "--add-modules", "java.se",
             "--add-exports", "java.base/jdk.internal.ref=ALL-UNNAMED",
             "--add-opens", "java.base/java.lang=ALL-UNNAMED",
             "--add-opens", "java.base/sun.nio.ch=ALL-UNNAMED",
             "--add-opens", "java.management/sun.management=ALL-UNNAMED",
             "--add-opens", "jdk.management/com.sun.management.internal=ALL-UNNAMED",
             f"-Dhazelcast.config={hz_cfg}", "-Djava.net.preferIPv4Stack=true",
             "-cp", self.hz_jar, "com.hazelcast.core.server.HazelcastMemberStarter"],
            cwd=hz_dir, stdout=out, stderr=out, start_new_session=True)
        wait_port(hz_port, self.hz, 120, "hazelcast")
        self.nodes = []
        for i in range(self.n):
            node = Aviary(self.work, self.cert, self.key, self.binary, self.pg_url,
                          name=f"aviary-node{i}", hazelcast=f"127.0.0.1:{hz_port}")
            self.nodes.append(node)
            node.start()

    def addrs(self):
        return [a for n in self.nodes for a in n.addrs()]

    def pids(self):
        return [p for n in self.nodes for p in n.pids()]

    def stop(self):
        for n in self.nodes:
            n.stop()
        kill_group(self.hz)
        self.hz = None


class Postgres:
    """A throwaway PostgreSQL cluster (initdb as user postgres, trust auth)."""

    def __init__(self, work, bindir):
        self.dir = os.path.join(work, "postgres")
        self.bindir = bindir
        os.makedirs(os.path.join(self.dir, "sock"), exist_ok=True)
        if os.getuid() == 0:
            subprocess.run(["chown", "-R", "postgres:postgres", self.dir], check=True)
        self.port = free_port()
        pre = run_as("postgres")
        subprocess.run([os.path.join(bindir, "initdb"), "-D", os.path.join(self.dir, "data"),
                        "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-instructions"],
                       check=True, capture_output=True, preexec_fn=pre, cwd=self.dir)
        out = open(os.path.join(self.dir, "postgres.log"), "a")
        if os.getuid() == 0:
            os.chown(os.path.join(self.dir, "postgres.log"), pwd.getpwnam("postgres").pw_uid, -1)
        self.proc = subprocess.Popen(
            [os.path.join(bindir, "postgres"), "-D", os.path.join(self.dir, "data"), "-p", str(self.port),
             "-k", os.path.join(self.dir, "sock"), "-c", "listen_addresses=127.0.0.1",
             "-c", "max_connections=200", "-c", "shared_buffers=128MB"],
            stdout=out, stderr=out, preexec_fn=pre, cwd=self.dir, start_new_session=True)
        at_exit(self.stop)
        deadline = time.time() + 60
        while True:
            r = subprocess.run([os.path.join(bindir, "psql"), "-h", "127.0.0.1", "-p", str(self.port),
                                "-U", "postgres", "-c", "SELECT 1"], capture_output=True)
            if r.returncode == 0:
                break
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("postgres did not start: " + r.stderr.decode())
            time.sleep(0.2)

    def create_db(self, name):
        subprocess.run([os.path.join(self.bindir, "psql"), "-h", "127.0.0.1", "-p", str(self.port),
                        "-U", "postgres", "-c", f"CREATE DATABASE {name}"], check=True, capture_output=True)
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}?sslmode=disable"

    def stop(self):
        kill_group(self.proc, sig=signal.SIGINT, wait=30)


def nofile_of(pid):
    """The soft open-file limit of a running process, from /proc."""
    try:
        for line in open(f"/proc/{pid}/limits"):
            if line.startswith("Max open files"):
                return int(line.split()[3])
    except (OSError, ValueError, IndexError):
        return None
    return None


def deb_version(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
    return r.stdout.strip() or "?"


# ---------------------------------------------------------------- workloads


def pinned(server, role):
    """The taskset prefix that keeps a single-threaded server and the load
    tool on different cores (role "server" or "tool"); empty otherwise."""
    if not getattr(server, "pin", False) or (os.cpu_count() or 1) < 2 or not shutil.which("taskset"):
        return []
    return ["taskset", "-c", "0" if role == "server" else "1-%d" % ((os.cpu_count() or 2) - 1)]


def bench(tool, server, args, timeout):
    cmd = pinned(server, "tool") + [tool, "-json", "-servers", ",".join(server.addrs()), "-domain", DOMAIN] + args
    log("run:", " ".join(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.stderr.strip():
        for line in r.stderr.strip().splitlines()[-5:]:
            log("  tool:", line)
    try:
        return json.loads(r.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"tool failed ({r.returncode}): {r.stderr[-2000:]}")


def workload_args(name, opts):
    if name in ("ring", "cluster"):
        return ["-workload", "ring", "-prefix", "ring", "-users", str(opts.ring_users),
                "-messages", str(opts.ring_messages), "-inflight", str(opts.ring_inflight),
                "-concurrency", str(opts.concurrency)]
    if name == "login":
        return ["-workload", "login", "-prefix", "login", "-users", str(opts.login_users),
                "-concurrency", str(opts.concurrency)]
    if name == "idle":
        return ["-workload", "idle", "-prefix", "idle", "-users", str(opts.idle_sessions),
                "-concurrency", str(opts.concurrency), "-settle", "20s"]
    if name in ("muc", "muc-cluster"):
        return ["-workload", "muc", "-prefix", "muc", "-users", str(opts.muc_users),
                "-messages", str(opts.muc_messages), "-interval", opts.muc_interval,
                "-inflight", "20", "-concurrency", str(opts.concurrency), "-drain", "20s"]
    raise ValueError(name)


def metrics(name, res):
    """The figures a workload reports, each (value, higher_is_better)."""
    m = {}
    login = res.get("login") or {}
    if name in ("ring", "cluster"):
        ring = res.get("ring") or {}
        lat = ring.get("latency") or {}
        m["messages/s"] = (ring.get("messages_per_second", 0), True)
        m["p50 ms"] = (lat.get("p50_ms", 0), False)
        m["p99 ms"] = (lat.get("p99_ms", 0), False)
        m["p99.9 ms"] = (lat.get("p999_ms", 0), False)
        m["lost"] = (ring.get("lost", 0), False)
    if name == "login":
        m["logins/s"] = (login.get("per_second", 0), True)
        lat = login.get("latency") or {}
        m["login p99 ms"] = (lat.get("p99_ms", 0), False)
        m["SASL2 logins"] = (res.get("sasl2_logins", 0), True)
    if name in ("muc", "muc-cluster"):
        muc = res.get("muc") or {}
        lat = muc.get("latency") or {}
        m["deliveries/s"] = (muc.get("messages_per_second", 0), True)
        m["p50 ms"] = (lat.get("p50_ms", 0), False)
        m["p99 ms"] = (lat.get("p99_ms", 0), False)
        m["max ms"] = (lat.get("max_ms", 0), False)
        m["lost"] = (muc.get("lost", 0), False)
        m["bounced"] = (muc.get("bounced", 0), False)
        m["joined"] = (muc.get("joined", 0), True)
    if name == "idle":
        mem = res.get("memory") or {}
        m["KiB/session"] = (mem.get("kib_per_session", 0), False)
    m["login failures"] = (login.get("failed", 0), False)
    return m


def median(values):
    return statistics.median(values) if values else float("nan")


def fmt(v):
    if isinstance(v, str):
        return v
    if v != v:  # NaN
        return "-"
    if float(v).is_integer() and abs(v) < 100:
        return str(int(v))
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def ratio(a, b):
    if a is None or b is None or a != a or b != b or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def ratio_range(runs_a, runs_b, wname, key):
    """Lowest and highest ratio of run i of a to run i of b, over the
    runs where both succeeded."""
    rs = []
    for ra, rb in zip(runs_a, runs_b):
        if "error" in ra or "error" in rb:
            continue
        va, vb = metrics(wname, ra)[key][0], metrics(wname, rb)[key][0]
        if va and vb:
            rs.append(va / vb)
    if not rs:
        return "-"
    return f"{min(rs):.2f}x–{max(rs):.2f}x"


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default=",".join(ALL_SERVERS))
    ap.add_argument("--workloads", default="ring,login,idle")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--idle-repeats", type=int, help="repeats of the idle workload (default --repeats); "
                    "10,000 sessions take minutes per run")
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--ring-users", type=int, default=200)
    ap.add_argument("--ring-messages", type=int, default=100)
    ap.add_argument("--ring-inflight", type=int, default=20)
    ap.add_argument("--login-users", type=int, default=2000)
    ap.add_argument("--muc-users", type=int, default=1000, help="occupants of the muc workloads' room")
    ap.add_argument("--muc-messages", type=int, default=12, help="messages each occupant sends")
    ap.add_argument("--muc-interval", default="5s", help="pause between one occupant's messages (the offered "
                    "load is users/interval messages a second, each delivered to every occupant)")
    ap.add_argument("--idle-sessions", type=int, default=10000)
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per tool run")
    ap.add_argument("--tls-pq", action="store_true",
                    help="let the tool offer X25519MLKEM768 (only a Go server takes it; the Debian servers cannot)")
    ap.add_argument("--json-out", help="also write every raw result here")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--archive", action="store_true",
                    help="turn message archiving (XEP-0313) on in every server: Aviary's xep0313.mam, "
                    "Prosody's and ejabberd's mod_mam, archiving every message for both parties")
    ap.add_argument("--no-pin", action="store_true",
                    help="leave Prosody and the tool to the scheduler in the login workload too")
    opts = ap.parse_args()
    global ARCHIVE
    ARCHIVE = opts.archive

    servers = [s for s in opts.servers.split(",") if s]
    workloads = [w for w in opts.workloads.split(",") if w]
    for s in servers:
        if s not in ALL_SERVERS:
            ap.error(f"unknown server {s}")
    for w in workloads:
        if w not in ALL_WORKLOADS:
            ap.error(f"unknown workload {w}")

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    atexit.register(_cleanup)
    nofile = raise_nofile()
    need = max(opts.idle_sessions, opts.login_users) + 100 if "idle" in workloads or "login" in workloads else 0
    if nofile < need:
        log(f"warning: RLIMIT_NOFILE {nofile} < {need}; the idle workload will fail")

    load_start = os.getloadavg()
    work = tempfile.mkdtemp(prefix="aviary-compare-")
    os.chmod(work, 0o755)
    if not opts.keep:
        at_exit(lambda: shutil.rmtree(work, ignore_errors=True))
    log("work directory", work)

    cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "7", "-subj", f"/CN={DOMAIN}",
                    "-addext", f"subjectAltName=DNS:{DOMAIN}"], check=True, capture_output=True)
    os.chmod(key, 0o644)  # read by prosody, ejabberd and postgres users

    os.makedirs(os.path.join(work, "bin"))
    tool = os.path.join(work, "bin", "aviary-bench")
    subprocess.run(["go", "build", "-o", tool, "./cmd/aviary-bench"], cwd=ROOT, check=True)
    aviary_bin = None
    clustered = any(w in CLUSTER_WORKLOADS for w in workloads)
    if any(s.startswith("aviary") for s in servers) or clustered:
        aviary_bin = os.path.join(work, "bin", "aviary")
        subprocess.run(["go", "build", "-o", aviary_bin, "./cmd/aviary"], cwd=ROOT, check=True)

    pg = None
    bindir = os.environ.get("AVIARY_PG_BINDIR") or "/usr/lib/postgresql/15/bin"
    if "aviary-pg" in servers or clustered:
        pg = Postgres(work, bindir)

    def make(name):
        if name == "aviary":
            return Aviary(work, cert, key, aviary_bin)
        if name == "aviary-rfc6120":
            return Aviary(work, cert, key, aviary_bin, name="aviary-rfc6120")
        if name == "aviary-pg":
            return Aviary(work, cert, key, aviary_bin, pg.create_db("aviary_bench"), name="aviary-pg")
        if name == "prosody":
            return Prosody(work, cert, key)
        if name == "prosody-minimal":
            return ProsodyMinimal(work, cert, key)
        if name == "ejabberd":
            return Ejabberd(work, cert, key)

    results = {}  # (server, workload) -> list of raw results
    versions = {}
    instances = {}

    def server_for(sname, wname):
        if wname in CLUSTER_WORKLOADS:
            hz_jar = os.environ.get("AVIARY_HAZELCAST_JAR") or os.path.expanduser(
                "~/.m2/repository/com/hazelcast/hazelcast/5.5.0/hazelcast-5.5.0.jar")
            if "aviary-cluster" not in instances:
                instances["aviary-cluster"] = AviaryCluster(work, cert, key, aviary_bin,
                                                            pg.create_db("aviary_cluster"), hz_jar)
            return instances["aviary-cluster"]
        if sname not in instances:
            instances[sname] = make(sname)
        return instances[sname]

    def servers_for(wname):
        if wname in CLUSTER_WORKLOADS:
            return ["aviary-cluster"]
        if wname == "login" and "aviary" in servers:
            # Aviary logs clients in with XEP-0388 SASL2 + XEP-0386 Bind 2
            # when they ask for it (the tool does, as current clients do);
            # Debian's Prosody 0.12 and ejabberd 23.01 offer only RFC 6120
            # SASL and binding. The extra row times Aviary on that flow too.
            i = servers.index("aviary") + 1
            return servers[:i] + ["aviary-rfc6120"] + servers[i:]
        return servers

    def base_args(sname, wname):
        cache_file = os.path.join(work, f"{sname}.scram-cache")
        args = workload_args(wname, opts) + ["-scram-cache", cache_file] + (["-tls-pq"] if opts.tls_pq else [])
        if sname == "aviary-rfc6120":
            args.append("-sasl2=false")
        return args

    def measure(sname, wname, label):
        srv = server_for(sname, wname)
        log(f"== {sname} / {wname} / {label}")
        try:
            srv.pin = getattr(srv, "single_threaded", False) and wname == "login" and not opts.no_pin
            srv.start()
            at_exit(srv.stop)
            for pid in srv.pids():
                lim = nofile_of(pid)
                if lim is not None and lim < opts.idle_sessions + 100 and wname == "idle":
                    log(f"  warning: server pid {pid} may open only {lim} files")
            if sname not in versions and hasattr(srv, "version"):
                versions[sname] = srv.version()
            if label == "priming run":
                res = bench(tool, srv, base_args(sname, wname) + ["-workload", "login"], opts.timeout)
                log("   created", res.get("create"), "logins ok", (res.get("login") or {}).get("ok"))
                return None
            args = base_args(sname, wname) + ["-create", "none"]
            if wname == "idle":
                args += ["-rss-pid", ",".join(str(p) for p in srv.pids())]
            res = bench(tool, srv, args, opts.timeout)
            log("  ", {k: fmt(v[0]) for k, v in metrics(wname, res).items()})
            return res
        except Exception as e:
            log(f"  FAILED: {e}")
            return {"error": str(e)}
        finally:
            srv.stop()

    # Per workload: one unmeasured priming run per server (registers the
    # accounts and fills the tool's SCRAM cache, so measured runs time
    # logins, not our PBKDF2), then the repeats, rotating through the
    # servers so that a burst of other load on the machine hits all alike.
    for wname in workloads:
        snames = servers_for(wname)
        for sname in snames:
            measure(sname, wname, "priming run")
        repeats = opts.idle_repeats if wname == "idle" and opts.idle_repeats else opts.repeats
        for rep in range(repeats):
            for sname in snames:
                res = measure(sname, wname, f"run {rep + 1} of {repeats}")
                results.setdefault((sname, wname), []).append(res)

    # ------------------------------------------------------------ report
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gov = subprocess.run(["go", "version"], capture_output=True, text=True).stdout.strip()
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    out = []
    out.append(f"Measured {now} on {os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB RAM, "
               f"{platform.system()} {platform.release()}; {gov}; RLIMIT_NOFILE {nofile}.")
    load_end = os.getloadavg()
    out.append(f"Load average (1/5/15 min) at start {load_start[0]:.1f}/{load_start[1]:.1f}/{load_start[2]:.1f}, "
               f"at end {load_end[0]:.1f}/{load_end[1]:.1f}/{load_end[2]:.1f}: other work on the machine "
               "competes for the same cores, so compare servers within one run only.")
    out.append("Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".")
    out.append("Message archiving (XEP-0313): " + ("on in every server (--archive: Aviary xep0313.mam, Prosody and ejabberd mod_mam), every message archived for both parties."
                                                  if ARCHIVE else "off in every server (--archive turns it on)."))
    idle_rep = opts.idle_repeats or opts.repeats
    out.append(f"Medians of {opts.repeats} runs ({idle_rep} for idle); each run on a freshly started server, accounts registered and the tool's SCRAM cache primed by an unmeasured run. "
               f"ring: {opts.ring_users} users x {opts.ring_messages} messages, {opts.ring_inflight} in flight; "
               f"login: {opts.login_users} users at concurrency {opts.concurrency}; "
               f"idle: {opts.idle_sessions} sessions; "
               f"muc: {opts.muc_users} occupants of one room x {opts.muc_messages} messages, one every {opts.muc_interval} per occupant.")
    out.append("")
    med = {}
    for wname in workloads:
        snames = servers_for(wname)
        mnames = []
        for sname in snames:
            for res in results.get((sname, wname), []):
                if "error" not in res:
                    for k in metrics(wname, res):
                        if k not in mnames:
                            mnames.append(k)
        if not mnames:
            mnames = ["(no successful run)"]
        out.append(f"### {wname}")
        out.append("")
        out.append("| server | " + " | ".join(mnames) + " | runs ok |")
        out.append("|---" * (len(mnames) + 2) + "|")
        for sname in snames:
            runs = results.get((sname, wname), [])
            good = [r for r in runs if "error" not in r]
            row = []
            for k in mnames:
                vals = [metrics(wname, r)[k][0] for r in good if k in metrics(wname, r)]
                v = median(vals)
                med[(sname, wname, k)] = v
                row.append(fmt(v))
            out.append(f"| {sname} | " + " | ".join(row) + f" | {len(good)}/{len(runs)} |")
        out.append("")

    pairs = [(a, b) for a in ("aviary", "aviary-rfc6120", "aviary-pg") if a in servers or (a == "aviary-rfc6120" and "login" in workloads and "aviary" in servers)
             for b in ("prosody", "prosody-minimal", "ejabberd") if b in servers]
    if pairs:
        out.append("### Ratios (Aviary / other; for rates above 1 is better, for latency and memory below 1 is better)")
        out.append("")
        out.append("| workload | metric | " + " | ".join(f"{a}/{b}" for a, b in pairs) + " |")
        out.append("|---|---|" + "---|" * len(pairs))
        for wname in workloads:
            if wname in CLUSTER_WORKLOADS:
                continue
            keys = []
            for (s, w, k) in med:
                if w == wname and k not in keys and k not in ("lost", "bounced", "joined", "login failures", "SASL2 logins"):
                    keys.append(k)
            for k in keys:
                cells = [ratio(med.get((a, wname, k)), med.get((b, wname, k))) for a, b in pairs]
                out.append(f"| {wname} | {k} | " + " | ".join(cells) + " |")
        out.append("")
        # The servers take turns (run 1 of each, then run 2...), so run i of
        # one server and run i of another saw the machine in the same state:
        # the spread of those pairwise ratios says how far a median ratio can
        # be trusted.
        spread = []
        for wname in workloads:
            reps = (opts.idle_repeats or opts.repeats) if wname == "idle" else opts.repeats
            if wname in CLUSTER_WORKLOADS or reps < 2:
                continue
            for k in [k for k, (_, up) in metrics(wname, {}).items() if up and k not in ("SASL2 logins", "joined")]:
                cells = [ratio_range(results.get((a, wname), []), results.get((b, wname), []), wname, k)
                         for a, b in pairs]
                if any(c != "-" for c in cells):
                    spread.append(f"| {wname} | {k} | " + " | ".join(cells) + " |")
        if spread:
            out.append("### Ratios run by run (run i of Aviary against run i of the other: lowest–highest)")
            out.append("")
            out.append("| workload | metric | " + " | ".join(f"{a}/{b}" for a, b in pairs) + " |")
            out.append("|---|---|" + "---|" * len(pairs))
            out.extend(spread)
            out.append("")
    errors = [(s, w, r["error"]) for (s, w), runs in results.items() for r in runs if "error" in r]
    if errors:
        out.append("Failed runs:")
        for s, w, e in errors:
            out.append(f"- {s} / {w}: {e.splitlines()[0][:300]}")
        out.append("")
    print("\n".join(out))
    if opts.json_out:
        with open(opts.json_out, "w") as f:
            json.dump({f"{s}/{w}": runs for (s, w), runs in results.items()}, f, indent=1)


if __name__ == "__main__":
    main()
