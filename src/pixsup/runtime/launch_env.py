"""Where this process sits among the launched ones (torchrun's or srun's environment), read without torch.

:mod:`pixsup.runtime.distributed` forms the process group from it; a step that only decides
who logs and writes reads it here, without importing torch.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass


def _int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise ValueError(f"environment variable {name}={env[name]!r} is not an integer") from None


def launch_rank(env: Mapping[str, str] | None = None) -> int:
    """This process's rank as its launcher set it (0 when none did), for deciding who logs and writes
    before and after the group exists; the rest of the environment is checked by :func:`launch_env`."""
    env = os.environ if env is None else env
    if "RANK" in env:
        return _int(env, "RANK")
    if "SLURM_STEP_ID" in env and "SLURM_PROCID" in env:
        return _int(env, "SLURM_PROCID")
    return 0


TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class LaunchEnv:
    """Where this process sits among the launched ones, and where rank 0 listens."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: ``gpu[003-005,010],cpu1`` -> ``gpu003``."""
    depth, end = 0, len(nodelist)
    for i, char in enumerate(nodelist):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            end = i
            break
    return re.sub(r"\[([^\]]*)\]", lambda m: re.split(r"[-,]", m.group(1))[0], nodelist[:end])


def slurm_master_port(env: Mapping[str, str]) -> int:
    """A port in 10000-32399 (below Linux's ephemeral range) from the job and step ids.

    Distinct for two steps of one job whose ids differ by less than 32, and for
    two jobs whose ids differ by less than 700, so concurrent steps on one node
    do not collide.
    """
    job = _int(env, "SLURM_JOB_ID") if "SLURM_JOB_ID" in env else 0
    step = _int(env, "SLURM_STEP_ID")
    return 10000 + (job % 700) * 32 + step % 32


def _slurm_master_addr(env: Mapping[str, str]) -> str:
    nodes = _int(env, "SLURM_STEP_NUM_NODES") if "SLURM_STEP_NUM_NODES" in env else 1
    if nodes == 1:
        return "127.0.0.1"
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if nodelist:
        return first_host(nodelist)
    if "SLURM_LAUNCH_NODE_IPADDR" in env:
        return env["SLURM_LAUNCH_NODE_IPADDR"]
    raise ValueError(
        f"srun step on {nodes} nodes without a node list or SLURM_LAUNCH_NODE_IPADDR: "
        "cannot tell where rank 0 listens; set MASTER_ADDR"
    )


def launch_env(env: Mapping[str, str] | None = None) -> LaunchEnv | None:
    """The launcher's view of this process, or None when no launcher started it."""
    env = os.environ if env is None else env
    if "RANK" in env:
        missing = [name for name in TORCHRUN_VARIABLES if name not in env]
        if missing:
            raise ValueError(
                f"RANK is set but {', '.join(missing)} are not: start the processes with "
                "torchrun or python -m pixsup.runtime.launch"
            )
        return LaunchEnv(
            _int(env, "RANK"),
            _int(env, "WORLD_SIZE"),
            _int(env, "LOCAL_RANK"),
            env["MASTER_ADDR"],
            _int(env, "MASTER_PORT"),
        )
    if "SLURM_STEP_ID" in env and "SLURM_PROCID" in env:
        world_key = "SLURM_STEP_NUM_TASKS" if "SLURM_STEP_NUM_TASKS" in env else "SLURM_NTASKS"
        local = _int(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0
        # MASTER_ADDR / MASTER_PORT set by hand win over the derived ones.
        addr = env.get("MASTER_ADDR") or _slurm_master_addr(env)
        port = _int(env, "MASTER_PORT") if env.get("MASTER_PORT") else slurm_master_port(env)
        return LaunchEnv(_int(env, "SLURM_PROCID"), _int(env, world_key), local, addr, port)
    return None
