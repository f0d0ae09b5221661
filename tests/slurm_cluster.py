"""A real single-node SLURM cluster (munge, slurmctld, slurmd) on this machine, for the tests.

The daemons are Debian's ``slurm-wlm`` and ``munge`` (``.ci/run`` installs
them); they run in the foreground under ``setsid`` and are stopped by their
own PIDs, since there is no systemd. The node has this machine's CPUs and
memory and two fake GPUs: ``gres.conf`` points at character devices made
with ``mknod`` (SLURM rejects plain files), so ``--gpus=1`` jobs are
scheduled, get ``CUDA_VISIBLE_DEVICES``, and a third GPU job waits.

There is no accounting database: job records come from SLURM's job
completion log (``jobcomp/filetxt``) and from ``squeue`` while a job is
recent (``MinJobAge``).

``slurm.conf`` has to be ``/etc/slurm/slurm.conf``: the ``srun`` that
Snakemake's executor runs inside each job does not see ``SLURM_CONF``. So
the cluster refuses to start over a config it did not write.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

CONF_DIR = Path("/etc/slurm")
MARKER = "# written by pixsup's test cluster"
FAKE_GPU_MAJOR = 195  # the NVIDIA driver's major number; nothing opens these nodes


class ClusterError(RuntimeError):
    """The cluster could not be set up; the message says what is missing."""


def _node_line() -> str:
    """``slurmd -C``'s description of this machine, as a NodeName line with two fake GPUs."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    first = out.splitlines()[0]
    cpus = re.search(r"CPUs=(\d+)", first).group(1)
    memory = int(re.search(r"RealMemory=(\d+)", first).group(1))
    # Leave some memory to the machine, as a site would.
    return f"NodeName={socket.gethostname()} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory - 1024} Gres=gpu:2"


def slurm_conf(state: Path, node_line: str) -> str:
    host = socket.gethostname()
    return "\n".join(
        [
            MARKER,
            "ClusterName=pixsup-test",
            f"SlurmctldHost={host}(127.0.0.1)",
            "SlurmUser=root",
            "AuthType=auth/munge",
            "MpiDefault=none",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/affinity",
            "SelectType=select/cons_tres",
            # Memory is checked per job but not reserved, so a training job (16 GB
            # asked) does not keep a 1-CPU evaluation off this small node.
            "SelectTypeParameters=CR_Core",
            "DefMemPerCPU=1000",
            "GresTypes=gpu",
            "ReturnToService=2",
            "MinJobAge=600",
            # Kill a job soon after its time limit, and check limits often.
            "OverTimeLimit=0",
            "KillWait=5",
            "InactiveLimit=0",
            "MailProg=/bin/true",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={state / 'jobcomp.log'}",
            f"StateSaveLocation={state / 'ctld'}",
            f"SlurmdSpoolDir={state / 'slurmd'}",
            f"SlurmctldPidFile={state / 'slurmctld.pid'}",
            f"SlurmdPidFile={state / 'slurmd.pid'}",
            f"SlurmctldLogFile={state / 'slurmctld.log'}",
            f"SlurmdLogFile={state / 'slurmd.log'}",
            node_line,
            # Two jobs may share a core: most tiny-workflow jobs spend their time
            # starting Python, not computing.
            f"PartitionName=main Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:2",
            "",
        ]
    )


@dataclass
class LocalSlurmCluster:
    """Start with :meth:`start`, stop with :meth:`stop`; ``state`` holds logs, spool and job records."""

    state: Path
    pids: dict[str, int] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    @property
    def jobcomp_log(self) -> Path:
        return self.state / "jobcomp.log"

    def start(self, timeout: float = 60.0) -> float:
        """Write the configs, start the daemons, wait for an idle node; returns the seconds it took."""
        started = time.perf_counter()
        missing = [tool for tool in ("munged", "slurmctld", "slurmd", "sbatch", "squeue") if not shutil.which(tool)]
        if missing:
            raise ClusterError(
                f"SLURM/munge programs not found: {', '.join(missing)}; install Debian's "
                "'munge slurm-wlm slurmctld slurmd slurm-client' (see .ci/run)"
            )
        if os.geteuid() != 0:
            raise ClusterError("the test cluster needs root: it writes /etc/slurm and starts slurmd")
        conf = CONF_DIR / "slurm.conf"
        if conf.exists() and MARKER not in conf.read_text():
            raise ClusterError(f"{conf} exists and was not written by these tests; refusing to replace it")
        for sub in ("ctld", "slurmd"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        devices = self._fake_gpus()
        CONF_DIR.mkdir(parents=True, exist_ok=True)
        conf.write_text(slurm_conf(self.state, _node_line()))
        (CONF_DIR / "gres.conf").write_text(MARKER + "\n" + "".join(f"Name=gpu File={device}\n" for device in devices))
        try:
            self._start_munge()
            self._spawn("slurmctld", ["slurmctld", "-D", "-c"])
            self._spawn("slurmd", ["slurmd", "-D"])
            self._wait_for_idle_node(timeout)
        except BaseException:
            self.stop()
            raise
        return time.perf_counter() - started

    def _fake_gpus(self) -> list[Path]:
        devices = []
        for index in range(2):
            device = Path(f"/dev/pixsup-fake-gpu{index}")
            if not device.is_char_device():
                device.unlink(missing_ok=True)
                os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(FAKE_GPU_MAJOR, 200 + index))
            devices.append(device)
        return devices

    def _start_munge(self) -> None:
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            raise ClusterError(f"{key} is missing; the munge package creates it on install")
        run_dir = Path("/run/munge")
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(run_dir, "munge", "munge")
        # munged's own default socket, pid, log and seed files (all owned by munge).
        self._spawn("munged", ["munged", "--foreground", "--force"], user="munge")

    def _spawn(self, name: str, argv: list[str], user: str | None = None) -> None:
        log_path = self.state / f"{name}.stdout"
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                argv, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True, user=user, group=user
            )
        self.pids[name] = process.pid
        self.logs[name] = log_path

    def _wait_for_idle_node(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for name, pid in self.pids.items():
                if not _alive(pid):
                    raise ClusterError(f"{name} exited at start:\n{self.logs[name].read_text()[-3000:]}")
            result = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True)
            last = (result.stdout + result.stderr).strip()
            if result.returncode == 0 and last == "idle":
                return
            time.sleep(0.5)
        raise ClusterError(f"the node did not become idle in {timeout:.0f} s (sinfo: {last!r})")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM each daemon by its PID, slurmd first, and wait for it (SIGKILL after ``timeout``);
        then remove the configs written by :meth:`start`. A config left behind would make every later
        Snakemake start slow: the SLURM executor plugin runs ``scontrol show config`` on import, which
        waits for the (stopped) controller to time out."""
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.pids.pop(name, None)
            if pid is None:
                continue
            _signal(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _alive(pid):
                _signal(pid, signal.SIGKILL)
                _reap(pid)
        for name in ("slurm.conf", "gres.conf"):
            conf = CONF_DIR / name
            if conf.exists() and MARKER in conf.read_text():
                conf.unlink()


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> bool:
    """True once the child ``pid`` has exited (collecting it so it is no zombie)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == pid


def _alive(pid: int) -> bool:
    return not _reap(pid)


def jobcomp_records(path: Path) -> list[dict[str, str]]:
    """SLURM's job completion log: one ``key=value ...`` line per finished job."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        records.append(dict(re.findall(r"(\w+)=(\S*)", line)))
    return records
