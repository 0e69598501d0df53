"""A local cluster for the Python bench scripts beside this file, started by `dovetail dev` (which
computes every node's `serve` command line, the same way the tests' fixture does).

    with DevCluster(BIN, data_dir, nodes=3, groups=1, base_port=7200, spare_nodes=1,
                    serve_flags=["--snapshot-interval", "200"]) as cluster:
        cluster.client_token, cluster.admin_token, cluster.pids[2], cluster.api_port(2)

`dev` runs in a session of its own, so its process group holds it and its nodes and nothing
else; stopping sends SIGTERM to `dev` (which stops its nodes with SIGTERM, so they drain), then
SIGKILL to whatever of that group is left. Only the processes this object started are signalled.
"""
import os
import signal
import subprocess
import time


class DevCluster:
    def __init__(self, bin, data_dir, nodes=3, groups=16, base_port=7000, spare_nodes=0,
                 serve_flags=(), env=None, start_timeout=120):
        self.bin, self.data_dir, self.base_port = bin, data_dir, base_port
        self.args = [bin, "dev", "--nodes", str(nodes), "--groups", str(groups),
                     "--base-port", str(base_port), "--data-dir", data_dir,
                     "--spare-nodes", str(spare_nodes)]
        if serve_flags:
            self.args += ["--", *serve_flags]
        self.env = dict(os.environ, **(env or {}))
        self.start_timeout = start_timeout
        self.proc = self.proc_status = None
        self.pids = {}  # node id -> pid of its `dovetail serve`
        self.client_token = self.admin_token = None

    def api_port(self, node):
        return self.base_port + node

    def start(self):
        """Starts `dev` and returns once it wrote dev.pids (every group has a leader, every spare
        node answers); raises if `dev` exits first or takes longer than `start_timeout`."""
        os.makedirs(self.data_dir, exist_ok=True)
        self.log_path = os.path.join(self.data_dir, "dev.log")
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=self.env,
                                         start_new_session=True)
        pids_file = os.path.join(self.data_dir, "dev.pids")
        deadline = time.monotonic() + self.start_timeout
        while not os.path.exists(pids_file):
            if not self._running():
                self.stop()
                raise RuntimeError(f"dovetail dev exited with {self.proc_status} (see {self.log_path})")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"dovetail dev not up within {self.start_timeout} s (see {self.log_path})")
            time.sleep(0.1)
        with open(pids_file) as f:
            self.pids = {int(node): int(pid) for node, pid in (line.split() for line in f if line.strip())}
        exports = {}
        with open(os.path.join(self.data_dir, "dev.env")) as f:
            for line in f:
                if line.startswith("export "):
                    name, value = line[len("export "):].strip().split("=", 1)
                    exports[name] = value.strip("'\"")
        self.client_token = exports["DOVETAIL_CLIENT_TOKEN"]
        self.admin_token = exports["DOVETAIL_ADMIN_TOKEN"]
        return self

    def _running(self):
        """Whether `dev` still runs. An exited `dev` is left unreaped (a zombie), so its pid, which
        is its process group's id, cannot be reused by another process before `stop` signals the
        group."""
        return os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None

    def stop(self):
        """SIGTERM to `dev` (it stops its nodes), then SIGKILL to what is left of its group."""
        if self.proc is None:
            return
        if self._running():
            self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 30
            while self._running() and time.monotonic() < deadline:
                time.sleep(0.1)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # a session leader's pid is its group's id
        except ProcessLookupError:
            pass  # dev and every node are gone
        self.proc_status = self.proc.wait()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False
