"""The paper's cost claims (Table 4, Fig. 1) measured: a training step of the adapter against the real
prompt methods of stage `prompt` (CoOp, DualCoOp, TaI-DPT), from 20 to 7,186 labels.

    python benchmarks/scaling.py                       # 20, 80, 1000, 7186 labels; a few minutes on 2 cores
    python benchmarks/scaling.py --labels 20 80 --prompt-max-labels 20 --device cpu

Every method trains on a batch of 64 and is charged for everything a step does (forward, loss,
backward, optimiser):

- `adapter`: `pipeline.method.train.train_adapter` itself (perturbation, the Adapter of pipeline/method/adapter.py
  with train.hidden_dim 1024 on CLIP RN50's 1024-d embeddings, BCE, AdamW, one-cycle).
- `coop`: `pipeline.prompt.coop.CoOp` through the stage's loop (`pipeline.prompt.fit.fit`: SGD on the
  context): a learnable context of 16 vectors before every label name ("X X ... X label 17."), all
  prompts through CLIP RN50's text encoder (random weights,
  `clip.model.CLIP(1024, 224, (3,4,6,3), 64, None, 77, 49408, 512, 8, 12)`: the cost of real weights)
  on every step, the ranking loss backpropagated through the frozen encoder into the context; the
  image side is 64 precomputed image features (the encode stages cache them).
- `dualcoop`: `pipeline.prompt.dualcoop.DualCoOp` the same way: a positive and a negative prompt per
  label (class-specific contexts, its default), region aggregation over 64 images' stored dense
  features at 448 px (14 x 14 locations), the asymmetric loss on half the entries known.
- `taidpt`: `pipeline.prompt.taidpt.TaIDPT` the same way: a global and a local context, so twice
  the prompts through the text encoder per step, and the local branch's token-level matching on 64
  texts of 20 tokens (their features computed once before training, as `TextTokens` does).
Each peer's own batch differs (CoOp and DualCoOp 32 images, TaI-DPT 512 texts): 64 keeps the rows comparable,
and a prompt method's step is dominated by the prompts, whose cost does not depend on the batch.

FLOPs per training batch (forward + backward + optimiser) come from torch.utils.flop_counter, which
counts matrix products (one multiply-add = 2 FLOPs): the adapter's on a real step, the prompt
methods' on the meta device (shapes only: exact and free at any label count).

Step time and peak memory are measured in a fresh process per row (on CPU, peak memory is the rise of
the process's peak RSS over its RSS before the model is built, so it covers weights, gradients,
optimiser state and activations; on CUDA it is torch.cuda.max_memory_allocated). Prompt learning above
`--prompt-max-labels` is too slow and too large for a 2-core, 24 GiB machine (7,186 labels would need
about 250 GiB for activations): those rows are extrapolated linearly from the measured ones, and the
`source` column says so.

Step time is the fastest of the timed steps, in wall time (`step_ms`) and in CPU time of the process
(`cpu_ms`, all threads): on a CPU shared with other processes wall time is mostly waiting, and CPU time
is the steadier measure. `--threads` (default 1) sets torch's threads for both methods.

CSV columns: method, labels, trainable_params, gflops_per_batch, step_ms, cpu_ms, peak_memory_mib,
source (measured | extrapolated), steps_timed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: no progress bars from train_adapter

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pipeline.config import TrainParams
from pipeline.device import resolve_device
from pipeline.method.train import TrainingSet, train_adapter
from pipeline.testbeds.random_clip import ARCHITECTURES

RESULTS = Path(__file__).resolve().parent / "results"
RN50 = ARCHITECTURES["RN50"]  # clip.model.CLIP's arguments
COLUMNS = [
    "method",
    "labels",
    "trainable_params",
    "gflops_per_batch",
    "step_ms",
    "cpu_ms",
    "peak_memory_mib",
    "source",
    "steps_timed",
]
BATCH = TrainParams().batch_size
N_CTX = 16
PLOT_TITLE = f"Training step on a batch of {BATCH}; o measured, x extrapolated (linear in the label count)"


def label_names(n: int) -> list[str]:
    return [f"label {i}" for i in range(n)]


def clip_text_model(source: str | None, device: str | torch.device) -> nn.Module:
    """CLIP's text half (random RN50 weights when `source` is None, else a saved state dict), frozen."""
    import clip.model

    if source is None:
        with torch.device("meta"):
            model = clip.model.CLIP(*RN50)
        del model.visual
        if str(device) != "meta":
            model = model.to_empty(device=device)
            with torch.no_grad():
                for p in model.parameters():
                    p.normal_(0, 0.02)
                model.logit_scale.fill_(4.6052)
            for block in model.transformer.resblocks:  # built on meta with the model: rebuild it
                block.attn_mask = model.build_attention_mask()
    else:
        model = clip.model.build_model(torch.load(source, map_location="cpu", weights_only=True)).float()
        del model.visual
        model = model.to(device)
    return model.requires_grad_(False)


