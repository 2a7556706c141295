"""The transformer's embedding: `W_E[tokens]` (indexing) against `F.embedding` (what the model
uses), the step time of each and whether two identical steps give the same gradients, both
measured in this process.

    python benchmarks/bench_embedding.py                  # the paper's transformer, 2 threads
    python benchmarks/bench_embedding.py --threads 1 --p 23

Indexing's backward on a CPU adds the rows of repeated tokens with atomic float adds in the
order the threads reach them, so with more than one thread two identical steps differ in the
last bits of W_E's gradient; the embedding's backward sums each row in input order.
"""

import argparse
import time

import torch
import torch.nn.functional as F

from mechmem import TrainConfig
from mechmem.models import transformer
from mechmem.train.autograd import make_group


def indexing(self, tokens):
    return self.W_E[tokens]


def embedding(self, tokens):
    return F.embedding(tokens, self.W_E)


def measure(config: TrainConfig, forward, steps: int) -> tuple[float, bool]:
    """Median seconds per training step (forward, backward, update) and whether repeating one
    step from the same state gives bit-identical gradients."""
    transformer.Embed.forward = forward
    group = make_group([config])
    times = []
    for s in range(steps):
        start = time.perf_counter()
        group.advance(s)
        times.append(time.perf_counter() - start)
    grads = []
    for _ in range(5):
        group.gradients(steps)
        grads.append([g.clone() for g in group.grads[0]])
    same = all(torch.equal(a, b) for g in grads[1:] for a, b in zip(grads[0], g, strict=True))
    return sorted(times)[len(times) // 2], same


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--p", type=int, default=97)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    config = TrainConfig(model="transformer", p=args.p, train_frac=0.5, device="cpu",
                         steps=args.steps + 1)
    print(f"transformer p {args.p}, d_model 128, d_mlp 512, full batch "
          f"({int(0.5 * args.p ** 2)} pairs), {args.threads} threads, torch {torch.__version__}")
    original = transformer.Embed.forward
    results: dict[str, list] = {"W_E[tokens]": [], "F.embedding": []}
    try:
        for _ in range(args.rounds):  # interleaved, against the machine's drift
            for name, fwd in (("W_E[tokens]", indexing), ("F.embedding", embedding)):
                results[name].append(measure(config, fwd, args.steps))
    finally:
        transformer.Embed.forward = original
    for name, rs in results.items():
        t = sorted(r[0] for r in rs)[len(rs) // 2]
        same = all(r[1] for r in rs)
        print(f"{name:12s} {t * 1e3:8.2f} ms/step   repeated steps bit-identical: {same}")
    a, b = (sorted(r[0] for r in rs)[len(rs) // 2] for rs in results.values())
    print(f"F.embedding / W_E[tokens] step time: {b / a:.3f}")


if __name__ == "__main__":
    main()
