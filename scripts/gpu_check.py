"""The full profile on a GPU, in one go: DGR and DDGR on Split-MNIST (seed 0) and the DGR paper's Table 1 chain.

Runs on a bare machine whose Python has torch, torchvision, matplotlib and tqdm (no papermill, no Jupyter, no
network): `python scripts/gpu_check.py --data mnist.tar.gz --out gpu-check/` unpacks MNIST, runs, and writes
gpu-check/gpu_check.json and gpu_check.md: A_T, F_T, seconds a task, images a second when sampling the replay, and
peak GPU memory. `scripts/pack_mnist.sh` makes the archive (11 MB). `--profile smoke` dry-runs it on a CPU."""
from __future__ import annotations

import argparse
import json
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # grlib from this checkout, without installing

import torch  # noqa: E402

from grlib import continual  # noqa: E402
from grlib.models import nets  # noqa: E402
from grlib.continual import data, recipes  # noqa: E402
from grlib.continual.profiles import get_profile  # noqa: E402


def peak_memory_mb() -> float:
    return torch.cuda.max_memory_allocated() / 2 ** 20 if torch.cuda.is_available() else float("nan")


def replay_speed(strategy, n: int = 2000) -> float:
    """Images a second when the strategy draws its replay (DGR: the GAN; DDGR: guided DPM-Solver++(2M))."""
    y = torch.arange(10, device=strategy.device).repeat_interleave(n // 10)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    strategy.draw(n, tuple(range(10)))
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return len(y) / (time.perf_counter() - start)


def table1_chain(P, device, root: Path | None, folder: Path) -> list[float]:
    """Solver 1 learns real MNIST; solvers 2-5 learn only from the WGAN-GP's samples labelled by the previous
    solver (hard labels, as in the paper); each is tested on the real MNIST test set (notebook 04, part b)."""
    mnist = data.split_stream("mnist", groups=[list(range(10))], root=root, device=device)
    wgan, _ = recipes.mnist_wgan(P, 0, device=device, progress=False, root=root, folder=folder)
    first = recipes.build("finetune", P, mnist, 0, iters=P.chain_iters)
    accuracy, teacher = [continual.run(first, mnist, progress=False, folder=folder).R[0][0]], first.solver
    for k in range(2, 6):
        torch.manual_seed(k)
        images = wgan.sample(P.chain_pool)
        with torch.no_grad():
            labels = teacher(images).argmax(1)
        student = nets.make_solver("mlp", (1, 28, 28), 10, seed=k, device=device)
        optimizer = torch.optim.Adam(student.parameters(), lr=P.lr)
        rng = torch.Generator(device=device).manual_seed(k)
        for _ in range(P.chain_iters):
            idx = data.batch_indices(len(images), P.batch_size, rng, device)
            loss = torch.nn.functional.cross_entropy(student(images[idx]), labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        accuracy.append(continual.evaluate(student, mnist)[0][0])
        teacher = student
    return accuracy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="mnist.tar.gz from scripts/pack_mnist.sh (default: grlib's data folders)")
    parser.add_argument("--out", default="gpu-check", help="folder for the results and the checkpoints")
    parser.add_argument("--profile", default="full", help="full on the GPU; smoke for a dry run on a CPU")
    parser.add_argument("--parts", nargs="+", default=["dgr", "ddgr", "chain"], help="a subset of: dgr ddgr chain")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    root, folder = None, out / "checkpoints"
    if args.data:
        root = Path(tempfile.mkdtemp(prefix="grlib-data-"))
        with tarfile.open(args.data) as archive:
            archive.extractall(root, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    P, device = get_profile(args.profile), nets.pick_device()
    report = {"profile": P.name, "device": torch.cuda.get_device_name() if torch.cuda.is_available() else str(device),
              "torch": torch.__version__}
    split = data.split_stream("mnist", root=root, device=device)
    for method in [m for m in ("dgr", "ddgr") if m in args.parts]:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        strategy = recipes.build(method, P, split, 0)
        start = time.perf_counter()
        result = continual.run(strategy, split, progress=False, folder=folder)
        report[method] = {"A_T": result.A_T, "F_T": result.F_T, "seconds_per_task": result.seconds,
                          "wall_seconds": time.perf_counter() - start, "replay_images_per_s": replay_speed(strategy),
                          "peak_gpu_MB": peak_memory_mb()}
        print(f"{method}: A_T {result.A_T:.2f}, F_T {result.F_T:.2f}, {sum(result.seconds):.0f} s", flush=True)
    if "chain" in args.parts:
        start = time.perf_counter()
        report["chain"] = {"accuracy": table1_chain(P, device, root, folder), "seconds": time.perf_counter() - start,
                           "paper": [98.81, 98.64, 98.58, 98.53, 98.56]}
        print("chain: " + " / ".join(f"{a:.2f}" for a in report["chain"]["accuracy"]), flush=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    lines = [f"# GPU check: profile {P.name}, {report['device']}, torch {report['torch']}", ""]
    for method in ("dgr", "ddgr"):
        if method in report:
            r = report[method]
            lines.append(f"- {method}: A_T {r['A_T']:.2f}, F_T {r['F_T']:.2f}, training {sum(r['seconds_per_task']):.0f} s "
                         f"({', '.join(f'{s:.0f}' for s in r['seconds_per_task'])} a task), replay "
                         f"{r['replay_images_per_s']:.0f} images/s, peak GPU memory {r['peak_gpu_MB']:.0f} MB")
    if "chain" in report:
        lines.append("- Table 1 chain (hard labels): " + " / ".join(f"{a:.2f}" for a in report["chain"]["accuracy"])
                     + f" ({report['chain']['seconds']:.0f} s); the paper: 98.81 / 98.64 / 98.58 / 98.53 / 98.56")
    (out / "gpu_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
