"""``trials.png``: every trial's predicted latency against its validation accuracy."""
from __future__ import annotations

from typing import Any, Sequence

from hwprune.search._budget import Budget
from hwprune.search._study import TrialRecord

__all__ = ["trials_figure"]


def trials_figure(records: Sequence[TrialRecord], budget: Budget, *,
                  chosen: int | None = None, dense_ms: float | None = None,
                  front: Sequence[TrialRecord] = (), title: str = "",
                  finalists: Sequence[dict] = (), winner: dict | None = None) -> Any:
    """A matplotlib figure: predicted latency (ms) vs validation accuracy of every trial.

    Scored trials are dots (uniform seeds as squares); trials over budget have no
    accuracy, so they are ticks along the bottom edge at their predicted latency. The
    latency budget and the dense latency are vertical lines; ``chosen`` (a trial number)
    is ringed. Search scores are accuracy right after pruning (adaptive BN); ``finalists``
    (dicts with ``predicted_ms`` and ``val_accuracy`` after fine-tuning) are drawn where
    fine-tuning took them, and ``winner`` (``val_accuracy``, ``predicted_ms``,
    ``measured_ms``) as a star at its predicted latency joined to its measured one. Renders with matplotlib's Agg canvas, so it needs no display; save it
    with ``RunDir.write_figure``.
    """
    # A bare Figure on an Agg canvas: no pyplot, so no global backend switch and no
    # figure registry to leak from in a long-lived process.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    scored = [r for r in records if r.scored]
    sampled = [r for r in scored if r.source != "uniform"]
    uniform = [r for r in scored if r.source == "uniform"]
    over = [r for r in records if r.state == "COMPLETE" and not r.feasible
            and r.predicted_ms is not None]
    if sampled:
        ax.scatter([r.predicted_ms for r in sampled], [r.val_accuracy for r in sampled],
                   s=16, c="tab:blue", alpha=0.7, label=f"within budget ({len(sampled)})")
    if uniform:
        ax.scatter([r.predicted_ms for r in uniform], [r.val_accuracy for r in uniform],
                   s=30, marker="s", c="tab:green", label=f"uniform width ({len(uniform)})")
    if front and len(front) > 1:
        ax.plot([r.predicted_ms for r in front], [r.val_accuracy for r in front],
                c="tab:purple", lw=1, label="Pareto front")
    if over:
        ax.scatter([r.predicted_ms for r in over], [0.0] * len(over), marker="|", s=120,
                   c="tab:red", alpha=0.5, transform=ax.get_xaxis_transform(),
                   label=f"over budget, not evaluated ({len(over)})")
    if budget.latency_ms is not None:
        ax.axvline(budget.latency_ms, c="tab:red", ls="--", lw=1,
                   label=f"latency budget {budget.latency_ms:.3g} ms")
    if dense_ms is not None:
        ax.axvline(dense_ms, c="grey", ls=":", lw=1, label=f"dense {dense_ms:.3g} ms")
    pick = [r for r in scored if r.number == chosen]
    if pick:
        r = pick[0]
        ax.scatter([r.predicted_ms], [r.val_accuracy], s=160, facecolors="none",
                   edgecolors="black", linewidths=1.5, label=f"chosen (trial {r.number})")
    _finalists_and_winner(ax, finalists, winner)
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel("validation accuracy")
    ax.set_title(title or "hwprune search trials")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def _finalists_and_winner(ax: Any, finalists: Sequence[dict], winner: dict | None) -> None:
    done = [f for f in finalists if f.get("predicted_ms") is not None]
    if done:
        ax.scatter([f["predicted_ms"] for f in done], [f["val_accuracy"] for f in done], s=40, marker="D",
                   c="tab:orange", label=f"finalists after fine-tuning ({len(done)})")
    if winner and winner.get("predicted_ms") is not None and winner.get("val_accuracy") is not None:
        acc, pred = winner["val_accuracy"], winner["predicted_ms"]
        ax.scatter([pred], [acc], s=200, marker="*", c="gold", edgecolors="black", zorder=5,
                   label=f"winner: val {acc:.4f}, predicted {pred:.3g} ms")
        if winner.get("measured_ms") is not None:
            ax.plot([pred, winner["measured_ms"]], [acc, acc], c="black", lw=1)
            ax.scatter([winner["measured_ms"]], [acc], s=50, marker="x", c="black", zorder=5,
                       label=f"winner measured {winner['measured_ms']:.3g} ms")