PEERS = ("coop", "dualcoop", "taidpt")
METHODS = ("adapter", *PEERS)
CAPTION_TOKENS = 20  # TaI-DPT's texts: token-level features of this many tokens each (a short caption)


class PeerTraining:
    """One training step of a prompt method exactly as stage `prompt` runs it (`pipeline.prompt`): the
    method's module, its loss, and `pipeline.prompt.fit.fit` (SGD on the context vectors), on a batch
    of 64 precomputed inputs: CoOp's are image features; TaI-DPT's are texts (end-token and
    token-level features, as `TextTokens` holds them, computed before training)."""

    def __init__(self, method: str, n_labels: int, source: str | None, device: str | torch.device):
        from pipeline.prompt.coop import CoOp
        from pipeline.prompt.losses import ranking_loss
        from pipeline.prompt.taidpt import TaIDPT, TextTokens

        generator = torch.Generator().manual_seed(0)
        text_model = clip_text_model(source, device)
        names = label_names(n_labels)
        dim = text_model.text_projection.shape[1]
        self.targets = (torch.rand(BATCH, n_labels, generator=generator) < min(1.0, 3 / n_labels)).float().to(device)
        self.rows = torch.arange(BATCH)
        if method == "coop":
            self.module = CoOp(text_model, names, N_CTX, generator=generator).to(device)
            images = torch.randn(BATCH, dim, generator=generator).to(device)
            self.loss_of = lambda rows: ranking_loss(self.module(images[rows]), self.targets[rows])
        elif method == "dualcoop":
            from pipeline.prompt.dualcoop import DualCoOp
            from pipeline.prompt.losses import dual_asymmetric_loss

            locations = (448 // 32) ** 2  # DualCoOp's 448 px: 14 x 14 locations (+ their mean)
            self.module = DualCoOp(text_model, names, torch.zeros(1 + locations, dim), N_CTX, generator=generator).to(
                device
            )
            dense = torch.randn(BATCH, locations, dim, generator=generator).to(device)
            known = (torch.rand(BATCH, n_labels, generator=generator) < 0.5).float().to(device)
            self.loss_of = lambda rows: dual_asymmetric_loss(self.module(dense[rows]), self.targets[rows], known[rows])
        elif method == "taidpt":
            self.module = TaIDPT(text_model, names, N_CTX, generator=generator).to(device)
            tokens = torch.randn(BATCH, CAPTION_TOKENS, dim, generator=generator)
            texts = TextTokens(tokens[:, -1], list(tokens))

            def loss_of(rows):
                g, t, mask = texts.batch(rows)
                return self.module.loss(g.to(device), t.to(device), mask.to(device), self.targets[rows])

            self.loss_of = loss_of
        else:
            raise ValueError(f"method {method!r} is not a prompt method: use one of {PEERS}")

    def fit(self, steps: int, on_epoch=None) -> list[dict]:
        """`steps` training steps through the stage's loop (one batch per epoch: the history times each)."""
        from pipeline.prompt.fit import fit

        return fit(
            self.module, lambda epoch: [self.rows], self.loss_of, steps, 0.002, warmup_epochs=0, on_epoch=on_epoch
        )

    def step(self) -> None:
        """One step as `fit` takes it, without reading the loss back (so it also runs on the meta device,
        where FLOPs are counted): the same loss, backward and SGD update."""
        from pipeline.prompt.fit import MOMENTUM, WEIGHT_DECAY, trainable

        optimizer = torch.optim.SGD(
            list(trainable(self.module).values()), lr=0.002, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY
        )
        loss = self.loss_of(self.rows)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    @property
    def trainable_params(self) -> int:
        from pipeline.prompt.fit import trainable

        return sum(p.numel() for p in trainable(self.module).values())


def adapter_data(n_labels: int, n_texts: int, embed_dim: int) -> TrainingSet:
    generator = torch.Generator().manual_seed(0)
    text = torch.randn(n_texts, embed_dim, generator=generator)
    targets = (torch.rand(n_texts, n_labels, generator=generator) < min(1.0, 3 / n_labels)).float()
    return TrainingSet(text, targets, TrainParams().radius)


def adapter_params(device: str, hidden_dim: int, epochs: int = 1) -> TrainParams:
    return TrainParams(epochs=epochs, device=str(device), hidden_dim=hidden_dim)


def embed_dim_of(source: str | None) -> int:
    return RN50[0] if source is None else clip_text_model(source, "meta").text_projection.shape[1]


def count_flops(method: str, n_labels: int, source: str | None = None, hidden_dim: int = 1024) -> int:
    """FLOPs of one training step on a batch of 64 (forward, backward, optimiser)."""
    counter = FlopCounterMode(display=False)
    if method == "adapter":
        data = adapter_data(n_labels, BATCH, embed_dim_of(source))
        with counter:
            train_adapter(data, adapter_params("cpu", hidden_dim))
    elif method in PEERS:
        training = PeerTraining(method, n_labels, source, "meta")
        with counter:
            training.step()
    else:
        raise ValueError(f"method {method!r} is unknown: use one of {METHODS}")
    return counter.get_total_flops()


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _warm_up(device: torch.device) -> None:
    """Run the same kinds of kernels at a tiny size first, so that loading and initialising the math
    libraries is not counted as the step's memory."""
    import clip.model

    train_adapter(adapter_data(2, BATCH, 8), TrainParams(epochs=1, device=str(device), hidden_dim=8))
    block = clip.model.Transformer(16, 1, 2, torch.empty(4, 4).fill_(float("-inf")).triu_(1)).to(device)
    x = torch.randn(4, 2, 16, device=device, requires_grad=True)
    block(x).sum().backward()


def measure(
    method: str,
    n_labels: int,
    steps: int,
    source: str | None = None,
    device: str = "cpu",
    hidden_dim: int = 1024,
    threads: int | None = None,
) -> dict:
    """Step time (the fastest of `steps` timed steps: other work on the machine only ever slows one down),
    peak memory of the first step, trainable parameters.

    Peak memory is only meaningful in a fresh process on CPU (the peak RSS never goes down)."""
    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(device)
    cuda = device.type == "cuda"
    if method == "adapter":
        data = adapter_data(n_labels, BATCH, embed_dim_of(source))
    _warm_up(device)
    before = _rss_mib()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        allocated = torch.cuda.memory_allocated(device)
    if method == "adapter":
        model, _ = train_adapter(data, adapter_params(device, hidden_dim))  # one step: memory and warm-up
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    elif method in PEERS:
        training = PeerTraining(method, n_labels, source, device)
        training.fit(1)  # one step: memory and warm-up
        trainable = training.trainable_params
    else:
        raise ValueError(f"method {method!r} is unknown: use one of {METHODS}")
    if cuda:
        torch.cuda.synchronize(device)
        peak = (torch.cuda.max_memory_allocated(device) - allocated) / 2**20
    else:
        peak = _peak_rss_mib() - before
    if method == "adapter":
        # one step per epoch (a batch of 64 texts), `steps` epochs: train_adapter times each epoch's wall
        # time; the CPU time is read between epochs (the epoch's bookkeeping is a few microseconds)
        cpu_marks = [time.process_time()]
        _, history = train_adapter(
            data,
            adapter_params(device, hidden_dim, epochs=steps),
            on_epoch=lambda _: cpu_marks.append(time.process_time()),
        )
        seconds = min(row["seconds"] for row in history)
        cpu = min(b - a for a, b in zip(cpu_marks, cpu_marks[1:]))
    else:
        # the stage's loop (pipeline.prompt.fit.fit), one step per epoch: wall time per epoch from its
        # history (the loss is read back each step, which waits for a GPU); CPU time between epochs
        cpu_marks = [time.process_time()]
        history = training.fit(steps, on_epoch=lambda _: cpu_marks.append(time.process_time()))
        seconds = min(row["seconds"] for row in history)
        cpu = min(b - a for a, b in zip(cpu_marks, cpu_marks[1:]))
    return {"step_ms": seconds * 1e3, "cpu_ms": cpu * 1e3, "peak_memory_mib": peak, "trainable_params": trainable}


def measure_in_fresh_process(
    method: str, n_labels: int, steps: int, source: str | None, device: str, hidden_dim: int, threads: int | None
) -> dict:
    job = json.dumps(
        {
            "method": method,
            "n_labels": n_labels,
            "steps": steps,
            "source": source,
            "device": device,
            "hidden_dim": hidden_dim,
            "threads": threads,
        }
    )
    out = subprocess.run([sys.executable, __file__, "--worker", job], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def extrapolate(sizes: list[int], values: list[float], n: int) -> float:
    """Least-squares line through the measured points, read at n (cost is linear in the label count)."""
    if len(sizes) == 1:
        return values[0] * n / sizes[0]
    mean_x, mean_y = sum(sizes) / len(sizes), sum(values) / len(values)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(sizes, values)) / sum((x - mean_x) ** 2 for x in sizes)
    return mean_y + slope * (n - mean_x)


def run(
    labels: list[int],
    prompt_max_labels: int,
    adapter_steps: int,
    prompt_steps: int,
    source: str | None = None,
    device: str = "auto",
    hidden_dim: int = 1024,
    threads: int | None = None,
    fresh_process: bool = True,
    log=print,
) -> list[dict]:
    device = str(resolve_device(device))
    labels = sorted(labels)
    prompt_measured = [n for n in labels if n <= prompt_max_labels]
    if not prompt_measured:
        raise ValueError(
            f"--prompt-max-labels {prompt_max_labels} is below every label count {labels}: nothing to extrapolate from"
        )
    rows = []
    for method in METHODS:
        measured = {}
        for n in labels:
            flops = count_flops(method, n, source, hidden_dim)
            row = {"method": method, "labels": n, "gflops_per_batch": flops / 1e9}
            if method == "adapter" or n <= prompt_max_labels:
                steps = adapter_steps if method == "adapter" else prompt_steps
                args = (method, n, steps, source, device, hidden_dim, threads)
                result = measure_in_fresh_process(*args) if fresh_process else measure(*args)
                measured[n] = result
                row.update(result, source="measured", steps_timed=steps)
            else:
                sizes = sorted(measured)
                row.update(
                    step_ms=extrapolate(sizes, [measured[s]["step_ms"] for s in sizes], n),
                    cpu_ms=extrapolate(sizes, [measured[s]["cpu_ms"] for s in sizes], n),
                    peak_memory_mib=extrapolate(sizes, [measured[s]["peak_memory_mib"] for s in sizes], n),
                    # constant for shared contexts, linear for class-specific ones (DualCoOp)
                    trainable_params=round(extrapolate(sizes, [measured[s]["trainable_params"] for s in sizes], n)),
                    source="extrapolated",
                    steps_timed=0,
                )
            rows.append({k: row[k] for k in COLUMNS})
            log(
                f"{method:>7} {n:>5} labels: {row['step_ms']:10.1f} ms/step ({row['cpu_ms']:10.1f} CPU ms) {row['peak_memory_mib']:10.1f} MiB "
                f"{row['gflops_per_batch']:10.2f} GFLOPs {row['trainable_params']:>10,} trainable ({row['source']})"
            )
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in row.items()})


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for ax, key, ylabel in zip(
        axes,
        ("step_ms", "peak_memory_mib", "gflops_per_batch"),
        ("training step, ms (solid wall, dotted CPU time)", "peak memory (MiB)", "GFLOPs per batch of 64"),
    ):
        for method, colour, name in (
            ("adapter", "tab:blue", "TaI-Adapter (ours)"),
            ("coop", "tab:orange", "CoOp"),
            ("dualcoop", "tab:green", "DualCoOp"),
            ("taidpt", "tab:red", "TaI-DPT"),
        ):
            mine = [r for r in rows if r["method"] == method]
            ax.plot([r["labels"] for r in mine], [r[key] for r in mine], "-", color=colour, label=name)
            if key == "step_ms":
                ax.plot([r["labels"] for r in mine], [r["cpu_ms"] for r in mine], ":", color=colour)
            for source, marker in (("measured", "o"), ("extrapolated", "x")):
                pts = [r for r in mine if key == "gflops_per_batch" or r["source"] == source]
                if key != "gflops_per_batch" or source == "measured":
                    ax.plot([r["labels"] for r in pts], [r[key] for r in pts], marker, color=colour, linestyle="none")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("labels")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[1].plot([], [], "ko", label="measured")
    axes[1].plot([], [], "kx", label="extrapolated")
    axes[1].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def read_csv(path: Path) -> list[dict]:
    with path.open() as f:
        return [
            {
                k: (
                    v
                    if k in ("method", "source")
                    else float(v)
                    if k in ("gflops_per_batch", "step_ms", "cpu_ms", "peak_memory_mib")
                    else int(v)
                )
                for k, v in row.items()
            }
            for row in csv.DictReader(f)
        ]


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        job = json.loads(sys.argv[2])
        print(json.dumps(measure(**job)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, nargs="+", default=[20, 80, 1000, 7186])
    parser.add_argument("--prompt-max-labels", type=int, default=80, help="prompt learning above this is extrapolated")
    parser.add_argument(
        "--adapter-steps", type=int, default=30, help="timed adapter steps (after one untimed), fastest kept"
    )
    parser.add_argument(
        "--prompt-steps", type=int, default=1, help="timed prompt-learning steps (after one untimed), fastest kept"
    )
    parser.add_argument("--clip", default=None, help="a CLIP state dict for the text encoder; default random RN50")
    parser.add_argument("--hidden-dim", type=int, default=TrainParams().hidden_dim)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both methods (0: torch's default)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--plot-only", action="store_true", help="redraw scaling.png from the CSV in --out")
    args = parser.parse_args()
    if args.plot_only:
        plot(
            read_csv(args.out / "scaling.csv"), args.out / "scaling.png", f"CPU, {args.threads} thread(s). {PLOT_TITLE}"
        )
        return
    started = time.perf_counter()
    rows = run(
        args.labels,
        args.prompt_max_labels,
        args.adapter_steps,
        args.prompt_steps,
        args.clip,
        args.device,
        args.hidden_dim,
        args.threads or None,
    )
    device = resolve_device(args.device)
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {args.threads or torch.get_num_threads()} thread(s)"
    )
    write_csv(rows, args.out / "scaling.csv")
    plot(rows, args.out / "scaling.png", f"{where}. {PLOT_TITLE}")
    for method in METHODS:
        mine = [r for r in rows if r["method"] == method]
        small, large = mine[0], mine[-1]
        print(
            f"{method} {large['labels']}/{small['labels']} labels: step time x{large['step_ms'] / small['step_ms']:.2f} "
            f"(CPU time x{large['cpu_ms'] / small['cpu_ms']:.2f}), "
            f"memory x{large['peak_memory_mib'] / small['peak_memory_mib']:.2f}, FLOPs x{large['gflops_per_batch'] / small['gflops_per_batch']:.2f}"
        )
    print(
        f"{where}; {time.perf_counter() - started:.0f} s; wrote {args.out / 'scaling.csv'} and {args.out / 'scaling.png'}"
    )


if __name__ == "__main__":
    main()
