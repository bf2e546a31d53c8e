"""What the machine must offer a config before anything loads: a loopback that carries a connection for DDP.

Multi-process training on one node rendezvouses over TCP at MASTER_ADDR (127.0.0.1 unless set). In a network
namespace whose loopback is down (`unshare -n`, some sandboxes and containers) every connection fails, and the
processes only give up after `hardware.strategy.timeout` (120 s by default; 30 minutes before that bound existed).
One listening socket and one connection to it answer the question in milliseconds.
"""

from __future__ import annotations

import os
import socket

from transferlab.errors import TrainingError

LOCAL = ("127.0.0.1", "localhost", "::1")


def _devices(hw: dict) -> int:
    """Processes per node, as Lightning counts `hardware.devices`: a count (1, "2"), device ids ([0, 1], "0,1"),
    or all visible GPUs (-1, "-1", "auto" on a GPU accelerator; "auto" is 1 on a CPU)."""
    devices = hw.get("devices", "auto")
    if isinstance(devices, bool):
        return 1
    if isinstance(devices, list):
        return len(devices)
    text = str(devices).strip()
    if text in ("-1", "auto"):  # all visible GPUs; on a CPU -1 is refused earlier and "auto" is one process
        gpus = _cuda() if str(hw.get("accelerator", "auto")) in ("gpu", "cuda", "auto") else 0
        return gpus if gpus or text == "-1" else 1
    if "," in text:
        return len([d for d in text.split(",") if d.strip()])
    return int(text) if text.isdigit() else 1


def _cuda() -> int:
    """Visible CUDA devices (torch is imported only for a GPU or auto accelerator with all-devices)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def loopback_problem(host: str = "127.0.0.1", timeout: float = 2.0) -> str | None:
    """None if a TCP connection to a socket listening on `host` succeeds, else what failed."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as server:
            server.bind((host, 0))
            server.listen(1)
            with socket.create_connection(server.getsockname()[:2], timeout=timeout):
                return None
    except OSError as e:
        return f"{type(e).__name__}: {e}"


def check_rendezvous(tree: dict) -> None:
    """Several processes on this node (`hardware.devices` > 1, one node) need a working loopback: refuse early,
    with the message the run would otherwise give after its rendezvous timeout."""
    hw = tree.get("hardware") or {}
    if _devices(hw) < 2 or int(hw.get("num_nodes") or 1) > 1 or "LOCAL_RANK" in os.environ:
        return  # one process; across nodes MASTER_ADDR is another machine's; a launched child: its parent checked
    addr = os.environ.get("MASTER_ADDR", "127.0.0.1")
    if addr not in LOCAL:
        return
    problem = loopback_problem("::1" if addr == "::1" else "127.0.0.1")
    if problem:
        accelerator = str(hw.get("accelerator", "auto"))
        on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and _cuda() > 0)
        one = "hardware=gpu (or hardware.devices=1)" if on_gpu else "hardware=cpu (or hardware.devices=1)"
        raise TrainingError(
            f"the distributed processes could not reach each other at {addr}: a connection to a socket listening "
            f"there fails ({problem}). On one machine the loopback interface must be up (`ip link set lo up`); "
            f"or train in one process: {one}.",
            details={"reason": "rendezvous"},
        )
