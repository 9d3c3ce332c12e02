"""Train the demo CNN on Fashion-MNIST and write the weights the zoo ships.

    python -m hwprune.task.train_demo [--epochs N] [--out PATH] [--data DIR]

Trains on the training split minus the 6,000-image validation split
(``hwprune.task.load_fashion_mnist``), reports validation and test accuracy,
and writes ``PATH`` (a plain state_dict, loadable with ``weights_only=True``) and
``PATH`` with suffix ``.json`` recording accuracies, recipe, seed, versions, date and
the command. Default ``PATH`` is ``hwprune/models/weights/demo_cnn.pt``, which
``load_model("demo")`` loads.

Recipe: SGD (Nesterov, momentum 0.9, weight decay 5e-4), batch 128, one-cycle LR
peaking at 0.1, random flip and +-2 pixel shift. Test accuracy is measured once,
at the end, and only reported: no choice here looks at it.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hwprune._io import atomic_write, atomic_write_with
from hwprune.errors import HwpruneError
from hwprune.models._demo import demo_cnn
from hwprune.models._zoo import WEIGHTS_DIR
from hwprune.task import evaluate, load_fashion_mnist, train

DEFAULT_OUT = WEIGHTS_DIR / "demo_cnn.pt"


def run(epochs: int = 8, out: Path = DEFAULT_OUT, data_dir: str | None = None, *,
        seed: int = 0, lr: float = 0.1, batch_size: int = 128, threads: int | None = None,
        progress: bool = True, command: str | None = None) -> dict[str, Any]:
    """Train, evaluate, save; returns the record written to the ``.json`` file."""
    if threads:
        torch.set_num_threads(threads)
    task = load_fashion_mnist(data_dir, seed=seed, batch_size=batch_size, augment=True)
    torch.manual_seed(seed)  # the initial weights
    model = demo_cnn()
    print(f"training DemoCNN on {task.meta['train_images']} Fashion-MNIST images "
          f"({task.meta['val_images']} held out for validation), {epochs} epochs, "
          f"{torch.get_num_threads()} threads", flush=True)
    hist = train(model, task.train, epochs, lr=lr, seed=seed, val_loader=task.val,
                 progress=progress, log=lambda line: print(line, flush=True))
    val_acc = evaluate(model, task.val)
    test_acc = evaluate(model, task.test)
    print(f"val accuracy {val_acc:.4f}, test accuracy {test_acc:.4f}, "
          f"training wall time {hist.wall_s:.0f} s", flush=True)

    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    atomic_write_with(out, lambda p: torch.save(state, p))
    fresh = demo_cnn()  # the file must load strictly into a fresh model, as the zoo does
    fresh.load_state_dict(torch.load(out, map_location="cpu", weights_only=True), strict=True)

    record = {
        "model": "demo (hwprune.models._demo.DemoCNN)",
        "weights": out.name,
        "dataset": task.meta["dataset"],
        "test_accuracy": round(test_acc, 4),
        "val_accuracy": round(val_acc, 4),
        "train_images": task.meta["train_images"],
        "val_images": task.meta["val_images"],
        "test_images": task.meta["test_images"],
        "val_split": task.meta["val_split"],
        "normalization": task.meta["normalization"],
        "input_shape": [1, 1, 28, 28],
        "epochs": epochs,
        "batch_size": batch_size,
        "optimizer": "sgd nesterov, momentum 0.9, weight decay 5e-4",
        "lr_schedule": f"onecycle, max lr {lr}",
        "augmentation": "random horizontal flip, random shift up to 2 px",
        "seed": seed,
        "history": {k: [round(v, 1 if k == "epoch_s" else 4) for v in vals]
                    for k, vals in hist.as_dict().items() if isinstance(vals, list)},
        "train_wall_s": round(hist.wall_s, 1),
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "machine": platform.machine(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command or "python -m hwprune.task.train_demo",
    }
    meta_path = out.with_suffix(".json")
    atomic_write(meta_path, json.dumps(record, indent=2) + "\n")
    print(f"wrote {out} and {meta_path}")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hwprune.task.train_demo",
        description="Train the demo CNN on Fashion-MNIST and save the shipped weights.")
    parser.add_argument("--epochs", type=int, default=8, help="training epochs (default 8)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="state_dict to write; metadata goes next to it as .json "
                             "(default: hwprune/models/weights/demo_cnn.pt in the package, "
                             "which load_model('demo') reads)")
    parser.add_argument("--data", metavar="DIR", default=None,
                        help="folder with the Fashion-MNIST idx files "
                             "(default /usr/share/datasets/fashion-mnist)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=0.1, help="peak learning rate (default 0.1)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.epochs <= 0:
        parser.error(f"--epochs must be positive, got {args.epochs}")
    cmd_args = sys.argv[1:] if argv is None else argv
    command = " ".join(["python -m hwprune.task.train_demo", *map(shlex.quote, cmd_args)])
    try:
        run(args.epochs, args.out, args.data, seed=args.seed, lr=args.lr,
            batch_size=args.batch_size, threads=args.threads,
            progress=not args.no_progress, command=command)
    except HwpruneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
